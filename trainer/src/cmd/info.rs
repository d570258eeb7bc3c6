//! `tinygen info FILE.tgm [--json]`

use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};
use clap::Args;
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
            "macs_per_sample": model.macs_per_sample(),
            "latent": f.meta.latent,
            "image": [img.c, img.h, img.w],
            "layers": f.decoder.layers.len(),
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
    println!("arena bytes      {}", model.arena_bytes());
    println!("MACs per sample  {}", model.macs_per_sample());
    println!("latent           {}", f.meta.latent);
    println!("image            {}x{}x{}", img.c, img.h, img.w);
    println!("layers           {}", f.decoder.layers.len());
    println!("data             {}", f.meta.data);
    for fig in &f.meta.figures {
        println!("{:<16} {}", fig.name, fig.value);
    }
    Ok(())
}
