//! Training runs: the VAE's run, what every run is configured with
//! ([`TrainOptions`], [`RunConfig`]), the run directory, and loading a run
//! back. The harness every family's loop uses is [`crate::run`].
//!
//! ```no_run
//! use tinygen_trainer::models::vae::VaeConfig;
//! use tinygen_trainer::train::{load_vae, train_vae, TrainOptions};
//! let opts = TrainOptions { epochs: 1, limit_train: Some(256), ..TrainOptions::default() };
//! let outcome = train_vae(&opts, VaeConfig::default())?;
//! let (config, vae) = load_vae(&outcome.run_dir)?; // what the exporter does
//! let decoder = vae.decoder_tensors()?; // [("dec.fc.weight", ..), ...]
//! # anyhow::Ok(())
//! ```
//!
//! A run directory `<out>/<family>-s<seed>-<UTC time>/` holds:
//!
//! - `config.json`: [`RunConfig`] (family, hyperparameters, data, image shape),
//!   written before the first step;
//! - `metrics.csv`: one [`EpochMetrics`] row per finished epoch;
//! - `model.safetensors`: the weights after the last epoch whose training and
//!   test losses were all finite (written to a temporary file, then renamed, so
//!   it is never a partial or non-finite checkpoint);
//! - `samples.png`: 8x8 decoded samples of the same checkpoint.
//! - `loss.png`: the columns of `metrics.csv` against epoch, written at the
//!   end of the run by [`report::write_loss_png`] (every family does this).
//!
//! Every random number comes from generators seeded by `seed`: the same options
//! give the same run on the same machine and thread count.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::data::{self, load_mnist};
use crate::models::vae::{Vae, VaeConfig};
use crate::models::{standard_normal, varmap_from_tensors};
use crate::report::{self, EpochMetrics};
use crate::run::{batch_images, load_family, Outcome, Run, Schedule};

/// The run's configuration file.
pub const CONFIG_FILE: &str = "config.json";
/// The checkpoint (candle `VarMap::save`, safetensors).
pub const MODEL_FILE: &str = "model.safetensors";
/// Per-epoch metrics.
pub const METRICS_FILE: &str = "metrics.csv";
/// 8x8 grid of samples from the checkpoint.
pub const SAMPLES_FILE: &str = "samples.png";

// Independent streams derived from the run's seed (and
// [`crate::run::SHUFFLE_STREAM`]).
const NOISE_STREAM: u64 = 0x4e4f_4953_4531_2d2d;
const EVAL_STREAM: u64 = 0x4556_414c_2d2d_2d2d;
const SAMPLE_STREAM: u64 = 0x5341_4d50_4c45_5321;

/// Default epochs: about 100 s on an idle 2-core x86-64 (about 5 s per epoch
/// on the 7,000 shipped images), test -ELBO about 98 nats, most samples recognizable digits.
pub const DEFAULT_EPOCHS: usize = 20;
/// Default images per step.
pub const DEFAULT_BATCH_SIZE: usize = 128;
/// Default AdamW learning rate: after 20 epochs 3e-3 reaches about 98 nats
/// where 1e-3 reaches 105 and 5e-3 100 (VAE, shipped data).
pub const DEFAULT_LR: f64 = 3e-3;
/// Default AdamW weight decay.
pub const DEFAULT_WEIGHT_DECAY: f64 = 1e-4;

/// Family-specific part of a run's configuration. Serialized flat into
/// `config.json` with a `"family"` tag (`{"family": "vae", "latent": 16, ..}`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "family", rename_all = "lowercase")]
pub enum ModelConfig {
    /// Variational autoencoder.
    Vae(VaeConfig),
    /// PixelCNN (masked convolutions, exact likelihood).
    #[serde(rename = "pixelcnn")]
    PixelCnn(crate::models::pixelcnn::PixelCnnConfig),
    /// PixelRNN (Row LSTM, exact likelihood).
    #[serde(rename = "pixelrnn")]
    PixelRnn(crate::models::pixelrnn::PixelRnnConfig),
    /// Deterministic autoencoder.
    Ae(crate::models::ae::AeConfig),
    /// GAN (generator and discriminator).
    Gan(crate::models::gan::GanConfig),
    /// Digit classifier (optionally initialized from an autoencoder).
    Classifier(crate::train_classifier::ClassifierRunConfig),
}

