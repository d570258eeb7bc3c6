//! The training-run harness every family shares: the run directory, its
//! `config.json` and `metrics.csv`, checkpoints, the non-finite-loss guard,
//! progress bars, the per-epoch terminal line and the closing `loss.png`.
//!
//! ```no_run
//! # use tinygen_trainer::train::{RunConfig, TrainOptions};
//! # fn f(opts: &TrainOptions, config: RunConfig, model: &tinygen_trainer::models::vae::Vae,
//! #      x: &candle_core::Tensor) -> anyhow::Result<()> {
//! use candle_nn::Optimizer;
//! use tinygen_trainer::run::{Run, Schedule};
//! let mut run = Run::create(opts, &config, "epoch,step,loss,seconds")?;
//! run.announce("training a model");
//! let n = config.n_train;
//! let mut schedule = Schedule::new(opts, n, opts.batch_size, n.div_ceil(opts.batch_size));
//! let mut opt = candle_nn::SGD::new(model.varmap().all_vars(), opts.lr)?;
//! let mut train_step = |batch: &[u32], _step: usize| {
//!     let idx = candle_core::Tensor::new(batch, x.device())?;
//!     let loss = x.index_select(&idx, 0)?.sqr()?.mean_all()?; // the family's loss
//!     let l = f64::from(loss.to_scalar::<f32>()?);
//!     Ok((loss, vec![("loss", l)]))
//! };
//! let message = |m: &[f64]| format!("loss {:.3}", m[0]);
//! while let Some(t) = run.train_epoch(&mut schedule, &mut opt, &mut train_step, message)? {
//!     let row = format!("{},{},{:.4},{:.3}", t.epoch, schedule.step, t.means[0], t.seconds);
//!     run.save_epoch(model.varmap(), t.epoch, &row)?;
//! }
//! let outcome = run.finish(config, Vec::<()>::new(), false)?;
//! # Ok(()) }
//! ```
//!
//! [`Schedule`] owns the shuffled order of the training images (one seeded
//! stream per run, reshuffled each epoch), the step count and the
//! `--max-steps` cap. [`load_family`] is the loading half: `config.json` and
//! the checkpoint of a run of one family.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarMap};
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::report::LOSS_FILE;
use crate::train::{
    create_run_dir, load_run, write_config, ModelConfig, RunConfig, TrainOptions, CONFIG_FILE,
    METRICS_FILE, MODEL_FILE, SAMPLES_FILE,
};

/// Seed stream (xor the run's seed) of the training-image order.
pub(crate) const SHUFFLE_STREAM: u64 = 0x5348_5546_464c_4531;

