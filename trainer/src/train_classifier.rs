//! Classifier training runs (`tinygen train classifier`) and the lecture's
//! experiment: do an autoencoder's encoder weights help a classifier that
//! sees few labels? ([`compare_init`], `tinygen train classifier-compare`).
//!
//! ```no_run
//! use tinygen_trainer::train::TrainOptions;
//! use tinygen_trainer::train_classifier::{train_classifier, ClassifierRunConfig};
//! let opts = TrainOptions { epochs: 1, lr: 1e-3, ..TrainOptions::default() };
//! let cfg = ClassifierRunConfig { labels: Some(100), ..ClassifierRunConfig::default() };
//! let outcome = train_classifier(&opts, cfg, None)?; // Some(ae_run_dir) to start from an AE
//! println!("test accuracy {}", outcome.metrics.last().unwrap().test_acc);
//! # anyhow::Ok(())
//! ```
//!
//! AdamW's learning rate decays linearly from `--lr` to 0 over the run's
//! steps. `--labels N` keeps a class-balanced subset: in file order, the
//! first N/10 training images of each digit ([`balanced_subset`]; the
//! shipped subset's first 100 images hold a single 8, hence the balancing);
//! the other training images are not used at all.
//!
//! The run directory holds `config.json`, `metrics.csv` (a row after each
//! epoch that ends at least [`EVAL_EVERY`] steps after the previous row, and
//! after the last: training loss and accuracy since the previous row, test
//! loss and accuracy, seconds), `model.safetensors` and, for a run initialized from an
//! autoencoder, `init_from.txt` naming that run.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::models::classifier::{Classifier, ClassifierConfig};
use crate::run::{append_csv, create_csv, load_family, Outcome, Run, Schedule};
use crate::train::{check_options, run_config, ModelConfig, RunConfig, TrainOptions};
use crate::train_ae::{load_ae, load_float_data};

const AUGMENT_STREAM: u64 = 0x4155_474d_454e_5421;

/// Least optimizer steps between two test evaluations (rows of `metrics.csv`).
pub const EVAL_EVERY: usize = 50;

/// Default classifier learning rate.
pub const CLASSIFIER_LR: f64 = 1e-3;
/// Largest shift, in pixels, of the random-translation augmentation.
pub const MAX_SHIFT: i32 = 2;

/// The classifier's part of `config.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassifierRunConfig {
    /// Width of the feature layer.
    pub hidden: usize,
    /// Labelled training images used (a balanced subset, see [`balanced_subset`]), all if `None`.
    pub labels: Option<usize>,
    /// Whether `enc.c1`/`enc.c2` started from an autoencoder (see `init_from.txt`).
    pub init_from_ae: bool,
    /// Random translations by up to [`MAX_SHIFT`] pixels during training.
    pub augment: bool,
}

impl Default for ClassifierRunConfig {
    fn default() -> Self {
        Self {
            hidden: ClassifierConfig::default().hidden,
            labels: None,
            init_from_ae: false,
            augment: true,
        }
    }
}

/// Header of a classifier run's `metrics.csv`.
pub const METRICS_HEADER: &str = "epoch,step,train_loss,train_acc,test_loss,test_acc,seconds";

/// One row of a classifier run's `metrics.csv`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassifierEpoch {
    /// 1-based epoch.
    pub epoch: usize,
    /// Optimizer steps so far.
    pub step: usize,
    /// Mean cross-entropy over the training batches since the previous row, nats.
    pub train_loss: f64,
    /// Accuracy on those (augmented) training batches.
    pub train_acc: f64,
    /// Cross-entropy on the test set, nats.
    pub test_loss: f64,
    /// Accuracy on the test set.
    pub test_acc: f64,
    /// Seconds of those training steps.
    pub seconds: f64,
}

/// Name of the file recording the autoencoder run a classifier started from.
pub const INIT_FROM_FILE: &str = "init_from.txt";

