//! `tinygen train <family>`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use tinygen_trainer::data;
use tinygen_trainer::models::ae::AeConfig;
use tinygen_trainer::models::gan::{GLoss, GanConfig};
use tinygen_trainer::models::pixelcnn::{PixelCnnArch, PixelCnnConfig};
use tinygen_trainer::models::pixelrnn::PixelRnnConfig;
use tinygen_trainer::models::vae::VaeConfig;
use tinygen_trainer::run::{resume_state, RESUME_FILE};
use tinygen_trainer::train::{
    resume_options, train_vae, ModelConfig, TrainOptions, DEFAULT_BATCH_SIZE, DEFAULT_EPOCHS,
    DEFAULT_LR, DEFAULT_WEIGHT_DECAY,
};
use tinygen_trainer::train_ae::train_ae;
use tinygen_trainer::train_classifier::{
    compare_init, train_classifier, ClassifierRunConfig, CLASSIFIER_LR,
};
use tinygen_trainer::train_gan::{train_gan, GAN_LR};

/// `tinygen train`: a family's options, or `--resume RUN`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, arg_required_else_help = true)]
pub struct TrainArgs {
    /// Continue the interrupted run in directory RUN (Ctrl-C or SIGTERM
    /// saved it after a whole step): the run's own options, weights,
    /// optimizer state, image order and random numbers, so it ends as if
    /// it had never stopped. A run whose process died resumes from its last
    /// epoch.
    #[arg(long, value_name = "RUN")]
    pub resume: Option<PathBuf>,

    /// With --resume: no progress bars or per-epoch lines.
    #[arg(long, short, requires = "resume")]
    pub quiet: bool,

    #[command(subcommand)]
    pub family: Option<TrainCommand>,
}

/// Which family to train. Each variant flattens [`CommonArgs`] plus its own options.
#[derive(Debug, Subcommand)]
pub enum TrainCommand {
    /// Variational autoencoder: conv encoder q(z|x), Bernoulli deconv decoder p(x|z);
    /// minimizes -ELBO = reconstruction + KL, in nats per image.
    Vae(VaeArgs),
    /// PixelCNN: 7x7 mask-A then KxK mask-B convolutions (`--arch plain`), or
    /// vertical and horizontal stacks without a blind spot (`--arch stacks`);
    /// one Bernoulli per pixel; exact test negative log-likelihood in nats per
    /// image (and bits/dim) each epoch.
    /// The reference run: `--epochs 15 --lr 1e-3 --weight-decay 0` (plain, about 80 s per epoch on 2 cores).
    Pixelcnn(PixelCnnArgs),
    /// PixelRNN: 7x7 mask-A convolution, Row LSTM layers (masked 1x3
    /// input-to-state along the row, 1x3 state-to-state over the previous
    /// row), 1x1 layers to one Bernoulli per pixel; exact test negative
    /// log-likelihood in nats per image (and bits/dim) each epoch.
    /// The shipped run: `--epochs 8 --batch-size 64 --lr 2e-3 --weight-decay 0`
    /// (160-320 s per epoch measured on 2 cores shared with other work).
    Pixelrnn(PixelRnnArgs),
    /// Autoencoder: strided-conv encoder to a small z, transposed-conv decoder;
    /// minimizes the reconstruction cross-entropy of grayscale pixels (nats per
    /// image; MSE reported too). 13-30 s per epoch measured on 2 shared cores.
    Ae(AeArgs),
    /// DCGAN-style GAN: generator (exported) and strided-conv LeakyReLU
    /// discriminator (training only), K discriminator updates per generator update.
    Gan(GanArgs),
    /// Digit classifier (conv layers = the autoencoder encoder's); reports test accuracy.
    Classifier(ClassifierArgs),
    /// Measures the lecture's claim: test accuracy with few labels, classifier
    /// initialized from an autoencoder's encoder vs from random weights.
    ClassifierCompare(ClassifierCompareArgs),
}

