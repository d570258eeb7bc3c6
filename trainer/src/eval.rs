//! Evaluation through the runtime: the likelihood of an exported file is
//! measured on what the runtime (and so the board) actually computes.

use anyhow::{anyhow, Result};
use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tinygen_runtime::{Decoder, Model};

use crate::models::standard_normal;
use crate::models::vae::{gaussian_kl, Vae};

/// A heap arena with the 4-byte alignment the runtime requires.
pub struct HostArena(Vec<u32>);

impl HostArena {
    /// An arena of at least `bytes` bytes.
    pub fn new(bytes: u32) -> Self {
        HostArena(vec![0u32; (bytes as usize).div_ceil(4)])
    }
    /// The bytes.
    pub fn bytes(&mut self) -> &mut [u8] {
        bytemuck::cast_slice_mut(&mut self.0)
    }
}

/// -ELBO terms (reconstruction, KL) in nats per image of a VAE whose decoder
/// is the exported `model` (run by the runtime, quantized or not) and whose
/// encoder is the trained `vae`, on binarized images `x` (n, 1, 28, 28), one
/// posterior sample per image drawn from a generator seeded with `seed`.
///
/// # Errors
///
/// On candle errors or if the model is not a decoder for these images.
pub fn vae_elbo_runtime(vae: &Vae, model: &Model<'_>, x: &Tensor, seed: u64) -> Result<(f64, f64)> {
    let mut arena = HostArena::new(model.arena_bytes());
    let mut dec = Decoder::new(model, arena.bytes()).map_err(|e| anyhow!("{e}"))?;
    let n = x.dim(0)?;
    let latent = vae.latent();
    let pixels = dec.image_len();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut logits = vec![0f32; pixels];
    let (mut recon, mut kl) = (0f64, 0f64);
    let batch = 256;
    let mut start = 0;
    while start < n {
        let b = batch.min(n - start);
        let xb = x.narrow(0, start, b)?;
        let (mu, logvar) = vae.encode(&xb)?;
        let eps = standard_normal(&mut rng, (b, latent), &Device::Cpu)?;
        let z = (&mu + (logvar.affine(0.5, 0.0)?.exp()? * eps)?)?;
        kl += gaussian_kl(&mu, &logvar)?
            .to_vec1::<f32>()?
            .iter()
            .map(|&v| v as f64)
            .sum::<f64>();
        let z = z.to_vec2::<f32>()?;
        let xs = xb.flatten_from(1)?.to_vec2::<f32>()?;
        for (zi, xi) in z.iter().zip(&xs) {
            dec.decode_logits(zi, &mut logits)
                .map_err(|e| anyhow!("{e}"))?;
            recon += bernoulli_nll(&logits, xi);
        }
        start += b;
    }
    let n = n.max(1) as f64;
    Ok((recon / n, kl / n))
}

/// Negative log-likelihood in nats of binary pixels `x` under Bernoulli
/// logits, in f64 and in the stable softplus form.
pub fn bernoulli_nll(logits: &[f32], x: &[f32]) -> f64 {
    logits
        .iter()
        .zip(x)
        .map(|(&l, &x)| {
            let l = l as f64;
            l.max(0.0) + (-l.abs()).exp().ln_1p() - x as f64 * l
        })
        .sum()
}

#[cfg(test)]
mod tests {
    #[test]
    fn nll_of_known_bernoulli_image() {
        // logit 0 -> p = 1/2: each pixel costs ln 2 whatever its value.
        let v = super::bernoulli_nll(&[0.0; 4], &[0.0, 1.0, 1.0, 0.0]);
        assert!((v - 4.0 * 2f64.ln()).abs() < 1e-12);
        // logit ln 3 -> p = 3/4: pixel 1 costs -ln(3/4), pixel 0 costs -ln(1/4).
        let l = 3f32.ln();
        let v = super::bernoulli_nll(&[l, l], &[1.0, 0.0]);
        let want = -(0.75f64.ln()) - 0.25f64.ln();
        assert!((v - want).abs() < 1e-6, "{v} vs {want}");
    }
}
