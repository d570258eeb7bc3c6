//! Decoder models (VAE, GAN generator, AutoEncoder decoder): z -> image.
//!
//! ```
//! # fn demo(model_bytes: &[u8]) -> tinygen_runtime::Result<()> {
//! use tinygen_runtime::{Arena, Decoder, Model, Rng};
//! let model = Model::load(model_bytes)?;
//! let mut arena = Arena::<65536>::new();
//! let mut dec = Decoder::new(&model, arena.as_mut_slice())?;
//! let mut rng = Rng::new(1);
//! let mut pixels = [0u8; 28 * 28];
//! dec.sample(&mut rng, &mut pixels)?;
//! # Ok(()) }
//! ```

use crate::arena;
use crate::error::{Error, Result};
use crate::format::{DType, Head, ModelKind, MAX_LATENT};
use crate::kernels::{prob_to_u8, sigmoid_f32};
use crate::net;
use crate::sample::rng::Rng;
use crate::Model;

/// Runs a decoder model in a caller-owned arena.
#[derive(Debug)]
pub struct Decoder<'m, 'a> {
    model: &'m Model<'a>,
    arena: &'m mut [u8],
}

/// Checks that a caller's buffer has the length the model needs.
pub(crate) fn check_len(expected: usize, found: usize) -> Result<()> {
    if expected != found {
        return Err(Error::CallBufferLen {
            expected: expected as u32,
            found: found as u32,
        });
    }
    Ok(())
}

impl<'m, 'a> Decoder<'m, 'a> {
    /// A decoder for `model` that works in `arena`.
    ///
    /// # Errors
    ///
    /// `CallUnsupported` if the model is not a decoder model;
    /// `PlanArenaTooSmall` / `PlanArenaMisaligned` for a bad arena.
    pub fn new(model: &'m Model<'a>, arena: &'m mut [u8]) -> Result<Self> {
        if !matches!(
            model.file.kind,
            ModelKind::Vae | ModelKind::Gan | ModelKind::AutoEncoder
        ) {
            return Err(Error::CallUnsupported);
        }
        arena::check_bytes(model.plan.arena_bytes(), arena)?;
        Ok(Decoder { model, arena })
    }

    /// Length of the latent vector.
    pub fn latent_len(&self) -> usize {
        self.model.file.meta.latent as usize
    }

    /// Number of pixels of one image.
    pub fn image_len(&self) -> usize {
        self.model.file.meta.image.numel() as usize
    }

    /// Runs the decoder on `z`; returns whether the output is in buffer A.
    fn forward(&mut self, z: &[f32]) -> Result<bool> {
        check_len(self.latent_len(), z.len())?;
        let f = &self.model.file;
        Ok(net::run(
            &f.decoder,
            f.dtype,
            &self.model.plan,
            self.arena,
            z.iter().copied(),
        ))
    }

    /// Decodes `z` to the output logits (dequantized for int8), one per pixel.
    ///
    /// # Errors
    ///
    /// `CallBufferLen` when `z` or `logits` has the wrong length.
    pub fn decode_logits(&mut self, z: &[f32], logits: &mut [f32]) -> Result<()> {
        check_len(self.image_len(), logits.len())?;
        let in_a = self.forward(z)?;
        let f = &self.model.file;
        net::read_output(
            &f.decoder,
            f.dtype,
            &self.model.plan,
            self.arena,
            in_a,
            logits,
        );
        Ok(())
    }

    /// Decodes `z` to pixel bytes (`round(255 * sigmoid(logit))`).
    ///
    /// # Errors
    ///
    /// `CallBufferLen` when `z` or `pixels` has the wrong length.
    pub fn decode(&mut self, z: &[f32], pixels: &mut [u8]) -> Result<()> {
        check_len(self.image_len(), pixels.len())?;
        let in_a = self.forward(z)?;
        let f = &self.model.file;
        let plan = &self.model.plan;
        match (f.dtype, f.decoder.head) {
            (DType::F32 | DType::F16, _) => {
                let (a, b) = crate::plan::split_f32(plan, self.arena);
                let src = if in_a { a } else { b };
                for (p, &l) in pixels.iter_mut().zip(src.iter()) {
                    *p = prob_to_u8(sigmoid_f32(l));
                }
            }
            (DType::I8, Head::SigmoidLut(lut)) => {
                let (a, b) = crate::plan::split_i8(plan, self.arena);
                let src = if in_a { a } else { b };
                for (p, &q) in pixels.iter_mut().zip(src.iter()) {
                    *p = lut[(q as i32 + 128) as usize];
                }
            }
            _ => return Err(Error::CallUnsupported),
        }
        Ok(())
    }

    /// Draws z from the file's prior (N(0, I) unless the file stores a mean
    /// and standard deviation per dimension) with `rng`, and decodes it.
    ///
    /// # Errors
    ///
    /// `CallBufferLen` when `pixels` has the wrong length.
    pub fn sample(&mut self, rng: &mut Rng, pixels: &mut [u8]) -> Result<()> {
        let mut z = [0f32; MAX_LATENT];
        let z = &mut z[..self.latent_len()];
        rng.fill_gaussian(z);
        let meta = &self.model.file.meta;
        if !meta.prior_mean.is_empty() {
            for (i, v) in z.iter_mut().enumerate() {
                let mean = crate::format::f32_at(meta.prior_mean, i);
                let std = crate::format::f32_at(meta.prior_std, i);
                *v = mean + std * *v;
            }
        }
        self.decode(z, pixels)
    }
}
