//! `tinygen eval FILE.tgm|RUN [--data DIR] [--json] [--k 1000] [--samples 1000] [--seed S] [--classifier PATH]`

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use tinygen_trainer::data::default_data_dir;
use tinygen_trainer::quality::{
    default_classifier_path, evaluate, export_run_f32, EvalOptions, EvalReport,
};

/// Measure a model file's quality through the runtime (the board's kernels, so
/// quantized files are measured as they run): likelihood in nats per image on
/// the test split (pixels binarized at 0.5 for VAE, PixelCNN and PixelRNN), and, from
/// runtime samples, a Frechet classifier distance to the test images, a
/// classifier inception score and the predicted-label histogram.
///
/// VAE: -ELBO and importance-weighted NLL (k draws from the file's encoder
/// q(z|x) per test image; k x test-images decoder runs, shared among
/// RAYON_NUM_THREADS threads; about 1,000 decodes per second per thread).
/// PixelCNN and PixelRNN: exact NLL and bits/dim. AutoEncoder: reconstruction BCE (grayscale
/// targets) and MSE. GAN: sample figures only.
///
/// For a run directory, its f32 model file is exported in memory (as `tinygen
/// export RUN --quant f32`) and that file is evaluated. For an f16 column from
/// an f32 file, see `tinygen convert`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Model file (.tgm), or a run directory written by `tinygen train`.
    pub file: PathBuf,
    /// MNIST-format directory whose test split is evaluated [default: data/mnist-subset].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Print one JSON object with every figure instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Importance samples per test image for the VAE's NLL (Burda et al.
    /// 2015) [default: 1000]; only VAE files have this figure.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub k: Option<u64>,
    /// Samples drawn (runtime, one thread) for FCD, inception score and label
    /// histogram; 0 skips them.
    #[arg(long, default_value_t = 1000)]
    pub samples: usize,
    /// Seed of the runtime's sampler and of the VAE's posterior draws.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Classifier weights whose penultimate features and predictions judge the
    /// samples; its hidden width comes from NAME.json or config.json beside it
    /// [default: models/classifier.safetensors].
    #[arg(long)]
    pub classifier: Option<PathBuf>,
    /// Evaluate only the first N test images (at least 1) [default: all].
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub test_images: Option<u64>,
    /// Sampling temperature of the sample figures (PixelCNN/PixelRNN; see
    /// `tinygen sample --temperature`); the likelihood is the model's own.
    #[arg(long, default_value_t = 1.0, value_name = "T", allow_negative_numbers = true,
          value_parser = super::parse_temperature)]
    pub temperature: f32,
}

/// Runs `tinygen eval`.
///
/// # Errors
///
/// If the file, the data or the classifier cannot be read, or the file's kind
/// has no figures.
pub fn run(args: EvalArgs) -> Result<()> {
    let opts = EvalOptions {
        data: args.data.clone().unwrap_or_else(default_data_dir),
        classifier: args
            .classifier
            .clone()
            .unwrap_or_else(default_classifier_path),
        k: args.k.unwrap_or(1000) as usize,
        samples: args.samples,
        seed: args.seed,
        test_images: args.test_images.map(|n| n as usize),
        temperature: args.temperature,
        progress: !args.json || std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    let label = args.file.display().to_string();
    let bytes = if args.file.is_dir() {
        if !args.json {
            println!("{label} is a run directory: evaluating its f32 export (in memory)");
        }
        export_run_f32(&args.file, &opts.data)?
    } else {
        std::fs::read(&args.file).with_context(|| format!("reading {label}"))?
    };
    let report = evaluate(&bytes, &label, &opts)?;
    if args.k.is_some() && report.vae.is_none() {
        eprintln!(
            "note: --k ignored: only a VAE file has an importance-weighted NLL (this is a {})",
            report.kind
        );
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

fn print_table(r: &EvalReport) {
    let row = |name: &str, value: String| println!("{name:<36} {value}");
    row("file", r.file.clone());
    row("kind", format!("{} ({})", r.kind, r.dtype));
    row(
        "test images",
        format!(
            "{} from {}{}",
            r.test_images,
            r.data,
            if r.binarized {
                ", binarized at 0.5"
            } else {
                ", grayscale"
            }
        ),
    );
    if let Some(v) = &r.vae {
        let k = r.k.unwrap_or(0);
        row(
            "-ELBO (nats/image)",
            format!(
                "{:.2} (recon {:.2} + KL {:.2}; {k} draws per image)",
                v.neg_elbo_nats, v.recon_nats, v.kl_nats
            ),
        );
        row(
            &format!("IWAE NLL, k = {k} (nats/image)"),
            format!(
                "{:.2} ({:.4} bits/dim)",
                v.iwae_nll_nats, v.iwae_bits_per_dim
            ),
        );
    }
    if let (Some(nll), Some(bpd)) = (r.nll_nats, r.bits_per_dim) {
        row(
            "exact NLL (nats/image)",
            format!("{nll:.2} ({bpd:.4} bits/dim)"),
        );
    }
    if let (Some(bce), Some(mse)) = (r.recon_bce_nats, r.mse) {
        row("reconstruction BCE (nats/image)", format!("{bce:.2}"));
        row("reconstruction MSE (per pixel)", format!("{mse:.5}"));
    }
    if r.kind == "gan" {
        row(
            "likelihood",
            "none: a GAN defines no density to evaluate (sample figures only)".into(),
        );
    }
    if r.likelihood_seconds > 0.0 {
        row("likelihood time", format!("{:.1} s", r.likelihood_seconds));
    }
    if let Some(s) = &r.sample_quality {
        row(
            &if r.temperature == 1.0 {
                format!("FCD ({} samples vs test)", r.samples)
            } else {
                format!(
                    "FCD ({} samples at T = {} vs test)",
                    r.samples, r.temperature
                )
            },
            format!("{:.2}", s.fcd),
        );
        row(
            "inception score (max 10)",
            format!("{:.2}", s.inception_score),
        );
        row(
            "label entropy (nats, ln 10 = 2.303)",
            format!("{:.3}", s.label_entropy),
        );
        row(
            &format!(
                "confident (top class >= {})",
                tinygen_trainer::quality::CONFIDENT
            ),
            format!("{:.1} % of the samples", 100.0 * s.confident_share),
        );
        row(
            "label histogram 0..9",
            s.label_histogram
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(" "),
        );
        row(
            "host samples/s",
            format!("{:.0} (seed {})", s.host_samples_per_s, r.seed),
        );
    }
    if let Some(x) = &r.reference {
        row(
            "real data (train vs test)",
            format!(
                "FCD {:.2} ({} training images), IS {:.2}, label entropy {:.3}, confident {:.1} %",
                x.fcd_train_vs_test,
                x.train_images,
                x.inception_score_test,
                x.label_entropy_test,
                100.0 * x.confident_share_test
            ),
        );
        row(
            "the classifier's test accuracy",
            format!(
                "{:.1} % (grayscale test images)",
                100.0 * x.classifier_accuracy_test
            ),
        );
    }
}

/// Parses a count of at least 1.
fn at_least_one(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("must be a whole number of at least 1, got {s}")),
    }
}
