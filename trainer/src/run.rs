//! The training-run harness every family shares: the run directory, its
//! `config.json` and `metrics.csv`, checkpoints and resume files, the
//! non-finite-loss guard, progress bars, the per-epoch terminal line and the
//! closing `loss.png`.
//!
//! ```no_run
//! # use tinygen_trainer::train::{RunConfig, TrainOptions};
//! # fn f(opts: &TrainOptions, config: RunConfig, model: &tinygen_trainer::models::vae::Vae,
//! #      x: &candle_core::Tensor) -> anyhow::Result<()> {
//! use tinygen_trainer::run::{Run, Schedule};
//! // A new run directory, or with `opts.resume` the interrupted run, whose
//! // weights the model's variables get back.
//! let mut run = Run::create(opts, &config, "epoch,step,loss,seconds", model.varmap())?;
//! let mut opt = run.adamw(opts)?; // moments restored on resume
//! run.announce("training a model");
//! let n = config.n_train;
//! let steps = n.div_ceil(opts.batch_size);
//! let mut schedule = run.schedule(Schedule::new(opts, n, opts.batch_size, steps))?;
//! let noise = run.stream("noise", opts.seed ^ 1)?; // position restored on resume
//! let mut train_step = |batch: &[u32], _step: usize| {
//!     let idx = candle_core::Tensor::new(batch, x.device())?;
//!     let eps = tinygen_trainer::models::standard_normal(
//!         &mut *noise.borrow_mut(), (batch.len(), 784), x.device())?;
//!     let loss = (x.index_select(&idx, 0)?.flatten_from(1)? + eps)?.sqr()?.mean_all()?;
//!     let l = f64::from(loss.to_scalar::<f32>()?);
//!     Ok((loss, vec![("loss", l)]))
//! };
//! let message = |m: &[f64]| format!("loss {:.3}", m[0]);
//! // Ctrl-C stops here after a whole step, saving what resuming needs.
//! while let Some(t) = run.train_epoch(&mut schedule, &mut opt, &mut train_step, message)? {
//!     let row = format!("{},{},{:.4},{:.3}", t.epoch, schedule.step, t.means[0], t.seconds);
//!     run.save_epoch(&schedule, &[&opt], t.epoch, &row)?;
//! }
//! let outcome = run.finish(config, Vec::<()>::new(), false)?;
//! # Ok(()) }
//! ```
//!
//! [`Schedule`] owns the shuffled order of the training images (one seeded
//! stream per run, reshuffled each epoch), the step count and the
//! `--max-steps` cap. [`load_family`] is the loading half: `config.json` and
//! the checkpoint of a run of one family.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{Device, Tensor};
use candle_nn::{ParamsAdamW, VarMap};
use indicatif::{ProgressBar, ProgressStyle};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;
use serde::{Deserialize, Serialize};

use crate::optim::AdamW;
use crate::report::LOSS_FILE;
use crate::train::{
    create_run_dir, load_run, read_config, write_config, ModelConfig, RunConfig, TrainOptions,
    CONFIG_FILE, METRICS_FILE, MODEL_FILE, SAMPLES_FILE,
};

/// The resume file of a run that has not finished: weights, optimizer
/// moments and the [`ResumeState`] (in the safetensors metadata), written
/// after every epoch and when the run is interrupted, deleted when it finishes.
pub const RESUME_FILE: &str = "resume.safetensors";

/// Metadata key of the [`ResumeState`] JSON in [`RESUME_FILE`].
const STATE_KEY: &str = "tinygen_resume";
/// Tensor-name prefix of the weights in [`RESUME_FILE`].
const WEIGHTS_PREFIX: &str = "model/";

/// A seeded random stream a training step draws from (noise,
/// augmentation), shared with the [`Run`] so that its position is saved
/// with the run and restored on resume. Same numbers as `StdRng`.
pub type Stream = Rc<RefCell<ChaCha12Rng>>;

/// Seed stream (xor the run's seed) of the training-image order.
pub(crate) const SHUFFLE_STREAM: u64 = 0x5348_5546_464c_4531;

