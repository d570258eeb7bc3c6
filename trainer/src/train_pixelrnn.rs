//! PixelRNN training runs (`tinygen train pixelrnn`).
//!
//! ```no_run
//! use tinygen_trainer::models::pixelrnn::PixelRnnConfig;
//! use tinygen_trainer::train::TrainOptions;
//! use tinygen_trainer::train_pixelrnn::{load_pixelrnn, train_pixelrnn};
//! let opts = TrainOptions { epochs: 1, limit_train: Some(256), ..TrainOptions::default() };
//! let outcome = train_pixelrnn(&opts, PixelRnnConfig::default())?;
//! let (config, model) = load_pixelrnn(&outcome.run_dir)?; // what the exporter does
//! # anyhow::Ok(())
//! ```
//!
//! The run directory is laid out as for PixelCNN (see
//! [`crate::train_pixelcnn`]): `config.json`, `metrics.csv` (one row per
//! epoch: training and test negative log-likelihood in nats per image, test
//! bits per dimension, seconds; the same columns as PixelCNN's),
//! `model.safetensors` (last epoch with finite losses) and `samples.png`:
//! 8x8 samples drawn by the runtime's incremental sampler (the board's
//! code) from a temporary f32 export of the checkpoint.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::models::pixelrnn::{PixelRnn, PixelRnnConfig};
use crate::train::{
    create_run_dir, load_data, load_run, progress_bar, run_config, write_config, ModelConfig,
    RunConfig, TrainOptions, CONFIG_FILE, METRICS_FILE, MODEL_FILE, SAMPLES_FILE,
};

pub use crate::train_pixelcnn::{bits_per_dim, METRICS_HEADER};

const SHUFFLE_STREAM: u64 = 0x5348_5546_464c_4531;
/// Seed of the runtime sampler that draws `samples.png` (xor the run's seed).
pub const SAMPLE_SEED: u64 = 0x5049_5852_4e4e_2121;

/// One row of a PixelRNN run's `metrics.csv` (the PixelCNN columns).
pub type PixelRnnEpoch = crate::train_pixelcnn::PixelCnnEpoch;

/// A finished PixelRNN run.
#[derive(Debug, Clone)]
pub struct PixelRnnOutcome {
    /// The run directory.
    pub run_dir: PathBuf,
    /// What was written to `config.json`.
    pub config: RunConfig,
    /// One row per epoch.
    pub metrics: Vec<PixelRnnEpoch>,
}