/// Indices of a class-balanced labelled subset of `n` images: in file order,
/// the first `n / 10` images of each digit (the first `n % 10` digits get
/// one more). A digit with too few images contributes all it has.
pub fn balanced_subset(labels: &[u32], n: usize) -> Vec<u32> {
    let quota = |c: u32| n / 10 + usize::from((c as usize) < n % 10);
    let mut count = [0usize; 10];
    let mut keep = Vec::with_capacity(n);
    for (i, &l) in labels.iter().enumerate() {
        let c = l.min(9);
        if count[c as usize] < quota(c) {
            count[c as usize] += 1;
            keep.push(i as u32);
        }
    }
    keep
}

/// Translates each image of `x` (b, 1, 28, 28) by a random whole number of
/// pixels in `-MAX_SHIFT..=MAX_SHIFT` in each direction, filling with 0.
fn random_shift<R: Rng + ?Sized>(x: &Tensor, rng: &mut R) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let src = x.flatten_all()?.to_vec1::<f32>()?;
    let mut dst = vec![0f32; src.len()];
    let plane = h * w;
    for i in 0..b * c {
        let dy = rng.random_range(-MAX_SHIFT..=MAX_SHIFT);
        let dx = rng.random_range(-MAX_SHIFT..=MAX_SHIFT);
        for y in 0..h as i32 {
            let sy = y - dy;
            if sy < 0 || sy >= h as i32 {
                continue;
            }
            for xx in 0..w as i32 {
                let sx = xx - dx;
                if sx < 0 || sx >= w as i32 {
                    continue;
                }
                dst[i * plane + (y as usize) * w + xx as usize] =
                    src[i * plane + (sy as usize) * w + sx as usize];
            }
        }
    }
    Ok(Tensor::from_vec(dst, (b, c, h, w), x.device())?)
}

fn correct(logits: &Tensor, labels: &Tensor) -> Result<usize> {
    let pred = logits.argmax(1)?.to_dtype(DType::U32)?;
    Ok(pred
        .eq(labels)?
        .to_dtype(DType::F32)?
        .sum_all()?
        .to_scalar::<f32>()? as usize)
}

/// Cross-entropy (nats) and accuracy of `model` on `x`, `y`.
///
/// # Errors
/// On candle errors.
pub fn evaluate_classifier(model: &Classifier, x: &Tensor, y: &Tensor) -> Result<(f64, f64)> {
    let n = x.dim(0)?;
    let (mut loss, mut hits) = (0f64, 0usize);
    let mut start = 0;
    while start < n {
        let b = 500.min(n - start);
        let (xb, yb) = (x.narrow(0, start, b)?, y.narrow(0, start, b)?);
        let logits = model.logits(&xb)?;
        loss +=
            f64::from(candle_nn::loss::cross_entropy(&logits, &yb)?.to_scalar::<f32>()?) * b as f64;
        hits += correct(&logits, &yb)?;
        start += b;
    }
    let n = n.max(1) as f64;
    Ok((loss / n, hits as f64 / n))
}

