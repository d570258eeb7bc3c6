//! The quality figures of a model file (`tinygen eval`), measured through
//! the runtime, so a quantized file is measured as the board runs it:
//!
//! - VAE: -ELBO and the importance-weighted NLL (Burda et al. 2015, `k`
//!   draws from the file's encoder q(z|x) per test image), nats per image;
//! - PixelCNN and PixelRNN: exact NLL, nats per image and bits per dimension;
//! - AutoEncoder: reconstruction cross-entropy (grayscale targets) and MSE;
//! - every file that samples (VAE, GAN, PixelCNN, PixelRNN, AutoEncoder): Frechet
//!   classifier distance of `samples` runtime samples to the test images on
//!   the penultimate features of tinygen's MNIST classifier, classifier
//!   inception score, predicted-label histogram and its entropy, and host
//!   samples per second.
//!
//! Families that model binary pixels (VAE, PixelCNN, PixelRNN) are measured
//! on test images binarized at 0.5, and their samples are compared with the
//! binarized test images; the others with the grayscale ones.
//!
//! ```no_run
//! use tinygen_trainer::quality::{evaluate, EvalOptions};
//! let bytes = std::fs::read("models/vae-int8.tgm")?;
//! let report = evaluate(&bytes, "models/vae-int8.tgm", &EvalOptions::default())?;
//! println!("{}", serde_json::to_string_pretty(&report)?);
//! # anyhow::Ok(())
//! ```

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::Device;
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng};
use rand_distr::StandardNormal;
use rayon::prelude::*;
use serde::Serialize;
use tinygen_runtime::format::{ModelKind, Shape};
use tinygen_runtime::{Decoder, Encoder, Model};

use crate::data::{self, load_mnist, Mnist};
use crate::eval::{bernoulli_nll, HostArena};
use crate::export::{export_with_encoder, vae_decoder_net, vae_encoder_net};
use crate::export::{EncoderExport, ExportMeta, Quant};
use crate::export_pixelcnn::{export_pixelcnn, pixelcnn_nll_runtime};
use crate::export_runs::{ae_recon_runtime, export_ae, export_gan, ExportData};
use crate::metrics::{
    bits_per_dim, entropy, frechet_distance, gaussian_kl, inception_score, label_histogram,
    log_diag_normal_from_eps, log_mean_exp, log_standard_normal, softmax, GaussianFit,
};
use crate::models::classifier::{Classifier, ClassifierConfig, CLASSES};
use crate::sample::sample_model_at;
use crate::train::{load_run, load_vae, ModelConfig};

/// Why a file cannot be evaluated.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The classifier's weights are not there.
    #[error(
        "classifier weights {0} not found (the shipped classifier is models/classifier.safetensors; \
         pass --classifier PATH, or --samples 0 to skip the sample figures)"
    )]
    ClassifierMissing(PathBuf),
    /// The data directory is not there.
    #[error("data directory {0} not found (an MNIST-format directory with the four IDX files; pass --data DIR)")]
    DataMissing(PathBuf),
    /// A kind `tinygen eval` has no figures for.
    #[error("{kind} files cannot be evaluated: {why}")]
    UnsupportedKind {
        /// The file's kind.
        kind: String,
        /// Why.
        why: &'static str,
    },
    /// A VAE file written before VAE files carried their encoder.
    #[error(
        "this VAE file has no encoder q(z|x), which the ELBO and the importance-weighted NLL \
         need: re-export its run with this tinygen (or evaluate the run directory)"
    )]
    VaeWithoutEncoder,
}

/// What to measure and on what.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalOptions {
    /// MNIST-format directory whose test split is used.
    pub data: PathBuf,
    /// Classifier weights (safetensors; its hidden width is read from the
    /// `.json` of the same name or the `config.json` beside it).
    pub classifier: PathBuf,
    /// Importance samples per test image for the VAE's NLL.
    pub k: usize,
    /// Samples drawn for the sample figures (0: none).
    pub samples: usize,
    /// Seed of the sampling and of the VAE's posterior draws.
    pub seed: u64,
    /// Evaluate only the first this many test images (all if `None`).
    pub test_images: Option<usize>,
    /// Sampling temperature of the sample figures (PixelCNN/PixelRNN only;
    /// the likelihood is always the model's own, at 1).
    pub temperature: f32,
    /// Show a progress bar on stderr for the long parts.
    pub progress: bool,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            data: data::default_data_dir(),
            classifier: default_classifier_path(),
            k: 1000,
            samples: 1000,
            seed: 0,
            test_images: None,
            temperature: 1.0,
            progress: false,
        }
    }
}