/// Options every family takes.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Directory with the MNIST IDX files (train-images-idx3-ubyte[.gz], ...).
    /// Default: data/mnist-subset in the current directory, else the one shipped
    /// with the source tree.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,

    /// Passes over the training set (VAE: about 5 s each for the 7,000
    /// shipped images on 2 idle cores).
    #[arg(long, default_value_t = DEFAULT_EPOCHS, value_name = "N")]
    pub epochs: usize,

    /// Images per optimizer step.
    #[arg(long, default_value_t = DEFAULT_BATCH_SIZE, value_name = "N")]
    pub batch_size: usize,

    /// AdamW learning rate [default: 3e-3; gan: 5e-4; classifier: 1e-3].
    #[arg(long, value_name = "LR")]
    pub lr: Option<f64>,

    /// AdamW decoupled weight decay.
    #[arg(long, default_value_t = DEFAULT_WEIGHT_DECAY, value_name = "W")]
    pub weight_decay: f64,

    /// Seed of initialization, shuffling and noise: the same seed gives the same run.
    #[arg(long, default_value_t = 0, value_name = "SEED")]
    pub seed: u64,

    /// Parent directory of the run directory (DIR/FAMILY-sSEED-TIME/).
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
        self.options_with_lr(DEFAULT_LR)
    }

    /// The options, with `default_lr` unless `--lr` was given.
    fn options_with_lr(&self, default_lr: f64) -> TrainOptions {
        TrainOptions {
            data_dir: self.data.clone().unwrap_or_else(data::default_data_dir),
            out: self.out.clone(),
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr: self.lr.unwrap_or(default_lr),
            weight_decay: self.weight_decay,
            seed: self.seed,
            limit_train: self.limit_train,
            max_steps: self.max_steps,
            verbose: !self.quiet,
            poison_step: None,
            resume: None,
            interrupt_after: None,
        }
    }
}

/// `tinygen train vae`.
#[derive(Debug, Args)]
pub struct VaeArgs {
    #[command(flatten)]
    pub common: CommonArgs,

    /// Latent dimensions (z ~ N(0, I) of this size feeds the decoder).
    #[arg(long, default_value_t = VaeConfig::default().latent, value_name = "N",
          value_parser = parse_latent)]
    pub latent: usize,
}

/// `tinygen train pixelcnn`.
#[derive(Debug, Args)]
pub struct PixelCnnArgs {
    #[command(flatten)]
    pub common: CommonArgs,

    /// Architecture: `plain` masked convolutions (exported as MaskedConv2d;
    /// blind to the pixels above and right of the cone the masks grow), or
    /// `stacks`, a vertical and a horizontal stack (exported as StackConv2d;
    /// sees every row above within reach).
    #[arg(long, value_enum, default_value_t = PixelCnnConfig::default().arch)]
    pub arch: PixelCnnArch,

    /// Channels of every hidden layer (with `--arch stacks`: of each stack,
    /// so the feature maps between layers have twice as many).
    #[arg(long, default_value_t = PixelCnnConfig::default().channels, value_name = "N")]
    pub channels: usize,

    /// Number of mask-B layers after the 7x7 mask-A layer (with `--arch
    /// stacks` at least 1: the last one outputs the horizontal stack only).
    #[arg(long, default_value_t = PixelCnnConfig::default().layers, value_name = "N")]
    pub layers: usize,

    /// Kernel size (odd) of the mask-B layers.
    #[arg(long, default_value_t = PixelCnnConfig::default().kernel, value_name = "K")]
    pub kernel: usize,
}

/// `tinygen train pixelrnn`.
#[derive(Debug, Args)]
pub struct PixelRnnArgs {
    #[command(flatten)]
    pub common: CommonArgs,

    /// Channels of the 7x7 mask-A convolution and of the 1x1 layer before the logits.
    #[arg(long, default_value_t = PixelRnnConfig::default().channels, value_name = "N")]
    pub channels: usize,

    /// Hidden (and cell) channels of every Row LSTM layer.
    #[arg(long, default_value_t = PixelRnnConfig::default().hidden, value_name = "N")]
    pub hidden: usize,

    /// Number of Row LSTM layers.
    #[arg(long, default_value_t = PixelRnnConfig::default().layers, value_name = "N")]
    pub layers: usize,

    /// Decay the learning rate linearly from --lr to 0 over the run (as
    /// PixelCNN always does); without it the rate stays at --lr.
    #[arg(long)]
    pub lr_decay: bool,
}

