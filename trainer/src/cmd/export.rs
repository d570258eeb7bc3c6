//! `tinygen export RUN --quant f32|f16|int8 -o FILE.tgm`

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use candle_core::Device;
use clap::Args;
use rand::rngs::StdRng;
use rand::SeedableRng;
use tinygen_runtime::format::{ModelKind, Shape};
use tinygen_runtime::Model;

use tinygen_trainer::autoregressive::{self, Autoregressive};
use tinygen_trainer::data::load_mnist;
use tinygen_trainer::eval::vae_elbo_runtime;
use tinygen_trainer::export::{
    export_with_encoder, vae_decoder_net, vae_encoder_net, EncoderExport, ExportMeta, Quant,
};
use tinygen_trainer::export_runs::{export_ae, export_gan, ExportData};
use tinygen_trainer::models::pixelcnn::PixelCnn;
use tinygen_trainer::models::pixelrnn::PixelRnn;
use tinygen_trainer::models::standard_normal;
use tinygen_trainer::run::{resume_state, RunStatus};
use tinygen_trainer::train::{load_run, load_vae, ModelConfig, RunConfig};
use tinygen_trainer::train_ae::load_ae;
use tinygen_trainer::train_gan::load_gan;

/// Export a trained run as a .tgm model file for the runtime and the firmware.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Run directory written by `tinygen train` (holds config.json and model.safetensors).
    pub run: PathBuf,
    /// Weight storage: f32, f16 (weights only) or int8 (full-integer, calibrated).
    #[arg(long, value_enum, default_value = "int8")]
    pub quant: Quant,
    /// Output file.
    #[arg(short, long)]
    pub output: PathBuf,
    /// MNIST directory for calibration and evaluation [default: the run's data directory].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Training images whose latents calibrate int8 activation ranges (as many
    /// prior samples are added); for a GAN, the number of latent draws.
    #[arg(long, default_value_t = 1000)]
    pub calib: usize,
    /// Test images on which the exported file's quality is measured through the
    /// runtime and stored in it (VAE: -ELBO; autoencoder: reconstruction BCE
    /// and MSE; 0 to skip).
    #[arg(long, default_value_t = 1000)]
    pub eval: usize,
    /// Seed of the calibration and evaluation noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Runs `tinygen export`: dispatches on the run's family (`config.json`).
///
/// # Errors
///
/// On unreadable runs or data, a family that has no model file, or a file
/// the runtime rejects.
pub fn run(args: ExportArgs) -> Result<()> {
    let (config, _) = load_run(&args.run)?;
    if let Some(note) = unfinished_note(&args.run)? {
        eprintln!("note: {note}; exporting the checkpoint as it is");
    }
    match config.model {
        ModelConfig::Vae(_) => export_vae(args),
        ModelConfig::Ae(_) | ModelConfig::Gan(_) => export_ae_or_gan(args, &config),
        ModelConfig::PixelCnn(_) => export_autoregressive_run::<PixelCnn>(args, &config),
        ModelConfig::PixelRnn(_) => export_autoregressive_run::<PixelRnn>(args, &config),
        ModelConfig::Classifier(_) => bail!(
            "{}: a classifier run is used on the host (FCD, inception score); \
             it has no .tgm export (copy its model.safetensors and config.json)",
            args.run.display()
        ),
        #[allow(unreachable_patterns)]
        _ => bail!(
            "{}: {} runs cannot be exported yet",
            args.run.display(),
            config.model.family()
        ),
    }
}

/// What stops `run` from being a finished run, if anything: an interruption
/// (or a process that died), with where the run stood.
fn unfinished_note(run: &Path) -> Result<Option<String>> {
    let Some(state) = resume_state(run)? else {
        return Ok(None);
    };
    let how = match state.status {
        RunStatus::Interrupted => "was interrupted",
        RunStatus::Running => "has not finished (it is running, or its process died)",
    };
    Ok(Some(format!(
        "the run {how} in epoch {} after step {} of {}; `tinygen train --resume {}` continues it",
        state.epoch,
        state.step,
        state.total_steps,
        run.display()
    )))
}

/// The `data` text of an exported file: where the data came from, how its
/// pixels were read, and whether training stopped early.
fn data_description(args: &ExportArgs, config: &RunConfig, pixels: &str) -> Result<String> {
    let data_dir = args.data.as_ref().unwrap_or(&config.data_dir);
    let mut text = format!(
        "MNIST IDX from {} ({} training images), {pixels}",
        data_dir.display(),
        config.n_train
    );
    if let Some(state) = resume_state(&args.run)? {
        text += &format!(
            "; training stopped early, after step {} of {}",
            state.step, state.total_steps
        );
    }
    Ok(text)
}

/// PixelCNN or PixelRNN: the layers as the board runs them, int8 calibrated
/// on binarized training images (Row LSTM gate pre-activation ranges
/// included), exact test NLL measured through the runtime and stored in the file.
fn export_autoregressive_run<M: Autoregressive>(
    args: ExportArgs,
    config: &RunConfig,
) -> Result<()> {
    let (_, model) = autoregressive::load::<M>(&args.run)?;
    let data_dir = args.data.clone().unwrap_or_else(|| config.data_dir.clone());
    let mnist = load_mnist(&data_dir)
        .with_context(|| format!("loading calibration data from {}", data_dir.display()))?;
    let description = data_description(&args, config, "pixels binarized at 0.5")?;
    let bytes = autoregressive::export_autoregressive(
        &model,
        &mnist,
        description,
        args.quant,
        args.calib,
        args.eval,
    )?;
    if args.eval > 0 {
        let m = Model::load(&bytes).map_err(|e| anyhow!("{e}"))?;
        let fig = |name: &str| {
            m.file
                .meta
                .figures
                .iter()
                .find(|f| f.name == name)
                .map_or(f32::NAN, |f| f.value)
        };
        println!(
            "{} {} through the runtime on {} test images: exact NLL {:.2} nats/image ({:.4} bits/dim)",
            args.quant.dtype().name(),
            M::NAME,
            args.eval.min(mnist.n_test),
            fig("test_nll_nats"),
            fig("test_bits_per_dim")
        );
    }
    write_model(&args.output, &bytes)
}

