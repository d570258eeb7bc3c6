//! What the autoregressive families (PixelCNN, PixelRNN) share: one
//! Bernoulli per pixel, exact negative log-likelihood, the same
//! `metrics.csv` row, one training loop and one export path, generic over
//! [`Autoregressive`]. The families' own files hold only their model
//! specifics (`train_pixelcnn.rs`, `export_pixelcnn.rs`, and PixelRNN's).
//!
//! ```no_run
//! use tinygen_trainer::autoregressive::{load, train};
//! use tinygen_trainer::models::pixelcnn::{PixelCnn, PixelCnnConfig};
//! use tinygen_trainer::train::TrainOptions;
//! let opts = TrainOptions { epochs: 1, limit_train: Some(256), ..TrainOptions::default() };
//! let decay_lr = true; // linearly to 0 over the run
//! let outcome = train::<PixelCnn>(&opts, PixelCnnConfig::default(), decay_lr)?;
//! let (config, model) = load::<PixelCnn>(&outcome.run_dir)?;
//! # anyhow::Ok(())
//! ```
//!
//! A run directory holds `config.json`, `metrics.csv` (one row per epoch:
//! training and test negative log-likelihood in nats per image, test bits
//! per dimension, seconds), `model.safetensors` (last epoch with finite
//! losses), `loss.png` and `samples.png`: 8x8 samples drawn by the runtime's
//! incremental sampler (the board's code) from a temporary f32 export of
//! the checkpoint.

use std::path::Path;

use anyhow::{anyhow, Result};
use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use tinygen_runtime::format::{ModelKind, Shape};
use tinygen_runtime::{Model, PixelCnnSampler};

use crate::data::{self, Mnist};
use crate::eval::{bernoulli_nll, HostArena};
use crate::export::{export, ExportMeta, FloatNet, Quant};
use crate::run::{batch_images, load_family, Outcome, Run, Schedule};
use crate::train::{
    check_options, load_binarized_data, run_config, ModelConfig, RunConfig, TrainOptions,
};

/// The image shape (1, 28, 28).
pub const IMAGE: Shape = Shape { c: 1, h: 28, w: 28 };

/// Header of an autoregressive run's `metrics.csv`.
pub const METRICS_HEADER: &str = "epoch,step,train_nll,test_nll,test_bits_per_dim,seconds";

/// An autoregressive model family: what [`train`], [`load`] and
/// [`export_autoregressive`] need of it.
pub trait Autoregressive: Sized {
    /// The family's hyperparameters (its part of `config.json`).
    type Config: Copy;
    /// Display name ("PixelCNN").
    const NAME: &'static str;
    /// The file's model kind.
    const KIND: ModelKind;
    /// Seed of the runtime sampler that draws `samples.png` (xor the run's seed).
    const SAMPLE_SEED: u64;

    /// A freshly initialized model.
    ///
    /// # Errors
    /// On candle errors.
    fn new(cfg: Self::Config, seed: u64, device: &Device) -> candle_core::Result<Self>;
    /// The model with a checkpoint's weights.
    ///
    /// # Errors
    /// If the tensors do not fit `cfg`.
    fn from_varmap(cfg: Self::Config, varmap: VarMap, device: &Device)
        -> candle_core::Result<Self>;
    /// `cfg` as the run's [`ModelConfig`].
    fn model_config(cfg: Self::Config) -> ModelConfig;
    /// This family's configuration, if `config` is one.
    fn pick(config: &ModelConfig) -> Option<Self::Config>;
    /// What is trained, for the terminal ("PixelCNN (32 channels, ..)").
    fn describe(cfg: &Self::Config) -> String;
    /// Mean NLL of binarized `x` (n, 1, 28, 28), nats per image.
    ///
    /// # Errors
    /// On candle errors.
    fn nll(&self, x: &Tensor) -> candle_core::Result<Tensor>;
    /// The trained variables.
    fn varmap(&self) -> &VarMap;
    /// The network as the board runs it.
    ///
    /// # Errors
    /// On candle errors.
    fn net(&self) -> Result<FloatNet>;
}

