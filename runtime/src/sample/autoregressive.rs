//! The autoregressive sampler (PixelCNN and PixelRNN): pixels in raster
//! order, one Bernoulli each, computed incrementally (Ramachandran et al.
//! 2017, "Fast Generation for Convolutional Autoregressive Models").
//!
//! ```
//! # fn demo(model_bytes: &[u8]) -> tinygen_runtime::Result<()> {
//! use tinygen_runtime::{Arena, AutoregressiveSampler, Model, Rng};
//! let model = Model::load(model_bytes)?; // a PixelCnn or PixelRnn file
//! let mut arena = Arena::<65536>::new(); // model.arena_bytes() is the exact need
//! let mut sampler = AutoregressiveSampler::new(&model, arena.as_mut_slice())?;
//! let mut rng = Rng::new(1);
//! let mut pixels = [0u8; 28 * 28];
//! sampler.sample(&mut rng, &mut pixels)?; // bytes 0 or 255
//! # Ok(()) }
//! ```
//!
//! # How it works
//!
//! Every layer is a masked convolution or a Row LSTM, and output (y, x) of
//! either depends on rows above `y` and on row `y` only at columns up to
//! `x`:
//!
//! - a masked convolution with kernel `k` reads its input at rows
//!   `y - k/2 ..= y`;
//! - a Row LSTM computes its `4 * hidden` gates at (y, x) from its input at
//!   row `y`, columns `<= x` (its masked 1-D input-to-state kernel), and
//!   from its own hidden states of row `y - 1` at columns
//!   `x - k_state/2 ..= x + k_state/2`; then its cell and hidden state at
//!   (y, x) from the cell state at (y - 1, x).
//!
//! Once pixel (y, x) is known, and with it everything before it in raster
//! order, each layer can compute its output at the next position, first
//! layer first, and the last layer's output there is the logit of the next
//! pixel. So a sample computes each layer once at each position: one
//! forward pass in all ([`crate::Model::macs_per_sample`]), where the naive
//! sampler pays one whole forward pass per pixel.
//!
//! What must be kept ([`crate::plan::CachePlan`]) is, for each tensor, the
//! rows its consumer reads: `k/2 + 1` rows for a masked convolution's input,
//! one row for a Row LSTM's input and for the logits; a Row LSTM's output
//! keeps at least two rows (row `y - 1` is its state while row `y` is
//! written), and each Row LSTM keeps one row of cell state. The caches are
//! the whole arena.
//!
//! The incremental sampler and [`AutoregressiveSampler::naive`] compute
//! every value through the same per-position kernels
//! ([`crate::kernels::masked_conv2d_at_f32`], `_i8`,
//! [`crate::kernels::row_lstm_at_f32`], `_i8`), in the same order, so for
//! the same random stream they produce the same bytes.
//!
//! # Probabilities
//!
//! f32/f16: `p = sigmoid(logit)` ([`crate::kernels::sigmoid_f32`]). int8:
//! `p = lut[q + 128] / 255` from the file's sigmoid table (so p moves in
//! steps of 1/255). Pixel = 255 if `rng.bernoulli(p)`, else 0; one uniform
//! number per pixel.
//!
//! # Temperature
//!
//! [`AutoregressiveSampler::set_temperature`] divides every logit by `T`
//! before the sigmoid: `T < 1` sharpens each pixel's Bernoulli towards its
//! more likely value (fewer stray pixels and broken strokes, less variety),
//! `T > 1` flattens it; `T = 1` (the default) is the model's own
//! distribution, the one its likelihood is measured on. f32/f16:
//! `p = sigmoid(logit * (1 / T))`. int8: a table of the same form as the
//! file's, `round(255 * sigmoid(scale * (q - zp) / T))` with the logits'
//! output scale and zero point, built by `set_temperature` in f32 (the
//! file's own table is used at `T = 1`). Host and board run the same code,
//! so they still draw the same bytes.

use crate::arena;
use crate::error::{Error, Result};
use crate::format::{Act, DType, Head, Layer, Op, Shape};
use crate::kernels::{self, FloatWeights};
use crate::plan::CachePlan;
use crate::sample::decoder::check_len;
use crate::sample::rng::Rng;
use crate::Model;
use crate::{features, net};

/// Samples a PixelCNN or PixelRNN model in a caller-owned arena.
#[derive(Debug)]
pub struct AutoregressiveSampler<'m, 'a> {
    model: &'m Model<'a>,
    cache: &'m CachePlan,
    arena: &'m mut [u8],
    /// `1 / T` (f32/f16 logits are multiplied by it).
    inv_t: f32,
    /// int8: the logit -> probability table at this temperature (the
    /// file's at `T = 1`); unused for float files.
    lut: [u8; 256],
}

/// The sampler's former name, from when it sampled PixelCNN files only.
pub type PixelCnnSampler<'m, 'a> = AutoregressiveSampler<'m, 'a>;

#[inline]
fn prob_i8(lut: &[u8], q: i8) -> f32 {
    lut[(q as i32 + 128) as usize] as f32 * (1.0 / 255.0)
}

/// Layer `l`'s input cache (read) and output cache (written), and its
/// geometry's shape, from the caches' buffer.
fn layer_caches<'b, T>(
    c: &CachePlan,
    buf: &'b mut [T],
    l: usize,
) -> (&'b [T], &'b mut [T], Shape, (u16, u16)) {
    let (sc, dc) = (c.caches[l], c.caches[l + 1]);
    // Caches lie in layer order: the output's lies after the input's.
    let (lo, hi) = buf.split_at_mut(dc.offset as usize);
    let src = &lo[sc.offset as usize..][..sc.elems(c.w) as usize];
    let dst = &mut hi[..dc.elems(c.w) as usize];
    let shape = Shape {
        c: sc.c,
        h: c.h,
        w: c.w,
    };
    (src, dst, shape, (sc.rows, dc.rows))
}

/// Layer `l`'s cell-state row (`hidden * w` elements) in the cells' buffer
/// (which starts at [`CachePlan::caches_bytes`]).
fn layer_cell<'b, T>(
    c: &CachePlan,
    cells: &'b mut [T],
    l: usize,
    layer: &Layer<'_>,
) -> &'b mut [T] {
    let row = Shape {
        c: 0,
        h: c.h,
        w: c.w,
    };
    let len = crate::ops::cell_elems(&layer.op, row) as usize;
    let start = (c.cells[l].saturating_sub(c.caches_bytes) / 4) as usize;
    &mut cells[start..start + len]
}