/// `tinygen train ae`.
#[derive(Debug, Args)]
pub struct AeArgs {
    #[command(flatten)]
    pub common: CommonArgs,

    /// Latent dimensions.
    #[arg(long, default_value_t = AeConfig::default().latent, value_name = "N",
          value_parser = parse_latent)]
    pub latent: usize,
}

/// `tinygen train gan`.
#[derive(Debug, Args)]
pub struct GanArgs {
    #[command(flatten)]
    pub common: CommonArgs,

    /// Latent dimensions (z ~ N(0, I) of this size feeds the generator).
    #[arg(long, default_value_t = GanConfig::default().latent, value_name = "N",
          value_parser = parse_latent)]
    pub latent: usize,

    /// Discriminator updates (each on its own real batch) per generator update.
    #[arg(long, default_value_t = 1, value_name = "K")]
    pub d_steps: usize,

    /// Generator objective: non-saturating max log D(G(z)), or the original
    /// minimax min log(1 - D(G(z))) (whose gradient vanishes early in training).
    #[arg(long, value_enum, default_value = "non-saturating")]
    pub g_loss: GLoss,

    /// Channels of the generator's first feature map (the next layer has half).
    #[arg(long, default_value_t = GanConfig::default().g_channels, value_name = "C")]
    pub g_channels: usize,

    /// Channels of the discriminator's first convolution (the next has twice).
    #[arg(long, default_value_t = GanConfig::default().d_channels, value_name = "C")]
    pub d_channels: usize,
}

/// `tinygen train classifier`.
#[derive(Debug, Args)]
pub struct ClassifierArgs {
    #[command(flatten)]
    pub common: CommonArgs,

    /// Autoencoder run directory whose encoder convolutions initialize the classifier's.
    #[arg(long, value_name = "AE_RUN")]
    pub init_from: Option<PathBuf>,

    /// Train on N labelled training images only: the first N/10 of each digit, in file order.
    #[arg(long, value_name = "N")]
    pub labels: Option<usize>,

    /// Width of the feature layer.
    #[arg(long, default_value_t = ClassifierRunConfig::default().hidden, value_name = "N")]
    pub hidden: usize,

    /// No random-translation augmentation (by default each training image is
    /// shifted by up to 2 pixels each way).
    #[arg(long)]
    pub no_augment: bool,
}

/// `tinygen train classifier-compare`.
#[derive(Debug, Args)]
pub struct ClassifierCompareArgs {
    #[command(flatten)]
    pub common: CommonArgs,

    /// Autoencoder run directory (from `tinygen train ae`).
    #[arg(long, value_name = "AE_RUN")]
    pub ae: PathBuf,

    /// Label budgets to compare, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "100,1000",
        value_name = "N,.."
    )]
    pub labels: Vec<usize>,

    /// Optimizer steps of every classifier run (the same for each budget;
    /// replaces --epochs). Runs go to OUT/classifier-sSEED-..., the table to
    /// OUT/compare.csv.
    #[arg(long, default_value_t = 300, value_name = "N")]
    pub steps: usize,
}

/// Runs `tinygen train ...`.
pub fn run(args: TrainArgs) -> Result<()> {
    tinygen_trainer::interrupt::install()?;
    match (args.resume, args.family) {
        (Some(dir), _) => resume(&dir, args.quiet),
        (None, Some(family)) => train(family),
        // clap's arg_required_else_help prints the help first.
        (None, None) => bail!("name a family to train, or --resume RUN"),
    }
}

/// Continues the run in `dir` with its own options.
fn resume(dir: &Path, quiet: bool) -> Result<()> {
    let (opts, config) = resume_options(dir, !quiet)?;
    let Some(state) = resume_state(dir)? else {
        bail!(
            "{} has no {RESUME_FILE}: the run finished (or was trained before runs could be \
             resumed), so there is nothing to resume",
            dir.display()
        );
    };
    if !quiet {
        println!(
            "resuming {} ({}) in epoch {} after step {} of {}",
            dir.display(),
            config.model.family(),
            state.epoch,
            state.step,
            state.total_steps
        );
    }
    let run_dir = match config.model {
        ModelConfig::Vae(c) => train_vae(&opts, c)?.run_dir,
        ModelConfig::PixelCnn(c) => {
            tinygen_trainer::train_pixelcnn::train_pixelcnn(&opts, c)?.run_dir
        }
        ModelConfig::PixelRnn(c) => {
            tinygen_trainer::train_pixelrnn::train_pixelrnn(&opts, c, config.lr_decay)?.run_dir
        }
        ModelConfig::Ae(c) => train_ae(&opts, c)?.run_dir,
        ModelConfig::Gan(c) => train_gan(&opts, c)?.run_dir,
        // The weights come from the resume file, not from the autoencoder.
        ModelConfig::Classifier(c) => train_classifier(&opts, c, None)?.run_dir,
    };
    if quiet {
        println!("{}", run_dir.display());
    }
    Ok(())
}

