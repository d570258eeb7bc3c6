//! PixelCNN training runs (`tinygen train pixelcnn`): the model specifics;
//! the loop, the run directory and the export path are shared with PixelRNN
//! in [`crate::autoregressive`].
//!
//! ```no_run
//! use tinygen_trainer::models::pixelcnn::PixelCnnConfig;
//! use tinygen_trainer::train::TrainOptions;
//! use tinygen_trainer::train_pixelcnn::{load_pixelcnn, train_pixelcnn};
//! let opts = TrainOptions { epochs: 1, limit_train: Some(256), ..TrainOptions::default() };
//! let outcome = train_pixelcnn(&opts, PixelCnnConfig::default())?;
//! let (config, model) = load_pixelcnn(&outcome.run_dir)?; // what the exporter does
//! # anyhow::Ok(())
//! ```
//!
//! The run directory is laid out as for every family (see [`crate::train`]
//! and [`crate::autoregressive`]). The learning rate decays linearly from
//! `--lr` to 0 over the run, as for the classifier.

use std::path::Path;

use anyhow::Result;
use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use tinygen_runtime::format::ModelKind;

use crate::autoregressive::{self, Autoregressive};
use crate::export::FloatNet;
use crate::models::pixelcnn::{PixelCnn, PixelCnnConfig};
use crate::run::Outcome;
use crate::train::{ModelConfig, RunConfig, TrainOptions};

pub use crate::autoregressive::{
    bits_per_dim, evaluate_nll as evaluate_pixelcnn, write_samples as write_pixelcnn_samples,
    METRICS_HEADER,
};

/// Seed of the runtime sampler that draws `samples.png` (xor the run's seed).
pub const SAMPLE_SEED: u64 = 0x5049_5843_4e4e_2121;

/// One row of a PixelCNN run's `metrics.csv`.
pub type PixelCnnEpoch = autoregressive::NllEpoch;

/// A finished PixelCNN run.
pub type PixelCnnOutcome = Outcome<PixelCnnEpoch>;

impl Autoregressive for PixelCnn {
    type Config = PixelCnnConfig;
    const NAME: &'static str = "PixelCNN";
    const KIND: ModelKind = ModelKind::PixelCnn;
    const SAMPLE_SEED: u64 = SAMPLE_SEED;

    fn new(cfg: PixelCnnConfig, seed: u64, device: &Device) -> candle_core::Result<Self> {
        PixelCnn::new(cfg, seed, device)
    }
    fn from_varmap(
        cfg: PixelCnnConfig,
        varmap: VarMap,
        device: &Device,
    ) -> candle_core::Result<Self> {
        PixelCnn::from_varmap(cfg, varmap, device)
    }
    fn model_config(cfg: PixelCnnConfig) -> ModelConfig {
        ModelConfig::PixelCnn(cfg)
    }
    fn pick(config: &ModelConfig) -> Option<PixelCnnConfig> {
        match config {
            ModelConfig::PixelCnn(cfg) => Some(*cfg),
            _ => None,
        }
    }
    fn describe(cfg: &PixelCnnConfig) -> String {
        cfg.describe()
    }
    fn nll(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        PixelCnn::nll(self, x)
    }
    fn varmap(&self) -> &VarMap {
        PixelCnn::varmap(self)
    }
    fn net(&self) -> Result<FloatNet> {
        crate::export_pixelcnn::pixelcnn_net(self)
    }
}

/// Trains a PixelCNN on binarized MNIST.
///
/// # Errors
/// As [`autoregressive::train`].
pub fn train_pixelcnn(opts: &TrainOptions, cfg: PixelCnnConfig) -> Result<PixelCnnOutcome> {
    autoregressive::train::<PixelCnn>(opts, cfg, true)
}

/// Loads a PixelCNN run: its configuration and the model with the checkpoint's weights.
///
/// # Errors
/// As [`crate::train::load_run`], or if the run is not a PixelCNN run.
pub fn load_pixelcnn(dir: &Path) -> Result<(RunConfig, PixelCnn)> {
    autoregressive::load(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autoregressive::tests::{check_run, tiny_opts};

    #[test]
    fn two_steps_write_a_complete_run() {
        let out = tempfile::tempdir().unwrap();
        let cfg = PixelCnnConfig {
            channels: 4,
            layers: 1,
            ..PixelCnnConfig::default()
        };
        let o = train_pixelcnn(&tiny_opts(out.path()), cfg).unwrap();
        check_run(&o);
        let (config, model) = load_pixelcnn(&o.run_dir).unwrap();
        assert_eq!(config.model, ModelConfig::PixelCnn(cfg));
        assert_eq!(model.config(), cfg);
    }

    #[test]
    fn two_steps_of_two_stacks_write_a_complete_run() {
        use crate::models::pixelcnn::PixelCnnArch;
        let out = tempfile::tempdir().unwrap();
        let cfg = PixelCnnConfig {
            channels: 4,
            layers: 2,
            arch: PixelCnnArch::Stacks,
            kernel: 5,
        };
        let o = train_pixelcnn(&tiny_opts(out.path()), cfg).unwrap();
        check_run(&o);
        let (config, model) = load_pixelcnn(&o.run_dir).unwrap();
        assert_eq!(config.model, ModelConfig::PixelCnn(cfg));
        assert_eq!(model.config(), cfg);

        // config.json names the architecture; without `arch` and `kernel`
        // (a run from before they existed) it is a plain 3x3 PixelCNN.
        let path = o.run_dir.join(crate::train::CONFIG_FILE);
        let mut json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(json["arch"], "stacks");
        assert_eq!(json["kernel"], 5);
        let fields = json.as_object_mut().unwrap();
        fields.remove("arch");
        fields.remove("kernel");
        let old: RunConfig = serde_json::from_value(json).unwrap();
        assert_eq!(
            old.model,
            ModelConfig::PixelCnn(PixelCnnConfig {
                arch: PixelCnnArch::Plain,
                kernel: 3,
                ..cfg
            })
        );
        assert_eq!(
            RunConfig {
                model: config.model,
                ..old
            },
            config
        );
    }
}