/// One row of an autoregressive run's `metrics.csv`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NllEpoch {
    /// 1-based epoch.
    pub epoch: usize,
    /// Optimizer steps so far.
    pub step: usize,
    /// Mean NLL over the epoch's training batches, nats per image.
    pub train_nll: f64,
    /// Exact NLL on the test set, nats per image.
    pub test_nll: f64,
    /// The same in bits per pixel.
    pub test_bits_per_dim: f64,
    /// Seconds of this epoch's training steps (evaluation excluded).
    pub seconds: f64,
}

impl NllEpoch {
    /// This row as CSV, without a newline.
    pub fn csv_row(&self) -> String {
        format!(
            "{},{},{:.4},{:.4},{:.5},{:.3}",
            self.epoch,
            self.step,
            self.train_nll,
            self.test_nll,
            self.test_bits_per_dim,
            self.seconds
        )
    }
}

/// Nats to bits per pixel for 28x28 images.
pub fn bits_per_dim(nats_per_image: f64) -> f64 {
    nats_per_image / (data::PIXELS as f64 * std::f64::consts::LN_2)
}

/// Exact NLL in nats per image of binarized `x` (n, 1, 28, 28).
///
/// # Errors
/// On candle errors.
pub fn evaluate_nll<M: Autoregressive>(model: &M, x: &Tensor, batch_size: usize) -> Result<f64> {
    let n = x.dim(0)?;
    let bs = batch_size.max(1);
    let mut sum = 0f64;
    let mut start = 0;
    while start < n {
        let b = bs.min(n - start);
        let nll = model.nll(&x.narrow(0, start, b)?)?;
        sum += f64::from(nll.to_scalar::<f32>()?) * b as f64;
        start += b;
    }
    Ok(sum / n.max(1) as f64)
}

/// Trains an autoregressive model on binarized MNIST; see the module docs.
///
/// # Errors
/// Bad options, unreadable data, I/O errors, candle errors, or
/// [`crate::run::NonFiniteTraining`] when a loss turns NaN or infinite (the
/// last good checkpoint is kept).
///
/// `decay_lr`: the learning rate decays linearly from `--lr` to 0 over the
/// run; otherwise it stays at `--lr`.
pub fn train<M: Autoregressive>(
    opts: &TrainOptions,
    cfg: M::Config,
    decay_lr: bool,
) -> Result<Outcome<NllEpoch>> {
    check_options(opts)?;
    let (x_train, x_test, n_train, n_test) = load_binarized_data(opts)?;
    let config = run_config(
        M::model_config(cfg),
        opts,
        n_train,
        n_test,
        "bernoulli, binarized at 0.5",
    );
    let config = RunConfig {
        lr_decay: decay_lr,
        ..config
    };
    let model = M::new(cfg, opts.seed, &Device::Cpu)?;
    let mut run = Run::create(opts, &config, METRICS_HEADER, model.varmap())?;
    let mut opt = run.adamw(opts)?;
    run.announce(format_args!(
        "training {} on {n_train} images, testing on {n_test}",
        M::describe(&cfg)
    ));
    let steps_per_epoch = n_train.div_ceil(opts.batch_size);
    let mut schedule = Schedule::new(opts, n_train, opts.batch_size, steps_per_epoch);
    if decay_lr {
        schedule = schedule.with_linear_decay(opts.lr);
    }
    let mut schedule = run.schedule(schedule)?;
    let mut metrics = Vec::new();
    let mut train_step = |batch: &[u32], n| {
        let loss = model.nll(&batch_images(&x_train, batch, n, opts)?)?;
        let l = f64::from(loss.to_scalar::<f32>()?);
        Ok((loss, vec![("nll", l)]))
    };
    let message = |m: &[f64]| format!("NLL {:.2} nats ({:.4} bits/dim)", m[0], bits_per_dim(m[0]));
    while let Some(trained) = run.train_epoch(&mut schedule, &mut opt, &mut train_step, message)? {
        let (epoch, seconds) = (trained.epoch, trained.seconds);
        let test_nll = evaluate_nll(&model, &x_test, 256)?;
        run.check_finite(None, epoch, None, &[("nll", test_nll)])?;
        let step = schedule.step;
        let m = NllEpoch {
            epoch,
            step,
            train_nll: trained.means[0],
            test_nll,
            test_bits_per_dim: bits_per_dim(test_nll),
            seconds,
        };
        run.save_epoch(&schedule, &[&opt], epoch, &m.csv_row())?;
        run.epoch_line(
            epoch,
            format_args!(
                "step {step:>6}  train NLL {:7.2}  test NLL {:7.2} nats ({:.4} bits/dim)  {seconds:6.1} s",
                m.train_nll, m.test_nll, m.test_bits_per_dim
            ),
        );
        metrics.push(m);
    }
    write_samples(
        &model,
        opts.seed ^ M::SAMPLE_SEED,
        &run.dir().join(crate::train::SAMPLES_FILE),
    )?;
    run.finish(config, metrics, true)
}

