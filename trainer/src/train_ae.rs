//! Autoencoder training runs (`tinygen train ae`), and what the autoencoder,
//! GAN and classifier runs share: checkpoints of a whole [`VarMap`], CSV
//! metrics with any columns, and the non-finite-loss error.
//!
//! ```no_run
//! use tinygen_trainer::models::ae::AeConfig;
//! use tinygen_trainer::train::TrainOptions;
//! use tinygen_trainer::train_ae::{load_ae, train_ae};
//! let opts = TrainOptions { epochs: 1, limit_train: Some(256), ..TrainOptions::default() };
//! let outcome = train_ae(&opts, AeConfig::default())?;
//! let (config, ae) = load_ae(&outcome.run_dir)?; // what the exporter does
//! # anyhow::Ok(())
//! ```
//!
//! The run directory is laid out as for the VAE (see [`crate::train`]):
//! `config.json`, `metrics.csv` (per epoch: training and test reconstruction
//! BCE in nats per image and MSE per pixel, seconds), `model.safetensors`
//! (the last epoch whose losses were all finite) and `samples.png`: rows 1,
//! 3, 5 hold 24 test digits, rows 2, 4, 6 their reconstructions, rows 7-8
//! decodes of 16 latents drawn from the Gaussian fitted to the training
//! codes (what `tinygen sample` does with an exported autoencoder).

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarMap};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::models::ae::{AeConfig, AutoEncoder};
use crate::models::standard_normal;
use crate::report;
use crate::train::{
    check_options, create_run_dir, load_data, load_run, progress_bar, run_config, write_config,
    ModelConfig, RunConfig, TrainOptions, CONFIG_FILE, METRICS_FILE, MODEL_FILE, SAMPLES_FILE,
};

pub(crate) const SHUFFLE_STREAM: u64 = 0x5348_5546_464c_4531;
pub(crate) const SAMPLE_STREAM: u64 = 0x5341_4d50_4c45_5321;

/// Header of an autoencoder run's `metrics.csv`.
pub const METRICS_HEADER: &str = "epoch,step,train_bce,train_mse,test_bce,test_mse,seconds";

/// One row of an autoencoder run's `metrics.csv`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AeEpoch {
    /// 1-based epoch.
    pub epoch: usize,
    /// Optimizer steps so far.
    pub step: usize,
    /// Mean reconstruction BCE over the epoch's training batches, nats per image.
    pub train_bce: f64,
    /// Mean squared error per pixel over the epoch's training batches.
    pub train_mse: f64,
    /// Reconstruction BCE on the test set, nats per image.
    pub test_bce: f64,
    /// MSE per pixel on the test set.
    pub test_mse: f64,
    /// Seconds of this epoch's training steps (evaluation excluded).
    pub seconds: f64,
}

/// A finished run of any family trained here.
#[derive(Debug, Clone)]
pub struct Outcome<M> {
    /// The run directory.
    pub run_dir: PathBuf,
    /// What was written to `config.json`.
    pub config: RunConfig,
    /// One row per epoch, as in `metrics.csv`.
    pub metrics: Vec<M>,
}

/// Training stopped on a NaN or infinite loss. The run directory keeps the
/// checkpoint of the last epoch with finite losses, if there was one.
#[derive(Debug, Clone, PartialEq)]
pub struct NonFiniteTraining {
    /// Family being trained.
    pub family: &'static str,
    /// 1-based epoch.
    pub epoch: usize,
    /// 1-based global step of the bad batch; `None` when the test evaluation was non-finite.
    pub step: Option<usize>,
    /// The losses seen, by name.
    pub losses: Vec<(&'static str, f64)>,
    /// The epoch whose checkpoint is kept.
    pub last_good_epoch: Option<usize>,
    /// Where that checkpoint is (or would be).
    pub checkpoint: PathBuf,
}

impl fmt::Display for NonFiniteTraining {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.step {
            Some(step) => write!(
                f,
                "{}: non-finite training loss at epoch {}, step {step}",
                self.family, self.epoch
            )?,
            None => write!(
                f,
                "{}: non-finite test loss after epoch {}",
                self.family, self.epoch
            )?,
        }
        let losses: Vec<String> = self
            .losses
            .iter()
            .map(|(n, v)| format!("{n} {v}"))
            .collect();
        write!(f, " ({}); training stopped", losses.join(", "))?;
        match self.last_good_epoch {
            Some(e) => write!(
                f,
                "; kept the last good checkpoint (epoch {e}) at {}",
                self.checkpoint.display()
            ),
            None => write!(
                f,
                "; no epoch finished with finite losses, so no checkpoint was written"
            ),
        }
    }
}

impl std::error::Error for NonFiniteTraining {}