impl ModelConfig {
    /// The family's name as used in run directory names and `config.json`.
    pub fn family(&self) -> &'static str {
        match self {
            Self::Vae(_) => "vae",
            Self::PixelCnn(_) => "pixelcnn",
            Self::PixelRnn(_) => "pixelrnn",
            Self::Ae(_) => "ae",
            Self::Gan(_) => "gan",
            Self::Classifier(_) => "classifier",
        }
    }
}

/// `config.json`: everything needed to rebuild the model and to know how it was trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// Family and its hyperparameters.
    #[serde(flatten)]
    pub model: ModelConfig,
    /// Epochs requested.
    pub epochs: usize,
    /// Optimizer steps cap, if any.
    pub max_steps: Option<usize>,
    /// `--limit-train`, if given (older runs: absent).
    #[serde(default)]
    pub limit_train: Option<usize>,
    /// AdamW learning rate.
    pub lr: f64,
    /// Whether the learning rate decays linearly to 0 over the run (older
    /// runs: absent, read as false).
    #[serde(default)]
    pub lr_decay: bool,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Images per batch.
    pub batch_size: usize,
    /// Seed of every random number in the run.
    pub seed: u64,
    /// Data set directory.
    pub data_dir: PathBuf,
    /// Training images used.
    pub n_train: usize,
    /// Test images evaluated.
    pub n_test: usize,
    /// (channels, height, width).
    pub image_shape: [usize; 3],
    /// How pixels are modelled: "bernoulli, binarized at 0.5".
    pub pixels: String,
}

/// Options of one training run, independent of the family.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainOptions {
    /// Directory with the MNIST IDX files.
    pub data_dir: PathBuf,
    /// Parent of the run directory.
    pub out: PathBuf,
    /// Passes over the training set.
    pub epochs: usize,
    /// Images per batch.
    pub batch_size: usize,
    /// AdamW learning rate.
    pub lr: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Seed of initialization, shuffling and noise.
    pub seed: u64,
    /// Use only the first N training images.
    pub limit_train: Option<usize>,
    /// Stop after this many optimizer steps (the partial epoch is evaluated and saved).
    pub max_steps: Option<usize>,
    /// Progress bars and per-epoch lines on the terminal.
    pub verbose: bool,
    /// Test hook: replace the training batch of this (1-based, global) step
    /// by NaNs, to exercise the non-finite loss path.
    #[doc(hidden)]
    pub poison_step: Option<usize>,
    /// Continue this interrupted run (its directory) instead of starting a
    /// new one; the other options must be the run's own (see
    /// [`resume_options`]).
    pub resume: Option<PathBuf>,
    /// Test hook: stop as Ctrl-C would after this many steps in total.
    #[doc(hidden)]
    pub interrupt_after: Option<usize>,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            data_dir: data::default_data_dir(),
            out: PathBuf::from("runs"),
            epochs: DEFAULT_EPOCHS,
            batch_size: DEFAULT_BATCH_SIZE,
            lr: DEFAULT_LR,
            weight_decay: DEFAULT_WEIGHT_DECAY,
            seed: 0,
            limit_train: None,
            max_steps: None,
            verbose: false,
            poison_step: None,
            resume: None,
            interrupt_after: None,
        }
    }
}

/// A finished VAE run.
pub type TrainOutcome = Outcome<EpochMetrics>;

/// Training stopped on a NaN or infinite loss (the VAE's losses are named
/// `recon` and `KL`).
pub type NonFiniteLoss = crate::run::NonFiniteTraining;