/// Writes an 8x8 grid of samples drawn by the runtime's incremental sampler
/// from a temporary f32 export of `model` (runtime RNG seeded with `seed`).
///
/// # Errors
/// On export, runtime or I/O errors.
pub fn write_samples<M: Autoregressive>(model: &M, seed: u64, path: &Path) -> Result<()> {
    let net = model.net()?;
    let meta = meta(M::KIND, "temporary export for samples.png".into());
    let bytes = export(&net, &meta, Quant::F32, &[])?;
    let m = Model::load(&bytes).map_err(|e| anyhow!("{e}"))?;
    let pixels = crate::sample::sample_model(&m, 64, seed)?;
    crate::report::write_grid_png(path, &pixels, 64, 8)
}

/// Loads a run of family `M`: its configuration and the model with the checkpoint's weights.
///
/// # Errors
/// As [`crate::train::load_run`], or if the run is of another family.
pub fn load<M: Autoregressive>(dir: &Path) -> Result<(RunConfig, M)> {
    load_family(dir, &format!("a {}", M::NAME), M::pick, |cfg, varmap| {
        M::from_varmap(cfg, varmap, &Device::Cpu)
    })
}

/// File metadata of an autoregressive model of `kind` (no latent, no prior).
pub fn meta(kind: ModelKind, data: String) -> ExportMeta {
    ExportMeta {
        kind,
        image: IMAGE,
        latent: 0,
        data,
        figures: Vec::new(),
        prior: None,
    }
}

/// Exact NLL in nats per image of binarized `images` (n·784 bytes, >= 128
/// is 1) under an exported autoregressive model, through the runtime: one
/// forward pass per image gives every conditional logit (dequantized for int8).
///
/// # Errors
/// If the model is not autoregressive.
pub fn nll_runtime(model: &Model<'_>, images: &[u8]) -> Result<f64> {
    let mut arena = HostArena::new(model.arena_bytes());
    let mut scratch = HostArena::new(model.forward_arena_bytes());
    let sampler = PixelCnnSampler::new(model, arena.bytes()).map_err(|e| anyhow!("{e}"))?;
    let n = sampler.image_len();
    let mut logits = vec![0f32; n];
    let mut total = 0f64;
    let count = images.len() / n;
    for img in images.chunks_exact(n) {
        sampler
            .logits(img, scratch.bytes(), &mut logits)
            .map_err(|e| anyhow!("{e}"))?;
        let x: Vec<f32> = img.iter().map(|&p| f32::from(u8::from(p >= 128))).collect();
        total += bernoulli_nll(&logits, &x);
    }
    Ok(total / count.max(1) as f64)
}

