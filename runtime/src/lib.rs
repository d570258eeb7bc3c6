#![cfg_attr(not(test), no_std)]
#![doc = include_str!("../README.md")]

pub mod arena;
mod crc32;
pub mod error;
pub mod features;
pub mod format;
pub mod kernels;
pub mod math;
mod net;
pub mod ops;
pub mod plan;
pub mod sample;
pub mod version;

pub use arena::Arena;
pub use crc32::crc32;
pub use error::{Error, Result};
pub use format::{DType, ModelFile, ModelKind};
pub use plan::{CachePlan, Plan, Profile};
pub use sample::autoregressive::{AutoregressiveSampler, PixelCnnSampler};
pub use sample::decoder::Decoder;
pub use sample::encoder::Encoder;
pub use sample::rng::Rng;

use format::MAX_LATENT;

/// A validated model: its file (borrowing the bytes) and its memory plan.
#[derive(Debug, Clone)]
pub struct Model<'a> {
    /// The decoded file.
    pub file: ModelFile<'a>,
    /// The decoder network's plan.
    pub plan: Plan,
    /// The encoder network's plan, if the file has an encoder.
    pub encoder_plan: Option<Plan>,
    /// The row caches of the incremental sampler (PixelCNN and PixelRNN
    /// files only).
    pub cache_plan: Option<CachePlan>,
}

impl<'a> Model<'a> {
    /// Reads and validates a model file: magic, version, CRC, decoding,
    /// every blob size and quantization value, every shape, the latent and
    /// the image shape. After this, sampling cannot fail for model reasons.
    ///
    /// The plan is made for [`Profile::Fast`] (see [`Model::load_for`]).
    ///
    /// # Errors
    ///
    /// Any `Format*` or `Plan*` [`Error`] describing the first problem;
    /// `BuildDtype` or `BuildOp` for a file whose dtype or an op of which
    /// this build of the runtime left out (its Cargo features).
    pub fn load(bytes: &'a [u8]) -> Result<Self> {
        Self::load_checked(bytes, true, Profile::Fast)
    }

    /// [`Model::load`] with the plans (decoder and encoder) made for the
    /// int8 kernels' `profile`: [`Profile::Small`] for the least RAM. A
    /// firmware's build script and its board must pass the same one, so
    /// that the arena built is the arena planned.
    ///
    /// # Errors
    ///
    /// As [`Model::load`].
    pub fn load_for(bytes: &'a [u8], profile: Profile) -> Result<Self> {
        Self::load_checked(bytes, true, profile)
    }

    /// [`Model::load`] without the causality check of autoregressive
    /// files: for the tests that measure what the check decides.
    #[cfg(test)]
    pub(crate) fn load_any_wiring(bytes: &'a [u8]) -> Result<Self> {
        Self::load_checked(bytes, false, Profile::Fast)
    }

    fn load_checked(bytes: &'a [u8], check_causal: bool, profile: Profile) -> Result<Self> {
        let mut slot = None;
        Self::load_into_checked(&mut slot, bytes, check_causal, profile)?;
        slot.ok_or(Error::FormatDecode)
    }

