//! tinygen-trainer: trains tinygen's small generative image models with candle
//! on the host (and, later, quantizes and exports them for the no_std runtime).
//!
//! - [`data`]: MNIST IDX loader (plain or `.gz`) and tensor helpers.
//! - [`models`]: the model families ([`models::vae`]) and seeded initialization.
//! - [`train`]: training runs, run directories, checkpoints, [`train::load_run`];
//!   [`run`]: the run harness every family shares (run directory, metrics,
//!   checkpoints, non-finite-loss guard, progress); [`autoregressive`]: the
//!   training loop and export path PixelCNN and PixelRNN share;
//!   [`optim`]: AdamW with state that a resume file saves; [`interrupt`]:
//!   Ctrl-C and SIGTERM stop a run after the step in progress.
//! - [`report`]: PNG image grids and the metrics CSV.
//! - [`loss_plot`]: loss curves (`loss.png`) from any run's `metrics.csv`,
//!   written at the end of every training run.
//! - [`latent`]: latent-space pictures through the runtime (2-D VAE manifold,
//!   interpolation strips).
//! - [`train_ae`], [`train_gan`], [`train_classifier`]: the autoencoder, GAN
//!   and classifier runs (and [`train_classifier::compare_init`], autoencoder
//!   initialization vs random with few labels); [`export_runs`]: their export.
//! - [`quality`]: `tinygen eval`, every quality figure of a model file through
//!   the runtime; [`metrics`]: the figures' math (Frechet distance, inception
//!   score, label entropy, log-mean-exp); [`convert`]: f32 files to f16.
//!
//! The binary `tinygen` is the command line over this library.

pub mod autoregressive;
pub mod convert;
pub mod data;
pub mod eval;
pub mod export;
pub mod export_pixelcnn;
pub mod export_pixelrnn;
pub mod export_runs;
pub mod interrupt;
pub mod latent;
pub mod loss_plot;
pub mod metrics;
pub mod models;
pub mod optim;
pub mod quality;
pub mod quantize;
pub mod report;
pub mod run;
pub mod sample;
pub mod train;
pub mod train_ae;
pub mod train_classifier;
pub mod train_gan;
pub mod train_pixelcnn;
pub mod train_pixelrnn;