impl<'m, 'a> AutoregressiveSampler<'m, 'a> {
    /// A sampler for `model` that keeps its row caches in `arena` (at least
    /// [`Model::arena_bytes`] bytes, 4-byte aligned).
    ///
    /// # Errors
    ///
    /// `CallUnsupported` if the model is not a PixelCNN or PixelRNN;
    /// `PlanArenaTooSmall` / `PlanArenaMisaligned` for a bad arena.
    pub fn new(model: &'m Model<'a>, arena: &'m mut [u8]) -> Result<Self> {
        let Some(cache) = model.cache_plan.as_ref() else {
            return Err(Error::CallUnsupported);
        };
        arena::check_bytes(cache.arena_bytes, arena)?;
        let mut lut = [0u8; 256];
        if let Head::SigmoidLut(t) = model.file.decoder.head {
            // Plan::new checked it holds 256 entries.
            lut.copy_from_slice(t);
        }
        Ok(AutoregressiveSampler {
            model,
            cache,
            arena,
            inv_t: 1.0,
            lut,
        })
    }

    /// Samples at temperature `t` from now on (see the module docs): every
    /// logit is divided by `t` before the sigmoid. 1.0 is the model's own
    /// distribution.
    ///
    /// # Errors
    ///
    /// `CallTemperature` unless `t` is finite and above 0 (the sampler keeps
    /// its temperature).
    pub fn set_temperature(&mut self, t: f32) -> Result<()> {
        if !(t.is_finite() && t > 0.0) {
            return Err(Error::CallTemperature);
        }
        let inv_t = 1.0 / t;
        let net = &self.model.file.decoder;
        if let Head::SigmoidLut(file_lut) = net.head {
            let q = net.layers.last().and_then(|l| l.quant);
            match q {
                Some(q) if t != 1.0 => {
                    for (i, p) in self.lut.iter_mut().enumerate() {
                        let logit = q.out_scale * (i as i32 - 128 - i32::from(q.out_zp)) as f32;
                        *p = kernels::prob_to_u8(kernels::sigmoid_f32(logit * inv_t));
                    }
                }
                _ => self.lut.copy_from_slice(file_lut),
            }
        }
        self.inv_t = inv_t;
        Ok(())
    }

    /// The sampling temperature (1.0 unless [`Self::set_temperature`] changed it).
    pub fn temperature(&self) -> f32 {
        1.0 / self.inv_t
    }

    /// Number of pixels of one image.
    pub fn image_len(&self) -> usize {
        self.cache.h as usize * self.cache.w as usize
    }

    /// Draws one image, pixel by pixel, computing only what each new pixel
    /// makes computable. `pixels` receives 0 or 255 per pixel.
    ///
    /// # Errors
    ///
    /// `CallBufferLen` when `pixels` has the wrong length.
    pub fn sample(&mut self, rng: &mut Rng, pixels: &mut [u8]) -> Result<()> {
        check_len(self.image_len(), pixels.len())?;
        self.sample_into(rng, pixels, None);
        Ok(())
    }

    /// [`Self::sample`], also writing the logit each pixel was drawn from
    /// (before the temperature; dequantized for int8, as
    /// [`Self::logits`] gives them): a full forward pass on the drawn
    /// image must give the same logits, bit for bit (what the tests check
    /// in one pass instead of the naive sampler's one per pixel).
    ///
    /// # Errors
    ///
    /// `CallBufferLen` when `pixels` or `logits` has the wrong length.
    pub fn sample_with_logits(
        &mut self,
        rng: &mut Rng,
        pixels: &mut [u8],
        logits: &mut [f32],
    ) -> Result<()> {
        check_len(self.image_len(), pixels.len())?;
        check_len(self.image_len(), logits.len())?;
        self.sample_into(rng, pixels, Some(logits));
        Ok(())
    }

    fn sample_into(&mut self, rng: &mut Rng, pixels: &mut [u8], logits: Option<&mut [f32]>) {
        // (A dtype this build left out was refused by Model::load.)
        match self.model.file.dtype {
            DType::F32 if features::F32 => self.sample_float(rng, pixels, logits, kernels::F32Le),
            DType::F16 if features::F16 => self.sample_float(rng, pixels, logits, kernels::F16Le),
            DType::I8 if features::INT8 => self.sample_i8(rng, pixels, logits),
            _ => {}
        }
    }

