//! tinygen-trainer: trains tinygen's small generative image models with candle
//! on the host (and, later, quantizes and exports them for the no_std runtime).
//!
//! - [`data`]: MNIST IDX loader (plain or `.gz`) and tensor helpers.
//! - [`models`]: the model families ([`models::vae`]) and seeded initialization.
//! - [`train`]: training runs, run directories, checkpoints, [`train::load_run`].
//! - [`report`]: PNG image grids and the metrics CSV.
//! - [`train_ae`], [`train_gan`], [`train_classifier`]: the autoencoder, GAN
//!   and classifier runs (and [`train_classifier::compare_init`], autoencoder
//!   initialization vs random with few labels); [`export_runs`]: their export.
//!
//! The binary `tinygen` is the command line over this library.

pub mod data;
pub mod eval;
pub mod export;
pub mod export_pixelcnn;
pub mod export_runs;
pub mod models;
pub mod quantize;
pub mod report;
pub mod sample;
pub mod train;
pub mod train_ae;
pub mod train_classifier;
pub mod train_gan;
pub mod train_pixelcnn;