/// Trains a VAE on binarized MNIST; see the module docs for what the run directory holds.
///
/// # Errors
/// Bad options, unreadable data, I/O errors writing the run, candle errors, and
/// [`NonFiniteLoss`] (downcast the `anyhow::Error` to get it) when a loss turns NaN or infinite.
pub fn train_vae(opts: &TrainOptions, vae_config: VaeConfig) -> Result<TrainOutcome> {
    check_options(opts)?;
    let device = Device::Cpu;
    let (x_train, x_test, n_train, n_test) = load_binarized_data(opts)?;
    let config = run_config(
        ModelConfig::Vae(vae_config),
        opts,
        n_train,
        n_test,
        "bernoulli, binarized at 0.5",
    );
    let vae = Vae::new(vae_config, opts.seed, &device)?;
    let mut run = Run::create(opts, &config, report::METRICS_HEADER, vae.varmap())?;
    let mut opt = run.adamw(opts)?;
    run.announce(format_args!(
        "training VAE (latent {}) on {n_train} images, testing on {n_test}",
        vae_config.latent
    ));
    let steps_per_epoch = n_train.div_ceil(opts.batch_size);
    let mut schedule = run.schedule(Schedule::new(
        opts,
        n_train,
        opts.batch_size,
        steps_per_epoch,
    ))?;
    let noise = run.stream("noise", opts.seed ^ NOISE_STREAM)?;
    let mut metrics = Vec::new();

    let mut train_step = |batch: &[u32], n| {
        let x = batch_images(&x_train, batch, n, opts)?;
        let eps = standard_normal(
            &mut *noise.borrow_mut(),
            (batch.len(), vae_config.latent),
            &device,
        )?;
        let (recon, kl) = vae.loss(&x, &eps)?;
        let r = f64::from(recon.to_scalar::<f32>()?);
        let k = f64::from(kl.to_scalar::<f32>()?);
        Ok(((recon + kl)?, vec![("recon", r), ("KL", k)]))
    };
    let message = |m: &[f64]| {
        format!(
            "recon {:.2}  KL {:.2}  -ELBO {:.2}",
            m[0],
            m[1],
            m[0] + m[1]
        )
    };
    while let Some(trained) = run.train_epoch(&mut schedule, &mut opt, &mut train_step, message)? {
        let (epoch, seconds) = (trained.epoch, trained.seconds);

        let mut eval_rng = StdRng::seed_from_u64(opts.seed ^ EVAL_STREAM);
        let (test_recon, test_kl) = evaluate_vae(&vae, &x_test, opts.batch_size, &mut eval_rng)?;
        run.check_finite(None, epoch, None, &[("recon", test_recon), ("KL", test_kl)])?;
        let (train_recon, train_kl) = (trained.means[0], trained.means[1]);
        let step = schedule.step;
        let m = EpochMetrics {
            epoch,
            step,
            train_recon,
            train_kl,
            train_elbo: train_recon + train_kl,
            test_recon,
            test_kl,
            test_elbo: test_recon + test_kl,
            seconds,
        };
        run.save_epoch(&schedule, &[&opt], epoch, &m.csv_row())?;
        write_vae_samples(&vae, opts.seed, &run.dir().join(SAMPLES_FILE))?;
        run.epoch_line(
            epoch,
            format_args!(
                "step {step:>6}  train -ELBO {:7.2} (recon {:7.2}, KL {:6.2})  \
                 test -ELBO {:7.2} (recon {:7.2}, KL {:6.2})  {seconds:6.1} s",
                m.train_elbo, m.train_recon, m.train_kl, m.test_elbo, m.test_recon, m.test_kl
            ),
        );
        metrics.push(m);
    }
    run.finish(config, metrics, true)
}

/// Loads the run's data set (`--data`, cut to `--limit-train`) and checks it
/// has training and test images; returns it with the two counts.
///
/// # Errors
/// Unreadable data, or an empty split.
pub(crate) fn load_data(opts: &TrainOptions) -> Result<(data::Mnist, usize, usize)> {
    let mut mnist = load_mnist(&opts.data_dir)?;
    if let Some(n) = opts.limit_train {
        mnist.limit_train(n);
    }
    let (n_train, n_test) = (mnist.n_train, mnist.n_test);
    if n_train == 0 || n_test == 0 {
        bail!(
            "{}: need at least one training and one test image",
            opts.data_dir.display()
        );
    }
    Ok((mnist, n_train, n_test))
}

/// [`load_data`], binarized at 0.5: (training images, test images, n_train, n_test).
///
/// # Errors
/// As [`load_data`], and on candle errors.
pub(crate) fn load_binarized_data(opts: &TrainOptions) -> Result<(Tensor, Tensor, usize, usize)> {
    let (mnist, n_train, n_test) = load_data(opts)?;
    let device = Device::Cpu;
    Ok((
        mnist.train_binarized(&device)?,
        mnist.test_binarized(&device)?,
        n_train,
        n_test,
    ))
}