/// Exact NLL in nats per image of binarized `x` (n, 1, 28, 28).
///
/// # Errors
/// On candle errors.
pub fn evaluate_pixelrnn(model: &PixelRnn, x: &Tensor, batch_size: usize) -> Result<f64> {
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

/// Trains a PixelRNN (Row LSTM) on binarized MNIST.
///
/// # Errors
/// Bad options, unreadable data, I/O errors, candle errors, or a non-finite loss
/// (the last good checkpoint is kept).
pub fn train_pixelrnn(opts: &TrainOptions, cfg: PixelRnnConfig) -> Result<PixelRnnOutcome> {
    if opts.epochs == 0 || opts.batch_size == 0 || opts.max_steps == Some(0) {
        bail!("--epochs, --batch-size and --max-steps must be at least 1");
    }
    if opts.limit_train == Some(0) {
        bail!("--limit-train must be at least 1");
    }
    if !(opts.lr.is_finite() && opts.lr > 0.0) {
        bail!("--lr must be a positive number, got {}", opts.lr);
    }
    if !(opts.weight_decay.is_finite() && opts.weight_decay >= 0.0) {
        bail!("--weight-decay must be a non-negative number");
    }
    let device = Device::Cpu;
    let (mnist, n_train, n_test) = load_data(opts)?;
    let x_train = mnist.train_binarized(&device)?;
    let x_test = mnist.test_binarized(&device)?;
    drop(mnist);
    let config = run_config(
        ModelConfig::PixelRnn(cfg),
        opts,
        n_train,
        n_test,
        "bernoulli, binarized at 0.5",
    );
    let model = PixelRnn::new(cfg, opts.seed, &device)?;
    let mut opt = AdamW::new(
        model.varmap().all_vars(),
        ParamsAdamW {
            lr: opts.lr,
            weight_decay: opts.weight_decay,
            ..ParamsAdamW::default()
        },
    )?;
    let run_dir = create_run_dir(&opts.out, config.model.family(), opts.seed)?;
    write_config(&run_dir, &config)?;
    let metrics_path = run_dir.join(METRICS_FILE);
    std::fs::write(&metrics_path, format!("{METRICS_HEADER}\n"))
        .with_context(|| format!("cannot write {}", metrics_path.display()))?;
    let checkpoint = run_dir.join(MODEL_FILE);
    if opts.verbose {
        println!(
            "run directory: {}\ntraining PixelRNN (7x7 mask A to {} channels, {} Row LSTM layers of {} hidden) on {n_train} images, testing on {n_test}",
            run_dir.display(),
            cfg.channels,
            cfg.layers,
            cfg.hidden
        );
    }
    let mut shuffle_rng = StdRng::seed_from_u64(opts.seed ^ SHUFFLE_STREAM);
    let mut order: Vec<u32> = (0..n_train as u32).collect();
    let steps_per_epoch = n_train.div_ceil(opts.batch_size);
    let max_steps = opts.max_steps.unwrap_or(usize::MAX);
    let mut step = 0usize;
    let mut metrics = Vec::new();
    for epoch in 1..=opts.epochs {
        if step >= max_steps {
            break;
        }
        order.shuffle(&mut shuffle_rng);
        let steps = steps_per_epoch.min(max_steps - step);
        let pb = progress_bar(opts.verbose, steps, epoch, opts.epochs);
        let t0 = Instant::now();
        let (mut sum, mut seen) = (0f64, 0usize);
        for batch in order.chunks(opts.batch_size).take(steps) {
            step += 1;
            let b = batch.len();
            let idx = Tensor::from_slice(batch, b, &device)?;
            let x = x_train.index_select(&idx, 0)?;
            let loss = model.nll(&x)?;
            let l = f64::from(loss.to_scalar::<f32>()?);
            if !l.is_finite() {
                pb.abandon();
                bail!(
                    "non-finite training loss at epoch {epoch}, step {step}; training stopped \
                     (the checkpoint of the last finished epoch, if any, is in {})",
                    checkpoint.display()
                );
            }
            opt.backward_step(&loss)?;
            sum += l * b as f64;
            seen += b;
            pb.inc(1);
            let m = sum / seen as f64;
            pb.set_message(format!("NLL {m:.2} nats ({:.4} bits/dim)", bits_per_dim(m)));
        }
        let seconds = t0.elapsed().as_secs_f64();
        pb.finish_and_clear();
        let test_nll = evaluate_pixelrnn(&model, &x_test, 256)?;
        if !test_nll.is_finite() {
            bail!("non-finite test loss after epoch {epoch}; training stopped");
        }
        let m = PixelRnnEpoch {
            epoch,
            step,
            train_nll: sum / seen.max(1) as f64,
            test_nll,
            test_bits_per_dim: bits_per_dim(test_nll),
            seconds,
        };
        let tmp = checkpoint.with_extension("safetensors.tmp");
        model
            .varmap()
            .save(&tmp)
            .with_context(|| format!("cannot write checkpoint {}", tmp.display()))?;
        std::fs::rename(&tmp, &checkpoint)
            .with_context(|| format!("cannot write {}", checkpoint.display()))?;
        {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&metrics_path)
                .with_context(|| format!("cannot open {}", metrics_path.display()))?;
            writeln!(f, "{}", m.csv_row())?;
        }
        if opts.verbose {
            println!(
                "epoch {epoch:>3}/{}  step {step:>6}  train NLL {:7.2}  test NLL {:7.2} nats ({:.4} bits/dim)  {seconds:6.1} s",
                opts.epochs, m.train_nll, m.test_nll, m.test_bits_per_dim
            );
        }
        metrics.push(m);
    }
    // Loss curves next to metrics.csv.
    crate::report::write_loss_png(&metrics_path)?;
    write_pixelrnn_samples(&model, opts.seed ^ SAMPLE_SEED, &run_dir.join(SAMPLES_FILE))?;
    if opts.verbose {
        println!(
            "wrote {MODEL_FILE}, {CONFIG_FILE}, {METRICS_FILE}, {} and {SAMPLES_FILE} in {}",
            crate::report::LOSS_FILE,
            run_dir.display()
        );
    }
    Ok(PixelRnnOutcome {
        run_dir,
        config,
        metrics,
    })
}

