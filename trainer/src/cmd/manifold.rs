//! `tinygen manifold FILE.tgm|RUN [-n 20] [-o manifold.png]`

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use tinygen_runtime::format::{ModelKind, Shape};
use tinygen_runtime::Model;

use tinygen_trainer::export::{export, vae_decoder_net, ExportMeta, Quant};
use tinygen_trainer::latent::manifold;
use tinygen_trainer::report::write_grid_png;
use tinygen_trainer::train::{load_run, load_vae, ModelConfig};

/// Draw the learned manifold of a VAE with a 2-D latent: the decodes of
/// z = (Phi^-1(u1), Phi^-1(u2)) over an n x n grid of quantiles
/// u = (k + 0.5) / n, so that equal areas of the N(0, I) prior get equal
/// tiles. z1 grows to the right, z2 upwards. A .tgm file is decoded by the
/// runtime (an int8 file shows what the board computes); a run directory
/// is exported to f32 in memory first.
#[derive(Debug, Args)]
pub struct ManifoldArgs {
    /// VAE model file (.tgm) or VAE run directory, with a 2-D latent
    /// (`tinygen train vae --latent 2`).
    pub model: PathBuf,
    /// Tiles per side.
    #[arg(short, default_value_t = 20)]
    pub n: usize,
    /// PNG to write.
    #[arg(short, long, default_value = "manifold.png")]
    pub output: PathBuf,
}

/// The bytes of a .tgm file, or of a VAE run exported to f32 in memory.
fn model_bytes(path: &std::path::Path) -> Result<Vec<u8>> {
    if !path.is_dir() {
        return std::fs::read(path).with_context(|| format!("reading {}", path.display()));
    }
    let (config, _) = load_run(path)?;
    if !matches!(config.model, ModelConfig::Vae(_)) {
        bail!(
            "{}: a {} run; the manifold is drawn for a VAE with a 2-D latent \
             (`tinygen train vae --latent 2`)",
            path.display(),
            config.model.family()
        );
    }
    let (_, vae) = load_vae(path)?;
    let meta = ExportMeta {
        kind: ModelKind::Vae,
        image: Shape { c: 1, h: 28, w: 28 },
        latent: vae.latent() as u16,
        data: format!("run {}", path.display()),
        figures: Vec::new(),
        prior: None,
    };
    export(&vae_decoder_net(&vae)?, &meta, Quant::F32, &[])
}

/// Runs `tinygen manifold`.
///
/// # Errors
///
/// If the model cannot be read, is not a VAE with a 2-D latent, or the PNG
/// cannot be written.
pub fn run(args: ManifoldArgs) -> Result<()> {
    if args.n == 0 {
        bail!("-n must be at least 1");
    }
    let bytes = model_bytes(&args.model)?;
    let model = Model::load(&bytes).map_err(|e| anyhow!("{}: {e}", args.model.display()))?;
    let pixels = manifold(&model, args.n).with_context(|| args.model.display().to_string())?;
    write_grid_png(&args.output, &pixels, args.n * args.n, args.n)?;
    println!(
        "wrote {} ({n} x {n} decodes of z = (Phi^-1(u1), Phi^-1(u2)), u = (k + 0.5) / {n}; \
         z1 to the right, z2 up; {} weights)",
        args.output.display(),
        model.file.dtype.name(),
        n = args.n
    );
    Ok(())
}
