//! Host sampling through the runtime (the kernels the board runs).

use anyhow::{anyhow, Result};
use tinygen_runtime::{Decoder, Model, ModelKind, PixelCnnSampler, Rng};

use crate::eval::HostArena;

/// `n` images from a decoder model, one [`Rng`] stream seeded with `seed`
/// over all of them in order: exactly what the firmware does with
/// `TINYGEN_SEED` and `TINYGEN_SAMPLES`, so the bytes are the same.
///
/// # Errors
///
/// If the model is not a decoder model.
pub fn sample_decoder(model: &Model<'_>, n: usize, seed: u64) -> Result<Vec<u8>> {
    let mut arena = HostArena::new(model.arena_bytes());
    let mut dec = Decoder::new(model, arena.bytes()).map_err(|e| anyhow!("{e}"))?;
    let len = dec.image_len();
    let mut rng = Rng::new(seed);
    let mut out = vec![0u8; n * len];
    for img in out.chunks_exact_mut(len) {
        dec.sample(&mut rng, img).map_err(|e| anyhow!("{e}"))?;
    }
    Ok(out)
}

/// `n` images from a PixelCNN model, drawn by the runtime's incremental
/// sampler from one [`Rng`] stream seeded with `seed` (as the firmware does).
///
/// # Errors
///
/// If the model is not a PixelCNN.
pub fn sample_pixelcnn(model: &Model<'_>, n: usize, seed: u64) -> Result<Vec<u8>> {
    let mut arena = HostArena::new(model.arena_bytes());
    let mut s = PixelCnnSampler::new(model, arena.bytes()).map_err(|e| anyhow!("{e}"))?;
    let len = s.image_len();
    let mut rng = Rng::new(seed);
    let mut out = vec![0u8; n * len];
    for img in out.chunks_exact_mut(len) {
        s.sample(&mut rng, img).map_err(|e| anyhow!("{e}"))?;
    }
    Ok(out)
}

/// `n` images from any generative model file: dispatches on its kind
/// (decoder models through [`Decoder`], PixelCNN through [`PixelCnnSampler`]).
///
/// # Errors
///
/// If the model kind cannot be sampled.
pub fn sample_model(model: &Model<'_>, n: usize, seed: u64) -> Result<Vec<u8>> {
    match model.file.kind {
        ModelKind::PixelCnn | ModelKind::PixelRnn => sample_pixelcnn(model, n, seed),
        _ => sample_decoder(model, n, seed),
    }
}