/// Trains the classifier; `init_from` is an autoencoder run whose encoder
/// convolutions start the classifier's (the flag in `cfg` is set from it).
///
/// # Errors
/// Bad options, unreadable data or run, I/O and candle errors, and
/// [`crate::run::NonFiniteTraining`] when a loss turns NaN or infinite.
pub fn train_classifier(
    opts: &TrainOptions,
    mut cfg: ClassifierRunConfig,
    init_from: Option<&Path>,
) -> Result<Outcome<ClassifierEpoch>> {
    check_options(opts)?;
    if cfg.labels == Some(0) {
        bail!("--labels must be at least 1");
    }
    if opts.resume.is_none() {
        cfg.init_from_ae = init_from.is_some();
    }
    let device = Device::Cpu;
    let mut d = load_float_data(opts)?;
    if let Some(n) = cfg.labels {
        let labels: Vec<u32> = d.y_train.to_vec1()?;
        let keep = balanced_subset(&labels, n);
        let idx = Tensor::new(keep.as_slice(), &device)?;
        d.x_train = d.x_train.index_select(&idx, 0)?;
        d.y_train = d.y_train.index_select(&idx, 0)?;
        d.n_train = keep.len();
    }
    let model_cfg = ClassifierConfig { hidden: cfg.hidden };
    // A resumed run's weights come from its resume file.
    let model = match init_from.filter(|_| opts.resume.is_none()) {
        Some(dir) => {
            let (_, ae) = load_ae(dir)?;
            Classifier::from_encoder(model_cfg, ae.varmap(), opts.seed, &device)?
        }
        None => Classifier::new(model_cfg, opts.seed, &device)?,
    };
    let config = RunConfig {
        lr_decay: true,
        ..run_config(
            ModelConfig::Classifier(cfg),
            opts,
            d.n_train,
            d.n_test,
            "grayscale in [0, 1] (pixel / 255)",
        )
    };
    let mut run = Run::create(opts, &config, METRICS_HEADER, model.varmap())?;
    let mut opt = run.adamw(opts)?;
    if let (Some(dir), None) = (init_from, &opts.resume) {
        std::fs::write(
            run.dir().join(INIT_FROM_FILE),
            format!("{}\n", dir.display()),
        )?;
    }
    run.announce(format_args!(
        "training classifier ({} init) on {} labelled images, testing on {}",
        init_from.map_or("random".to_string(), |p| format!(
            "autoencoder {}",
            p.display()
        )),
        d.n_train,
        d.n_test
    ));
    let augment = run.stream("augment", opts.seed ^ AUGMENT_STREAM)?;
    let batch_size = opts.batch_size.min(d.n_train);
    // The learning rate decays linearly to 0 over the run's steps.
    let mut schedule = run.schedule(
        Schedule::new(opts, d.n_train, batch_size, d.n_train.div_ceil(batch_size))
            .with_linear_decay(opts.lr),
    )?;
    let total_steps = schedule.total_steps();
    let mut metrics = Vec::new();
    // Training statistics since the last evaluation (which may be epochs
    // ago), and its step: what an interruption saves.
    let (mut sum_loss, mut hits, mut seen, mut seconds) = (0f64, 0f64, 0f64, 0f64);
    let mut last_eval_step = schedule.step;
    while let Some(ep) = schedule.next_epoch() {
        let epoch = ep.epoch;
        if let [l, h, n, e] = ep.carried[..] {
            (sum_loss, hits, seen, last_eval_step) = (l, h, n, e as usize);
            seconds = ep.carried_seconds;
        }
        let pb = run.progress_bar(ep.steps, epoch);
        pb.set_position(ep.done as u64);
        let t0 = Instant::now();
        for batch in ep.batches() {
            run.check_interrupt(
                &schedule,
                &[&opt],
                &pb,
                &[sum_loss, hits, seen, last_eval_step as f64],
                seconds + t0.elapsed().as_secs_f64(),
            )?;
            if let Some(lr) = schedule.decayed_lr() {
                opt.set_learning_rate(lr);
            }
            let step = schedule.advance();
            let b = batch.len();
            let idx = Tensor::from_slice(batch, b, &device)?;
            let mut x = d.x_train.index_select(&idx, 0)?;
            let y = d.y_train.index_select(&idx, 0)?;
            if cfg.augment {
                x = random_shift(&x, &mut *augment.borrow_mut())?;
            }
            if opts.poison_step == Some(step) {
                x = x.affine(f64::NAN, 0.0)?;
            }
            let logits = model.logits(&x)?;
            let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
            let v = f64::from(loss.to_scalar::<f32>()?);
            run.check_finite(Some(&pb), epoch, Some(step), &[("cross_entropy", v)])?;
            opt.backward_step(&loss)?;
            sum_loss += v * b as f64;
            hits += correct(&logits, &y)? as f64;
            seen += b as f64;
            pb.inc(1);
            pb.set_message(format!(
                "loss {:.4}  acc {:.3}",
                sum_loss / seen,
                hits / seen
            ));
        }
        seconds += t0.elapsed().as_secs_f64();
        pb.finish_and_clear();
        // Evaluate after an epoch at most every EVAL_EVERY steps (few labels make
        // one-step epochs), and always at the end.
        let step = schedule.step;
        let last = epoch == opts.epochs || step >= total_steps;
        if !last && step - last_eval_step < EVAL_EVERY {
            continue;
        }
        last_eval_step = step;
        let (test_loss, test_acc) = evaluate_classifier(&model, &d.x_test, &d.y_test)?;
        run.check_finite(None, epoch, None, &[("cross_entropy", test_loss)])?;
        let m = ClassifierEpoch {
            epoch,
            step,
            train_loss: sum_loss / seen.max(1.0),
            train_acc: hits / seen.max(1.0),
            test_loss,
            test_acc,
            seconds,
        };
        (sum_loss, hits, seen, seconds) = (0.0, 0.0, 0.0, 0.0);
        let row = format!(
            "{},{},{:.5},{:.4},{:.5},{:.4},{:.3}",
            m.epoch, m.step, m.train_loss, m.train_acc, m.test_loss, m.test_acc, m.seconds
        );
        run.save_epoch(&schedule, &[&opt], epoch, &row)?;
        run.epoch_line(
            epoch,
            format_args!(
                "step {step:>6}  train loss {:.4} acc {:.4}  test loss {:.4} acc {:.4}  {:6.1} s",
                m.train_loss, m.train_acc, m.test_loss, m.test_acc, m.seconds
            ),
        );
        metrics.push(m);
    }
    run.finish(config, metrics, false)
}

