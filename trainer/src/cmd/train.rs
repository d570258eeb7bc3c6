//! `tinygen train <family>`.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};
use tinygen_trainer::data;
use tinygen_trainer::models::vae::VaeConfig;
use tinygen_trainer::train::{
    train_vae, TrainOptions, DEFAULT_BATCH_SIZE, DEFAULT_EPOCHS, DEFAULT_LR, DEFAULT_WEIGHT_DECAY,
};

/// Which family to train. Each variant flattens [`CommonArgs`] plus its own options.
#[derive(Debug, Subcommand)]
pub enum TrainCommand {
    /// Variational autoencoder: conv encoder q(z|x), Bernoulli deconv decoder p(x|z);
    /// minimizes -ELBO = reconstruction + KL, in nats per image.
    Vae(VaeArgs),
}

/// Options every family takes.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Directory with the MNIST IDX files (train-images-idx3-ubyte[.gz], ...).
    /// Default: data/mnist-subset in the current directory, else the one shipped
    /// with the source tree.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,

    /// Passes over the training set (about 5 s each for the 7,000 shipped
    /// images on 2 cores).
    #[arg(long, default_value_t = DEFAULT_EPOCHS, value_name = "N")]
    pub epochs: usize,

    /// Images per optimizer step.
    #[arg(long, default_value_t = DEFAULT_BATCH_SIZE, value_name = "N")]
    pub batch_size: usize,

    /// AdamW learning rate.
    #[arg(long, default_value_t = DEFAULT_LR, value_name = "LR")]
    pub lr: f64,

    /// AdamW decoupled weight decay.
    #[arg(long, default_value_t = DEFAULT_WEIGHT_DECAY, value_name = "W")]
    pub weight_decay: f64,

    /// Seed of initialization, shuffling and noise: the same seed gives the same run.
    #[arg(long, default_value_t = 0, value_name = "SEED")]
    pub seed: u64,

    /// Parent directory of the run directory (<out>/<family>-s<seed>-<time>/).
    #[arg(long, default_value = "runs", value_name = "DIR")]
    pub out: PathBuf,

    /// Train on the first N training images only (quick tests).
    #[arg(long, value_name = "N")]
    pub limit_train: Option<usize>,

    /// Stop after N optimizer steps in total (the partial epoch is still evaluated and saved).
    #[arg(long, value_name = "N")]
    pub max_steps: Option<usize>,

    /// No progress bars or per-epoch lines (the run directory is still printed).
    #[arg(long, short)]
    pub quiet: bool,
}

impl CommonArgs {
    fn options(&self) -> TrainOptions {
        TrainOptions {
            data_dir: self.data.clone().unwrap_or_else(data::default_data_dir),
            out: self.out.clone(),
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr: self.lr,
            weight_decay: self.weight_decay,
            seed: self.seed,
            limit_train: self.limit_train,
            max_steps: self.max_steps,
            verbose: !self.quiet,
            poison_step: None,
        }
    }
}

/// `tinygen train vae`.
#[derive(Debug, Args)]
pub struct VaeArgs {
    #[command(flatten)]
    pub common: CommonArgs,

    /// Latent dimensions (z ~ N(0, I) of this size feeds the decoder).
    #[arg(long, default_value_t = VaeConfig::default().latent, value_name = "N")]
    pub latent: usize,
}

/// Runs `tinygen train ...`.
pub fn run(command: TrainCommand) -> Result<()> {
    match command {
        TrainCommand::Vae(args) => {
            let opts = args.common.options();
            let outcome = train_vae(
                &opts,
                VaeConfig {
                    latent: args.latent,
                },
            )?;
            if args.common.quiet {
                println!("{}", outcome.run_dir.display());
            }
            Ok(())
        }
    }
}