/// A finished run of any family.
#[derive(Debug, Clone)]
pub struct Outcome<M> {
    /// The run directory.
    pub run_dir: PathBuf,
    /// What was written to `config.json`.
    pub config: RunConfig,
    /// One row per epoch trained by this call, as in `metrics.csv` (a
    /// resumed run's earlier rows are only in the file).
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

/// Training stopped on Ctrl-C or SIGTERM after a whole step; the run
/// directory holds its checkpoint and resume state.
#[derive(Debug, Clone, PartialEq)]
pub struct Interrupted {
    /// The run directory (`tinygen train --resume` it).
    pub run_dir: PathBuf,
    /// 1-based epoch in progress.
    pub epoch: usize,
    /// Optimizer steps taken.
    pub step: usize,
    /// Steps of the whole run.
    pub total_steps: usize,
}

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = self.run_dir.display();
        write!(
            f,
            "training interrupted in epoch {} after step {} of {}; the checkpoint and the \
             optimizer state are saved in {dir}. Continue with: tinygen train --resume {dir}",
            self.epoch, self.step, self.total_steps
        )
    }
}

impl std::error::Error for Interrupted {}

/// Whether the run of a [`ResumeState`] was interrupted or is (or was, if
/// its process died) running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Saved after an epoch; the run was going on.
    Running,
    /// Saved by Ctrl-C or SIGTERM.
    Interrupted,
}

/// Where an unfinished run stands, saved in [`RESUME_FILE`]: enough to
/// continue it with the same images, random numbers and optimizer state as
/// if it had not stopped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResumeState {
    /// Interrupted, or saved after an epoch.
    pub status: RunStatus,
    /// Epochs started (the last one may be in progress, see `in_epoch`).
    pub epoch: usize,
    /// Epochs whose row is in `metrics.csv`.
    pub epochs_done: usize,
    /// Optimizer steps taken.
    pub step: usize,
    /// Steps of the whole run.
    pub total_steps: usize,
    /// The epoch in progress when the run was interrupted.
    pub in_epoch: Option<EpochProgress>,
    /// The training images' order of the last epoch started.
    pub order: Vec<u32>,
    /// Position of the shuffling stream (a u128, in decimal).
    pub shuffle_pos: String,
    /// Positions of the named [`Stream`]s.
    pub streams: Vec<(String, String)>,
    /// Steps taken by each named optimizer.
    pub optimizers: Vec<(String, usize)>,
}

/// The part of an epoch done before an interruption.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochProgress {
    /// Steps of the epoch taken.
    pub done: usize,
    /// The epoch's running sums (what the family accumulates; see [`Epoch::carried`]).
    pub sums: Vec<f64>,
    /// Seconds of training in the epoch so far.
    pub seconds: f64,
}

/// The resume state of the run in `dir`, if it has not finished (`None`
/// for a finished run, or one written before resume files existed).
///
/// # Errors
/// If the resume file exists but cannot be read.
pub fn resume_state(dir: &Path) -> Result<Option<ResumeState>> {
    let path = dir.join(RESUME_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(Some(state_of(&bytes, &path)?))
}

fn state_of(bytes: &[u8], path: &Path) -> Result<ResumeState> {
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| anyhow!("{}: not a resume file: {e}", path.display()))?;
    let json = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get(STATE_KEY))
        .ok_or_else(|| anyhow!("{}: no resume state in the file", path.display()))?;
    serde_json::from_str(json)
        .with_context(|| format!("{}: malformed resume state", path.display()))
}

/// What a resumed run restores: its state and the saved tensors.
#[derive(Debug)]
struct Resume {
    state: ResumeState,
    tensors: HashMap<String, Tensor>,
}

/// One training run being written: its directory, `metrics.csv`, checkpoint
/// and the last epoch whose checkpoint was saved.
pub struct Run {
    dir: PathBuf,
    metrics_path: PathBuf,
    checkpoint: PathBuf,
    family: &'static str,
    verbose: bool,
    epochs: usize,
    last_good_epoch: Option<usize>,
    varmap: VarMap,
    streams: Vec<(String, Stream)>,
    resume: Option<Resume>,
    interrupt_after: Option<usize>,
}

impl fmt::Debug for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Run")
            .field("dir", &self.dir)
            .field("family", &self.family)
            .field("last_good_epoch", &self.last_good_epoch)
            .finish_non_exhaustive()
    }
}

