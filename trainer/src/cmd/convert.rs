//! `tinygen convert FILE.tgm --quant f16 -o OUT.tgm`

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;

use tinygen_trainer::convert::{f32_to_f16, without_encoder};
use tinygen_trainer::export::Quant;

/// Re-encode a model file without its run: `--quant f16` turns an f32 file
/// into f16 weights, exactly those `tinygen export RUN --quant f16` writes
/// (f32 biases, metadata and heads kept; the stored quality figures stay the
/// f32 file's, `tinygen eval` measures the f16 file's own); int8 needs
/// calibration data and so the run (`tinygen export RUN --quant int8`).
/// `--drop-encoder` removes a VAE's or autoencoder's encoder, for a board
/// that only samples (the shipped int8 VAE's encoder is 134 KB of flash).
/// With neither flag, `--quant f16`.
#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// A model file (f32 for `--quant f16`).
    pub file: PathBuf,
    /// Target weight storage (only f16).
    #[arg(long, value_enum)]
    pub quant: Option<Quant>,
    /// Leave the encoder out (sampling only; `tinygen eval` then cannot
    /// compute a VAE's likelihood).
    #[arg(long)]
    pub drop_encoder: bool,
    /// Output file.
    #[arg(short, long)]
    pub output: PathBuf,
}

/// Runs `tinygen convert`.
///
/// # Errors
///
/// If the file cannot be read, is not f32 for `--quant f16`, the target is
/// not f16, or `--drop-encoder` is given for a file without an encoder.
pub fn run(args: ConvertArgs) -> Result<()> {
    let quant = args.quant.or((!args.drop_encoder).then_some(Quant::F16));
    if let Some(q) = quant.filter(|&q| q != Quant::F16) {
        bail!(
            "convert writes f16 only: {} needs the run (`tinygen export RUN --quant {}`)",
            q.dtype().name(),
            q.dtype().name()
        );
    }
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let mut out = bytes.clone();
    let mut did = Vec::new();
    if quant.is_some() {
        out = f32_to_f16(&out).with_context(|| format!("converting {}", args.file.display()))?;
        did.push("f16 weights");
    }
    if args.drop_encoder {
        out = without_encoder(&out)
            .with_context(|| format!("dropping the encoder of {}", args.file.display()))?;
        did.push("no encoder");
    }
    if let Some(dir) = args.output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&args.output, &out)
        .with_context(|| format!("writing {}", args.output.display()))?;
    println!(
        "wrote {} ({} bytes, {}; was {} bytes)",
        args.output.display(),
        out.len(),
        did.join(", "),
        bytes.len()
    );
    Ok(())
}