/// The `config.json` of a run of `model` trained with `opts`.
pub(crate) fn run_config(
    model: ModelConfig,
    opts: &TrainOptions,
    n_train: usize,
    n_test: usize,
    pixels: &str,
) -> RunConfig {
    RunConfig {
        model,
        epochs: opts.epochs,
        max_steps: opts.max_steps,
        limit_train: opts.limit_train,
        lr: opts.lr,
        lr_decay: false,
        weight_decay: opts.weight_decay,
        batch_size: opts.batch_size,
        seed: opts.seed,
        data_dir: opts.data_dir.clone(),
        n_train,
        n_test,
        image_shape: [1, data::SIDE, data::SIDE],
        pixels: pixels.into(),
    }
}
pub(crate) fn check_options(opts: &TrainOptions) -> Result<()> {
    if opts.epochs == 0 {
        bail!("--epochs must be at least 1");
    }
    if opts.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    if opts.max_steps == Some(0) {
        bail!("--max-steps must be at least 1");
    }
    if opts.limit_train == Some(0) {
        bail!("--limit-train must be at least 1");
    }
    if !(opts.lr.is_finite() && opts.lr > 0.0) {
        bail!("--lr must be a positive number, got {}", opts.lr);
    }
    if !(opts.weight_decay.is_finite() && opts.weight_decay >= 0.0) {
        bail!(
            "--weight-decay must be a non-negative number, got {}",
            opts.weight_decay
        );
    }
    Ok(())
}

/// Reconstruction and KL terms of -ELBO, nats per image, averaged over all of
/// `x` (binarized, (n, 1, 28, 28)), one noise sample per image drawn from `rng`.
///
/// # Errors
/// On candle errors.
pub fn evaluate_vae(
    vae: &Vae,
    x: &Tensor,
    batch_size: usize,
    rng: &mut StdRng,
) -> Result<(f64, f64)> {
    let n = x.dim(0)?;
    let batch_size = batch_size.max(1);
    let (mut sum_recon, mut sum_kl) = (0f64, 0f64);
    let mut start = 0;
    while start < n {
        let b = batch_size.min(n - start);
        let xb = x.narrow(0, start, b)?;
        let eps = standard_normal(rng, (b, vae.latent()), x.device())?;
        let (recon, kl) = vae.loss(&xb, &eps)?;
        sum_recon += f64::from(recon.to_scalar::<f32>()?) * b as f64;
        sum_kl += f64::from(kl.to_scalar::<f32>()?) * b as f64;
        start += b;
    }
    let n = n.max(1) as f64;
    Ok((sum_recon / n, sum_kl / n))
}

/// Writes an 8x8 grid of sigmoid(decoder(z)), z ~ N(0, I) from a generator
/// derived from `seed` (the same z every time for a given seed).
///
/// # Errors
/// On candle or I/O errors.
pub fn write_vae_samples(vae: &Vae, seed: u64, path: &Path) -> Result<()> {
    let mut rng = StdRng::seed_from_u64(seed ^ SAMPLE_STREAM);
    let z = standard_normal(&mut rng, (64, vae.latent()), &Device::Cpu)?;
    let probs = vae.decode_probs(&z)?.flatten_all()?.to_vec1::<f32>()?;
    report::write_grid_png(path, &report::probs_to_bytes(&probs), 64, 8)
}

pub(crate) fn write_config(run_dir: &Path, config: &RunConfig) -> Result<()> {
    let path = run_dir.join(CONFIG_FILE);
    let json = serde_json::to_string_pretty(config)?;
    std::fs::write(&path, json + "\n").with_context(|| format!("cannot write {}", path.display()))
}

/// Creates `<out>/<family>-s<seed>-<YYYYMMDD-HHMMSS UTC>` (with `-2`, `-3`, ..
/// appended if it exists).
///
/// # Errors
/// If the directory cannot be created.
pub fn create_run_dir(out: &Path, family: &str, seed: u64) -> Result<PathBuf> {
    std::fs::create_dir_all(out)
        .with_context(|| format!("cannot create output directory {}", out.display()))?;
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let base = format!("{family}-s{seed}-{}", utc_stamp(secs));
    for i in 1..1000 {
        let name = if i == 1 {
            base.clone()
        } else {
            format!("{base}-{i}")
        };
        let dir = out.join(name);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot create run directory {}", dir.display()))
            }
        }
    }
    bail!(
        "cannot find a free run directory name {base}-N in {}",
        out.display()
    )
}

