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

/// Parses a sampling temperature: a positive finite number (clap reads
/// `--temperature -1` as a value, so that it gets this message rather
/// than "unexpected argument").
///
/// # Errors
///
/// A message for anything else.
pub fn parse_temperature(s: &str) -> Result<f32, String> {
    let t: f32 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if t.is_finite() && t > 0.0 {
        Ok(t)
    } else {
        Err(format!(
            "the temperature must be a positive number (1 is the model's own distribution), got {s}"
        ))
    }
}