/// Loads a classifier run.
///
/// # Errors
/// As [`crate::train::load_run`], or if the run is not a classifier run.
pub fn load_classifier(dir: &Path) -> Result<(RunConfig, Classifier)> {
    load_family(
        dir,
        "a classifier",
        |m| match m {
            ModelConfig::Classifier(c) => Some(*c),
            _ => None,
        },
        |c, varmap| {
            Classifier::from_varmap(ClassifierConfig { hidden: c.hidden }, varmap, &Device::Cpu)
        },
    )
}

/// One line of [`compare_init`]'s table.
#[derive(Debug, Clone, PartialEq)]
pub struct CompareRow {
    /// Labelled training images.
    pub labels: usize,
    /// Final test accuracy starting from the autoencoder's encoder.
    pub ae_init_acc: f64,
    /// Final test accuracy from random initialization (same seed, steps, data).
    pub random_init_acc: f64,
    /// The two run directories (autoencoder init, random init).
    pub runs: (PathBuf, PathBuf),
}

/// The lecture's claim, measured: for each N in `labels`, trains one
/// classifier from the autoencoder run `ae_run`'s encoder and one from random
/// weights, each for `steps` optimizer steps on the first N labelled images
/// (same seed, batches and augmentation), and returns their final test
/// accuracies. Also writes `<opts.out>/compare.csv`.
///
/// # Errors
/// As [`train_classifier`].
pub fn compare_init(
    opts: &TrainOptions,
    cfg: ClassifierRunConfig,
    ae_run: &Path,
    labels: &[usize],
    steps: usize,
) -> Result<Vec<CompareRow>> {
    let mut rows = Vec::new();
    let opts = TrainOptions {
        epochs: usize::MAX,
        max_steps: Some(steps),
        verbose: false,
        ..opts.clone()
    };
    std::fs::create_dir_all(&opts.out)?;
    let csv = opts.out.join("compare.csv");
    create_csv(&csv, "labels,steps,ae_init_test_acc,random_init_test_acc")?;
    for &n in labels {
        let c = ClassifierRunConfig {
            labels: Some(n),
            ..cfg
        };
        let ae = train_classifier(&opts, c, Some(ae_run))?;
        let rnd = train_classifier(&opts, c, None)?;
        let acc = |o: &Outcome<ClassifierEpoch>| o.metrics.last().map_or(0.0, |m| m.test_acc);
        let row = CompareRow {
            labels: n,
            ae_init_acc: acc(&ae),
            random_init_acc: acc(&rnd),
            runs: (ae.run_dir, rnd.run_dir),
        };
        append_csv(
            &csv,
            &format!(
                "{n},{steps},{:.4},{:.4}",
                row.ae_init_acc, row.random_init_acc
            ),
        )?;
        rows.push(row);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::ae::AeConfig;

    #[test]
    fn balanced_subsets() {
        let labels: Vec<u32> = (0..100).map(|i| (i * 7 % 10) as u32).collect();
        let keep = balanced_subset(&labels, 25);
        assert_eq!(keep.len(), 25);
        let mut count = [0; 10];
        for &i in &keep {
            count[labels[i as usize] as usize] += 1;
        }
        assert_eq!(count, [3, 3, 3, 3, 3, 2, 2, 2, 2, 2]);
        assert!(keep.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(balanced_subset(&[0, 0, 1], 10), vec![0, 2]);
    }

    #[test]
    fn shift_moves_pixels_and_keeps_shape() {
        let mut v = vec![0f32; 2 * 784];
        v[14 * 28 + 14] = 1.0;
        v[784 + 3] = 1.0;
        let x = Tensor::from_vec(v, (2, 1, 28, 28), &Device::Cpu).unwrap();
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
        let y = random_shift(&x, &mut rng).unwrap();
        assert_eq!(y.dims(), &[2, 1, 28, 28]);
        let y = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        // The centre pixel moved by at most MAX_SHIFT and was not lost.
        let at = y[..784].iter().position(|&p| p == 1.0).unwrap();
        let (r, c) = ((at / 28) as i32, (at % 28) as i32);
        assert!((r - 14).abs() <= MAX_SHIFT && (c - 14).abs() <= MAX_SHIFT);
        assert!(y.iter().sum::<f32>() <= 2.0);
    }

    #[test]
    fn two_steps_from_random_and_from_an_autoencoder() {
        let out = tempfile::tempdir().unwrap();
        let opts = TrainOptions {
            out: out.path().to_path_buf(),
            epochs: 1,
            batch_size: 128,
            lr: CLASSIFIER_LR,
            limit_train: Some(256),
            max_steps: Some(2),
            seed: 2,
            ..TrainOptions::default()
        };
        let ae = crate::train_ae::train_ae(&opts, AeConfig::default()).unwrap();
        // 50 labels: one batch per epoch, so two epochs make the two steps.
        let opts = TrainOptions { epochs: 2, ..opts };
        let cfg = ClassifierRunConfig {
            labels: Some(50),
            ..ClassifierRunConfig::default()
        };
        let from_ae = train_classifier(&opts, cfg, Some(&ae.run_dir)).unwrap();
        let m = from_ae.metrics.last().unwrap();
        assert_eq!(m.step, 2);
        assert!((0.0..=1.0).contains(&m.test_acc) && m.test_loss.is_finite());
        assert_eq!(from_ae.config.n_train, 50);
        assert!(from_ae.run_dir.join(INIT_FROM_FILE).is_file());
        let (config, _) = load_classifier(&from_ae.run_dir).unwrap();
        let ModelConfig::Classifier(c) = config.model else {
            panic!("not a classifier config")
        };
        assert!(c.init_from_ae);
        // Starting from a VAE/GAN/classifier run is refused.
        assert!(train_classifier(&opts, cfg, Some(&from_ae.run_dir)).is_err());

        let rows = compare_init(&opts, cfg, &ae.run_dir, &[50], 1).unwrap();
        assert_eq!(rows.len(), 1);
        assert!(out.path().join("compare.csv").is_file());
    }
}