/// The first `n` images of `bytes` binarized at 0.5 (as training sees them), as bytes 0/255.
fn binarized(bytes: &[u8], n: usize) -> Vec<u8> {
    bytes[..n * data::PIXELS]
        .iter()
        .map(|&p| if p >= 128 { 255 } else { 0 })
        .collect()
}

/// Exports `model` as `quant`: int8 calibrated on the first `calib`
/// binarized training images; with `eval > 0`, the exact NLL of the first
/// `eval` test images is measured through the runtime on the exported file
/// and stored in it (`test_nll_nats`, `test_bits_per_dim`).
///
/// # Errors
/// On export or runtime errors.
pub fn export_autoregressive<M: Autoregressive>(
    model: &M,
    mnist: &Mnist,
    description: String,
    quant: Quant,
    calib: usize,
    eval: usize,
) -> Result<Vec<u8>> {
    let net = model.net()?;
    let mut meta = meta(M::KIND, description);
    let calib_inputs: Vec<Vec<f32>> = if quant == Quant::Int8 {
        let n = calib.clamp(1, mnist.n_train);
        binarized(&mnist.train_images, n)
            .chunks_exact(data::PIXELS)
            .map(|img| img.iter().map(|&p| f32::from(p) / 255.0).collect())
            .collect()
    } else {
        Vec::new()
    };
    let mut bytes = export(&net, &meta, quant, &calib_inputs)?;
    if eval > 0 {
        let n = eval.min(mnist.n_test);
        let test = binarized(&mnist.test_images, n);
        let nll = {
            let m = Model::load(&bytes).map_err(|e| anyhow!("{e}"))?;
            nll_runtime(&m, &test)?
        };
        meta.figures = vec![
            ("test_nll_nats".into(), nll as f32),
            ("test_bits_per_dim".into(), bits_per_dim(nll) as f32),
        ];
        bytes = export(&net, &meta, quant, &calib_inputs)?;
    }
    Ok(bytes)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::run::NonFiniteTraining;
    use crate::train::{METRICS_FILE, SAMPLES_FILE};

    /// Two steps of 16 images, one epoch, into `out`.
    pub(crate) fn tiny_opts(out: &Path) -> TrainOptions {
        TrainOptions {
            out: out.to_path_buf(),
            epochs: 1,
            batch_size: 16,
            limit_train: Some(32),
            max_steps: Some(2),
            lr: 1e-3,
            ..TrainOptions::default()
        }
    }

    /// Checks the run of [`tiny_opts`]: one finite row, `metrics.csv` and `samples.png`.
    pub(crate) fn check_run(o: &Outcome<NllEpoch>) {
        assert_eq!(o.metrics.len(), 1);
        assert!(o.metrics[0].test_nll.is_finite() && o.metrics[0].test_nll > 0.0);
        let csv = std::fs::read_to_string(o.run_dir.join(METRICS_FILE)).unwrap();
        assert!(csv.starts_with(METRICS_HEADER));
        assert_eq!(csv.lines().count(), 2);
        assert!(o.run_dir.join(SAMPLES_FILE).is_file());
        assert!(crate::train::load_vae(&o.run_dir).is_err());
    }

    #[test]
    fn one_bit_per_pixel() {
        assert!((bits_per_dim(784.0 * std::f64::consts::LN_2) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn nan_batch_stops_without_checkpoint() {
        use crate::models::pixelcnn::{PixelCnn, PixelCnnConfig};
        let out = tempfile::tempdir().unwrap();
        let opts = TrainOptions {
            poison_step: Some(1),
            ..tiny_opts(out.path())
        };
        let cfg = PixelCnnConfig {
            channels: 4,
            layers: 1,
            ..PixelCnnConfig::default()
        };
        let err = train::<PixelCnn>(&opts, cfg, true).unwrap_err();
        let nf = err.downcast_ref::<NonFiniteTraining>().unwrap();
        assert_eq!((nf.epoch, nf.step, nf.last_good_epoch), (1, Some(1), None));
        assert_eq!(nf.family, "pixelcnn");
        assert!(!nf.checkpoint.exists());
    }
}