/// The shipped classifier: `models/classifier.safetensors` under the
/// current directory if it exists there, else next to this crate.
pub fn default_classifier_path() -> PathBuf {
    let local = PathBuf::from("models/classifier.safetensors");
    if local.is_file() {
        return local;
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("models")
        .join("classifier.safetensors")
}

/// The VAE's likelihood figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VaeLikelihood {
    /// -ELBO, nats per image: reconstruction (averaged over the `k` draws) + KL.
    pub neg_elbo_nats: f64,
    /// Expected reconstruction -ln p(x|z) under q(z|x), nats per image.
    pub recon_nats: f64,
    /// KL(q(z|x) || N(0, I)), nats per image (exact).
    pub kl_nats: f64,
    /// Importance-weighted NLL estimate -ln (1/k) sum_j p(x, z_j) / q(z_j|x), nats per image.
    pub iwae_nll_nats: f64,
    /// The same in bits per dimension.
    pub iwae_bits_per_dim: f64,
}

/// Figures of generated images.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SampleQuality {
    /// Frechet classifier distance to the test images.
    pub fcd: f64,
    /// Classifier inception score (1 to 10).
    pub inception_score: f64,
    /// Predicted labels 0..9, counts.
    pub label_histogram: Vec<usize>,
    /// Entropy of the label histogram, nats (ln 10 = 2.303: all digits equally present).
    pub label_entropy: f64,
    /// Share of the samples the classifier gives one digit a probability of
    /// at least [`CONFIDENT`]: a direct reading of "recognizable digits"
    /// (the real test images' share is in [`Reference`]).
    pub confident_share: f64,
    /// Host samples per second (the runtime's sampler, one thread, sampling only).
    pub host_samples_per_s: f64,
}

/// The same figures for real images: the floor the sample figures are read against.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reference {
    /// FCD between the first `samples` training images and the test images
    /// (processed as the samples' reference is: binarized or not).
    pub fcd_train_vs_test: f64,
    /// Training images in that FCD.
    pub train_images: usize,
    /// Inception score of the test images.
    pub inception_score_test: f64,
    /// Label entropy of the test images' predicted labels, nats.
    pub label_entropy_test: f64,
    /// [`SampleQuality::confident_share`] of the test images.
    pub confident_share_test: f64,
    /// The judge itself: the classifier's accuracy on the grayscale test
    /// images against their labels (what it was trained on; the binarized
    /// images the binary families are compared with are a little harder).
    pub classifier_accuracy_test: f64,
}

/// Every figure of one file. Absent figures are omitted from the JSON,
/// except `k` (null where no importance sampling is done).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalReport {
    /// The file (or run directory) evaluated.
    pub file: String,
    /// Model kind, lower case.
    pub kind: String,
    /// Weight storage: f32, f16 or int8.
    pub dtype: String,
    /// Data directory.
    pub data: String,
    /// Test images evaluated.
    pub test_images: usize,
    /// Whether test pixels were binarized at 0.5.
    pub binarized: bool,
    /// Seed of the samples and of the posterior draws.
    pub seed: u64,
    /// Importance samples per image (VAE), else null.
    pub k: Option<usize>,
    /// Samples drawn for the sample figures.
    pub samples: usize,
    /// Their sampling temperature (omitted at 1, the model's own distribution).
    #[serde(skip_serializing_if = "is_one")]
    pub temperature: f32,
    /// VAE likelihood.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub vae: Option<VaeLikelihood>,
    /// Exact NLL, nats per image (autoregressive models).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nll_nats: Option<f64>,
    /// Exact NLL in bits per dimension.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bits_per_dim: Option<f64>,
    /// Reconstruction cross-entropy, nats per image (AutoEncoder).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recon_bce_nats: Option<f64>,
    /// Reconstruction MSE per pixel, pixels in [0, 1] (AutoEncoder).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mse: Option<f64>,
    /// Sample figures.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub sample_quality: Option<SampleQuality>,
    /// Real-data reference for the sample figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<Reference>,
    /// Seconds spent on the likelihood.
    pub likelihood_seconds: f64,
    /// Seconds spent on sampling and classifying.
    pub samples_seconds: f64,
}

impl EvalReport {
    /// The family's headline likelihood figure in nats per image: IWAE NLL
    /// (VAE), exact NLL (autoregressive), reconstruction BCE (AutoEncoder).
    pub fn headline_nats(&self) -> Option<(&'static str, f64)> {
        if let Some(v) = &self.vae {
            return Some(("IWAE NLL", v.iwae_nll_nats));
        }
        if let Some(v) = self.nll_nats {
            return Some(("NLL", v));
        }
        self.recon_bce_nats.map(|v| ("recon BCE", v))
    }
}