impl Run {
    /// Creates the run directory for `config`, writes `config.json` and a
    /// `metrics.csv` holding only `header`; `varmap` is the model's
    /// variables, which checkpoints save.
    ///
    /// With `opts.resume`, continues that run instead: its `config.json`
    /// must equal `config`, `varmap` gets the saved weights, `metrics.csv`
    /// keeps the rows of the epochs saved, and [`Run::optimizer`],
    /// [`Run::stream`] and [`Run::schedule`] restore their state.
    ///
    /// # Errors
    /// If a directory or file cannot be written, or the run to resume
    /// cannot be read or does not match.
    pub fn create(
        opts: &TrainOptions,
        config: &RunConfig,
        header: &str,
        varmap: &VarMap,
    ) -> Result<Self> {
        let family = config.model.family();
        let (dir, resume) = match &opts.resume {
            None => {
                let dir = create_run_dir(&opts.out, family, opts.seed)?;
                write_config(&dir, config)?;
                create_csv(&dir.join(METRICS_FILE), header)?;
                (dir, None)
            }
            Some(dir) => {
                let resume = open_resume(dir, config, varmap)?;
                keep_rows(&dir.join(METRICS_FILE), resume.state.epochs_done)?;
                (dir.clone(), Some(resume))
            }
        };
        Ok(Self {
            checkpoint: dir.join(MODEL_FILE),
            metrics_path: dir.join(METRICS_FILE),
            dir,
            family,
            verbose: opts.verbose,
            epochs: opts.epochs,
            last_good_epoch: resume
                .as_ref()
                .map(|r| r.state.epochs_done)
                .filter(|&e| e > 0),
            varmap: varmap.clone(),
            streams: Vec::new(),
            resume,
            interrupt_after: opts.interrupt_after,
        })
    }

    /// AdamW `name` over the variables whose names `select` accepts; on
    /// resume, with its saved moments and step count.
    ///
    /// # Errors
    /// On candle errors, or if the resume state does not fit.
    pub fn optimizer(
        &self,
        name: &str,
        select: impl Fn(&str) -> bool,
        hyper: ParamsAdamW,
    ) -> Result<AdamW> {
        let mut opt = AdamW::new(name, &self.varmap, select, hyper)?;
        if let Some(r) = &self.resume {
            let Some(&(_, steps)) = r.state.optimizers.iter().find(|(n, _)| n == name) else {
                bail!("the resume state has no optimizer {name}");
            };
            opt.restore(&r.tensors, &optimizer_prefix(name), steps)?;
        }
        Ok(opt)
    }

    /// AdamW over all the model's variables with the run's learning rate
    /// and weight decay (see [`Run::optimizer`]).
    ///
    /// # Errors
    /// As [`Run::optimizer`].
    pub fn adamw(&self, opts: &TrainOptions) -> Result<AdamW> {
        self.optimizer(
            "adamw",
            |_| true,
            ParamsAdamW {
                lr: opts.lr,
                weight_decay: opts.weight_decay,
                ..ParamsAdamW::default()
            },
        )
    }

    /// The random stream `name` seeded with `seed` (the numbers of
    /// `StdRng::seed_from_u64(seed)`); on resume, at its saved position.
    ///
    /// # Errors
    /// If the resume state has no such stream.
    pub fn stream(&mut self, name: &str, seed: u64) -> Result<Stream> {
        let mut rng = ChaCha12Rng::seed_from_u64(seed);
        if let Some(r) = &self.resume {
            let Some((_, pos)) = r.state.streams.iter().find(|(n, _)| n == name) else {
                bail!("the resume state has no random stream {name}");
            };
            rng.set_word_pos(parse_pos(pos)?);
        }
        let stream = Rc::new(RefCell::new(rng));
        self.streams.push((name.to_owned(), stream.clone()));
        Ok(stream)
    }

    /// `schedule`, or on resume the schedule where the run stopped.
    ///
    /// # Errors
    /// If the resume state does not fit the schedule.
    pub fn schedule(&self, mut schedule: Schedule) -> Result<Schedule> {
        if let Some(r) = &self.resume {
            schedule.restore(&r.state)?;
        }
        Ok(schedule)
    }

    /// Whether the run must stop before its next step: a signal arrived
    /// (see [`crate::interrupt`]), or the test hook's step count was reached.
    fn stop_requested(&self, schedule: &Schedule) -> bool {
        crate::interrupt::requested() || self.interrupt_after == Some(schedule.step)
    }

