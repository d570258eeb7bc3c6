//! Exporting autoencoder and GAN runs: calibration data, the fitted latent
//! Gaussian, and the quality figures measured through the runtime.
//!
//! ```no_run
//! use tinygen_trainer::data::load_mnist;
//! use tinygen_trainer::export::Quant;
//! use tinygen_trainer::export_runs::{export_ae, ExportData};
//! use tinygen_trainer::train_ae::load_ae;
//! let (config, ae) = load_ae(std::path::Path::new("runs/ae-s0-..."))?;
//! let mnist = load_mnist(&config.data_dir)?;
//! let data = ExportData { mnist: &mnist, description: "MNIST".into(), calib: 1000, eval: 1000, seed: 0 };
//! let bytes = export_ae(&ae, &data, Quant::Int8)?; // decoder + encoder, prior = fitted Gaussian
//! # anyhow::Ok(())
//! ```

use anyhow::{anyhow, Result};
use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tinygen_runtime::format::{ModelKind, Shape};
use tinygen_runtime::{Decoder, Encoder, Model};

use crate::data::{self, Mnist};
use crate::eval::HostArena;
use crate::export::{export_with_encoder, EncoderExport, ExportMeta, Quant};
use crate::models::ae::AutoEncoder;
use crate::models::gan::Gan;
use crate::models::standard_normal;
use crate::train_ae::{encode_all, latent_stats};

/// Data an export calibrates and evaluates on.
#[derive(Debug)]
pub struct ExportData<'a> {
    /// The data set (training images calibrate, test images evaluate).
    pub mnist: &'a Mnist,
    /// What the file says its training data was.
    pub description: String,
    /// Training images (and as many latent draws) that calibrate int8 ranges.
    pub calib: usize,
    /// Test images whose reconstruction is measured through the runtime (0: none).
    pub eval: usize,
    /// Seed of the calibration noise.
    pub seed: u64,
}

const IMAGE: Shape = Shape { c: 1, h: 28, w: 28 };

/// Reconstruction of `images` (n·784 bytes) through an exported
/// autoencoder, entirely in the runtime: the file's encoder gives z, its
/// decoder the logits. Returns (BCE of the grayscale targets in nats per
/// image, MSE per pixel of sigmoid(logits)), in f64.
///
/// # Errors
/// If the file has no encoder or is not a decoder model.
pub fn ae_recon_runtime(model: &Model<'_>, images: &[u8]) -> Result<(f64, f64)> {
    let mut arena = HostArena::new(model.arena_bytes());
    let latent = model.file.meta.latent as usize;
    let n = images.len() / data::PIXELS;
    let (mut bce, mut mse) = (0f64, 0f64);
    let mut z = vec![0f32; latent];
    let mut logits = vec![0f32; data::PIXELS];
    for img in images.chunks_exact(data::PIXELS) {
        Encoder::new(model, arena.bytes())
            .map_err(|e| anyhow!("{e}"))?
            .encode(img, &mut z)
            .map_err(|e| anyhow!("{e}"))?;
        Decoder::new(model, arena.bytes())
            .map_err(|e| anyhow!("{e}"))?
            .decode_logits(&z, &mut logits)
            .map_err(|e| anyhow!("{e}"))?;
        for (&l, &p) in logits.iter().zip(img) {
            let (l, x) = (l as f64, p as f64 / 255.0);
            bce += l.max(0.0) + (-l.abs()).exp().ln_1p() - x * l;
            let s = 1.0 / (1.0 + (-l).exp());
            mse += (s - x) * (s - x);
        }
    }
    let n = n.max(1) as f64;
    Ok((bce / n, mse / (n * data::PIXELS as f64)))
}

/// Exports an autoencoder: decoder (kind `AutoEncoder`, prior = the
/// Gaussian fitted to all training codes) and encoder. int8 calibrates the
/// encoder on the first `calib` training images and the decoder on their
/// codes plus as many draws from the fitted Gaussian. With `eval > 0`, the
/// file carries `test_recon_bce_nats` and `test_mse` measured through the
/// runtime (encoder then decoder) on the first `eval` test images.
///
/// # Errors
/// On candle errors or a file the runtime rejects.
pub fn export_ae(ae: &AutoEncoder, d: &ExportData<'_>, quant: Quant) -> Result<Vec<u8>> {
    let dev = Device::Cpu;
    let x_train = d.mnist.train_float(&dev)?;
    let stats = latent_stats(ae, &x_train)?;
    let dec = ae.decoder_net()?;
    let enc = ae.encoder_net()?;
    let (mut dec_calib, mut enc_calib) = (Vec::new(), Vec::new());
    if quant == Quant::Int8 {
        let n = d.calib.clamp(1, d.mnist.n_train);
        let x = x_train.narrow(0, 0, n)?;
        enc_calib = x.flatten_from(1)?.to_vec2::<f32>()?;
        dec_calib = encode_all(ae, &x)?.to_vec2::<f32>()?;
        let mut rng = StdRng::seed_from_u64(d.seed);
        let eps = standard_normal(&mut rng, (n, ae.latent()), &dev)?;
        let z = eps
            .broadcast_mul(&Tensor::new(stats.1.as_slice(), &dev)?)?
            .broadcast_add(&Tensor::new(stats.0.as_slice(), &dev)?)?;
        dec_calib.extend(z.to_vec2::<f32>()?);
    }
    let mut meta = ExportMeta {
        kind: ModelKind::AutoEncoder,
        image: IMAGE,
        latent: ae.latent() as u16,
        data: d.description.clone(),
        figures: Vec::new(),
        prior: Some(stats),
    };
    let encoder = Some(EncoderExport {
        net: &enc,
        calib: &enc_calib,
    });
    let mut bytes = export_with_encoder(&dec, encoder, &meta, quant, &dec_calib)?;
    if d.eval > 0 {
        let n = d.eval.min(d.mnist.n_test);
        let images = &d.mnist.test_images[..n * data::PIXELS];
        let (bce, mse) = {
            let model = Model::load(&bytes).map_err(|e| anyhow!("{e}"))?;
            ae_recon_runtime(&model, images)?
        };
        meta.figures = vec![
            ("test_recon_bce_nats".into(), bce as f32),
            ("test_mse".into(), mse as f32),
        ];
        bytes = export_with_encoder(&dec, encoder, &meta, quant, &dec_calib)?;
    }
    Ok(bytes)
}

/// Exports a GAN's generator (kind `Gan`, z ~ N(0, I)); int8 calibrates on
/// `calib` latent draws (seeded by `seed`).
///
/// # Errors
/// On candle errors or a file the runtime rejects.
pub fn export_gan(gan: &Gan, d: &ExportData<'_>, quant: Quant) -> Result<Vec<u8>> {
    let net = gan.generator_net()?;
    let mut calib = Vec::new();
    if quant == Quant::Int8 {
        let mut rng = StdRng::seed_from_u64(d.seed);
        let z = standard_normal(&mut rng, (d.calib.max(1), gan.latent()), &Device::Cpu)?;
        calib = z.to_vec2::<f32>()?;
    }
    let meta = ExportMeta {
        kind: ModelKind::Gan,
        image: IMAGE,
        latent: gan.latent() as u16,
        data: d.description.clone(),
        figures: Vec::new(),
        prior: None,
    };
    export_with_encoder(&net, None, &meta, quant, &calib)
}