/// Writes an 8x8 grid of samples drawn by the runtime's incremental sampler
/// from a temporary f32 export of `model` (runtime RNG seeded with `seed`).
///
/// # Errors
/// On export, runtime or I/O errors.
pub fn write_pixelrnn_samples(model: &PixelRnn, seed: u64, path: &Path) -> Result<()> {
    let net = crate::export_pixelrnn::pixelrnn_net(model)?;
    let meta = crate::export_pixelrnn::pixelrnn_meta("temporary export for samples.png".into());
    let bytes = crate::export::export(&net, &meta, crate::export::Quant::F32, &[])?;
    let m = tinygen_runtime::Model::load(&bytes).map_err(|e| anyhow!("{e}"))?;
    let pixels = crate::sample::sample_model(&m, 64, seed)?;
    crate::report::write_grid_png(path, &pixels, 64, 8)
}

/// Loads a PixelRNN run: its configuration and the model with the checkpoint's weights.
///
/// # Errors
/// As [`load_run`], or if the run is not a PixelRNN run.
pub fn load_pixelrnn(dir: &Path) -> Result<(RunConfig, PixelRnn)> {
    let (config, varmap) = load_run(dir)?;
    let ModelConfig::PixelRnn(cfg) = config.model else {
        bail!(
            "{} is a {} run, not a PixelRNN run",
            dir.display(),
            config.model.family()
        );
    };
    let model = PixelRnn::from_varmap(cfg, varmap, &Device::Cpu).with_context(|| {
        format!(
            "checkpoint in {} does not match its config.json",
            dir.display()
        )
    })?;
    Ok((config, model))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_steps_write_a_complete_run() {
        let out = tempfile::tempdir().unwrap();
        let opts = TrainOptions {
            out: out.path().to_path_buf(),
            epochs: 1,
            batch_size: 16,
            limit_train: Some(32),
            max_steps: Some(2),
            lr: 1e-3,
            ..TrainOptions::default()
        };
        let cfg = PixelRnnConfig {
            channels: 4,
            hidden: 3,
            layers: 1,
        };
        let o = train_pixelrnn(&opts, cfg).unwrap();
        assert_eq!(o.metrics.len(), 1);
        assert!(o.metrics[0].test_nll.is_finite() && o.metrics[0].test_nll > 0.0);
        let csv = std::fs::read_to_string(o.run_dir.join(METRICS_FILE)).unwrap();
        assert!(csv.starts_with(METRICS_HEADER));
        assert_eq!(csv.lines().count(), 2);
        assert!(o.run_dir.join(SAMPLES_FILE).is_file());
        let (config, model) = load_pixelrnn(&o.run_dir).unwrap();
        assert_eq!(config.model, ModelConfig::PixelRnn(cfg));
        assert_eq!(model.config(), cfg);
        assert!(crate::train::load_vae(&o.run_dir).is_err());
        assert!(crate::train_pixelcnn::load_pixelcnn(&o.run_dir).is_err());
    }
}