/// A classifier's view of a set of images.
#[derive(Debug, Clone, PartialEq)]
pub struct Classified {
    /// Penultimate features, `n x dim`, row after row.
    pub features: Vec<f32>,
    /// Feature width.
    pub dim: usize,
    /// Class probabilities, one row per image.
    pub probs: Vec<Vec<f64>>,
    /// Predicted labels.
    pub labels: Vec<usize>,
}

/// Loads a classifier; its hidden width comes from `NAME.json` or the
/// `config.json` beside the weights (`"hidden"`), else the default.
///
/// # Errors
/// [`EvalError::ClassifierMissing`] if the weights are not there; if they or
/// the JSON are malformed.
pub fn load_classifier(path: &Path) -> Result<Classifier> {
    if !path.is_file() {
        return Err(EvalError::ClassifierMissing(path.to_path_buf()).into());
    }
    let mut config = ClassifierConfig::default();
    let beside = path.parent().map(|d| d.join("config.json"));
    for json in std::iter::once(path.with_extension("json")).chain(beside) {
        if json.is_file() {
            let text = std::fs::read_to_string(&json)
                .with_context(|| format!("reading {}", json.display()))?;
            let v: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("malformed {}", json.display()))?;
            if v["family"] != "classifier" {
                bail!(
                    "{} is not a classifier's config (family {})",
                    json.display(),
                    v["family"]
                );
            }
            if let Some(h) = v["hidden"].as_u64() {
                config.hidden = h as usize;
            }
            break;
        }
    }
    Classifier::load(path, config)
        .with_context(|| format!("loading the classifier {}", path.display()))
}

/// Runs the classifier on `images` (`n * 784` bytes, pixel / 255 as it was trained).
///
/// # Errors
/// On candle errors.
pub fn classify(classifier: &Classifier, images: &[u8]) -> Result<Classified> {
    let batch = 250;
    let mut out = Classified {
        features: Vec::with_capacity(images.len() / data::PIXELS * 128),
        dim: 0,
        probs: Vec::new(),
        labels: Vec::new(),
    };
    for chunk in images.chunks(batch * data::PIXELS) {
        let n = chunk.len() / data::PIXELS;
        let x = data::images_float(&chunk[..n * data::PIXELS], n, &Device::Cpu)?;
        let f = classifier.features(&x)?;
        out.dim = f.dim(1)?;
        out.features.extend(f.flatten_all()?.to_vec1::<f32>()?);
        for row in classifier.logits(&x)?.to_vec2::<f32>()? {
            let p = softmax(&row);
            let label = p
                .iter()
                .enumerate()
                .fold(
                    (0, f64::NEG_INFINITY),
                    |b, (i, &v)| if v > b.1 { (i, v) } else { b },
                )
                .0;
            out.probs.push(p);
            out.labels.push(label);
        }
    }
    Ok(out)
}

fn is_one(t: &f32) -> bool {
    *t == 1.0
}

/// Top-class probability from which a sample counts as a confidently
/// recognized digit ([`SampleQuality::confident_share`]).
pub const CONFIDENT: f64 = 0.9;

/// Share of `c`'s images whose most likely class has probability >= [`CONFIDENT`].
pub fn confident_share(c: &Classified) -> f64 {
    let n = c
        .probs
        .iter()
        .filter(|p| p.iter().copied().fold(0.0, f64::max) >= CONFIDENT)
        .count();
    n as f64 / c.probs.len().max(1) as f64
}

/// FCD, inception score and label histogram of `samples` against `reference`.
fn compare(samples: &Classified, reference: &Classified) -> (f64, f64, Vec<usize>, f64) {
    let fcd = frechet_distance(
        &GaussianFit::from_flat(&samples.features, samples.dim),
        &GaussianFit::from_flat(&reference.features, reference.dim),
    );
    let hist = label_histogram(&samples.labels, CLASSES);
    let h = entropy(&hist);
    (fcd, inception_score(&samples.probs), hist, h)
}

/// Images binarized at 0.5, as bytes 0 / 255 (what the runtime's encoder
/// and samplers read for a binary family).
pub fn binarize(images: &[u8]) -> Vec<u8> {
    images
        .iter()
        .map(|&p| if p >= 128 { 255 } else { 0 })
        .collect()
}

/// A generator seed of its own for test image `i` (splitmix64 of the seed
/// and the index), so the draws do not depend on how images are shared
/// among threads.
fn image_seed(seed: u64, i: usize) -> u64 {
    let mut z = seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn progress_bar(show: bool, len: usize, what: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len as u64);
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix} [{bar:30}] {pos}/{len} [{elapsed_precise}<{eta_precise}]",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_prefix(what.to_string());
    pb
}

