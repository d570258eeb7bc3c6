//! Evaluation through the runtime: the likelihood of an exported file is
//! measured on what the runtime (and so the board) actually computes.

use anyhow::{anyhow, Result};
use candle_core::Tensor;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use tinygen_runtime::{Decoder, Encoder, Model};

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

/// -ELBO terms (reconstruction, KL) in nats per image of an exported VAE,
/// entirely through the runtime (quantized or not): the file's encoder gives
/// q(z|x), one posterior sample per image (noise from a generator seeded
/// with `seed`) goes through the file's decoder. `x` holds binarized images
/// (n, 1, 28, 28).
///
/// # Errors
///
/// If the file has no encoder (VAE files written before the encoder was
/// stored: re-export the run) or is not a decoder for these images.
pub fn vae_elbo_runtime(model: &Model<'_>, x: &Tensor, seed: u64) -> Result<(f64, f64)> {
    let mut arena = HostArena::new(model.arena_bytes());
    let latent = model.file.meta.latent as usize;
    let xs = x.flatten_from(1)?.to_vec2::<f32>()?;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut stats = vec![0f32; 2 * latent];
    let mut z = vec![0f32; latent];
    let mut logits = vec![0f32; model.file.meta.image.numel() as usize];
    let mut pixels = vec![0u8; logits.len()];
    let (mut recon, mut kl) = (0f64, 0f64);
    for xi in &xs {
        for (p, &v) in pixels.iter_mut().zip(xi) {
            *p = if v >= 0.5 { 255 } else { 0 };
        }
        {
            let mut enc = Encoder::new(model, arena.bytes()).map_err(|e| {
                anyhow!("{e}: this VAE file has no encoder; re-export its run with this tinygen")
            })?;
            enc.encode(&pixels, &mut stats)
                .map_err(|e| anyhow!("encoding: {e}"))?;
        }
        let (mu, logvar) = stats.split_at(latent);
        for j in 0..latent {
            let eps: f32 = rng.sample(StandardNormal);
            z[j] = mu[j] + (0.5 * logvar[j]).exp() * eps;
            let (m, lv) = (mu[j] as f64, logvar[j] as f64);
            kl += 0.5 * (m * m + lv.exp() - 1.0 - lv);
        }
        let mut dec = Decoder::new(model, arena.bytes()).map_err(|e| anyhow!("{e}"))?;
        dec.decode_logits(&z, &mut logits)
            .map_err(|e| anyhow!("{e}"))?;
        recon += bernoulli_nll(&logits, xi);
    }
    let n = xs.len().max(1) as f64;
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