    /// [`Model::load_for`] into `slot`, in place: the file is decoded
    /// straight into the model's own fields (see [`format::decode_into`]),
    /// so that no copy of it or of the model (about 2.2 KB on a 32-bit
    /// target) is made on the stack. For boards with little RAM: the
    /// micro:bit's firmware loads into a static slot. `slot` is `None` after
    /// an error.
    ///
    /// # Errors
    ///
    /// As [`Model::load`].
    pub fn load_into<'s>(
        slot: &'s mut Option<Model<'a>>,
        bytes: &'a [u8],
        profile: Profile,
    ) -> Result<&'s Model<'a>> {
        Self::load_into_checked(slot, bytes, true, profile)?;
        slot.as_ref().ok_or(Error::FormatDecode)
    }

    fn load_into_checked(
        slot: &mut Option<Model<'a>>,
        bytes: &'a [u8],
        check_causal: bool,
        profile: Profile,
    ) -> Result<()> {
        *slot = Some(Model {
            file: ModelFile::EMPTY,
            plan: Plan::EMPTY,
            encoder_plan: None,
            cache_plan: None,
        });
        let result = match slot {
            Some(m) => m.fill(bytes, check_causal, profile),
            None => Err(Error::FormatDecode),
        };
        if result.is_err() {
            *slot = None;
        }
        result
    }

    /// Decodes `bytes` into `self.file` and plans it (the body of
    /// [`Model::load`]). Not inlined, so that its frame is gone before
    /// sampling starts.
    #[inline(never)]
    fn fill(&mut self, bytes: &'a [u8], check_causal: bool, profile: Profile) -> Result<()> {
        format::decode_into(bytes, &mut self.file)?;
        let file = &self.file;
        let plan = Plan::new_for(&file.decoder, file.dtype, profile)?;
        let meta = &file.meta;
        let latent = meta.latent as usize;
        let cache_plan = if matches!(file.kind, ModelKind::PixelCnn | ModelKind::PixelRnn) {
            Some(check_autoregressive(file, &plan, check_causal)?)
        } else {
            None
        };
        let is_decoder = matches!(
            file.kind,
            ModelKind::Vae | ModelKind::Gan | ModelKind::AutoEncoder
        );
        if is_decoder
            && (latent == 0 || latent > MAX_LATENT || file.decoder.input.numel() != latent as u64)
        {
            return Err(Error::PlanInput);
        }
        let prior_len = [meta.prior_mean.len(), meta.prior_std.len()];
        if prior_len != [0, 0] && prior_len != [4 * latent, 4 * latent] {
            return Err(Error::FormatBadValue { layer: u16::MAX });
        }
        if plan.output != meta.image || matches!(file.decoder.head, format::Head::Raw) {
            return Err(Error::PlanOutputShape);
        }
        let encoder_plan = match &file.encoder {
            None => None,
            Some(enc) => {
                let p = Plan::new_for(enc, file.dtype, profile)?;
                if enc.input != meta.image || !matches!(enc.head, format::Head::Raw) {
                    return Err(Error::PlanInput);
                }
                // An autoencoder's encoder gives z; a VAE's gives the
                // posterior's [mean ‖ log-variance].
                let out = if file.kind == ModelKind::Vae {
                    2 * latent
                } else {
                    latent
                };
                if p.output.numel() != out as u64 || latent == 0 {
                    return Err(Error::PlanOutputShape);
                }
                Some(p)
            }
        };
        // Last: a file that is valid but needs kernels this build left out.
        features::check(file)?;
        if profile == Profile::Small && file.dtype == DType::I8 && !cfg!(feature = "small-profile")
        {
            return Err(Error::BuildDtype {
                feature: "small-profile",
            });
        }
        self.plan = plan;
        self.encoder_plan = encoder_plan;
        self.cache_plan = cache_plan;
        Ok(())
    }

    /// Exact arena bytes a sampler needs: the larger of the decoder's and
    /// (if present) the encoder's plan, since they never run at once; for a
    /// PixelCNN or PixelRNN, the incremental sampler's row caches (and
    /// cell-state rows).
    pub fn arena_bytes(&self) -> u32 {
        if let Some(c) = &self.cache_plan {
            return c.arena_bytes;
        }
        let enc = self.encoder_plan.map_or(0, |p| p.arena_bytes());
        self.plan.arena_bytes().max(enc)
    }

    /// Bytes of [`Model::arena_bytes`] that are the optimized int8 kernels'
    /// scratch (columns, gathered weights, row strips; 0 for f32 and f16
    /// files), in the plan that sets the arena's size.
    pub fn scratch_bytes(&self) -> u32 {
        if let Some(c) = &self.cache_plan {
            return c.scratch;
        }
        match self.encoder_plan {
            Some(e) if e.arena_bytes() > self.plan.arena_bytes() => e.scratch,
            _ => self.plan.scratch,
        }
    }

    /// Multiply-accumulates per generated sample, as the sampler really
    /// does them: one decoder pass, or for a PixelCNN / PixelRNN the
    /// incremental sampler's wavefront (each layer once at each position).
    pub fn macs_per_sample(&self) -> u64 {
        match &self.cache_plan {
            Some(c) => c.macs,
            None => self.plan.macs,
        }
    }

    /// Multiply-accumulates of one full forward pass of the network (for a
    /// PixelCNN / PixelRNN, what a naive sampler would pay for every pixel).
    /// A Row LSTM counts its convolution taps only (input-to-state inside
    /// the row, unmasked; state-to-state inside the previous row, none on
    /// row 0), not the element-wise gate and cell arithmetic.
    pub fn forward_macs(&self) -> u64 {
        self.plan.macs
    }

    /// Arena bytes of one full forward pass (two whole activation buffers,
    /// plus one row of cell state for a network with a Row LSTM): what
    /// [`AutoregressiveSampler::naive`] and
    /// [`AutoregressiveSampler::logits`] need as scratch.
    pub fn forward_arena_bytes(&self) -> u32 {
        self.plan.arena_bytes()
    }

    /// Parameters (weights and biases) of the network that runs on the board.
    pub fn params(&self) -> u32 {
        self.plan.params
    }
}