/// Saves `varmap` to `path` through a temporary file and a rename.
pub(crate) fn save_varmap(varmap: &VarMap, path: &Path) -> Result<()> {
    let tmp = path.with_extension("safetensors.tmp");
    varmap
        .save(&tmp)
        .with_context(|| format!("cannot write checkpoint {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
}

/// Creates a CSV file holding only `header`.
pub(crate) fn create_csv(path: &Path, header: &str) -> Result<()> {
    std::fs::write(path, format!("{header}\n"))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Appends one line to a CSV file.
pub(crate) fn append_csv(path: &Path, row: &str) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    writeln!(f, "{row}").with_context(|| format!("cannot write {}", path.display()))
}

/// Loads the data of a run: (training images, test images, n_train, n_test,
/// training labels, test labels), grayscale in [0, 1].
pub(crate) struct RunData {
    pub(crate) x_train: Tensor,
    pub(crate) x_test: Tensor,
    pub(crate) y_train: Tensor,
    pub(crate) y_test: Tensor,
    pub(crate) n_train: usize,
    pub(crate) n_test: usize,
}

pub(crate) fn load_float_data(opts: &TrainOptions) -> Result<RunData> {
    let device = Device::Cpu;
    let (mnist, n_train, n_test) = load_data(opts)?;
    Ok(RunData {
        x_train: mnist.train_float(&device)?,
        x_test: mnist.test_float(&device)?,
        y_train: mnist.train_labels_tensor(&device)?,
        y_test: mnist.test_labels_tensor(&device)?,
        n_train,
        n_test,
    })
}

/// Reconstruction BCE (nats per image) and MSE (per pixel) over all of `x`.
///
/// # Errors
/// On candle errors.
pub fn evaluate_ae(ae: &AutoEncoder, x: &Tensor, batch_size: usize) -> Result<(f64, f64)> {
    let n = x.dim(0)?;
    let (mut bce, mut mse) = (0f64, 0f64);
    let mut start = 0;
    while start < n {
        let b = batch_size.max(1).min(n - start);
        let (l, m) = ae.loss(&x.narrow(0, start, b)?)?;
        bce += f64::from(l.to_scalar::<f32>()?) * b as f64;
        mse += f64::from(m.to_scalar::<f32>()?) * b as f64;
        start += b;
    }
    let n = n.max(1) as f64;
    Ok((bce / n, mse / n))
}

/// The codes of `x` (n, latent), computed in batches.
///
/// # Errors
/// On candle errors.
pub fn encode_all(ae: &AutoEncoder, x: &Tensor) -> Result<Tensor> {
    let n = x.dim(0)?;
    let mut parts = Vec::new();
    let mut start = 0;
    while start < n {
        let b = 512.min(n - start);
        parts.push(ae.encode(&x.narrow(0, start, b)?)?);
        start += b;
    }
    Ok(Tensor::cat(&parts, 0)?)
}

/// Per-dimension mean and standard deviation of the codes of `x`: the
/// Gaussian an exported autoencoder samples its latents from.
///
/// # Errors
/// On candle errors or an empty `x`.
pub fn latent_stats(ae: &AutoEncoder, x: &Tensor) -> Result<(Vec<f32>, Vec<f32>)> {
    if x.dim(0)? == 0 {
        bail!("no images to fit the latent Gaussian on");
    }
    let z = encode_all(ae, x)?;
    let mean = z.mean(0)?;
    let var = z.broadcast_sub(&mean)?.sqr()?.mean(0)?;
    let std: Vec<f32> = var
        .to_vec1::<f32>()?
        .iter()
        .map(|v| v.sqrt().max(1e-6))
        .collect();
    Ok((mean.to_vec1()?, std))
}

/// Writes the run's `samples.png` (see the module docs).
///
/// # Errors
/// On candle or I/O errors.
pub fn write_ae_samples(
    ae: &AutoEncoder,
    x_test: &Tensor,
    stats: &(Vec<f32>, Vec<f32>),
    seed: u64,
    path: &Path,
) -> Result<()> {
    let n = x_test.dim(0)?.min(24);
    let originals = x_test.narrow(0, 0, n)?;
    let recon = ae.decode_probs(&ae.encode(&originals)?)?;
    let mut rng = StdRng::seed_from_u64(seed ^ SAMPLE_STREAM);
    let eps = standard_normal(&mut rng, (16, ae.latent()), &Device::Cpu)?;
    let mean = Tensor::new(stats.0.as_slice(), &Device::Cpu)?;
    let std = Tensor::new(stats.1.as_slice(), &Device::Cpu)?;
    let z = eps.broadcast_mul(&std)?.broadcast_add(&mean)?;
    let sampled = ae.decode_probs(&z)?.flatten_from(1)?.to_vec2::<f32>()?;
    let originals = originals.flatten_from(1)?.to_vec2::<f32>()?;
    let recon = recon.flatten_from(1)?.to_vec2::<f32>()?;
    let blank = vec![0f32; 784];
    let mut tiles: Vec<f32> = Vec::with_capacity(64 * 784);
    for row in 0..3 {
        for pick in [&originals, &recon] {
            for col in 0..8 {
                tiles.extend_from_slice(pick.get(row * 8 + col).unwrap_or(&blank));
            }
        }
    }
    for s in &sampled {
        tiles.extend_from_slice(s);
    }
    report::write_grid_png(path, &report::probs_to_bytes(&tiles), 64, 8)
}

/// Trains an autoencoder on grayscale MNIST (pixels in [0, 1]); see the module docs.
///
/// # Errors
/// Bad options, unreadable data, I/O errors, candle errors, and
/// [`NonFiniteTraining`] when a loss turns NaN or infinite.
pub fn train_ae(opts: &TrainOptions, ae_config: AeConfig) -> Result<Outcome<AeEpoch>> {
    check_options(opts)?;
    let device = Device::Cpu;
    let d = load_float_data(opts)?;
    let config = run_config(
        ModelConfig::Ae(ae_config),
        opts,
        d.n_train,
        d.n_test,
        "grayscale in [0, 1] (pixel / 255)",
    );
    let ae = AutoEncoder::new(ae_config, opts.seed, &device)?;
    let mut opt = AdamW::new(
        ae.varmap().all_vars(),
        ParamsAdamW {
            lr: opts.lr,
            weight_decay: opts.weight_decay,
            ..ParamsAdamW::default()
        },
    )?;
    let run_dir = create_run_dir(&opts.out, config.model.family(), opts.seed)?;
    write_config(&run_dir, &config)?;
    let metrics_path = run_dir.join(METRICS_FILE);
    create_csv(&metrics_path, METRICS_HEADER)?;
    let checkpoint = run_dir.join(MODEL_FILE);
    if opts.verbose {
        println!(
            "run directory: {}\ntraining autoencoder (latent {}) on {} images, testing on {}",
            run_dir.display(),
            ae_config.latent,
            d.n_train,
            d.n_test
        );
    }
    let mut shuffle_rng = StdRng::seed_from_u64(opts.seed ^ SHUFFLE_STREAM);
    let mut order: Vec<u32> = (0..d.n_train as u32).collect();
    let steps_per_epoch = d.n_train.div_ceil(opts.batch_size);
    let max_steps = opts.max_steps.unwrap_or(usize::MAX);
    let (mut step, mut metrics, mut last_good_epoch) = (0usize, Vec::new(), None);
    let non_finite = |epoch, step, losses, last_good_epoch, checkpoint: &Path| NonFiniteTraining {
        family: "ae",
        epoch,
        step,
        losses,
        last_good_epoch,
        checkpoint: checkpoint.to_path_buf(),
    };
    for epoch in 1..=opts.epochs {
        if step >= max_steps {
            break;
        }
        order.shuffle(&mut shuffle_rng);
        let steps = steps_per_epoch.min(max_steps - step);
        let pb = progress_bar(opts.verbose, steps, epoch, opts.epochs);
        let t0 = Instant::now();
        let (mut sum_bce, mut sum_mse, mut seen) = (0f64, 0f64, 0usize);
        for batch in order.chunks(opts.batch_size).take(steps) {
            step += 1;
            let b = batch.len();
            let idx = Tensor::from_slice(batch, b, &device)?;
            let mut x = d.x_train.index_select(&idx, 0)?;
            if opts.poison_step == Some(step) {
                x = x.affine(f64::NAN, 0.0)?;
            }
            let (bce, mse) = ae.loss(&x)?;
            let l = f64::from(bce.to_scalar::<f32>()?);
            let m = f64::from(mse.to_scalar::<f32>()?);
            if !(l.is_finite() && m.is_finite()) {
                pb.abandon();
                let losses = vec![("bce", l), ("mse", m)];
                return Err(
                    non_finite(epoch, Some(step), losses, last_good_epoch, &checkpoint).into(),
                );
            }
            opt.backward_step(&bce)?;
            sum_bce += l * b as f64;
            sum_mse += m * b as f64;
            seen += b;
            pb.inc(1);
            pb.set_message(format!(
                "BCE {:.2} nats  MSE {:.4}",
                sum_bce / seen as f64,
                sum_mse / seen as f64
            ));
        }
        let seconds = t0.elapsed().as_secs_f64();
        pb.finish_and_clear();
        let (test_bce, test_mse) = evaluate_ae(&ae, &d.x_test, opts.batch_size)?;
        if !(test_bce.is_finite() && test_mse.is_finite()) {
            let losses = vec![("bce", test_bce), ("mse", test_mse)];
            return Err(non_finite(epoch, None, losses, last_good_epoch, &checkpoint).into());
        }
        let m = AeEpoch {
            epoch,
            step,
            train_bce: sum_bce / seen.max(1) as f64,
            train_mse: sum_mse / seen.max(1) as f64,
            test_bce,
            test_mse,
            seconds,
        };
        save_varmap(ae.varmap(), &checkpoint)?;
        last_good_epoch = Some(epoch);
        append_csv(
            &metrics_path,
            &format!(
                "{},{},{:.4},{:.6},{:.4},{:.6},{:.3}",
                m.epoch, m.step, m.train_bce, m.train_mse, m.test_bce, m.test_mse, m.seconds
            ),
        )?;
        let stats = latent_stats(&ae, &d.x_train)?;
        write_ae_samples(
            &ae,
            &d.x_test,
            &stats,
            opts.seed,
            &run_dir.join(SAMPLES_FILE),
        )?;
        if opts.verbose {
            println!(
                "epoch {epoch:>3}/{}  step {step:>6}  train BCE {:7.2} MSE {:.4}  \
                 test BCE {:7.2} MSE {:.4}  {seconds:6.1} s",
                opts.epochs, m.train_bce, m.train_mse, m.test_bce, m.test_mse
            );
        }
        metrics.push(m);
    }
    // Loss curves next to metrics.csv.
    crate::report::write_loss_png(&metrics_path)?;
    if opts.verbose {
        println!(
            "wrote {MODEL_FILE}, {CONFIG_FILE}, {METRICS_FILE}, {} and {SAMPLES_FILE} in {}",
            crate::report::LOSS_FILE,
            run_dir.display()
        );
    }
    Ok(Outcome {
        run_dir,
        config,
        metrics,
    })
}

/// Loads an autoencoder run.
///
/// # Errors
/// As [`load_run`], or if the run is not an autoencoder run or its tensors do not fit.
pub fn load_ae(dir: &Path) -> Result<(RunConfig, AutoEncoder)> {
    let (config, varmap) = load_run(dir)?;
    let ModelConfig::Ae(ae_config) = config.model else {
        bail!(
            "{} is a {} run, not an autoencoder (ae) run",
            dir.display(),
            config.model.family()
        );
    };
    let ae = AutoEncoder::from_varmap(ae_config, varmap, &Device::Cpu).with_context(|| {
        format!(
            "checkpoint in {} does not match its config.json",
            dir.display()
        )
    })?;
    Ok((config, ae))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(out: &Path) -> TrainOptions {
        TrainOptions {
            out: out.to_path_buf(),
            epochs: 1,
            batch_size: 128,
            limit_train: Some(256),
            max_steps: Some(2),
            seed: 3,
            ..TrainOptions::default()
        }
    }

    #[test]
    fn two_steps_write_a_run() {
        let out = tempfile::tempdir().unwrap();
        let outcome = train_ae(&opts(out.path()), AeConfig { latent: 4 }).unwrap();
        let m = outcome.metrics.last().unwrap();
        assert_eq!(m.step, 2);
        assert!(m.test_bce.is_finite() && m.test_bce > 0.0);
        for f in [
            CONFIG_FILE,
            METRICS_FILE,
            MODEL_FILE,
            SAMPLES_FILE,
            crate::report::LOSS_FILE,
        ] {
            assert!(outcome.run_dir.join(f).is_file(), "{f}");
        }
        let csv = std::fs::read_to_string(outcome.run_dir.join(METRICS_FILE)).unwrap();
        assert_eq!(csv.lines().count(), 2);
        assert!(csv.starts_with(METRICS_HEADER));
        let (config, ae) = load_ae(&outcome.run_dir).unwrap();
        assert_eq!(config.model.family(), "ae");
        assert_eq!(ae.latent(), 4);
    }

    #[test]
    fn nan_batch_stops_without_checkpoint() {
        let out = tempfile::tempdir().unwrap();
        let o = TrainOptions {
            poison_step: Some(1),
            ..opts(out.path())
        };
        let err = train_ae(&o, AeConfig { latent: 4 }).unwrap_err();
        let nf = err.downcast_ref::<NonFiniteTraining>().unwrap();
        assert_eq!((nf.epoch, nf.step, nf.last_good_epoch), (1, Some(1), None));
        assert!(!nf.checkpoint.exists());
        assert!(err.to_string().contains("no checkpoint"), "{err}");
    }
}
