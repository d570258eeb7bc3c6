//! tinygen-trainer: trains tinygen's small generative image models with candle
//! on the host (and, later, quantizes and exports them for the no_std runtime).
//!
//! - [`data`]: MNIST IDX loader (plain or `.gz`) and tensor helpers.
//! - [`models`]: the model families ([`models::vae`]) and seeded initialization.
//! - [`train`]: training runs, run directories, checkpoints, [`train::load_run`].
//! - [`report`]: PNG image grids and the metrics CSV.
//!
//! The binary `tinygen` is the command line over this library.

pub mod data;
pub mod eval;
pub mod export;
pub mod models;
pub mod quantize;
pub mod report;
pub mod sample;
pub mod train;
