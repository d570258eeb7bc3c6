//! `tinygen convert FILE.tgm --quant f16 -o OUT.tgm`

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;

use tinygen_trainer::convert::f32_to_f16;
use tinygen_trainer::export::Quant;

/// Re-encode an f32 model file with f16 weights, without its run: the weights
/// are exactly those `tinygen export RUN --quant f16` writes (f32 biases,
/// metadata and heads kept); the stored quality figures stay the f32 file's,
/// `tinygen eval` measures the f16 file's own. int8 needs calibration data and
/// so the run: use `tinygen export RUN --quant int8`.
#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// An f32 model file.
    pub file: PathBuf,
    /// Target weight storage (only f16).
    #[arg(long, value_enum, default_value = "f16")]
    pub quant: Quant,
    /// Output file.
    #[arg(short, long)]
    pub output: PathBuf,
}

/// Runs `tinygen convert`.
///
/// # Errors
///
/// If the file cannot be read, is not f32, or the target is not f16.
pub fn run(args: ConvertArgs) -> Result<()> {
    if args.quant != Quant::F16 {
        bail!(
            "convert writes f16 only: {} needs the run (`tinygen export RUN --quant {}`)",
            args.quant.dtype().name(),
            args.quant.dtype().name()
        );
    }
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let out = f32_to_f16(&bytes).with_context(|| format!("converting {}", args.file.display()))?;
    if let Some(dir) = args.output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&args.output, &out)
        .with_context(|| format!("writing {}", args.output.display()))?;
    println!(
        "wrote {} ({} bytes, f16 weights; was {} bytes)",
        args.output.display(),
        out.len(),
        bytes.len()
    );
    Ok(())
}
