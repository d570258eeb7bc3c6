//! `tinygen grid RAW -o grid.png`: streamed pixel bytes to a PNG.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;

use tinygen_trainer::report::write_grid_png_sized;

/// Turn raw pixel bytes (what the firmware streams, or `tinygen sample --raw`)
/// into a PNG grid.
#[derive(Debug, Args)]
pub struct GridArgs {
    /// File of n*H*W bytes, images in order.
    pub raw: PathBuf,
    /// Image height and width (the model file's image; `tinygen info`).
    #[arg(long, default_value = "28x28", value_name = "HxW", value_parser = parse_size)]
    pub size: (usize, usize),
    /// PNG to write.
    #[arg(short, long, default_value = "grid.png")]
    pub output: PathBuf,
    /// Images per row [default: 8, or fewer for small n].
    #[arg(long)]
    pub cols: Option<usize>,
}

/// Parses `HxW` (both at least 1).
fn parse_size(s: &str) -> Result<(usize, usize), String> {
    let bad = || format!("`{s}` is not a size HxW such as 28x28");
    let (h, w) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    match (h.trim().parse::<usize>(), w.trim().parse::<usize>()) {
        (Ok(h), Ok(w)) if h > 0 && w > 0 => Ok((h, w)),
        _ => Err(bad()),
    }
}

/// Runs `tinygen grid`.
///
/// # Errors
///
/// If the file cannot be read, is empty or not a whole number of images.
pub fn run(args: GridArgs) -> Result<()> {
    let bytes =
        std::fs::read(&args.raw).with_context(|| format!("reading {}", args.raw.display()))?;
    let (h, w) = args.size;
    let image_bytes = h * w;
    if bytes.is_empty() || bytes.len() % image_bytes != 0 {
        bail!(
            "{}: {} bytes is not a whole number of {h}x{w} images ({image_bytes} bytes each; \
             --size HxW sets the image size)",
            args.raw.display(),
            bytes.len()
        );
    }
    let n = bytes.len() / image_bytes;
    let cols = args.cols.unwrap_or(8).clamp(1, n);
    write_grid_png_sized(&args.output, &bytes, n, cols, h, w)?;
    println!("wrote {} ({n} images)", args.output.display());
    Ok(())
}