/// A finished run of any family.
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
        let (family, epoch) = (self.family, self.epoch);
        match self.step {
            Some(step) => write!(
                f,
                "{family}: non-finite training loss at epoch {epoch}, step {step}"
            )?,
            None => write!(f, "{family}: non-finite test loss after epoch {epoch}")?,
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

/// One training run being written: its directory, `metrics.csv`, checkpoint
/// and the last epoch whose checkpoint was saved.
#[derive(Debug)]
pub struct Run {
    dir: PathBuf,
    metrics_path: PathBuf,
    checkpoint: PathBuf,
    family: &'static str,
    verbose: bool,
    epochs: usize,
    last_good_epoch: Option<usize>,
}

impl Run {
    /// Creates the run directory for `config`, writes `config.json` and a
    /// `metrics.csv` holding only `header`.
    ///
    /// # Errors
    /// If a directory or file cannot be written.
    pub fn create(opts: &TrainOptions, config: &RunConfig, header: &str) -> Result<Self> {
        let family = config.model.family();
        let dir = create_run_dir(&opts.out, family, opts.seed)?;
        write_config(&dir, config)?;
        let metrics_path = dir.join(METRICS_FILE);
        create_csv(&metrics_path, header)?;
        Ok(Self {
            checkpoint: dir.join(MODEL_FILE),
            dir,
            metrics_path,
            family,
            verbose: opts.verbose,
            epochs: opts.epochs,
            last_good_epoch: None,
        })
    }

    /// The run directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The checkpoint's path (it exists once an epoch was saved).
    pub fn checkpoint(&self) -> &Path {
        &self.checkpoint
    }

    /// The last epoch whose checkpoint was saved.
    pub fn last_good_epoch(&self) -> Option<usize> {
        self.last_good_epoch
    }

    /// In verbose runs, prints the run directory and `what` is trained.
    pub fn announce(&self, what: impl fmt::Display) {
        if self.verbose {
            println!("run directory: {}\n{what}", self.dir.display());
        }
    }

    /// The progress bar of `epoch` (hidden unless verbose).
    pub fn progress_bar(&self, steps: usize, epoch: usize) -> ProgressBar {
        if !self.verbose {
            return ProgressBar::hidden();
        }
        let pb = ProgressBar::new(steps as u64);
        if let Ok(style) = ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} {msg} [{elapsed_precise}<{eta_precise}]",
        ) {
            pb.set_style(style.progress_chars("=> "));
        }
        pb.set_prefix(format!("epoch {epoch}/{}", self.epochs));
        pb
    }

    /// The non-finite-loss guard: `Ok` when every loss is finite, else
    /// abandons `pb` and returns [`NonFiniteTraining`] (`step` is `None` for
    /// a test evaluation).
    ///
    /// # Errors
    /// [`NonFiniteTraining`] when a loss is NaN or infinite.
    pub fn check_finite(
        &self,
        pb: Option<&ProgressBar>,
        epoch: usize,
        step: Option<usize>,
        losses: &[(&'static str, f64)],
    ) -> Result<()> {
        if losses.iter().all(|(_, v)| v.is_finite()) {
            return Ok(());
        }
        if let Some(pb) = pb {
            pb.abandon();
        }
        Err(NonFiniteTraining {
            family: self.family,
            epoch,
            step,
            losses: losses.to_vec(),
            last_good_epoch: self.last_good_epoch,
            checkpoint: self.checkpoint.clone(),
        }
        .into())
    }

    /// The training steps of the schedule's next epoch, or `None` after the
    /// last. For each batch, `step` gets the image indices and the 1-based
    /// step number and returns the objective and the named losses (per
    /// image; the guard checks them, the epoch averages them); `message`
    /// shows the running means on the progress bar. The learning rate
    /// follows the schedule's decay, if any.
    ///
    /// # Errors
    /// `step`'s errors, [`NonFiniteTraining`], and candle errors.
    pub fn train_epoch<O: Optimizer>(
        &self,
        schedule: &mut Schedule,
        opt: &mut O,
        mut step: impl FnMut(&[u32], usize) -> Result<(Tensor, Vec<(&'static str, f64)>)>,
        message: impl Fn(&[f64]) -> String,
    ) -> Result<Option<TrainedEpoch>> {
        let Some(ep) = schedule.next_epoch() else {
            return Ok(None);
        };
        let pb = self.progress_bar(ep.steps, ep.epoch);
        let t0 = Instant::now();
        let (mut sums, mut seen) = (Vec::new(), 0usize);
        for batch in ep.batches() {
            if let Some(lr) = schedule.decayed_lr() {
                opt.set_learning_rate(lr);
            }
            let n = schedule.advance();
            let (objective, losses) = step(batch, n).inspect_err(|_| pb.abandon())?;
            self.check_finite(Some(&pb), ep.epoch, Some(n), &losses)?;
            opt.backward_step(&objective)?;
            let b = batch.len() as f64;
            sums.resize(losses.len(), 0f64);
            for (sum, (_, v)) in sums.iter_mut().zip(&losses) {
                *sum += v * b;
            }
            seen += batch.len();
            pb.inc(1);
            let means: Vec<f64> = sums.iter().map(|s| s / seen as f64).collect();
            pb.set_message(message(&means));
        }
        let seconds = t0.elapsed().as_secs_f64();
        pb.finish_and_clear();
        let means = sums.iter().map(|s| s / seen.max(1) as f64).collect();
        Ok(Some(TrainedEpoch {
            epoch: ep.epoch,
            means,
            seconds,
        }))
    }

    /// Saves `varmap` as the checkpoint of `epoch` and appends `row` to `metrics.csv`.
    ///
    /// # Errors
    /// If a file cannot be written.
    pub fn save_epoch(&mut self, varmap: &VarMap, epoch: usize, row: &str) -> Result<()> {
        save_varmap(varmap, &self.checkpoint)?;
        self.last_good_epoch = Some(epoch);
        append_csv(&self.metrics_path, row)
    }

    /// In verbose runs, prints `epoch {epoch}/{epochs}  {rest}`.
    pub fn epoch_line(&self, epoch: usize, rest: fmt::Arguments<'_>) {
        if self.verbose {
            println!("epoch {epoch:>3}/{}  {rest}", self.epochs);
        }
    }

    /// Writes `loss.png` from `metrics.csv` and, in verbose runs, lists the
    /// run's files (`samples.png` if `samples`).
    ///
    /// # Errors
    /// If `loss.png` cannot be written.
    pub fn finish<M>(
        self,
        config: RunConfig,
        metrics: Vec<M>,
        samples: bool,
    ) -> Result<Outcome<M>> {
        crate::report::write_loss_png(&self.metrics_path)?;
        if self.verbose {
            let files = if samples {
                format!(
                    "{MODEL_FILE}, {CONFIG_FILE}, {METRICS_FILE}, {LOSS_FILE} and {SAMPLES_FILE}"
                )
            } else {
                format!("{MODEL_FILE}, {CONFIG_FILE}, {METRICS_FILE} and {LOSS_FILE}")
            };
            println!("wrote {files} in {}", self.dir.display());
        }
        Ok(Outcome {
            run_dir: self.dir,
            config,
            metrics,
        })
    }
}

/// What [`Run::train_epoch`] measured.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainedEpoch {
    /// 1-based epoch.
    pub epoch: usize,
    /// Each loss averaged over the epoch's training images, in `step`'s order.
    pub means: Vec<f64>,
    /// Seconds of the training steps.
    pub seconds: f64,
}

/// The order in which a run visits its training images, its epochs and steps.
#[derive(Debug)]
pub struct Schedule {
    order: Vec<u32>,
    rng: StdRng,
    batch_size: usize,
    steps_per_epoch: usize,
    epochs: usize,
    max_steps: usize,
    decay: Option<(f64, usize)>,
    /// Epochs started so far.
    pub epoch: usize,
    /// Optimizer steps taken so far.
    pub step: usize,
}

/// One epoch of a [`Schedule`].
#[derive(Debug)]
pub struct Epoch {
    /// 1-based epoch.
    pub epoch: usize,
    /// Steps to take this epoch.
    pub steps: usize,
    /// The training images' indices in this epoch's order.
    pub order: Vec<u32>,
    batch_size: usize,
}

impl Epoch {
    /// This epoch's batches of indices, `steps` of them.
    pub fn batches(&self) -> impl Iterator<Item = &[u32]> {
        self.order.chunks(self.batch_size).take(self.steps)
    }
}

impl Schedule {
    /// `n_train` images in batches of `batch_size`, `steps_per_epoch` steps
    /// per full epoch, `--epochs` epochs capped by `--max-steps`; the order is
    /// shuffled by a stream of `opts.seed`.
    pub fn new(
        opts: &TrainOptions,
        n_train: usize,
        batch_size: usize,
        steps_per_epoch: usize,
    ) -> Self {
        Self {
            order: (0..n_train as u32).collect(),
            rng: StdRng::seed_from_u64(opts.seed ^ SHUFFLE_STREAM),
            batch_size,
            steps_per_epoch,
            epochs: opts.epochs,
            max_steps: opts.max_steps.unwrap_or(usize::MAX),
            decay: None,
            epoch: 0,
            step: 0,
        }
    }

    /// This schedule with the learning rate decaying linearly from `lr` to 0
    /// over the run's [`Schedule::total_steps`] (see [`Schedule::decayed_lr`]).
    pub fn with_linear_decay(mut self, lr: f64) -> Self {
        self.decay = Some((lr, self.total_steps()));
        self
    }

    /// The learning rate of the next step, if it decays.
    pub fn decayed_lr(&self) -> Option<f64> {
        self.decay
            .map(|(lr, total)| lr * (1.0 - self.step as f64 / total as f64))
    }

    /// Reshuffles and returns the next epoch, or `None` after the last
    /// epoch or once `--max-steps` is reached.
    pub fn next_epoch(&mut self) -> Option<Epoch> {
        if self.epoch >= self.epochs || self.step >= self.max_steps {
            return None;
        }
        self.epoch += 1;
        self.order.shuffle(&mut self.rng);
        Some(Epoch {
            epoch: self.epoch,
            steps: self.steps_per_epoch.min(self.max_steps - self.step),
            order: self.order.clone(),
            batch_size: self.batch_size,
        })
    }

    /// Counts one step and returns its 1-based number.
    pub fn advance(&mut self) -> usize {
        self.step += 1;
        self.step
    }

    /// Steps of the whole run (at least 1).
    pub fn total_steps(&self) -> usize {
        self.max_steps
            .min(self.steps_per_epoch.saturating_mul(self.epochs))
            .max(1)
    }
}

/// Loads a run of one family: `pick` takes that family's configuration out of
/// `config.json` (`None` for another family, named `a_family` in the error,
/// such as "a VAE"), and `build` the model from it and the checkpoint.
///
/// # Errors
/// As [`load_run`], if the run is of another family, or if the checkpoint
/// does not fit the configuration.
pub fn load_family<C, M>(
    dir: &Path,
    a_family: &str,
    pick: impl FnOnce(&ModelConfig) -> Option<C>,
    build: impl FnOnce(C, VarMap) -> candle_core::Result<M>,
) -> Result<(RunConfig, M)> {
    let (config, varmap) = load_run(dir)?;
    let Some(cfg) = pick(&config.model) else {
        bail!(
            "{} is a {} run, not {a_family} run",
            dir.display(),
            config.model.family()
        );
    };
    let model = build(cfg, varmap).with_context(|| {
        format!(
            "checkpoint in {} does not match its config.json",
            dir.display()
        )
    })?;
    Ok((config, model))
}

/// AdamW over `vars` with the run's learning rate and weight decay.
///
/// # Errors
/// On candle errors.
pub(crate) fn adamw(vars: Vec<Var>, opts: &TrainOptions) -> Result<AdamW> {
    Ok(AdamW::new(
        vars,
        ParamsAdamW {
            lr: opts.lr,
            weight_decay: opts.weight_decay,
            ..ParamsAdamW::default()
        },
    )?)
}

/// The images of `batch` (indices into `x`), replaced by NaNs at
/// `--poison-step` (the test hook of [`TrainOptions::poison_step`]).
///
/// # Errors
/// On candle errors.
pub(crate) fn batch_images(
    x: &Tensor,
    batch: &[u32],
    step: usize,
    opts: &TrainOptions,
) -> Result<Tensor> {
    let idx = Tensor::from_slice(batch, batch.len(), x.device())?;
    let x = x.index_select(&idx, 0)?;
    Ok(if opts.poison_step == Some(step) {
        x.affine(f64::NAN, 0.0)?
    } else {
        x
    })
}

/// Saves `varmap` to `path` through a temporary file and a rename, so that
/// `path` always holds a complete checkpoint.
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