/// Checks what a PixelCNN or PixelRNN file must be: a single-channel image
/// in and out, no latent and no encoder, masked convolutions and two-stack
/// convolutions only (plus Row LSTMs for a PixelRNN), wired so that no
/// logit sees its own pixel or a later one ([`causal`]), a sigmoid head;
/// and plans its caches.
fn check_autoregressive(
    file: &ModelFile<'_>,
    plan: &Plan,
    check_causal: bool,
) -> Result<CachePlan> {
    let meta = &file.meta;
    let image = meta.image;
    if meta.latent != 0
        || file.encoder.is_some()
        || !meta.prior_mean.is_empty()
        || !meta.prior_std.is_empty()
        || image.c != 1
        || file.decoder.input != image
    {
        return Err(Error::PlanInput);
    }
    if plan.output != image || matches!(file.decoder.head, format::Head::Raw) {
        return Err(Error::PlanOutputShape);
    }
    if file.decoder.layers.is_empty() {
        return Err(Error::PlanOutputShape);
    }
    let rnn = file.kind == ModelKind::PixelRnn;
    for (i, layer) in file.decoder.layers.iter().enumerate() {
        // The incremental sampler runs the ops that read rows above; a
        // recurrent one only in a PixelRNN.
        if ops::rows_read(&layer.op).is_none() || (ops::recurrent(&layer.op) && !rnn) {
            return Err(Error::PlanShapeMismatch { layer: i as u16 });
        }
    }
    if check_causal {
        causal(&file.decoder.layers)?;
    }
    CachePlan::new(&file.decoder, file.dtype)
}

/// Checks that a stack of masked convolutions, two-stack convolutions and
/// Row LSTMs samples correctly in raster order as the incremental sampler
/// computes it: each layer's output at pixel p is computed before pixel p
/// is drawn, so it must not read the image at p; a value computed that way
/// is wrong in the caches (*poisoned*), and so is everything that reads it.
/// The logits must not be poisoned.
///
/// Each tensor is tracked as its vertical channels (the first `v`; a
/// two-stack layer computes them for a whole row once the row is drawn, so
/// they may read all of rows <= y) and the rest, the per-position
/// channels. A layer poisons its per-position outputs if it reads a
/// poisoned input, or the image at p (mask B on the image). No layer may
/// read vertical channels as per-position ones (masked convolutions and
/// Row LSTMs read none; a two-stack layer's `in_v` must cover them: it
/// would read row y's before they exist), and the logits must have none.
/// A layer that reads nothing of its per-position inputs (a 1x1 mask A)
/// cuts what came before.
fn causal(layers: &[format::Layer<'_>]) -> Result<()> {
    // Vertical channels, and the layer that poisoned (first) the
    // per-position and the vertical channels.
    let mut v = 0u16;
    let (mut poison, mut poison_v): (Option<u16>, Option<u16>) = (None, None);
    for (i, layer) in layers.iter().enumerate() {
        let l = i as u16;
        let Some(io) = ops::causal_io(&layer.op) else {
            return Err(Error::PlanNotCausal { layer: l });
        };
        // Vertical channels read as per-position ones would be read at row
        // y before row y's exist. (Per-position channels read as vertical
        // ones are only read a row up, or once their row is complete.)
        if io.in_v < v {
            return Err(Error::PlanNotCausal { layer: l });
        }
        let image = i == 0;
        // What the layer reads as vertical: the vertical channels, and any
        // per-position ones it counts with them.
        let as_v = if io.in_v > v {
            poison_v.or(poison)
        } else {
            poison_v
        };
        // The per-position outputs: their own row's inputs (left of p, and
        // p with mask B), and a two-stack layer's link to the vertical
        // inputs a row up.
        let own = if io.reads {
            poison.or((image && io.reads_own).then_some(l))
        } else {
            None
        };
        let link = if io.in_v > 0 { as_v } else { None };
        // Vertical outputs read the vertical inputs (or all inputs when
        // there are none) of whole rows, once those are drawn.
        let vert = if io.in_v > 0 { as_v } else { poison };
        (poison, poison_v) = (own.or(link), if io.out_v > 0 { vert } else { None });
        v = io.out_v;
    }
    if v != 0 {
        return Err(Error::PlanNotCausal {
            layer: layers.len() as u16,
        });
    }
    match poison {
        Some(layer) => Err(Error::PlanNotCausal { layer }),
        None => Ok(()),
    }
}
