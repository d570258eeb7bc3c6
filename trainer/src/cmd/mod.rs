//! Subcommands of `tinygen`, one module each: an `Args` (or subcommand enum)
//! and a `run` function. Add a module here and a variant to `main.rs`'s `Command`.

pub mod convert;
pub mod eval;
pub mod export;
pub mod grid;
pub mod info;
pub mod interpolate;
pub mod manifold;
pub mod sample;
pub mod train;