/// Trains a new run of `command`'s family.
fn train(command: TrainCommand) -> Result<()> {
    match command {
        TrainCommand::Ae(args) => {
            let opts = args.common.options();
            let outcome = train_ae(
                &opts,
                AeConfig {
                    latent: args.latent,
                },
            )?;
            if args.common.quiet {
                println!("{}", outcome.run_dir.display());
            }
            Ok(())
        }
        TrainCommand::Gan(args) => {
            let opts = args.common.options_with_lr(GAN_LR);
            let outcome = train_gan(
                &opts,
                GanConfig {
                    latent: args.latent,
                    d_steps: args.d_steps,
                    g_loss: args.g_loss,
                    g_channels: args.g_channels,
                    d_channels: args.d_channels,
                },
            )?;
            if args.common.quiet {
                println!("{}", outcome.run_dir.display());
            }
            Ok(())
        }
        TrainCommand::Classifier(args) => {
            let opts = args.common.options_with_lr(CLASSIFIER_LR);
            let cfg = ClassifierRunConfig {
                hidden: args.hidden,
                labels: args.labels,
                init_from_ae: args.init_from.is_some(),
                augment: !args.no_augment,
            };
            let outcome = train_classifier(&opts, cfg, args.init_from.as_deref())?;
            if let Some(m) = outcome.metrics.last() {
                println!(
                    "test accuracy {:.4} ({} test images)",
                    m.test_acc, outcome.config.n_test
                );
            }
            if args.common.quiet {
                println!("{}", outcome.run_dir.display());
            }
            Ok(())
        }
        TrainCommand::ClassifierCompare(args) => {
            let opts = args.common.options_with_lr(CLASSIFIER_LR);
            let rows = compare_init(
                &opts,
                ClassifierRunConfig::default(),
                &args.ae,
                &args.labels,
                args.steps,
            )?;
            println!("labels  steps  test acc (AE init)  test acc (random init)");
            for r in &rows {
                println!(
                    "{:>6}  {:>5}  {:>18.4}  {:>21.4}",
                    r.labels, args.steps, r.ae_init_acc, r.random_init_acc
                );
            }
            println!("wrote {}", opts.out.join("compare.csv").display());
            Ok(())
        }
        TrainCommand::Pixelcnn(args) => {
            let opts = args.common.options();
            let outcome = tinygen_trainer::train_pixelcnn::train_pixelcnn(
                &opts,
                PixelCnnConfig {
                    channels: args.channels,
                    layers: args.layers,
                    arch: args.arch,
                    kernel: args.kernel,
                },
            )?;
            if args.common.quiet {
                println!("{}", outcome.run_dir.display());
            }
            Ok(())
        }
        TrainCommand::Pixelrnn(args) => {
            let opts = args.common.options();
            let outcome = tinygen_trainer::train_pixelrnn::train_pixelrnn(
                &opts,
                PixelRnnConfig {
                    channels: args.channels,
                    hidden: args.hidden,
                    layers: args.layers,
                },
                args.lr_decay,
            )?;
            if args.common.quiet {
                println!("{}", outcome.run_dir.display());
            }
            Ok(())
        }
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

/// Parses a latent size: 1 to the runtime's limit
/// ([`tinygen_runtime::format::MAX_LATENT`]), checked before training
/// rather than at export.
fn parse_latent(s: &str) -> Result<usize, String> {
    let max = tinygen_runtime::format::MAX_LATENT;
    match s.parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!(
            "the latent size must be 1 to {max} (the runtime's limit: a board samples \
             z of at most {max} values), got {s}"
        )),
    }
}
