//! Encoder networks: image -> z for the AutoEncoder (on-device feature
//! extraction), image -> q(z|x) as [mean ‖ log-variance] for a VAE.
//!
//! ```
//! # fn demo(model_bytes: &[u8], image: &[u8; 784]) -> tinygen_runtime::Result<()> {
//! use tinygen_runtime::{Arena, Encoder, Model};
//! let model = Model::load(model_bytes)?;
//! let mut arena = Arena::<65536>::new();
//! let mut enc = Encoder::new(&model, arena.as_mut_slice())?; // CallUnsupported without an encoder
//! let mut z = [0f32; 64];
//! let z = &mut z[..enc.output_len()]; // latent (AE) or 2 x latent (VAE)
//! enc.encode(image, z)?;
//! # Ok(()) }
//! ```

use crate::arena;
use crate::error::{Error, Result};
use crate::format::Net;
use crate::net;
use crate::plan::Plan;
use crate::sample::decoder::check_len;
use crate::Model;

/// Runs a model's encoder in a caller-owned arena.
#[derive(Debug)]
pub struct Encoder<'m, 'a> {
    model: &'m Model<'a>,
    net: &'m Net<'a>,
    plan: &'m Plan,
    arena: &'m mut [u8],
}

impl<'m, 'a> Encoder<'m, 'a> {
    /// An encoder for `model` that works in `arena` (the model's
    /// [`Model::arena_bytes`] covers both networks).
    ///
    /// # Errors
    ///
    /// `CallUnsupported` if the file has no encoder; `PlanArenaTooSmall` /
    /// `PlanArenaMisaligned` for a bad arena.
    pub fn new(model: &'m Model<'a>, arena: &'m mut [u8]) -> Result<Self> {
        let (Some(net), Some(plan)) = (model.file.encoder.as_ref(), model.encoder_plan.as_ref())
        else {
            return Err(Error::CallUnsupported);
        };
        arena::check_bytes(plan.arena_bytes(), arena)?;
        Ok(Encoder {
            model,
            net,
            plan,
            arena,
        })
    }

    /// Length of the latent vector.
    pub fn latent_len(&self) -> usize {
        self.model.file.meta.latent as usize
    }

    /// Values [`Encoder::encode`] writes: the latent size for an
    /// autoencoder, twice it for a VAE (mean, then log-variance).
    pub fn output_len(&self) -> usize {
        self.plan.output.numel() as usize
    }

    /// Encodes an image (pixel bytes, scaled to [0, 1] as in training) to
    /// its latent `z` (AE), or to the mean and log-variance of q(z|x)
    /// (VAE, [`Encoder::output_len`] values).
    ///
    /// # Errors
    ///
    /// `CallBufferLen` when `pixels` or `z` has the wrong length.
    pub fn encode(&mut self, pixels: &[u8], z: &mut [f32]) -> Result<()> {
        check_len(self.model.file.meta.image.numel() as usize, pixels.len())?;
        check_len(self.output_len(), z.len())?;
        let dtype = self.model.file.dtype;
        let input = pixels.iter().map(|&p| p as f32 * (1.0 / 255.0));
        let in_a = net::run(self.net, dtype, self.plan, self.arena, input);
        net::read_output(self.net, dtype, self.plan, self.arena, in_a, z);
        Ok(())
    }
}
