//! `tinygen export RUN --quant f32|f16|int8 -o FILE.tgm`

use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};
use candle_core::Device;
use clap::Args;
use rand::rngs::StdRng;
use rand::SeedableRng;
use tinygen_runtime::format::{ModelKind, Shape};
use tinygen_runtime::Model;

use tinygen_trainer::data::load_mnist;
use tinygen_trainer::eval::vae_elbo_runtime;
use tinygen_trainer::export::{export, vae_decoder_net, ExportMeta, Quant};
use tinygen_trainer::models::standard_normal;
use tinygen_trainer::train::load_vae;

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
    /// Training images whose posterior latents calibrate int8 activation ranges
    /// (as many prior samples are added).
    #[arg(long, default_value_t = 1000)]
    pub calib: usize,
    /// Test images on which the exported file's -ELBO is measured and stored in it
    /// (0 to skip).
    #[arg(long, default_value_t = 1000)]
    pub eval: usize,
    /// Seed of the calibration and evaluation noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Runs `tinygen export`.
///
/// # Errors
///
/// On unreadable runs or data, or a file the runtime rejects.
pub fn run(args: ExportArgs) -> Result<()> {
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
        data: format!(
            "MNIST IDX from {} ({} training images), pixels binarized at 0.5",
            data_dir.display(),
            config.n_train
        ),
        figures: Vec::new(),
        prior: None,
    };
    let mut bytes = export(&net, &meta, args.quant, &calib)?;
    if args.eval > 0 {
        let n = args.eval.min(mnist.n_test);
        let x = mnist.test_binarized(&Device::Cpu)?.narrow(0, 0, n)?;
        let (recon, kl) = {
            let model = Model::load(&bytes).map_err(|e| anyhow!("{e}"))?;
            vae_elbo_runtime(&vae, &model, &x, args.seed ^ 0xE7A1)?
        };
        println!(
            "{} decoder through the runtime on {n} test images: -ELBO {:.2} nats/image (recon {:.2} + KL {:.2})",
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
        bytes = export(&net, &meta, args.quant, &calib)?;
    }
    if let Some(dir) = args.output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = args.output.with_extension("tgm.tmp");
    std::fs::write(&tmp, &bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &args.output)
        .with_context(|| format!("writing {}", args.output.display()))?;
    println!("wrote {} ({} bytes)", args.output.display(), bytes.len());
    Ok(())
}
