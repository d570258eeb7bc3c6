//! `tinygen info FILE.tgm [--json]`

use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};
use clap::Args;
use tinygen_runtime::format::ModelKind;
use tinygen_runtime::Model;

/// Describe a .tgm model file: kind, dtype, parameters, flash and arena bytes, MACs per sample.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Model file.
    pub file: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `tinygen info`.
///
/// # Errors
///
/// If the file cannot be read or the runtime rejects it.
pub fn run(args: InfoArgs) -> Result<()> {
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let model = Model::load(&bytes).map_err(|e| anyhow!("{}: {e}", args.file.display()))?;
    let f = &model.file;
    let kind = format!("{:?}", f.kind).to_lowercase();
    let img = f.meta.image;
    let encoder = f.encoder.as_ref().map(|e| e.layers.len());
    let encoder_macs = model.encoder_plan.map(|p| p.macs);
    let encoder_params = model.encoder_plan.map(|p| p.params);
    if args.json {
        let figures: serde_json::Map<String, serde_json::Value> = f
            .meta
            .figures
            .iter()
            .map(|fig| (fig.name.to_string(), serde_json::json!(fig.value)))
            .collect();
        let v = serde_json::json!({
            "file": args.file.display().to_string(),
            "kind": kind,
            "dtype": f.dtype.name(),
            "format_version": f.version,
            "params": model.params(),
            "flash_bytes": bytes.len(),
            "arena_bytes": model.arena_bytes(),
            "scratch_bytes": model.scratch_bytes(),
            "macs_per_sample": model.macs_per_sample(),
            "forward_macs": model.forward_macs(),
            "latent": f.meta.latent,
            "image": [img.c, img.h, img.w],
            "layers": f.decoder.layers.len(),
            "encoder_layers": encoder,
            "encoder_macs": encoder_macs,
            "encoder_params": encoder_params,
            "prior": if f.meta.prior_mean.is_empty() { "N(0, I)" } else { "fitted Gaussian" },
            "data": f.meta.data,
            "figures": figures,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("file             {}", args.file.display());
    println!("kind             {kind}");
    println!("dtype            {}", f.dtype.name());
    println!("format version   {}", f.version);
    println!("parameters       {}", model.params());
    println!(
        "flash bytes      {} (the model file, stored in flash as is)",
        bytes.len()
    );
    println!(
        "arena bytes      {} ({} of them the int8 kernels' scratch)",
        model.arena_bytes(),
        model.scratch_bytes()
    );
    println!("MACs per sample  {}", model.macs_per_sample());
    if model.cache_plan.is_some() {
        println!(
            "forward pass     {} MACs (a naive sampler pays one per pixel: {}); the incremental sampler's row caches are the arena",
            model.forward_macs(),
            model.forward_macs() * u64::from(img.h) * u64::from(img.w)
        );
    }
    println!("latent           {}", f.meta.latent);
    println!("image            {}x{}x{}", img.c, img.h, img.w);
    println!("layers           {}", f.decoder.layers.len());
    match (encoder, encoder_macs, encoder_params) {
        (Some(n), Some(macs), Some(params)) => println!(
            "encoder          yes: {n} layers, {params} parameters, {macs} MACs per image (image -> {})",
            if f.kind == ModelKind::Vae {
                "mean and log-variance of q(z|x)"
            } else {
                "latent"
            }
        ),
        _ => println!("encoder          no"),
    }
    println!(
        "latent prior     {}",
        if f.meta.latent == 0 {
            "none (no latent)"
        } else if f.meta.prior_mean.is_empty() {
            "N(0, I)"
        } else {
            "Gaussian fitted to the training codes (mean, std per dimension)"
        }
    );
    println!("data             {}", f.meta.data);
    for fig in &f.meta.figures {
        println!("{:<16} {}", fig.name, fig.value);
    }
    Ok(())
}