/// -ELBO and importance-weighted NLL of a VAE file on binarized `images`
/// (`n * 784` bytes, >= 128 is 1), entirely through the runtime: per image,
/// the file's encoder gives q(z|x) = N(mean, exp(log-variance)); `k` draws
/// `z_j` from it (a generator of its own per image, from `seed`) go through
/// the file's decoder; `ln p(x|z_j)` is Bernoulli on the binarized pixels,
/// `ln p(z_j)` standard normal, `ln q(z_j|x)` the posterior's density. The
/// NLL estimate is `-ln (1/k) sum_j exp(ln p(x|z_j) + ln p(z_j) - ln q(z_j|x))`
/// (log-mean-exp); -ELBO is the mean of `-ln p(x|z_j)` plus the exact KL.
/// Images are shared among rayon's threads (`RAYON_NUM_THREADS`); the
/// result does not depend on their number.
///
/// # Errors
/// [`EvalError::VaeWithoutEncoder`] for a file without an encoder; if the
/// model is not a decoder model or `k` is 0.
pub fn vae_iwae_runtime(
    model: &Model<'_>,
    images: &[u8],
    k: usize,
    seed: u64,
    progress: &ProgressBar,
) -> Result<VaeLikelihood> {
    if k == 0 {
        bail!("k must be at least 1");
    }
    if model.file.encoder.is_none() {
        return Err(EvalError::VaeWithoutEncoder.into());
    }
    let latent = model.file.meta.latent as usize;
    let pixels = model.file.meta.image.numel() as usize;
    let n = images.len() / pixels;
    let per_image: Vec<Result<(f64, f64, f64)>> = (0..n)
        .into_par_iter()
        .map_init(
            || {
                (
                    HostArena::new(model.arena_bytes()),
                    vec![0f32; 2 * latent],
                    vec![0f32; latent],
                    vec![0f32; latent],
                    vec![0f32; pixels],
                    vec![0f64; k],
                )
            },
            |(arena, stats, eps, z, logits, w), i| {
                let img = binarize(&images[i * pixels..(i + 1) * pixels]);
                let x: Vec<f32> = img.iter().map(|&p| f32::from(u8::from(p != 0))).collect();
                {
                    let mut enc = Encoder::new(model, arena.bytes()).map_err(|e| anyhow!("{e}"))?;
                    if enc.output_len() != 2 * latent {
                        bail!(
                            "the encoder gives {} values, not the 2 x {latent} of q(z|x)",
                            enc.output_len()
                        );
                    }
                    enc.encode(&img, stats)
                        .map_err(|e| anyhow!("encoding: {e}"))?;
                }
                let (mu, logvar) = stats.split_at(latent);
                let kl = gaussian_kl(mu, logvar);
                let mut rng = StdRng::seed_from_u64(image_seed(seed, i));
                let mut dec = Decoder::new(model, arena.bytes()).map_err(|e| anyhow!("{e}"))?;
                let mut recon = 0f64;
                for wj in w.iter_mut() {
                    for d in 0..latent {
                        eps[d] = rng.sample(StandardNormal);
                        z[d] = mu[d] + (0.5 * logvar[d]).exp() * eps[d];
                    }
                    dec.decode_logits(z, logits)
                        .map_err(|e| anyhow!("decoding: {e}"))?;
                    let log_px = -bernoulli_nll(logits, &x);
                    recon -= log_px;
                    *wj = log_px + log_standard_normal(z) - log_diag_normal_from_eps(eps, logvar);
                }
                progress.inc(1);
                Ok((recon / k as f64, kl, -log_mean_exp(w)))
            },
        )
        .collect();
    progress.finish_and_clear();
    let (mut recon, mut kl, mut nll) = (0f64, 0f64, 0f64);
    for r in per_image {
        let (a, b, c) = r?;
        recon += a;
        kl += b;
        nll += c;
    }
    let n = n.max(1) as f64;
    let (recon, kl, nll) = (recon / n, kl / n, nll / n);
    Ok(VaeLikelihood {
        neg_elbo_nats: recon + kl,
        recon_nats: recon,
        kl_nats: kl,
        iwae_nll_nats: nll,
        iwae_bits_per_dim: bits_per_dim(nll, pixels),
    })
}

/// Exact NLL in nats per image of binarized `images` under a PixelCNN or
/// PixelRNN file, through the runtime's sampler (one forward pass per image
/// gives every conditional logit), images shared among rayon's threads.
///
/// # Errors
/// If the model is not autoregressive.
pub fn autoregressive_nll_runtime(model: &Model<'_>, images: &[u8]) -> Result<f64> {
    let chunk = 25 * data::PIXELS;
    let parts: Vec<Result<(f64, usize)>> = images
        .par_chunks(chunk)
        .map(|c| Ok((pixelcnn_nll_runtime(model, c)?, c.len() / data::PIXELS)))
        .collect();
    let (mut total, mut n) = (0f64, 0usize);
    for p in parts {
        let (nll, count) = p?;
        total += nll * count as f64;
        n += count;
    }
    Ok(total / n.max(1) as f64)
}