    fn sample_float<W: FloatWeights>(
        &mut self,
        rng: &mut Rng,
        pixels: &mut [u8],
        mut logits: Option<&mut [f32]>,
        weights: fn(&'a [u8]) -> W,
    ) {
        let c = self.cache;
        let (h, w) = (c.h as usize, c.w as usize);
        let net = &self.model.file.decoder;
        let (caches, cells) =
            self.arena[..c.arena_bytes as usize].split_at_mut(c.caches_bytes as usize);
        let (buf, cells) = (arena::as_f32(caches), arena::as_f32(cells));
        let n = net.layers.len();
        let (inp, out) = (c.caches[0], c.caches[n]);
        for y in 0..h {
            for x in 0..w {
                for (l, layer) in net.layers.iter().enumerate() {
                    let (src, dst, shape, (in_rows, out_rows)) = layer_caches(c, buf, l);
                    let wt = weights(layer.weight);
                    match layer.op {
                        Op::MaskedConv2d { .. } if features::MASKED_CONV2D => {
                            let g = net::masked_geom(&layer.op, shape, in_rows, out_rows);
                            let relu = layer.act == Act::Relu;
                            kernels::masked_conv2d_at_f32(src, &g, wt, layer.bias, dst, relu, y, x);
                        }
                        Op::RowLstm { .. } if features::ROW_LSTM => {
                            let g = net::lstm_geom(&layer.op, shape, in_rows, out_rows);
                            let cell = layer_cell(c, cells, l, layer);
                            kernels::row_lstm_at_f32(src, &g, wt, layer.bias, dst, cell, y, x);
                        }
                        Op::StackConv2d { .. } if features::STACK_CONV2D => {
                            let g = net::stack_geom(&layer.op, shape, in_rows, out_rows);
                            let relu = layer.act == Act::Relu;
                            kernels::stack_conv2d_h_at_f32(
                                src, &g, wt, layer.bias, dst, relu, y, x,
                            );
                        }
                        // Model::load admits nothing else.
                        _ => {}
                    }
                }
                let logit = buf[out.offset as usize + (y % out.rows as usize) * w + x];
                if let Some(l) = logits.as_deref_mut() {
                    l[y * w + x] = logit;
                }
                let on = rng.bernoulli(kernels::sigmoid_f32(logit * self.inv_t));
                pixels[y * w + x] = if on { 255 } else { 0 };
                buf[inp.offset as usize + (y % inp.rows as usize) * w + x] =
                    if on { 1.0 } else { 0.0 };
            }
            // Row y is complete: the vertical stacks' outputs of row y,
            // first layer first (each reads its input's row y).
            for (l, layer) in net.layers.iter().enumerate() {
                if let (Op::StackConv2d { out_v: 1.., .. }, true) =
                    (layer.op, features::STACK_CONV2D)
                {
                    let (src, dst, shape, (in_rows, out_rows)) = layer_caches(c, buf, l);
                    let g = net::stack_geom(&layer.op, shape, in_rows, out_rows);
                    let relu = layer.act == Act::Relu;
                    let wt = weights(layer.weight);
                    kernels::stack_conv2d_v_row_f32(src, &g, wt, layer.bias, dst, relu, y);
                }
            }
        }
    }

    fn sample_i8(&mut self, rng: &mut Rng, pixels: &mut [u8], mut logits: Option<&mut [f32]>) {
        let c = self.cache;
        let (h, w) = (c.h as usize, c.w as usize);
        let net = &self.model.file.decoder;
        let lut = &self.lut;
        let (scale, zp) = net.input_q.map_or((1.0, 0), |q| (q.scale, q.zero_point));
        let (q_on, q_off) = (net::quantize(1.0, scale, zp), net::quantize(0.0, scale, zp));
        let (caches, cells) =
            self.arena[..c.arena_bytes as usize].split_at_mut(c.caches_bytes as usize);
        let (cells, scratch) = cells.split_at_mut((c.scratch_offset - c.caches_bytes) as usize);
        let (buf, cells) = (arena::as_i8(caches), arena::as_i32(cells));
        let scratch = arena::as_u32(scratch);
        let n = net.layers.len();
        let (inp, out) = (c.caches[0], c.caches[n]);
        for y in 0..h {
            for x in 0..w {
                for (l, layer) in net.layers.iter().enumerate() {
                    let (src, dst, shape, (in_rows, out_rows)) = layer_caches(c, buf, l);
                    let q = net::requant(layer);
                    match layer.op {
                        Op::MaskedConv2d { .. } if features::MASKED_CONV2D => {
                            let g = net::masked_geom(&layer.op, shape, in_rows, out_rows);
                            kernels::masked_conv2d_at_i8(
                                src,
                                &g,
                                layer.weight,
                                layer.bias,
                                &q,
                                dst,
                                y,
                                x,
                                scratch,
                            );
                        }
                        Op::RowLstm { .. } if features::ROW_LSTM => {
                            let g = net::lstm_geom(&layer.op, shape, in_rows, out_rows);
                            let cell = layer_cell(c, cells, l, layer);
                            kernels::row_lstm_at_i8(
                                src,
                                &g,
                                layer.weight,
                                layer.bias,
                                &q,
                                dst,
                                cell,
                                y,
                                x,
                                scratch,
                            );
                        }
                        Op::StackConv2d { .. } if features::STACK_CONV2D => {
                            let g = net::stack_geom(&layer.op, shape, in_rows, out_rows);
                            kernels::stack_conv2d_h_at_i8(
                                src,
                                &g,
                                layer.weight,
                                layer.bias,
                                &q,
                                dst,
                                y,
                                x,
                                scratch,
                            );
                        }
                        _ => {}
                    }
                }
                let logit = buf[out.offset as usize + (y % out.rows as usize) * w + x];
                if let Some(l) = logits.as_deref_mut() {
                    let (scale, zp) = net::output_q(net);
                    l[y * w + x] = scale * (logit as i32 - zp as i32) as f32;
                }
                let on = rng.bernoulli(prob_i8(lut, logit));
                pixels[y * w + x] = if on { 255 } else { 0 };
                buf[inp.offset as usize + (y % inp.rows as usize) * w + x] =
                    if on { q_on } else { q_off };
            }
            // Row y is complete: the vertical stacks' outputs of row y.
            for (l, layer) in net.layers.iter().enumerate() {
                if let (Op::StackConv2d { out_v: 1.., .. }, true) =
                    (layer.op, features::STACK_CONV2D)
                {
                    let (src, dst, shape, (in_rows, out_rows)) = layer_caches(c, buf, l);
                    let g = net::stack_geom(&layer.op, shape, in_rows, out_rows);
                    let q = net::requant(layer);
                    kernels::stack_conv2d_v_row_i8(
                        src,
                        &g,
                        layer.weight,
                        layer.bias,
                        &q,
                        dst,
                        y,
                        scratch,
                    );
                }
            }
        }
    }

    /// Draws one image the naive way: a whole forward pass of the network
    /// for every pixel (image size times [`Model::forward_macs`]). For
    /// tests: it gives exactly the bytes of [`AutoregressiveSampler::sample`] for
    /// the same random stream. `scratch` holds the two whole activation
    /// buffers and, for a PixelRNN, the cell-state row:
    /// [`Model::forward_arena_bytes`]).
    ///
    /// # Errors
    ///
    /// `CallBufferLen` when `pixels` has the wrong length;
    /// `PlanArenaTooSmall` / `PlanArenaMisaligned` for a bad `scratch`.
    pub fn naive(&mut self, rng: &mut Rng, pixels: &mut [u8], scratch: &mut [u8]) -> Result<()> {
        check_len(self.image_len(), pixels.len())?;
        let plan = &self.model.plan;
        arena::check_bytes(plan.arena_bytes(), scratch)?;
        let f = &self.model.file;
        let net = &f.decoder;
        pixels.iter_mut().for_each(|p| *p = 0);
        for i in 0..pixels.len() {
            let input = pixels.iter().map(|&p| if p >= 128 { 1.0 } else { 0.0 });
            let in_a = net::run(net, f.dtype, plan, scratch, input);
            let p = if f.dtype == DType::I8 {
                let (a, b) = crate::plan::split_i8(plan, scratch);
                prob_i8(&self.lut, if in_a { a[i] } else { b[i] })
            } else {
                let (a, b) = crate::plan::split_f32(plan, scratch);
                kernels::sigmoid_f32(if in_a { a[i] } else { b[i] } * self.inv_t)
            };
            pixels[i] = if rng.bernoulli(p) { 255 } else { 0 };
        }
        Ok(())
    }

    /// The logits of every pixel of `image` given the pixels before it (one
    /// forward pass, pixels >= 128 read as 1), dequantized for int8: what
    /// the exact likelihood is computed from. `scratch` as for
    /// [`AutoregressiveSampler::naive`].
    ///
    /// # Errors
    ///
    /// `CallBufferLen` when `image` or `logits` has the wrong length;
    /// `PlanArenaTooSmall` / `PlanArenaMisaligned` for a bad `scratch`.
    pub fn logits(&self, image: &[u8], scratch: &mut [u8], logits: &mut [f32]) -> Result<()> {
        check_len(self.image_len(), image.len())?;
        check_len(self.image_len(), logits.len())?;
        let plan = &self.model.plan;
        arena::check_bytes(plan.arena_bytes(), scratch)?;
        let f = &self.model.file;
        let input = image.iter().map(|&p| if p >= 128 { 1.0 } else { 0.0 });
        let in_a = net::run(&f.decoder, f.dtype, plan, scratch, input);
        net::read_output(&f.decoder, f.dtype, plan, scratch, in_a, logits);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{
        encode, Act, Layer, LayerQuant, Mask, Meta, ModelFile, ModelKind, Net, QParams,
        FORMAT_VERSION, MAGIC, MAX_LAYERS,
    };
    use crate::kernels::reference::mac_counter;
    use std::vec::Vec;

    /// Owned blobs of one random layer.
    struct Blobs {
        op: Op,
        act: Act,
        weight: Vec<u8>,
        bias: Vec<u8>,
        mult: Vec<u8>,
        shift: Vec<u8>,
        zps: (i8, i8),
        out_scale: f32,
    }

    /// One layer of a random network: a masked convolution
    /// (`in_c, out_c, k, mask, act`) or a Row LSTM
    /// (`in_c, hidden, k_in, mask, k_state`).
    #[derive(Clone, Copy, Debug)]
    enum Spec {
        Conv(u16, u16, u8, Mask, Act),
        Lstm(u16, u16, u8, Mask, u8),
        /// in_c, in_v, out_c, out_v, k, mask (ReLU)
        Stack(u16, u16, u16, u16, u8, Mask),
        /// [`Spec::Stack`] without the ReLU.
        StackLinear(u16, u16, u16, u16, u8, Mask),
    }

    /// A random two-stack PixelCNN as the trainer builds them: a mask A
    /// stack layer of kernel `k0` from the image to `chans` vertical and
    /// `chans` horizontal channels, `hidden` mask B stack layers of kernel
    /// `k` (the last with horizontal outputs only), a 1x1 to one logit.
    fn random_stacks(
        seed: u64,
        dtype: DType,
        (h, w): (u16, u16),
        chans: u16,
        (k0, k, hidden): (u8, u8, usize),
    ) -> Vec<u8> {
        let c2 = 2 * chans;
        let mut specs = Vec::new();
        let last_v = if hidden == 0 { 0 } else { chans };
        specs.push(Spec::Stack(1, 0, chans + last_v, last_v, k0, Mask::A));
        for i in 0..hidden {
            let out_v = if i + 1 == hidden { 0 } else { chans };
            specs.push(Spec::Stack(c2, chans, chans + out_v, out_v, k, Mask::B));
        }
        specs.push(Spec::Conv(chans, 1, 1, Mask::B, Act::None));
        random_net(seed, dtype, h, w, ModelKind::PixelCnn, &specs)
    }

    /// A random PixelCNN file: `chans` hidden channels, first kernel `k0`,
    /// then `hidden` layers of kernel 3, then a 1x1 to one logit.
    fn random_file(
        seed: u64,
        dtype: DType,
        h: u16,
        w: u16,
        chans: u16,
        k0: u8,
        hidden: usize,
    ) -> Vec<u8> {
        let mut specs = Vec::new();
        specs.push(Spec::Conv(1, chans, k0, Mask::A, Act::Relu));
        for _ in 0..hidden {
            specs.push(Spec::Conv(chans, chans, 3, Mask::B, Act::Relu));
        }
        specs.push(Spec::Conv(chans, 1, 1, Mask::B, Act::None));
        random_net(seed, dtype, h, w, ModelKind::PixelCnn, &specs)
    }

    /// A random PixelRNN file as the trainer builds them: a 7x7 (here
    /// `k0`) mask A convolution to `chans` (or, with `lstm_first`, a mask A
    /// Row LSTM), `lstms` Row LSTMs of `hid` channels (k_in 3 mask B,
    /// k_state 3), a mask B convolution of kernel `k_out` back to `chans`
    /// and a 1x1 to one logit.
    #[allow(clippy::too_many_arguments)]
    fn random_rnn(
        seed: u64,
        dtype: DType,
        h: u16,
        w: u16,
        chans: u16,
        hid: u16,
        (k0, lstm_first, lstms, k_out): (u8, bool, usize, u8),
    ) -> Vec<u8> {
        let mut specs = Vec::new();
        let mut c = if lstm_first {
            specs.push(Spec::Lstm(1, hid, k0, Mask::A, 3));
            hid
        } else {
            specs.push(Spec::Conv(1, chans, k0, Mask::A, Act::Relu));
            chans
        };
        for _ in 0..lstms {
            specs.push(Spec::Lstm(c, hid, 3, Mask::B, 3));
            c = hid;
        }
        specs.push(Spec::Conv(c, chans, k_out, Mask::B, Act::Relu));
        specs.push(Spec::Conv(chans, 1, 1, Mask::B, Act::None));
        random_net(seed, dtype, h, w, ModelKind::PixelRnn, &specs)
    }

    /// i8 table of `round(128 * f(i))` for `i` in `range`, clamped.
    fn table(range: core::ops::Range<i32>, f: impl Fn(i32) -> f64) -> Vec<u8> {
        range
            .map(|i| (128.0 * f(i)).round().clamp(-128.0, 127.0) as i8 as u8)
            .collect()
    }

    fn random_net(
        seed: u64,
        dtype: DType,
        h: u16,
        w: u16,
        kind: ModelKind,
        specs: &[Spec],
    ) -> Vec<u8> {
        let mut r = Rng::new(seed);
        let mut blobs = Vec::new();
        let mut zp_in: i8 = -128;
        for &spec in specs {
            let (op, act, n, out_c, fan, qc) = match spec {
                Spec::Conv(in_c, out_c, k, mask, act) => {
                    let op = Op::MaskedConv2d {
                        in_c,
                        out_c,
                        k,
                        mask,
                    };
                    let n = in_c as usize * out_c as usize * k as usize * k as usize;
                    let fan = (in_c as f32 * k as f32 * k as f32).sqrt();
                    (op, act, n, out_c, fan, out_c)
                }
                Spec::Lstm(in_c, hidden, k_in, mask, k_state) => {
                    let op = Op::RowLstm {
                        in_c,
                        hidden,
                        k_in,
                        mask,
                        k_state,
                    };
                    let g = 4 * hidden as usize;
                    let n =
                        g * (in_c as usize * k_in as usize + hidden as usize * k_state as usize);
                    let fan = ((in_c as f32 * k_in as f32) + hidden as f32 * k_state as f32).sqrt();
                    (op, Act::None, n, 4 * hidden, fan, 8 * hidden)
                }
                Spec::Stack(in_c, in_v, out_c, out_v, k, mask)
                | Spec::StackLinear(in_c, in_v, out_c, out_v, k, mask) => {
                    let op = Op::StackConv2d {
                        in_c,
                        in_v,
                        out_c,
                        out_v,
                        k,
                        mask,
                    };
                    let shape = Shape { c: in_c, h, w };
                    let n = net::stack_geom(&op, shape, h, h).weight_len();
                    let fan = (in_c as f32 * k as f32).sqrt();
                    let act = if matches!(spec, Spec::Stack(..)) {
                        Act::Relu
                    } else {
                        Act::None
                    };
                    (op, act, n, out_c, fan, out_c)
                }
            };
            let lstm = matches!(op, Op::RowLstm { .. });
            let (weight, bias, mult, shift, zps) = match dtype {
                DType::I8 => {
                    let mut weight: Vec<u8> = (0..n).map(|_| r.next_u32() as u8).collect();
                    if lstm {
                        // Pre-activations at scale 1/16 (range [-8, 8)).
                        let s = 1.0 / 16.0;
                        weight.extend(table(-128..128, |i| 1.0 / (1.0 + (-(i as f64) * s).exp())));
                        weight.extend(table(-128..128, |i| (i as f64 * s).tanh()));
                        weight.extend(table(-256..256, |i| (i as f64 / 64.0).tanh()));
                    }
                    let bias: Vec<u8> = (0..out_c)
                        .flat_map(|_| ((r.next_u32() % 20001) as i32 - 10000).to_le_bytes())
                        .collect();
                    let mult: Vec<u8> = (0..qc)
                        .flat_map(|_| ((1u32 << 30) + (r.next_u32() >> 2)).to_le_bytes())
                        .collect();
                    let shift: Vec<u8> = (0..qc).map(|_| 40 + (r.next_u32() % 3) as u8).collect();
                    let out_zp = if lstm {
                        0
                    } else if act == Act::Relu {
                        -128
                    } else {
                        (r.next_u32() % 40) as i8 - 20
                    };
                    let zps = (zp_in, out_zp);
                    zp_in = out_zp;
                    (weight, bias, mult, shift, zps)
                }
                _ => {
                    let mut weight = Vec::new();
                    for _ in 0..n {
                        let v = (r.uniform() * 2.0 - 1.0) * 2.0 / fan;
                        if dtype == DType::F32 {
                            weight.extend_from_slice(&v.to_le_bytes());
                        } else {
                            weight.extend_from_slice(&half::f16::from_f32(v).to_le_bytes());
                        }
                    }
                    let bias: Vec<u8> = (0..out_c)
                        .flat_map(|_| ((r.uniform() - 0.5) * 0.5).to_le_bytes())
                        .collect();
                    (weight, bias, Vec::new(), Vec::new(), (0, 0))
                }
            };
            blobs.push(Blobs {
                op,
                act,
                weight,
                bias,
                mult,
                shift,
                zps,
                out_scale: if lstm { 1.0 / 128.0 } else { 0.05 },
            });
        }
        let mut layers = heapless::Vec::<Layer<'_>, MAX_LAYERS>::new();
        for b in &blobs {
            let quant = (dtype == DType::I8).then(|| LayerQuant {
                in_zp: b.zps.0,
                out_zp: b.zps.1,
                out_scale: b.out_scale,
                multiplier: &b.mult,
                shift: &b.shift,
            });
            layers
                .push(Layer {
                    op: b.op,
                    act: b.act,
                    weight: &b.weight,
                    bias: &b.bias,
                    quant,
                })
                .unwrap();
        }
        let lut: Vec<u8> = (0..=255u8).collect();
        let image = Shape { c: 1, h, w };
        let file = ModelFile {
            magic: MAGIC,
            version: FORMAT_VERSION,
            kind,
            dtype,
            meta: Meta {
                image,
                latent: 0,
                data: "random",
                figures: heapless::Vec::new(),
                prior_mean: &[],
                prior_std: &[],
            },
            decoder: Net {
                input: image,
                input_q: (dtype == DType::I8).then_some(QParams {
                    scale: 1.0 / 255.0,
                    zero_point: -128,
                }),
                layers,
                head: if dtype == DType::I8 {
                    Head::SigmoidLut(&lut)
                } else {
                    Head::Sigmoid
                },
            },
            encoder: None,
        };
        let mut buf = std::vec![0u8; 1 << 20];
        encode(&file, &mut buf).unwrap().to_vec()
    }

    fn arena(bytes: u32) -> Vec<u32> {
        std::vec![0u32; (bytes as usize).div_ceil(4)]
    }

    fn bytes(v: &mut [u32]) -> &mut [u8] {
        // SAFETY: u32 -> u8 reinterpretation of an owned, initialized buffer.
        unsafe { core::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<u8>(), v.len() * 4) }
    }

    /// Incremental and naive sampling give the same bytes, and the sampler
    /// does exactly the MACs it reports: one forward pass in all. The
    /// arenas start dirty (not zeroed), as a board's may.
    fn check(file: &[u8], seed: u64, samples: usize) {
        check_at(file, seed, samples, 1.0);
    }

    /// [`check`] at sampling temperature `t`.
    fn check_at(file: &[u8], seed: u64, samples: usize, t: f32) {
        let model = Model::load(file).unwrap();
        let mut a = arena(model.arena_bytes());
        let mut s = arena(model.forward_arena_bytes());
        a.iter_mut().for_each(|v| *v = 0x7f3a_55c1);
        s.iter_mut().for_each(|v| *v = 0xc1c1_7f7f);
        let mut sampler = AutoregressiveSampler::new(&model, bytes(&mut a)).unwrap();
        sampler.set_temperature(t).unwrap();
        let n = sampler.image_len();
        let (mut r1, mut r2) = (Rng::new(seed), Rng::new(seed));
        let mut ones = 0;
        for _ in 0..samples {
            let (mut inc, mut nai) = (std::vec![7u8; n], std::vec![7u8; n]);
            mac_counter::take();
            sampler.sample(&mut r1, &mut inc).unwrap();
            let inc_macs = mac_counter::take();
            sampler.naive(&mut r2, &mut nai, bytes(&mut s)).unwrap();
            let naive_macs = mac_counter::take();
            assert_eq!(inc, nai, "incremental and naive bytes differ");
            assert!(inc.iter().all(|&p| p == 0 || p == 255));
            ones += inc.iter().filter(|&&p| p == 255).count();
            // The reference kernels count the taps they do (the optimized
            // int8 ones run zero taps too, by design); the plan's counts do
            // not depend on the dtype.
            if model.file.dtype != DType::I8 {
                assert_eq!(inc_macs, model.macs_per_sample());
                assert_eq!(naive_macs, n as u64 * model.forward_macs());
                assert!(inc_macs * 10 <= model.forward_macs() * 11);
            }
        }
        // Both values occur, or the comparison would be vacuous.
        assert!(ones > 0 && ones < samples * n, "ones {ones}");
    }

    #[test]
    fn incremental_equals_naive_f32() {
        for seed in 0..4 {
            let f = random_file(seed, DType::F32, 9, 7, 3, 5, 2);
            check(&f, seed, 2);
        }
        check(&random_file(9, DType::F32, 28, 28, 4, 7, 2), 3, 1);
    }

    #[test]
    fn incremental_equals_naive_f16() {
        check(&random_file(11, DType::F16, 10, 8, 3, 7, 3), 5, 2);
    }

    #[test]
    fn incremental_equals_naive_i8() {
        for seed in 0..4 {
            let f = random_file(seed + 20, DType::I8, 9, 7, 3, 5, 2);
            check(&f, seed, 2);
        }
        check(&random_file(29, DType::I8, 28, 28, 4, 7, 2), 3, 1);
    }

    /// Two-stack shapes: (first kernel, hidden kernel, hidden layers).
    const STACK_SHAPES: [(u8, u8, usize); 4] = [(5, 3, 2), (7, 3, 3), (3, 5, 1), (3, 1, 2)];

    #[test]
    fn stacks_incremental_equals_naive() {
        for (i, &shape) in STACK_SHAPES.iter().enumerate() {
            let i = i as u64;
            for (j, dtype) in [DType::F32, DType::F16, DType::I8].into_iter().enumerate() {
                let f = random_stacks(70 + 3 * i + j as u64, dtype, (9, 7), 3, shape);
                check(&f, i, 2);
            }
        }
        for dtype in [DType::F32, DType::I8] {
            check(&random_stacks(89, dtype, (28, 28), 4, (7, 3, 3)), 3, 1);
        }
    }

    #[test]
    fn stacks_arena_and_macs() {
        // 7x7 A 1 -> 16 + 16, 3x3 B 32 -> 16 + 16, 3x3 B 32 -> 16 (h only), 1x1 16 -> 1.
        let f = random_stacks(3, DType::I8, (28, 28), 16, (7, 3, 2));
        let m = Model::load(&f).unwrap();
        // Rows: input 4 (7x7), two stack outputs read by 3x3 stacks 2 x 32,
        // the last read by the 1x1: 1 x 16; logits 1.
        // Then the int8 kernels' scratch, the largest layer's: three
        // columns of a hidden layer's vertical taps (16 x 2 x 3 values, two
        // per word).
        let scratch = 3 * kernels::fast::engine::col_words(16 * 2 * 3) as u32 * 4;
        assert_eq!(m.arena_bytes(), (4 + 2 * 2 * 32 + 16 + 1) * 28 + scratch);
        assert_eq!(m.macs_per_sample(), m.forward_macs());
        // Interior MACs per position: first layer 16 x 4 x 7 (vertical) +
        // 16 x 3 (horizontal, mask A); hidden: 16 x 16 x 2 x 3 + 16 x (16 x 2 + 16).
        let g = net::stack_geom(
            &m.file.decoder.layers[1].op,
            Shape {
                c: 32,
                h: 28,
                w: 28,
            },
            28,
            28,
        );
        assert_eq!(g.v_row_len(), 16 * 2 * 3);
        assert_eq!(g.h_row_len(), 16 * 2 + 16);
        assert_eq!(
            crate::ops::macs_at(
                &m.file.decoder.layers[0].op,
                Shape { c: 0, h: 28, w: 28 },
                10,
                10
            )
            .unwrap(),
            16 * 4 * 7 + 16 * 3
        );
        assert_eq!(
            crate::ops::macs_at(
                &m.file.decoder.layers[1].op,
                Shape { c: 0, h: 28, w: 28 },
                10,
                10
            )
            .unwrap(),
            16 * 16 * 2 * 3 + 16 * (16 * 2 + 16)
        );
        // Row 0, column 0: one row, 2 (of 3) columns; no horizontal tap left
        // of x, the centre only; no link.
        assert_eq!(
            crate::ops::macs_at(
                &m.file.decoder.layers[1].op,
                Shape { c: 0, h: 28, w: 28 },
                0,
                0
            )
            .unwrap(),
            16 * 16 * 2 + 16 * 16
        );
    }

    /// Wirings that would let a logit see its own pixel or a later one are
    /// refused at load.
    #[test]
    fn non_causal_stacks_are_refused() {
        let load = |specs: &[Spec]| {
            let f = random_net(1, DType::F32, 9, 7, ModelKind::PixelCnn, specs);
            Model::load(&f).err()
        };
        let head = Spec::Conv(4, 1, 1, Mask::B, Act::None);
        // Fine: A stack, B stack with horizontal outputs only, head.
        assert_eq!(
            load(&[
                Spec::Stack(1, 0, 8, 4, 3, Mask::A),
                Spec::Stack(8, 4, 4, 0, 3, Mask::B),
                head
            ]),
            None
        );
        // The head reads vertical channels (the last stack keeps 4).
        assert_eq!(
            load(&[
                Spec::Stack(1, 0, 8, 4, 3, Mask::A),
                Spec::Stack(8, 4, 8, 4, 3, Mask::B),
                Spec::Conv(8, 1, 1, Mask::B, Act::None)
            ]),
            Some(Error::PlanNotCausal { layer: 2 })
        );
        // A stack that calls vertical channels horizontal (in_v 0).
        assert_eq!(
            load(&[
                Spec::Stack(1, 0, 8, 4, 3, Mask::A),
                Spec::Stack(8, 0, 4, 0, 3, Mask::B),
                head
            ]),
            Some(Error::PlanNotCausal { layer: 1 })
        );
        // No mask A anywhere: the logit sees its own pixel.
        assert_eq!(
            load(&[Spec::Stack(1, 0, 4, 0, 3, Mask::B), head]),
            Some(Error::PlanNotCausal { layer: 0 })
        );
        // Plain masked stacks as before: mask B first is refused.
        assert_eq!(
            load(&[Spec::Conv(1, 4, 3, Mask::B, Act::Relu), head]),
            Some(Error::PlanNotCausal { layer: 0 })
        );
        // Mask B first and mask A later: the logits are causal, but the
        // first layer's output at p, which the sampler computes before
        // drawing p, reads p.
        assert_eq!(
            load(&[
                Spec::Conv(1, 4, 3, Mask::B, Act::Relu),
                Spec::Conv(4, 4, 3, Mask::A, Act::Relu),
                head
            ]),
            Some(Error::PlanNotCausal { layer: 0 })
        );
        assert_eq!(
            load(&[
                Spec::Stack(1, 0, 8, 4, 3, Mask::B),
                Spec::Stack(8, 4, 4, 0, 3, Mask::A),
                head
            ]),
            Some(Error::PlanNotCausal { layer: 0 })
        );
    }

    /// One random wiring of [`causal_verdict_matches_sampling`]: up to
    /// three layers drawn from masked convolutions (1x1 mask B, 3x3 either
    /// mask), Row LSTMs and two-stack layers with any masks and any
    /// vertical channel counts (consistent or not), then a 1x1 mask B head;
    /// no ReLU, which could hide a dependency from the measurement.
    fn random_wiring(r: &mut Rng) -> (ModelKind, Vec<Spec>) {
        let mask = |r: &mut Rng| {
            if r.next_u32().is_multiple_of(2) {
                Mask::A
            } else {
                Mask::B
            }
        };
        let n = 1 + r.next_u32() as usize % 3;
        let (mut c, mut v) = (1u16, 0u16);
        let mut specs = Vec::new();
        let mut kind = ModelKind::PixelCnn;
        for _ in 0..n {
            match r.next_u32() % 3 {
                0 => {
                    // A 1x1 mask A reads nothing: its output, the same at
                    // every pixel, would make what follows trivially
                    // causal (the check knows; the measurement cannot
                    // tell a constant from a stale one).
                    let (k, m) = if r.next_u32().is_multiple_of(2) {
                        (1, Mask::B)
                    } else {
                        (3, mask(r))
                    };
                    specs.push(Spec::Conv(c, 3, k, m, Act::None));
                    (c, v) = (3, 0);
                }
                1 => {
                    specs.push(Spec::Lstm(c, 3, 3, mask(r), 3));
                    kind = ModelKind::PixelRnn;
                    (c, v) = (3, 0);
                }
                _ => {
                    // The vertical inputs it claims: the true count, or
                    // (sometimes) another.
                    let in_v = if r.next_u32().is_multiple_of(4) {
                        (v + 1) % c.max(1)
                    } else {
                        v
                    };
                    let out_v = (r.next_u32() % 3) as u16;
                    specs.push(Spec::StackLinear(c, in_v, 4, out_v, 3, mask(r)));
                    (c, v) = (4, out_v);
                }
            }
        }
        specs.push(Spec::Conv(c, 1, 1, Mask::B, Act::None));
        (kind, specs)
    }

    /// Whether a model loaded without the causality check samples as it
    /// must: the logit of pixel p does not move when pixels p and after do
    /// (the full forward pass), and the logits the incremental sampler
    /// drew from are, bit for bit, the full forward pass's on the image it
    /// drew (so no layer read a pixel before it was drawn).
    fn samples_causally(model: &Model<'_>, seed: u64) -> bool {
        let mut a = arena(model.arena_bytes());
        let mut s = arena(model.forward_arena_bytes());
        let Ok(mut sampler) = AutoregressiveSampler::new(model, bytes(&mut a)) else {
            return false;
        };
        let n = sampler.image_len();
        let mut r = Rng::new(seed);
        // From several images, so that a ReLU off at one does not hide a
        // dependency.
        for _ in 0..4 {
            let image: Vec<u8> = (0..n)
                .map(|_| {
                    if r.next_u32().is_multiple_of(2) {
                        0
                    } else {
                        255
                    }
                })
                .collect();
            let mut base = std::vec![0f32; n];
            sampler.logits(&image, bytes(&mut s), &mut base).unwrap();
            for p in 0..n {
                let mut moved = image.clone();
                moved[p] ^= 255;
                let mut l = std::vec![0f32; n];
                sampler.logits(&moved, bytes(&mut s), &mut l).unwrap();
                if (0..=p).any(|j| l[j].to_bits() != base[j].to_bits()) {
                    return false;
                }
            }
        }
        (0..3).all(|i| {
            let (mut inc, mut drawn) = (std::vec![0u8; n], std::vec![0f32; n]);
            sampler
                .sample_with_logits(&mut Rng::new(seed + i), &mut inc, &mut drawn)
                .unwrap();
            let mut full = std::vec![0f32; n];
            sampler.logits(&inc, bytes(&mut s), &mut full).unwrap();
            drawn
                .iter()
                .zip(&full)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        })
    }

    /// `Model::load` accepts exactly the wirings that sample causally:
    /// random wirings (every mask order, stacks with right and wrong
    /// vertical channel counts, Row LSTMs), the verdict against the
    /// measured dependencies.
    #[test]
    fn causal_verdict_matches_sampling() {
        let (mut accepted, mut refused) = (0, 0);
        for seed in 0..160u64 {
            let mut r = Rng::new(seed);
            let (kind, specs) = random_wiring(&mut r);
            let f = random_net(seed, DType::F32, 5, 4, kind, &specs);
            let verdict = match Model::load(&f) {
                Ok(_) => true,
                Err(Error::PlanNotCausal { .. }) => false,
                Err(e) => panic!("seed {seed}: {specs:?}: {e:?}"),
            };
            let model = Model::load_any_wiring(&f).unwrap();
            let measured = samples_causally(&model, seed);
            assert_eq!(verdict, measured, "seed {seed}: {specs:?}");
            if verdict {
                accepted += 1;
            } else {
                refused += 1;
            }
        }
        // Both verdicts occur often, or the comparison proves little.
        assert!(
            accepted >= 20 && refused >= 20,
            "{accepted} accepted, {refused} refused"
        );
    }

    /// The PixelRNN shapes: conv first or Row LSTM first, one or two Row
    /// LSTMs, a 1x1 or a 3x3 after them (which needs 2 rows of the LSTM's
    /// output either way).
    const RNN_SHAPES: [(u8, bool, usize, u8); 4] = [
        (5, false, 1, 1),
        (7, false, 2, 1),
        (3, true, 1, 3),
        (5, false, 2, 5),
    ];

    #[test]
    fn rnn_incremental_equals_naive_f32() {
        for (i, &shape) in RNN_SHAPES.iter().enumerate() {
            let f = random_rnn(40 + i as u64, DType::F32, 9, 7, 3, 4, shape);
            check(&f, i as u64, 2);
        }
        check(
            &random_rnn(49, DType::F32, 28, 28, 4, 5, (7, false, 2, 1)),
            3,
            1,
        );
    }

    #[test]
    fn rnn_incremental_equals_naive_f16() {
        for (i, &shape) in RNN_SHAPES.iter().enumerate() {
            let f = random_rnn(50 + i as u64, DType::F16, 8, 6, 3, 3, shape);
            check(&f, i as u64, 2);
        }
    }

    /// At other temperatures too, for every layer kind and dtype.
    #[test]
    fn temperature_incremental_equals_naive() {
        for (i, t) in [0.6f32, 1.7].into_iter().enumerate() {
            let i = i as u64;
            for dtype in [DType::F32, DType::F16, DType::I8] {
                check_at(&random_file(100 + i, dtype, 9, 7, 3, 5, 2), i, 2, t);
                check_at(
                    &random_stacks(110 + i, dtype, (9, 7), 3, (5, 3, 2)),
                    i,
                    2,
                    t,
                );
                check_at(
                    &random_rnn(120 + i, dtype, 9, 7, 3, 4, RNN_SHAPES[0]),
                    i,
                    2,
                    t,
                );
            }
        }
    }

    /// A temperature changes the samples, approaches argmax sampling as it
    /// falls (the same image whatever the seed), and must be finite and
    /// above 0.
    #[test]
    fn temperature_sharpens_and_is_checked() {
        for dtype in [DType::F32, DType::I8] {
            let file = random_stacks(130, dtype, (9, 7), 3, (5, 3, 2));
            let model = Model::load(&file).unwrap();
            let mut a = arena(model.arena_bytes());
            let mut sampler = AutoregressiveSampler::new(&model, bytes(&mut a)).unwrap();
            let draw = |s: &mut AutoregressiveSampler<'_, '_>, seed| {
                let mut img = std::vec![0u8; 63];
                s.sample(&mut Rng::new(seed), &mut img).unwrap();
                img
            };
            let plain: Vec<_> = (0..8).map(|seed| draw(&mut sampler, seed)).collect();
            assert_eq!(sampler.temperature(), 1.0);
            for bad in [0.0, -1.0, f32::NAN, f32::INFINITY] {
                assert_eq!(sampler.set_temperature(bad), Err(Error::CallTemperature));
            }
            assert_eq!(
                sampler.temperature(),
                1.0,
                "a refused temperature is not kept"
            );
            sampler.set_temperature(1e-4).unwrap();
            let cold: Vec<_> = (0..8).map(|seed| draw(&mut sampler, seed)).collect();
            assert!(
                cold.iter().all(|img| *img == cold[0]),
                "{dtype:?}: cold samples differ"
            );
            assert!(
                plain.iter().any(|img| *img != plain[0]),
                "{dtype:?}: no randomness"
            );
            sampler.set_temperature(1.0).unwrap();
            assert_eq!(draw(&mut sampler, 3), plain[3], "{dtype:?}: back at T = 1");
        }
    }

    #[test]
    fn rnn_incremental_equals_naive_i8() {
        for (i, &shape) in RNN_SHAPES.iter().enumerate() {
            let f = random_rnn(60 + i as u64, DType::I8, 9, 7, 3, 4, shape);
            check(&f, i as u64, 2);
        }
        check(
            &random_rnn(69, DType::I8, 28, 28, 4, 5, (7, false, 2, 1)),
            3,
            1,
        );
    }

    #[test]
    fn arena_is_the_row_caches() {
        let f = random_file(1, DType::F32, 28, 28, 32, 7, 4);
        let m = Model::load(&f).unwrap();
        let c = m.cache_plan.unwrap();
        // Input: 4 rows x 1 ch; 4 hidden outputs read by 3x3: 2 rows x 32;
        // the last hidden read by the 1x1: 1 row x 32; logits: 1 row.
        let rows = 4 + 4 * 2 * 32 + 32 + 1;
        assert_eq!(m.arena_bytes(), rows * 28 * 4);
        assert_eq!(m.macs_per_sample(), m.forward_macs());
        let mut a = arena(m.arena_bytes() - 4);
        assert_eq!(
            PixelCnnSampler::new(&m, bytes(&mut a)).err(),
            Some(Error::PlanArenaTooSmall {
                need: m.arena_bytes(),
                have: m.arena_bytes() - 4
            })
        );
        assert_eq!(c.n, 7);
    }

    #[test]
    fn rnn_arena_is_the_row_caches_and_cells() {
        // conv 7x7 A 1->32, LSTM 32->32, LSTM 32->32, conv 1x1 32->32, conv 1x1 32->1.
        for dtype in [DType::F32, DType::I8] {
            let f = random_rnn(2, dtype, 28, 28, 32, 32, (7, false, 2, 1));
            let m = Model::load(&f).unwrap();
            let eb = dtype.act_bytes() as u32;
            // Rows: input 4 x 1 (7x7), conv out 1 x 32 (read by an LSTM),
            // LSTM outs 2 x 32 each (their state), conv out 1 x 32, logits 1.
            let caches = (4 + 32 + 2 * 32 + 2 * 32 + 32 + 1) * 28 * eb;
            let cells = 2 * 32 * 28 * 4;
            // int8: the kernels' scratch, an LSTM's input and state columns
            // (32 x 3 values each, two per word).
            let scratch = match dtype {
                DType::I8 => 2 * kernels::fast::engine::col_words(32 * 3) as u32 * 4,
                _ => 0,
            };
            assert_eq!(m.arena_bytes(), caches + cells + scratch, "{dtype:?}");
            assert_eq!(m.macs_per_sample(), m.forward_macs());
            // Full forward: A = the input and the LSTM and conv outputs, B
            // the others: 32 x 28 x 28 each, plus one cell row.
            let full = 32 * 28 * 28 * eb;
            assert_eq!(m.forward_arena_bytes(), 2 * full + 32 * 28 * 4 + scratch);
            // MACs: per LSTM, 4*32 gate rows x (32 inputs x 2 taps (mask B,
            // k 3; 1 at column 0) + 32 states x 3 taps (2 at the borders,
            // none on row 0)).
            let taps_in = 28 * (2 * 27 + 1);
            let taps_ss = 27 * (3 * 26 + 2 * 2);
            let lstm = 4 * 32 * (32 * taps_in + 32 * taps_ss);
            let conv7 = 32 * crate::ops::masked_conv2d::taps(28, 28, 7, Mask::A);
            let conv1 = (32 * 32 + 32) * 28 * 28;
            assert_eq!(m.forward_macs(), 2 * lstm as u64 + conv7 + conv1 as u64);
        }
    }
}