    /// Called before each step of `ep`: if the run must stop, saves the
    /// checkpoint and the resume state (the epoch's running `sums` and
    /// training `seconds` so far included) and returns [`Interrupted`].
    ///
    /// # Errors
    /// [`Interrupted`], or if a file cannot be written.
    pub fn check_interrupt(
        &self,
        schedule: &Schedule,
        optimizers: &[&AdamW],
        pb: &ProgressBar,
        sums: &[f64],
        seconds: f64,
    ) -> Result<()> {
        if !self.stop_requested(schedule) {
            return Ok(());
        }
        pb.abandon();
        let progress = EpochProgress {
            done: schedule.done_in_epoch(),
            sums: sums.to_vec(),
            seconds,
        };
        save_varmap(&self.varmap, &self.checkpoint)?;
        self.save_resume(schedule, optimizers, RunStatus::Interrupted, Some(progress))?;
        Err(Interrupted {
            run_dir: self.dir.clone(),
            epoch: schedule.epoch,
            step: schedule.step,
            total_steps: schedule.total_steps(),
        }
        .into())
    }

    /// Writes [`RESUME_FILE`] (through a temporary file and a rename).
    fn save_resume(
        &self,
        schedule: &Schedule,
        optimizers: &[&AdamW],
        status: RunStatus,
        in_epoch: Option<EpochProgress>,
    ) -> Result<()> {
        let state = ResumeState {
            status,
            epoch: schedule.epoch,
            epochs_done: self.last_good_epoch.unwrap_or(0),
            step: schedule.step,
            total_steps: schedule.total_steps(),
            in_epoch,
            order: schedule.order.clone(),
            shuffle_pos: schedule.rng.get_word_pos().to_string(),
            streams: self
                .streams
                .iter()
                .map(|(n, s)| (n.clone(), s.borrow().get_word_pos().to_string()))
                .collect(),
            optimizers: optimizers
                .iter()
                .map(|o| (o.name().to_owned(), o.steps()))
                .collect(),
        };
        let mut tensors: Vec<(String, Tensor)> = crate::models::sorted_tensors(&self.varmap)?
            .into_iter()
            .map(|(n, t)| (format!("{WEIGHTS_PREFIX}{n}"), t))
            .collect();
        for o in optimizers {
            tensors.extend(o.state_tensors(&optimizer_prefix(o.name())));
        }
        let meta = HashMap::from([(STATE_KEY.to_owned(), serde_json::to_string(&state)?)]);
        let path = self.dir.join(RESUME_FILE);
        let tmp = path.with_extension("safetensors.tmp");
        safetensors::serialize_to_file(tensors, Some(meta), &tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path)
            .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
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
    /// follows the schedule's decay, if any. Before each step it stops the
    /// run if asked to ([`Run::check_interrupt`]).
    ///
    /// # Errors
    /// `step`'s errors, [`NonFiniteTraining`], [`Interrupted`], and candle errors.
    pub fn train_epoch(
        &self,
        schedule: &mut Schedule,
        opt: &mut AdamW,
        mut step: impl FnMut(&[u32], usize) -> Result<(Tensor, Vec<(&'static str, f64)>)>,
        message: impl Fn(&[f64]) -> String,
    ) -> Result<Option<TrainedEpoch>> {
        let Some(ep) = schedule.next_epoch() else {
            return Ok(None);
        };
        let pb = self.progress_bar(ep.steps, ep.epoch);
        pb.set_position(ep.done as u64);
        let t0 = Instant::now();
        // [images seen, then each loss summed over images]
        let mut sums = ep.carried.clone();
        for batch in ep.batches() {
            self.check_interrupt(
                schedule,
                &[opt],
                &pb,
                &sums,
                ep.carried_seconds + t0.elapsed().as_secs_f64(),
            )?;
            if let Some(lr) = schedule.decayed_lr() {
                opt.set_learning_rate(lr);
            }
            let n = schedule.advance();
            let (objective, losses) = step(batch, n).inspect_err(|_| pb.abandon())?;
            self.check_finite(Some(&pb), ep.epoch, Some(n), &losses)?;
            opt.backward_step(&objective)?;
            let b = batch.len() as f64;
            sums.resize(losses.len() + 1, 0f64);
            sums[0] += b;
            for (sum, (_, v)) in sums[1..].iter_mut().zip(&losses) {
                *sum += v * b;
            }
            pb.inc(1);
            pb.set_message(message(&means(&sums)));
        }
        let seconds = ep.carried_seconds + t0.elapsed().as_secs_f64();
        pb.finish_and_clear();
        Ok(Some(TrainedEpoch {
            epoch: ep.epoch,
            means: means(&sums),
            seconds,
        }))
    }

    /// Saves the model's weights as the checkpoint of `epoch`, appends `row`
    /// to `metrics.csv`, and saves the resume state (`optimizers` and the
    /// schedule with it).
    ///
    /// # Errors
    /// If a file cannot be written.
    pub fn save_epoch(
        &mut self,
        schedule: &Schedule,
        optimizers: &[&AdamW],
        epoch: usize,
        row: &str,
    ) -> Result<()> {
        save_varmap(&self.varmap, &self.checkpoint)?;
        self.last_good_epoch = Some(epoch);
        append_csv(&self.metrics_path, row)?;
        self.save_resume(schedule, optimizers, RunStatus::Running, None)
    }

    /// In verbose runs, prints `epoch {epoch}/{epochs}  {rest}`.
    pub fn epoch_line(&self, epoch: usize, rest: fmt::Arguments<'_>) {
        if self.verbose {
            println!("epoch {epoch:>3}/{}  {rest}", self.epochs);
        }
    }

    /// Writes `loss.png` from `metrics.csv`, deletes the resume file (the run
    /// is complete) and, in verbose runs, lists the run's files
    /// (`samples.png` if `samples`).
    ///
    /// # Errors
    /// If `loss.png` cannot be written or the resume file deleted.
    pub fn finish<M>(
        self,
        config: RunConfig,
        metrics: Vec<M>,
        samples: bool,
    ) -> Result<Outcome<M>> {
        crate::report::write_loss_png(&self.metrics_path)?;
        let resume = self.dir.join(RESUME_FILE);
        if resume.exists() {
            std::fs::remove_file(&resume)
                .with_context(|| format!("cannot delete {}", resume.display()))?;
        }
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
    rng: ChaCha12Rng,
    batch_size: usize,
    steps_per_epoch: usize,
    epochs: usize,
    max_steps: usize,
    decay: Option<(f64, usize)>,
    /// Steps of the current epoch before this process (resumed runs).
    resumed: Option<EpochProgress>,
    /// Step count when the current epoch started.
    epoch_start: usize,
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
    /// Steps of this epoch, including those already `done`.
    pub steps: usize,
    /// Steps taken before the run was interrupted and resumed (0 otherwise).
    pub done: usize,
    /// The training images' indices in this epoch's order.
    pub order: Vec<u32>,
    /// The running sums the family saved when the epoch was interrupted
    /// ([`Run::check_interrupt`]'s `sums`), empty otherwise.
    pub carried: Vec<f64>,
    /// Training seconds of the epoch before the interruption.
    pub carried_seconds: f64,
    batch_size: usize,
}

impl Epoch {
    /// This epoch's batches of indices still to train on, `steps - done` of them.
    pub fn batches(&self) -> impl Iterator<Item = &[u32]> {
        self.order
            .chunks(self.batch_size)
            .skip(self.done)
            .take(self.steps - self.done)
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
            rng: ChaCha12Rng::seed_from_u64(opts.seed ^ SHUFFLE_STREAM),
            batch_size,
            steps_per_epoch,
            epochs: opts.epochs,
            max_steps: opts.max_steps.unwrap_or(usize::MAX),
            decay: None,
            resumed: None,
            epoch_start: 0,
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
    /// epoch or once `--max-steps` is reached. After [`Run::schedule`]
    /// restored an interrupted run, first the rest of its epoch.
    pub fn next_epoch(&mut self) -> Option<Epoch> {
        let (done, carried, carried_seconds) = match self.resumed.take() {
            Some(p) => (p.done, p.sums, p.seconds),
            None => {
                if self.epoch >= self.epochs || self.step >= self.max_steps {
                    return None;
                }
                self.epoch += 1;
                self.order.shuffle(&mut self.rng);
                self.epoch_start = self.step;
                (0, Vec::new(), 0.0)
            }
        };
        Some(Epoch {
            epoch: self.epoch,
            steps: self
                .steps_per_epoch
                .min(self.max_steps.saturating_sub(self.epoch_start)),
            done,
            order: self.order.clone(),
            carried,
            carried_seconds,
            batch_size: self.batch_size,
        })
    }

    /// Counts one step and returns its 1-based number.
    pub fn advance(&mut self) -> usize {
        self.step += 1;
        self.step
    }

    /// Steps taken in the current epoch.
    pub fn done_in_epoch(&self) -> usize {
        self.step - self.epoch_start
    }

    /// Steps of the whole run (at least 1).
    pub fn total_steps(&self) -> usize {
        self.max_steps
            .min(self.steps_per_epoch.saturating_mul(self.epochs))
            .max(1)
    }

    /// Puts the schedule where `state` says the run stopped.
    fn restore(&mut self, state: &ResumeState) -> Result<()> {
        if state.order.len() != self.order.len() || state.total_steps != self.total_steps() {
            bail!(
                "the resume state ({} images, {} steps) does not fit the run ({} images, {} steps)",
                state.order.len(),
                state.total_steps,
                self.order.len(),
                self.total_steps()
            );
        }
        self.order.clone_from(&state.order);
        self.rng.set_word_pos(parse_pos(&state.shuffle_pos)?);
        self.epoch = state.epoch;
        self.step = state.step;
        self.epoch_start = state.step - state.in_epoch.as_ref().map_or(0, |p| p.done);
        self.resumed.clone_from(&state.in_epoch);
        Ok(())
    }
}

/// Per-image means of `[images, sum of loss 1, ..]` (see [`Run::train_epoch`]).
fn means(sums: &[f64]) -> Vec<f64> {
    let seen = sums.first().copied().unwrap_or(0.0).max(1.0);
    sums.iter().skip(1).map(|s| s / seen).collect()
}

/// Tensor-name prefix of optimizer `name`'s moments in [`RESUME_FILE`].
fn optimizer_prefix(name: &str) -> String {
    format!("optimizer/{name}/")
}

/// A saved stream position.
fn parse_pos(s: &str) -> Result<u128> {
    s.parse()
        .with_context(|| format!("malformed random stream position {s:?} in the resume state"))
}

/// Opens the run in `dir` to resume it as `config`: checks `config.json`,
/// reads [`RESUME_FILE`] and loads its weights into `varmap`.
fn open_resume(dir: &Path, config: &RunConfig, varmap: &VarMap) -> Result<Resume> {
    let saved = read_config(dir)?;
    if &saved != config {
        bail!(
            "{}: the run's config.json no longer matches what resuming it would train \
             (has the data set changed?)",
            dir.display()
        );
    }
    let path = dir.join(RESUME_FILE);
    if !path.exists() {
        bail!(
            "{} has no {RESUME_FILE}: the run finished (or was trained before runs could be \
             resumed), so there is nothing to resume",
            dir.display()
        );
    }
    let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let state = state_of(&bytes, &path)?;
    let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
        .with_context(|| format!("cannot read the tensors of {}", path.display()))?;
    let vars = varmap
        .data()
        .lock()
        .map_err(|_| anyhow!("the model's variable map lock was poisoned"))?;
    for (name, var) in vars.iter() {
        let key = format!("{WEIGHTS_PREFIX}{name}");
        let Some(t) = tensors.get(&key) else {
            bail!("{}: no weights for {name}", path.display());
        };
        if t.shape() != var.shape() {
            bail!(
                "{}: {name} has shape {:?}, the model {:?}",
                path.display(),
                t.dims(),
                var.dims()
            );
        }
        var.set(t)?;
    }
    drop(vars);
    Ok(Resume { state, tensors })
}

/// Keeps the header and the first `epochs` rows of a `metrics.csv` (rows of
/// an epoch that was written but not saved in the resume state go).
fn keep_rows(path: &Path, epochs: usize) -> Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let kept: Vec<&str> = text.lines().take(epochs + 1).collect();
    std::fs::write(path, kept.join("\n") + "\n")
        .with_context(|| format!("cannot write {}", path.display()))
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