/// Autoencoder (decoder + encoder, fitted latent Gaussian) or GAN generator.
fn export_ae_or_gan(args: ExportArgs, config: &RunConfig) -> Result<()> {
    let data_dir = args.data.clone().unwrap_or_else(|| config.data_dir.clone());
    let mnist = load_mnist(&data_dir)
        .with_context(|| format!("loading calibration data from {}", data_dir.display()))?;
    let d = ExportData {
        mnist: &mnist,
        description: data_description(&args, config, "grayscale pixels / 255")?,
        calib: args.calib,
        eval: args.eval,
        seed: args.seed,
    };
    let bytes = if let ModelConfig::Ae(_) = config.model {
        let (_, ae) = load_ae(&args.run)?;
        let bytes = export_ae(&ae, &d, args.quant)?;
        if args.eval > 0 {
            let model = Model::load(&bytes).map_err(|e| anyhow!("{e}"))?;
            let fig = |name: &str| {
                model
                    .file
                    .meta
                    .figures
                    .iter()
                    .find(|f| f.name == name)
                    .map_or(f32::NAN, |f| f.value)
            };
            println!(
                "{} encoder + decoder through the runtime on {} test images: reconstruction \
                 BCE {:.2} nats/image, MSE {:.5}",
                args.quant.dtype().name(),
                args.eval.min(mnist.n_test),
                fig("test_recon_bce_nats"),
                fig("test_mse")
            );
        }
        bytes
    } else {
        let (_, gan) = load_gan(&args.run)?;
        export_gan(&gan, &d, args.quant)?
    };
    write_model(&args.output, &bytes)
}

fn write_model(output: &std::path::Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = output.with_extension("tgm.tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, output).with_context(|| format!("writing {}", output.display()))?;
    println!("wrote {} ({} bytes)", output.display(), bytes.len());
    Ok(())
}

fn export_vae(args: ExportArgs) -> Result<()> {
    let (config, vae) = load_vae(&args.run)?;
    let data_dir = args.data.clone().unwrap_or_else(|| config.data_dir.clone());
    let mnist = load_mnist(&data_dir)
        .with_context(|| format!("loading calibration data from {}", data_dir.display()))?;
    let net = vae_decoder_net(&vae)?;
    let mut rng = StdRng::seed_from_u64(args.seed);
    let mut calib = Vec::new();
    if args.quant == Quant::Int8 {
        let n = args.calib.clamp(1, mnist.n_train);
        let x = mnist.train_binarized(&Device::Cpu)?.narrow(0, 0, n)?;
        let (mu, logvar) = vae.encode(&x)?;
        let eps = standard_normal(&mut rng, (n, vae.latent()), &Device::Cpu)?;
        let z = (&mu + (logvar.affine(0.5, 0.0)?.exp()? * eps)?)?;
        calib.extend(z.to_vec2::<f32>()?);
        let prior = standard_normal(&mut rng, (n, vae.latent()), &Device::Cpu)?;
        calib.extend(prior.to_vec2::<f32>()?);
    }
    let mut meta = ExportMeta {
        kind: ModelKind::Vae,
        image: Shape { c: 1, h: 28, w: 28 },
        latent: vae.latent() as u16,
        data: data_description(&args, &config, "pixels binarized at 0.5")?,
        figures: Vec::new(),
        prior: None,
    };
    // The encoder q(z|x) travels with the decoder, so that the file alone
    // can be evaluated (ELBO, importance-weighted NLL) and can encode on the
    // board; int8 calibrates it on binarized training images.
    let enc_net = vae_encoder_net(&vae)?;
    let enc_calib: Vec<Vec<f32>> = if args.quant == Quant::Int8 {
        let n = args.calib.clamp(1, mnist.n_train);
        mnist
            .train_binarized(&Device::Cpu)?
            .narrow(0, 0, n)?
            .flatten_from(1)?
            .to_vec2::<f32>()?
    } else {
        Vec::new()
    };
    let encoder = || {
        Some(EncoderExport {
            net: &enc_net,
            calib: &enc_calib,
        })
    };
    let mut bytes = export_with_encoder(&net, encoder(), &meta, args.quant, &calib)?;
    if args.eval > 0 {
        let n = args.eval.min(mnist.n_test);
        let x = mnist.test_binarized(&Device::Cpu)?.narrow(0, 0, n)?;
        let (recon, kl) = {
            let model = Model::load(&bytes).map_err(|e| anyhow!("{e}"))?;
            vae_elbo_runtime(&model, &x, args.seed ^ 0xE7A1)?
        };
        println!(
            "{} encoder + decoder through the runtime on {n} test images: -ELBO {:.2} nats/image (recon {:.2} + KL {:.2})",
            args.quant.dtype().name(),
            recon + kl,
            recon,
            kl
        );
        meta.figures = vec![
            ("test_neg_elbo_nats".into(), (recon + kl) as f32),
            ("test_recon_nats".into(), recon as f32),
            ("test_kl_nats".into(), kl as f32),
        ];
        bytes = export_with_encoder(&net, encoder(), &meta, args.quant, &calib)?;
    }
    write_model(&args.output, &bytes)
}
