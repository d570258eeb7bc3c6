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
use crate::kernels::{prob_to_u8, sigmoid_f32, F16Le, F32Le};
use crate::net;
use crate::sample::rng::Rng;
use crate::Model;

/// Runs a decoder model in a caller-owned arena.
#[derive(Debug)]
pub struct Decoder<'m, 'a> {
    model: &'m Model<'a>,
    arena: &'m mut [u8],
}

/// Where a forward pass left its output.
enum Out {
    A,
    B,
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
        arena::check(&model.plan, arena)?;
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

    fn check_len(expected: usize, found: usize) -> Result<()> {
        if expected != found {
            return Err(Error::CallBufferLen {
                expected: expected as u32,
                found: found as u32,
            });
        }
        Ok(())
    }

    fn forward(&mut self, z: &[f32]) -> Result<Out> {
        Self::check_len(self.latent_len(), z.len())?;
        let f = &self.model.file;
        let plan = &self.model.plan;
        let in_a = match f.dtype {
            DType::F32 | DType::F16 => {
                let (a, b) = arena::split_f32(plan, self.arena);
                a[..z.len()].copy_from_slice(z);
                if f.dtype == DType::F32 {
                    net::forward_float(&f.decoder, a, b, F32Le).1
                } else {
                    net::forward_float(&f.decoder, a, b, F16Le).1
                }
            }
            DType::I8 => {
                let (a, b) = arena::split_i8(plan, self.arena);
                let q = f
                    .decoder
                    .input_q
                    .ok_or(Error::FormatBadValue { layer: u16::MAX })?;
                for (d, &x) in a.iter_mut().zip(z) {
                    *d = net::quantize(x, q.scale, q.zero_point);
                }
                net::forward_i8(&f.decoder, a, b).1
            }
        };
        Ok(if in_a { Out::A } else { Out::B })
    }

    /// Decodes `z` to the output logits (dequantized for int8), one per pixel.
    ///
    /// # Errors
    ///
    /// `CallBufferLen` when `z` or `logits` has the wrong length.
    pub fn decode_logits(&mut self, z: &[f32], logits: &mut [f32]) -> Result<()> {
        Self::check_len(self.image_len(), logits.len())?;
        let out = self.forward(z)?;
        let f = &self.model.file;
        let plan = &self.model.plan;
        match f.dtype {
            DType::F32 | DType::F16 => {
                let (a, b) = arena::split_f32(plan, self.arena);
                let src = if matches!(out, Out::A) { a } else { b };
                logits.copy_from_slice(&src[..logits.len()]);
            }
            DType::I8 => {
                let (a, b) = arena::split_i8(plan, self.arena);
                let src = if matches!(out, Out::A) { a } else { b };
                // The output's quantization is the last quantized layer's (a
                // reshape keeps its input's), or the input's if none is.
                let (scale, zp) = f
                    .decoder
                    .layers
                    .iter()
                    .rev()
                    .find_map(|l| l.quant.map(|q| (q.out_scale, q.out_zp)))
                    .or(f.decoder.input_q.map(|q| (q.scale, q.zero_point)))
                    .ok_or(Error::FormatBadValue { layer: u16::MAX })?;
                for (d, &v) in logits.iter_mut().zip(src.iter()) {
                    *d = scale * (v as i32 - zp as i32) as f32;
                }
            }
        }
        Ok(())
    }

    /// Decodes `z` to pixel bytes (`round(255 * sigmoid(logit))`).
    ///
    /// # Errors
    ///
    /// `CallBufferLen` when `z` or `pixels` has the wrong length.
    pub fn decode(&mut self, z: &[f32], pixels: &mut [u8]) -> Result<()> {
        Self::check_len(self.image_len(), pixels.len())?;
        let out = self.forward(z)?;
        let f = &self.model.file;
        let plan = &self.model.plan;
        match (f.dtype, f.decoder.head) {
            (DType::F32 | DType::F16, _) => {
                let (a, b) = arena::split_f32(plan, self.arena);
                let src = if matches!(out, Out::A) { a } else { b };
                for (p, &l) in pixels.iter_mut().zip(src.iter()) {
                    *p = prob_to_u8(sigmoid_f32(l));
                }
            }
            (DType::I8, Head::SigmoidLut(lut)) => {
                let (a, b) = arena::split_i8(plan, self.arena);
                let src = if matches!(out, Out::A) { a } else { b };
                for (p, &q) in pixels.iter_mut().zip(src.iter()) {
                    *p = lut[(q as i32 + 128) as usize];
                }
            }
            _ => return Err(Error::CallUnsupported),
        }
        Ok(())
    }

    /// Draws z ~ N(0, I) from `rng` and decodes it.
    ///
    /// # Errors
    ///
    /// `CallBufferLen` when `pixels` has the wrong length.
    pub fn sample(&mut self, rng: &mut Rng, pixels: &mut [u8]) -> Result<()> {
        let mut z = [0f32; MAX_LATENT];
        let z = &mut z[..self.latent_len()];
        rng.fill_gaussian(z);
        self.decode(z, pixels)
    }
}
