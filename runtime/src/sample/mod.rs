//! Samplers: what turns a model and random numbers into images.

pub mod decoder;
pub mod rng;
