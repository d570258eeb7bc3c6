//! Autoencoder training runs (`tinygen train ae`), and the grayscale data the
//! autoencoder, GAN and classifier runs share (the run harness is
//! [`crate::run`]).
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

use std::path::Path;

use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::models::ae::{AeConfig, AutoEncoder};
use crate::models::standard_normal;
use crate::report;
use crate::run::{batch_images, load_family, Run, Schedule};
use crate::train::{
    check_options, load_data, run_config, ModelConfig, RunConfig, TrainOptions, SAMPLES_FILE,
};

pub use crate::run::{NonFiniteTraining, Outcome};
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
    let mut run = Run::create(opts, &config, METRICS_HEADER, ae.varmap())?;
    let mut opt = run.adamw(opts)?;
    run.announce(format_args!(
        "training autoencoder (latent {}) on {} images, testing on {}",
        ae_config.latent, d.n_train, d.n_test
    ));
    let steps_per_epoch = d.n_train.div_ceil(opts.batch_size);
    let mut schedule = run.schedule(Schedule::new(
        opts,
        d.n_train,
        opts.batch_size,
        steps_per_epoch,
    ))?;
    let mut metrics = Vec::new();
    let mut train_step = |batch: &[u32], n| {
        let (bce, mse) = ae.loss(&batch_images(&d.x_train, batch, n, opts)?)?;
        let l = f64::from(bce.to_scalar::<f32>()?);
        let m = f64::from(mse.to_scalar::<f32>()?);
        Ok((bce, vec![("bce", l), ("mse", m)]))
    };
    let message = |m: &[f64]| format!("BCE {:.2} nats  MSE {:.4}", m[0], m[1]);
    while let Some(trained) = run.train_epoch(&mut schedule, &mut opt, &mut train_step, message)? {
        let (epoch, seconds) = (trained.epoch, trained.seconds);
        let (test_bce, test_mse) = evaluate_ae(&ae, &d.x_test, opts.batch_size)?;
        run.check_finite(None, epoch, None, &[("bce", test_bce), ("mse", test_mse)])?;
        let step = schedule.step;
        let m = AeEpoch {
            epoch,
            step,
            train_bce: trained.means[0],
            train_mse: trained.means[1],
            test_bce,
            test_mse,
            seconds,
        };
        let row = format!(
            "{},{},{:.4},{:.6},{:.4},{:.6},{:.3}",
            m.epoch, m.step, m.train_bce, m.train_mse, m.test_bce, m.test_mse, m.seconds
        );
        run.save_epoch(&schedule, &[&opt], epoch, &row)?;
        let stats = latent_stats(&ae, &d.x_train)?;
        write_ae_samples(
            &ae,
            &d.x_test,
            &stats,
            opts.seed,
            &run.dir().join(SAMPLES_FILE),
        )?;
        run.epoch_line(
            epoch,
            format_args!(
                "step {step:>6}  train BCE {:7.2} MSE {:.4}  test BCE {:7.2} MSE {:.4}  {seconds:6.1} s",
                m.train_bce, m.train_mse, m.test_bce, m.test_mse
            ),
        );
        metrics.push(m);
    }
    run.finish(config, metrics, true)
}

/// Loads an autoencoder run.
///
/// # Errors
/// As [`crate::train::load_run`], or if the run is not an autoencoder run or its tensors do not fit.
pub fn load_ae(dir: &Path) -> Result<(RunConfig, AutoEncoder)> {
    load_family(
        dir,
        "an autoencoder (ae)",
        |m| match m {
            ModelConfig::Ae(c) => Some(*c),
            _ => None,
        },
        |c, varmap| AutoEncoder::from_varmap(c, varmap, &Device::Cpu),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::{CONFIG_FILE, METRICS_FILE, MODEL_FILE};

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