/// An f32 model file of a run directory, exported in memory as `tinygen
/// export RUN --quant f32` would (without stored figures). Calibration-free;
/// the AutoEncoder's prior is fitted on the run's data directory if it
/// exists, else on `data`.
///
/// # Errors
/// If the run cannot be read or its family has no model file.
pub fn export_run_f32(run: &Path, data: &Path) -> Result<Vec<u8>> {
    let (config, _) = load_run(run)?;
    let data_dir = if config.data_dir.is_dir() {
        config.data_dir.clone()
    } else {
        data.to_path_buf()
    };
    let mnist = || -> Result<Mnist> {
        load_mnist(&data_dir).with_context(|| format!("loading {}", data_dir.display()))
    };
    let description = |pixels: &str| {
        format!(
            "MNIST IDX from {} ({} training images), {pixels}",
            data_dir.display(),
            config.n_train
        )
    };
    let image = Shape { c: 1, h: 28, w: 28 };
    match config.model {
        ModelConfig::Vae(_) => {
            let (_, vae) = load_vae(run)?;
            let meta = ExportMeta {
                kind: ModelKind::Vae,
                image,
                latent: vae.latent() as u16,
                data: description("pixels binarized at 0.5"),
                figures: Vec::new(),
                prior: None,
            };
            let enc = vae_encoder_net(&vae)?;
            let encoder = Some(EncoderExport {
                net: &enc,
                calib: &[],
            });
            export_with_encoder(&vae_decoder_net(&vae)?, encoder, &meta, Quant::F32, &[])
        }
        ModelConfig::Ae(_) | ModelConfig::Gan(_) => {
            let mnist = mnist()?;
            let d = ExportData {
                mnist: &mnist,
                description: description("grayscale pixels / 255"),
                calib: 0,
                eval: 0,
                seed: 0,
            };
            if let ModelConfig::Ae(_) = config.model {
                let (_, ae) = crate::train_ae::load_ae(run)?;
                export_ae(&ae, &d, Quant::F32)
            } else {
                let (_, gan) = crate::train_gan::load_gan(run)?;
                export_gan(&gan, &d, Quant::F32)
            }
        }
        ModelConfig::PixelCnn(_) => {
            let (_, model) = crate::train_pixelcnn::load_pixelcnn(run)?;
            let mnist = mnist()?;
            export_pixelcnn(
                &model,
                &mnist,
                description("pixels binarized at 0.5"),
                Quant::F32,
                0,
                0,
            )
        }
        ModelConfig::PixelRnn(_) => {
            let (_, model) = crate::train_pixelrnn::load_pixelrnn(run)?;
            let mnist = mnist()?;
            crate::export_pixelrnn::export_pixelrnn(
                &model,
                &mnist,
                description("pixels binarized at 0.5"),
                Quant::F32,
                0,
                0,
            )
        }
        ModelConfig::Classifier(_) => Err(EvalError::UnsupportedKind {
            kind: "classifier".into(),
            why: "the classifier is the judge of the sample figures, not a generative model",
        }
        .into()),
        #[allow(unreachable_patterns)]
        _ => bail!(
            "{}: {} runs cannot be exported yet",
            run.display(),
            config.model.family()
        ),
    }
}

