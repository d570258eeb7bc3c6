//! Host sampling through the runtime (the kernels the board runs).

use anyhow::{anyhow, bail, Result};
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
    draw(n, len, seed, |rng, img| dec.sample(rng, img))
}

/// `n` images of `len` pixels from one [`Rng`] stream seeded with `seed`,
/// in order, each by `sample`.
fn draw(
    n: usize,
    len: usize,
    seed: u64,
    mut sample: impl FnMut(&mut Rng, &mut [u8]) -> tinygen_runtime::Result<()>,
) -> Result<Vec<u8>> {
    let mut rng = Rng::new(seed);
    let mut out = vec![0u8; n * len];
    for img in out.chunks_exact_mut(len) {
        sample(&mut rng, img).map_err(|e| anyhow!("{e}"))?;
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
    sample_autoregressive(model, n, seed, 1.0)
}

/// [`sample_pixelcnn`] at sampling temperature `temperature` (the
/// firmware's `TINYGEN_TEMPERATURE`; see
/// [`tinygen_runtime::AutoregressiveSampler::set_temperature`]).
///
/// # Errors
///
/// If the model is not a PixelCNN or PixelRNN, or the temperature is not
/// a finite number above 0.
pub fn sample_autoregressive(
    model: &Model<'_>,
    n: usize,
    seed: u64,
    temperature: f32,
) -> Result<Vec<u8>> {
    let mut arena = HostArena::new(model.arena_bytes());
    let mut s = PixelCnnSampler::new(model, arena.bytes()).map_err(|e| anyhow!("{e}"))?;
    s.set_temperature(temperature)
        .map_err(|e| anyhow!("{e} (got {temperature})"))?;
    let len = s.image_len();
    draw(n, len, seed, |rng, img| s.sample(rng, img))
}

/// `n` images from any generative model file: dispatches on its kind
/// (decoder models through [`Decoder`], PixelCNN through [`PixelCnnSampler`]).
///
/// # Errors
///
/// If the model kind cannot be sampled.
pub fn sample_model(model: &Model<'_>, n: usize, seed: u64) -> Result<Vec<u8>> {
    sample_model_at(model, n, seed, 1.0)
}

/// [`sample_model`] at sampling temperature `temperature`, which only the
/// autoregressive families have (1.0 for any other).
///
/// # Errors
///
/// If the model kind cannot be sampled, or a temperature other than 1 is
/// asked of a decoder model.
pub fn sample_model_at(
    model: &Model<'_>,
    n: usize,
    seed: u64,
    temperature: f32,
) -> Result<Vec<u8>> {
    match model.file.kind {
        ModelKind::PixelCnn | ModelKind::PixelRnn => {
            sample_autoregressive(model, n, seed, temperature)
        }
        kind if temperature != 1.0 => bail!(
            "a sampling temperature applies to PixelCNN and PixelRNN files only, not to a {kind:?} \
             (its samples are decoded from the latent prior)"
        ),
        _ => sample_decoder(model, n, seed),
    }
}
