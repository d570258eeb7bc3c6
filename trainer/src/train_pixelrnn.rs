//! PixelRNN training runs (`tinygen train pixelrnn`): the model specifics;
//! the loop, the run directory (the PixelCNN columns in `metrics.csv`) and
//! the export path are shared with PixelCNN in [`crate::autoregressive`].
//!
//! ```no_run
//! use tinygen_trainer::models::pixelrnn::PixelRnnConfig;
//! use tinygen_trainer::train::TrainOptions;
//! use tinygen_trainer::train_pixelrnn::{load_pixelrnn, train_pixelrnn};
//! let opts = TrainOptions { epochs: 1, limit_train: Some(256), ..TrainOptions::default() };
//! let outcome = train_pixelrnn(&opts, PixelRnnConfig::default(), false)?;
//! let (config, model) = load_pixelrnn(&outcome.run_dir)?; // what the exporter does
//! # anyhow::Ok(())
//! ```
//!
//! The learning rate stays at `--lr` for the whole run unless `decay_lr`
//! (`--lr-decay`) makes it decay linearly to 0, as PixelCNN's always does.

use std::path::Path;

use anyhow::Result;
use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use tinygen_runtime::format::ModelKind;

use crate::autoregressive::{self, Autoregressive};
use crate::export::FloatNet;
use crate::models::pixelrnn::{PixelRnn, PixelRnnConfig};
use crate::run::Outcome;
use crate::train::{ModelConfig, RunConfig, TrainOptions};

pub use crate::autoregressive::{
    bits_per_dim, evaluate_nll as evaluate_pixelrnn, write_samples as write_pixelrnn_samples,
    METRICS_HEADER,
};

/// Seed of the runtime sampler that draws `samples.png` (xor the run's seed).
pub const SAMPLE_SEED: u64 = 0x5049_5852_4e4e_2121;

/// One row of a PixelRNN run's `metrics.csv` (the PixelCNN columns).
pub type PixelRnnEpoch = autoregressive::NllEpoch;

/// A finished PixelRNN run.
pub type PixelRnnOutcome = Outcome<PixelRnnEpoch>;

impl Autoregressive for PixelRnn {
    type Config = PixelRnnConfig;
    const NAME: &'static str = "PixelRNN";
    const KIND: ModelKind = ModelKind::PixelRnn;
    const SAMPLE_SEED: u64 = SAMPLE_SEED;

    fn new(cfg: PixelRnnConfig, seed: u64, device: &Device) -> candle_core::Result<Self> {
        PixelRnn::new(cfg, seed, device)
    }
    fn from_varmap(
        cfg: PixelRnnConfig,
        varmap: VarMap,
        device: &Device,
    ) -> candle_core::Result<Self> {
        PixelRnn::from_varmap(cfg, varmap, device)
    }
    fn model_config(cfg: PixelRnnConfig) -> ModelConfig {
        ModelConfig::PixelRnn(cfg)
    }
    fn pick(config: &ModelConfig) -> Option<PixelRnnConfig> {
        match config {
            ModelConfig::PixelRnn(cfg) => Some(*cfg),
            _ => None,
        }
    }
    fn describe(cfg: &PixelRnnConfig) -> String {
        format!(
            "PixelRNN (7x7 mask A to {} channels, {} Row LSTM layers of {} hidden)",
            cfg.channels, cfg.layers, cfg.hidden
        )
    }
    fn nll(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        PixelRnn::nll(self, x)
    }
    fn varmap(&self) -> &VarMap {
        PixelRnn::varmap(self)
    }
    fn net(&self) -> Result<FloatNet> {
        crate::export_pixelrnn::pixelrnn_net(self)
    }
}

/// Trains a PixelRNN (Row LSTM) on binarized MNIST; with `decay_lr` the
/// learning rate decays linearly from `opts.lr` to 0, else it stays.
///
/// # Errors
/// As [`autoregressive::train`].
pub fn train_pixelrnn(
    opts: &TrainOptions,
    cfg: PixelRnnConfig,
    decay_lr: bool,
) -> Result<PixelRnnOutcome> {
    autoregressive::train::<PixelRnn>(opts, cfg, decay_lr)
}

/// Loads a PixelRNN run: its configuration and the model with the checkpoint's weights.
///
/// # Errors
/// As [`crate::train::load_run`], or if the run is not a PixelRNN run.
pub fn load_pixelrnn(dir: &Path) -> Result<(RunConfig, PixelRnn)> {
    autoregressive::load(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autoregressive::tests::{check_run, tiny_opts};

    #[test]
    fn two_steps_write_a_complete_run() {
        let out = tempfile::tempdir().unwrap();
        let cfg = PixelRnnConfig {
            channels: 4,
            hidden: 3,
            layers: 1,
        };
        let o = train_pixelrnn(&tiny_opts(out.path()), cfg, false).unwrap();
        check_run(&o);
        let (config, model) = load_pixelrnn(&o.run_dir).unwrap();
        assert_eq!(config.model, ModelConfig::PixelRnn(cfg));
        assert_eq!(model.config(), cfg);
        assert!(crate::train_pixelcnn::load_pixelcnn(&o.run_dir).is_err());
    }
}