/// `YYYYMMDD-HHMMSS` for Unix time `secs` (UTC).
fn utc_stamp(secs: u64) -> String {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Reads a run's `config.json` and `model.safetensors`, for any family.
///
/// # Errors
/// If a file is missing or malformed.
pub fn load_run(dir: &Path) -> Result<(RunConfig, candle_nn::VarMap)> {
    let config = read_config(dir)?;
    let model_path = dir.join(MODEL_FILE);
    if !model_path.is_file() {
        bail!(
            "{} does not exist: the run has no checkpoint (did its first epoch finish?)",
            model_path.display()
        );
    }
    let tensors = candle_core::safetensors::load(&model_path, &Device::Cpu)
        .with_context(|| format!("cannot read checkpoint {}", model_path.display()))?;
    Ok((config, varmap_from_tensors(tensors)?))
}

/// The options that continue the interrupted run in `dir`: the run's own,
/// from its `config.json`, with [`TrainOptions::resume`] set, and that config.
///
/// # Errors
/// If `config.json` is missing or malformed.
pub fn resume_options(dir: &Path, verbose: bool) -> Result<(TrainOptions, RunConfig)> {
    let config = read_config(dir)?;
    let opts = TrainOptions {
        data_dir: config.data_dir.clone(),
        out: dir.parent().map(Path::to_path_buf).unwrap_or_default(),
        epochs: config.epochs,
        batch_size: config.batch_size,
        lr: config.lr,
        weight_decay: config.weight_decay,
        seed: config.seed,
        limit_train: config.limit_train,
        max_steps: config.max_steps,
        verbose,
        poison_step: None,
        resume: Some(dir.to_path_buf()),
        interrupt_after: None,
    };
    Ok((opts, config))
}

/// Reads a run's `config.json`.
///
/// # Errors
/// If the file is missing or malformed.
pub fn read_config(dir: &Path) -> Result<RunConfig> {
    let config_path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&config_path)
        .with_context(|| format!("cannot read {}", config_path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("malformed {}", config_path.display()))
}

/// Loads a VAE run: its configuration and the model with the checkpoint's weights.
///
/// # Errors
/// As [`load_run`], or if the run is not a VAE or its tensors do not fit the config.
pub fn load_vae(dir: &Path) -> Result<(RunConfig, Vae)> {
    load_family(
        dir,
        "a VAE",
        |m| match m {
            ModelConfig::Vae(c) => Some(*c),
            _ => None,
        },
        |c, varmap| Vae::from_varmap(c, varmap, &Device::Cpu),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps() {
        assert_eq!(utc_stamp(0), "19700101-000000");
        assert_eq!(utc_stamp(951_782_400 + 3661), "20000229-010101");
        assert_eq!(utc_stamp(1_767_225_599), "20251231-235959");
    }

    #[test]
    fn config_json_is_flat_and_roundtrips() {
        let c = RunConfig {
            model: ModelConfig::Vae(VaeConfig { latent: 8 }),
            epochs: 3,
            max_steps: None,
            limit_train: None,
            lr: 1e-3,
            lr_decay: false,
            weight_decay: 0.0,
            batch_size: 64,
            seed: 5,
            data_dir: PathBuf::from("data/mnist-subset"),
            n_train: 7000,
            n_test: 1000,
            image_shape: [1, 28, 28],
            pixels: "bernoulli, binarized at 0.5".into(),
        };
        let v: serde_json::Value = serde_json::to_value(&c).unwrap();
        assert_eq!(v["family"], "vae");
        assert_eq!(v["latent"], 8);
        assert_eq!(v["image_shape"], serde_json::json!([1, 28, 28]));
        let back: RunConfig = serde_json::from_value(v).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn run_dirs_are_unique() {
        let out = tempfile::tempdir().unwrap();
        let a = create_run_dir(out.path(), "vae", 1).unwrap();
        let b = create_run_dir(out.path(), "vae", 1).unwrap();
        assert_ne!(a, b);
        assert!(a
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("vae-s1-"));
    }

    #[test]
    fn bad_options_are_rejected() {
        for opts in [
            TrainOptions {
                epochs: 0,
                ..TrainOptions::default()
            },
            TrainOptions {
                batch_size: 0,
                ..TrainOptions::default()
            },
            TrainOptions {
                lr: f64::NAN,
                ..TrainOptions::default()
            },
            TrainOptions {
                lr: -1.0,
                ..TrainOptions::default()
            },
            TrainOptions {
                max_steps: Some(0),
                ..TrainOptions::default()
            },
        ] {
            assert!(train_vae(&opts, VaeConfig::default()).is_err(), "{opts:?}");
        }
    }
}
