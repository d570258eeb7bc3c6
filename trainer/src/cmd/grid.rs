//! `tinygen grid RAW -o grid.png`: streamed pixel bytes to a PNG.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;

use tinygen_trainer::report::write_grid_png;

/// Turn raw 28x28 pixel bytes (what the firmware streams, or `tinygen sample --raw`)
/// into a PNG grid.
#[derive(Debug, Args)]
pub struct GridArgs {
    /// File of n*784 bytes, images in order.
    pub raw: PathBuf,
    /// PNG to write.
    #[arg(short, long, default_value = "grid.png")]
    pub output: PathBuf,
    /// Images per row [default: 8, or fewer for small n].
    #[arg(long)]
    pub cols: Option<usize>,
}

const IMAGE_BYTES: usize = 28 * 28;

/// Runs `tinygen grid`.
///
/// # Errors
///
/// If the file cannot be read, is empty or not a whole number of images.
pub fn run(args: GridArgs) -> Result<()> {
    let bytes =
        std::fs::read(&args.raw).with_context(|| format!("reading {}", args.raw.display()))?;
    if bytes.is_empty() || bytes.len() % IMAGE_BYTES != 0 {
        bail!(
            "{}: {} bytes is not a whole number of 28x28 images ({IMAGE_BYTES} bytes each)",
            args.raw.display(),
            bytes.len()
        );
    }
    let n = bytes.len() / IMAGE_BYTES;
    let cols = args.cols.unwrap_or(8).clamp(1, n);
    write_grid_png(&args.output, &bytes, n, cols)?;
    println!("wrote {} ({n} images)", args.output.display());
    Ok(())
}