/// Every figure of a model file (`bytes`, named `label` in the report).
///
/// # Errors
/// [`EvalError`] for a missing data directory or classifier, a kind without
/// figures or a VAE without encoder; if the runtime rejects the file.
pub fn evaluate(bytes: &[u8], label: &str, opts: &EvalOptions) -> Result<EvalReport> {
    let model = Model::load(bytes).map_err(|e| anyhow!("{label}: {e}"))?;
    let kind = model.file.kind;
    let kind_name = format!("{kind:?}").to_lowercase();
    let binary = match kind {
        ModelKind::Vae | ModelKind::PixelCnn | ModelKind::PixelRnn => true,
        ModelKind::Gan | ModelKind::AutoEncoder => false,
        ModelKind::Classifier => {
            return Err(EvalError::UnsupportedKind {
                kind: kind_name,
                why: "a classifier file generates nothing",
            }
            .into())
        }
    };
    if !opts.data.is_dir() {
        return Err(EvalError::DataMissing(opts.data.clone()).into());
    }
    // Before the long likelihood run, so that a missing classifier fails at once.
    let classifier = if opts.samples > 0 {
        Some(load_classifier(&opts.classifier)?)
    } else {
        None
    };
    let mnist = load_mnist(&opts.data)
        .with_context(|| format!("loading the test split of {}", opts.data.display()))?;
    let n_test = opts
        .test_images
        .map_or(mnist.n_test, |n| n.min(mnist.n_test));
    let test = &mnist.test_images[..n_test * data::PIXELS];
    let reference_images = if binary {
        binarize(test)
    } else {
        test.to_vec()
    };

    let mut report = EvalReport {
        file: label.to_string(),
        kind: kind_name.clone(),
        dtype: model.file.dtype.name().to_string(),
        data: opts.data.display().to_string(),
        test_images: n_test,
        binarized: binary,
        seed: opts.seed,
        k: None,
        samples: opts.samples,
        temperature: opts.temperature,
        vae: None,
        nll_nats: None,
        bits_per_dim: None,
        recon_bce_nats: None,
        mse: None,
        sample_quality: None,
        reference: None,
        likelihood_seconds: 0.0,
        samples_seconds: 0.0,
    };

    let t = Instant::now();
    match kind {
        ModelKind::Vae => {
            let pb = progress_bar(
                opts.progress,
                n_test,
                &format!("IWAE k={} over {n_test} test images", opts.k),
            );
            report.vae = Some(vae_iwae_runtime(
                &model,
                &reference_images,
                opts.k,
                opts.seed,
                &pb,
            )?);
            report.k = Some(opts.k);
        }
        ModelKind::PixelCnn | ModelKind::PixelRnn => {
            let nll = autoregressive_nll_runtime(&model, &reference_images)?;
            report.nll_nats = Some(nll);
            report.bits_per_dim = Some(bits_per_dim(nll, data::PIXELS));
        }
        ModelKind::AutoEncoder => {
            let (bce, mse) = ae_recon_runtime(&model, test)?;
            report.recon_bce_nats = Some(bce);
            report.mse = Some(mse);
        }
        ModelKind::Gan | ModelKind::Classifier => {}
    }
    report.likelihood_seconds = t.elapsed().as_secs_f64();

    if let Some(classifier) = classifier {
        let t = Instant::now();
        if opts.progress {
            eprintln!("sampling {} images with the runtime ...", opts.samples);
        }
        let t_sample = Instant::now();
        let pixels = sample_model_at(&model, opts.samples, opts.seed, opts.temperature)?;
        let per_s = opts.samples as f64 / t_sample.elapsed().as_secs_f64();
        let reference = classify(&classifier, &reference_images)?;
        let samples = classify(&classifier, &pixels)?;
        let (fcd, is, hist, h) = compare(&samples, &reference);
        report.sample_quality = Some(SampleQuality {
            fcd,
            inception_score: is,
            label_histogram: hist,
            label_entropy: h,
            confident_share: confident_share(&samples),
            host_samples_per_s: per_s,
        });
        // Real images through the same pipeline: what a perfect model's
        // figures look like at this sample size.
        let n_train = opts.samples.min(mnist.n_train);
        let train = &mnist.train_images[..n_train * data::PIXELS];
        let train = if binary {
            binarize(train)
        } else {
            train.to_vec()
        };
        let train = classify(&classifier, &train)?;
        let (fcd_train, _, _, _) = compare(&train, &reference);
        let gray = if binary {
            classify(&classifier, test)?
        } else {
            reference.clone()
        };
        let labels = &mnist.test_labels[..n_test];
        let correct = gray
            .labels
            .iter()
            .zip(labels)
            .filter(|(&p, &l)| p == usize::from(l))
            .count();
        report.reference = Some(Reference {
            classifier_accuracy_test: correct as f64 / n_test.max(1) as f64,
            fcd_train_vs_test: fcd_train,
            train_images: n_train,
            inception_score_test: inception_score(&reference.probs),
            label_entropy_test: entropy(&label_histogram(&reference.labels, CLASSES)),
            confident_share_test: confident_share(&reference),
        });
        report.samples_seconds = t.elapsed().as_secs_f64();
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::{export_with_encoder, EncoderExport, FloatLayer, FloatNet};
    use tinygen_runtime::format::{Act, Op};

    /// A VAE file whose decoder ignores z (zero weights) and gives every
    /// pixel the logit `logit`, and whose encoder gives mean 0 and
    /// log-variance `logvar` for any image.
    fn constant_vae(logit: f32, logvar: f32, latent: usize) -> Vec<u8> {
        constant_vae_with_mean(logit, 0.0, logvar, latent)
    }

    /// As [`constant_vae`], with posterior mean `mean` in every dimension.
    fn constant_vae_with_mean(logit: f32, mean: f32, logvar: f32, latent: usize) -> Vec<u8> {
        let dec = FloatNet {
            input: Shape {
                c: latent as u16,
                h: 1,
                w: 1,
            },
            layers: vec![
                FloatLayer {
                    op: Op::Dense {
                        inp: latent as u16,
                        out: 784,
                    },
                    act: Act::None,
                    weight: vec![0.0; latent * 784],
                    bias: vec![logit; 784],
                },
                FloatLayer {
                    op: Op::Reshape(Shape { c: 1, h: 28, w: 28 }),
                    act: Act::None,
                    weight: Vec::new(),
                    bias: Vec::new(),
                },
            ],
        };
        let mut bias = vec![mean; latent];
        bias.extend(vec![logvar; latent]);
        let enc = FloatNet {
            input: Shape { c: 1, h: 28, w: 28 },
            layers: vec![FloatLayer {
                op: Op::Dense {
                    inp: 784,
                    out: 2 * latent as u16,
                },
                act: Act::None,
                weight: vec![0.0; 784 * 2 * latent],
                bias,
            }],
        };
        let meta = ExportMeta {
            kind: ModelKind::Vae,
            image: Shape { c: 1, h: 28, w: 28 },
            latent: latent as u16,
            data: "test".into(),
            figures: Vec::new(),
            prior: None,
        };
        let encoder = Some(EncoderExport {
            net: &enc,
            calib: &[],
        });
        export_with_encoder(&dec, encoder, &meta, Quant::F32, &[]).unwrap()
    }

    fn images(n: usize) -> Vec<u8> {
        (0..n * 784)
            .map(|i| if (i * 7 + i / 784) % 5 < 2 { 200 } else { 30 })
            .collect()
    }

    #[test]
    fn vae_with_a_constant_decoder_has_the_known_likelihood() {
        // p(x|z) does not depend on z, so p(x) = p(x|z) exactly: with the
        // posterior equal to the prior (logvar 0) every importance weight is
        // ln p(x|z), IWAE = ELBO = the Bernoulli NLL; with a narrower
        // posterior the KL adds to -ELBO while the IWAE estimate stays
        // unbiased (its weights p(z)/q(z) average to 1 only in expectation).
        let l = 3f32.ln(); // p = 3/4
        let imgs = images(4);
        let ones = imgs.iter().filter(|&&p| p >= 128).count() as f64 / 4.0;
        let want = -(ones * 0.75f64.ln() + (784.0 - ones) * 0.25f64.ln());
        let bytes = constant_vae(l, 0.0, 3);
        let model = Model::load(&bytes).unwrap();
        let pb = ProgressBar::hidden();
        let v = vae_iwae_runtime(&model, &imgs, 5, 1, &pb).unwrap();
        assert!((v.iwae_nll_nats - want).abs() < 1e-3, "{v:?} vs {want}");
        assert!((v.neg_elbo_nats - want).abs() < 1e-3, "{v:?}");
        assert!(v.kl_nats.abs() < 1e-9);
        assert!((v.iwae_bits_per_dim - want / (784.0 * 2f64.ln())).abs() < 1e-6);

        let bytes = constant_vae(l, -1.0, 3);
        let model = Model::load(&bytes).unwrap();
        let v1 = vae_iwae_runtime(&model, &imgs, 1, 1, &pb).unwrap();
        let kl = 3.0 * 0.5 * ((-1f64).exp() - 1.0 + 1.0);
        assert!((v1.kl_nats - kl).abs() < 1e-6, "{v1:?} vs {kl}");
        assert!((v1.neg_elbo_nats - (want + kl)).abs() < 1e-3);
        // Thread count does not change the result: same seeds per image.
        let v2 = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap()
            .install(|| vae_iwae_runtime(&model, &imgs, 1, 1, &pb).unwrap());
        assert_eq!(v1, v2);
    }

    #[test]
    fn iwae_converges_to_the_exact_nll_when_the_posterior_is_off() {
        // Constant decoder again, so the exact NLL is known; the posterior
        // N(0.5, e^0.5) is off the prior, so -ELBO exceeds the NLL by the
        // KL while the importance-weighted estimate, with bounded weights
        // p(z)/q(z) (q wider than p), approaches the NLL as k grows.
        let l = 3f32.ln();
        let imgs = images(3);
        let ones = imgs.iter().filter(|&&p| p >= 128).count() as f64 / 3.0;
        let want = -(ones * 0.75f64.ln() + (784.0 - ones) * 0.25f64.ln());
        let bytes = constant_vae_with_mean(l, 0.5, 0.5, 2);
        let model = Model::load(&bytes).unwrap();
        let pb = ProgressBar::hidden();
        let kl = 2.0 * 0.5 * (0.25 + 0.5f64.exp() - 1.0 - 0.5);
        let v = vae_iwae_runtime(&model, &imgs, 4000, 3, &pb).unwrap();
        assert!((v.neg_elbo_nats - (want + kl)).abs() < 1e-3, "{v:?}");
        assert!((v.iwae_nll_nats - want).abs() < 0.02, "{v:?} vs {want}");
    }

    #[test]
    fn vae_without_encoder_is_a_typed_error() {
        let dec = FloatNet {
            input: Shape { c: 2, h: 1, w: 1 },
            layers: vec![
                FloatLayer {
                    op: Op::Dense { inp: 2, out: 784 },
                    act: Act::None,
                    weight: vec![0.0; 2 * 784],
                    bias: vec![0.0; 784],
                },
                FloatLayer {
                    op: Op::Reshape(Shape { c: 1, h: 28, w: 28 }),
                    act: Act::None,
                    weight: Vec::new(),
                    bias: Vec::new(),
                },
            ],
        };
        let meta = ExportMeta {
            kind: ModelKind::Vae,
            image: Shape { c: 1, h: 28, w: 28 },
            latent: 2,
            data: "test".into(),
            figures: Vec::new(),
            prior: None,
        };
        let bytes = crate::export::export(&dec, &meta, Quant::F32, &[]).unwrap();
        let model = Model::load(&bytes).unwrap();
        let e = vae_iwae_runtime(&model, &images(1), 2, 0, &ProgressBar::hidden()).unwrap_err();
        assert!(matches!(
            e.downcast_ref::<EvalError>(),
            Some(EvalError::VaeWithoutEncoder)
        ));
        // Missing data directory and classifier: typed too.
        let opts = EvalOptions {
            data: PathBuf::from("/nonexistent/mnist"),
            ..EvalOptions::default()
        };
        let e = evaluate(&bytes, "x", &opts).unwrap_err();
        assert!(matches!(
            e.downcast_ref::<EvalError>(),
            Some(EvalError::DataMissing(_))
        ));
        let Err(e) = load_classifier(Path::new("/nonexistent/c.safetensors")) else {
            panic!("a missing classifier loads");
        };
        assert!(matches!(
            e.downcast_ref::<EvalError>(),
            Some(EvalError::ClassifierMissing(_))
        ));
    }

    #[test]
    fn autoregressive_nll_of_a_known_bernoulli_model() {
        // Zero weights, bias ln 3: every pixel is 1 with probability 3/4
        // whatever came before, so the NLL is known exactly; 30 images of
        // different ink cross the 25-image chunks the threads share.
        let net = FloatNet {
            input: Shape { c: 1, h: 28, w: 28 },
            layers: vec![FloatLayer {
                op: Op::MaskedConv2d {
                    in_c: 1,
                    out_c: 1,
                    k: 3,
                    mask: tinygen_runtime::format::Mask::A,
                },
                act: Act::None,
                weight: vec![0.0; 9],
                bias: vec![3f32.ln()],
            }],
        };
        let meta = crate::export_pixelcnn::pixelcnn_meta("test".into());
        let bytes = crate::export::export(&net, &meta, Quant::F32, &[]).unwrap();
        let model = Model::load(&bytes).unwrap();
        let imgs: Vec<u8> = (0..30 * 784)
            .map(|i| if i % 784 < (i / 784) * 20 { 255 } else { 0 })
            .collect();
        let ones = imgs.iter().filter(|&&p| p >= 128).count() as f64 / 30.0;
        let want = -(ones * 0.75f64.ln() + (784.0 - ones) * 0.25f64.ln());
        let got = autoregressive_nll_runtime(&model, &imgs).unwrap();
        assert!((got - want).abs() < 1e-4, "{got} vs {want}");
    }

    #[test]
    fn shipped_classifier_judges_real_digits() {
        // The shipped classifier (hidden width from models/classifier.json)
        // on 200 shipped test images: right labels, real images against
        // themselves at FCD 0, label entropy near ln 10.
        let c = load_classifier(&default_classifier_path()).unwrap();
        let mnist = load_mnist(&data::default_data_dir()).unwrap();
        let n = 200;
        let imgs = &mnist.test_images[..n * data::PIXELS];
        let seen = classify(&c, imgs).unwrap();
        assert_eq!(seen.dim, 128);
        let right = seen
            .labels
            .iter()
            .zip(&mnist.test_labels)
            .filter(|(&a, &b)| a == b as usize)
            .count();
        assert!(right >= 180, "{right} of {n}");
        let (fcd, is, hist, h) = compare(&seen, &seen);
        assert!(fcd < 1e-6, "{fcd}");
        assert!(is > 7.0 && is <= 10.0, "{is}");
        assert_eq!(hist.iter().sum::<usize>(), n);
        assert!(h > 2.2 && h <= 10f64.ln() + 1e-12, "{h}");
    }

    #[test]
    fn image_seeds_differ() {
        let s: std::collections::HashSet<u64> = (0..1000).map(|i| image_seed(7, i)).collect();
        assert_eq!(s.len(), 1000);
    }
}
