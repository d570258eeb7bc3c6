//! Samplers: what turns a model and random numbers into images.

pub mod autoregressive;
pub mod decoder;
pub mod encoder;
pub mod rng;
