//! `tinygen sample FILE.tgm -n 64 --seed S -o grid.png [--raw FILE]`

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use tinygen_runtime::Model;

use tinygen_trainer::report::write_grid_png_sized;
use tinygen_trainer::sample::sample_model_at;

/// Generate images from a .tgm file with the runtime's kernels (the same code the
/// microcontroller runs; not candle), as a PNG grid and optionally raw bytes.
#[derive(Debug, Args)]
pub struct SampleArgs {
    /// Model file.
    pub file: PathBuf,
    /// Number of images.
    #[arg(short, default_value_t = 64)]
    pub n: usize,
    /// Seed of the runtime's random number generator (the firmware's TINYGEN_SEED).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// PNG grid to write.
    #[arg(short, long, default_value = "samples.png")]
    pub output: PathBuf,
    /// Also write the n*H*W pixel bytes, in sample order, to this file.
    #[arg(long)]
    pub raw: Option<PathBuf>,
    /// Images per grid row [default: 8, or fewer for small n].
    #[arg(long)]
    pub cols: Option<usize>,
    /// PixelCNN/PixelRNN: divide every logit by T before the sigmoid (the
    /// firmware's TINYGEN_TEMPERATURE). Below 1 each pixel leans further to
    /// its more likely value: cleaner strokes, less variety; 1 is the
    /// model's own distribution.
    #[arg(long, default_value_t = 1.0, value_name = "T", allow_negative_numbers = true,
          value_parser = super::parse_temperature)]
    pub temperature: f32,
}

/// Pixel bytes one `tinygen sample` may hold in memory (with the grid, about
/// twice that): 1 GiB.
const MAX_SAMPLE_BYTES: u64 = 1 << 30;

/// Runs `tinygen sample`.
///
/// # Errors
///
/// If the file cannot be read, the runtime rejects it, or output cannot be written.
pub fn run(args: SampleArgs) -> Result<()> {
    if args.n == 0 {
        bail!("-n must be at least 1");
    }
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let model = Model::load(&bytes).map_err(|e| anyhow!("{}: {e}", args.file.display()))?;
    // Before any work: n images must fit in memory.
    let image = model.file.meta.image;
    let per_image = image.numel();
    let max_n = MAX_SAMPLE_BYTES / per_image.max(1);
    if args.n as u64 > max_n {
        bail!(
            "-n {}: at most {max_n} images of {}x{} fit in the {} MiB this command allows for pixels; \
             sample in batches with different --seed values",
            args.n,
            image.h,
            image.w,
            MAX_SAMPLE_BYTES >> 20
        );
    }
    // Decoder models (VAE, GAN, AutoEncoder) or PixelCNN, by the file's kind.
    let pixels = sample_model_at(&model, args.n, args.seed, args.temperature)
        .with_context(|| format!("sampling {}", args.file.display()))?;
    let cols = args.cols.unwrap_or(8).clamp(1, args.n);
    write_grid_png_sized(
        &args.output,
        &pixels,
        args.n,
        cols,
        image.h as usize,
        image.w as usize,
    )?;
    let temperature = if args.temperature == 1.0 {
        String::new()
    } else {
        format!(", temperature {}", args.temperature)
    };
    println!(
        "wrote {} ({} images, seed {}{temperature})",
        args.output.display(),
        args.n,
        args.seed
    );
    if let Some(raw) = &args.raw {
        std::fs::write(raw, &pixels).with_context(|| format!("writing {}", raw.display()))?;
        println!("wrote {} ({} bytes)", raw.display(), pixels.len());
    }
    Ok(())
}
