//! `cargo xtask bench`'s quality table: `tinygen eval --json` on every
//! shipped generative file, f32, f16 (converted from the f32 file with
//! `tinygen convert`) and int8.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// Importance samples per test image for the VAE rows.
pub const DEFAULT_K: usize = 1000;
/// Samples per file for FCD, inception score and label histogram.
pub const DEFAULT_SAMPLES: usize = 1000;

/// Options of the quality table.
#[derive(Debug, Clone, Copy)]
pub struct QualityOptions {
    /// IWAE k.
    pub k: usize,
    /// Samples per file.
    pub samples: usize,
    /// Only the first N test images (a quick look; the table says so).
    pub test_images: Option<usize>,
    /// Ignore `out/bench/eval-cache` and evaluate every file again.
    pub fresh: bool,
}

impl Default for QualityOptions {
    fn default() -> Self {
        Self {
            k: DEFAULT_K,
            samples: DEFAULT_SAMPLES,
            test_images: None,
            fresh: false,
        }
    }
}

/// Parses `--k N`, `--samples N`, `--test-images N` and `--fresh` (the only
/// flags `bench` takes).
pub fn parse_flags(args: &[String]) -> Result<QualityOptions> {
    let mut o = QualityOptions::default();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        if flag == "--fresh" {
            o.fresh = true;
            continue;
        }
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        let n: usize = value
            .parse()
            .with_context(|| format!("{flag} takes a number, got {value:?}"))?;
        match flag.as_str() {
            "--k" if n >= 1 => o.k = n,
            "--samples" => o.samples = n,
            "--test-images" if n >= 1 => o.test_images = Some(n),
            _ => bail!(
                "unexpected argument {flag} {value} (bench takes --k N (>= 1), --samples N, \
                 --test-images N (>= 1) and --fresh)"
            ),
        }
    }
    Ok(o)
}

/// Kinds (as `tinygen info --json` names them) that `tinygen eval`
/// measures, in table order.
const KINDS: [&str; 5] = ["vae", "pixelcnn", "pixelrnn", "gan", "autoencoder"];

fn dtype_rank(d: &str) -> usize {
    match d {
        "f32" => 0,
        "f16" => 1,
        _ => 2,
    }
}

/// Runs `tinygen eval FILE --json` (progress on the inherited stderr) and parses its output.
fn eval_json(
    tinygen: &Path,
    root: &Path,
    file: &Path,
    o: QualityOptions,
) -> Result<serde_json::Value> {
    let out = Command::new(tinygen)
        .current_dir(root)
        .arg("eval")
        .arg(file)
        .args([
            "--json",
            "--k",
            &o.k.to_string(),
            "--samples",
            &o.samples.to_string(),
        ])
        .args(
            o.test_images
                .map(|n| vec!["--test-images".to_string(), n.to_string()])
                .unwrap_or_default(),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot start {}", tinygen.display()))?;
    if !out.status.success() {
        bail!("tinygen eval {} failed ({})", file.display(), out.status);
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// The cache file for `file` evaluated with `o`: keyed by a hash of the
/// file's bytes and the options, so a file that changed (or other options)
/// is evaluated again. Evaluation is deterministic (fixed seeds; the
/// runtime's kernels are pinned by golden tests), which is what makes
/// reusing it sound; the VAE likelihoods at k = 1000 take most of an hour.
fn cache_path(out: &Path, file: &Path, o: QualityOptions) -> Result<PathBuf> {
    use std::hash::{Hash, Hasher};
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut h = std::hash::DefaultHasher::new();
    bytes.hash(&mut h);
    (o.k, o.samples, o.test_images).hash(&mut h);
    let name = file.file_stem().and_then(|n| n.to_str()).unwrap_or("file");
    Ok(out
        .join("eval-cache")
        .join(format!("{name}-{:016x}.json", h.finish())))
}

/// [`eval_json`] through the cache (unless `o.fresh`); returns the JSON, the
/// seconds the evaluation took and whether it came from the cache.
fn eval_cached(
    tinygen: &Path,
    root: &Path,
    out: &Path,
    file: &Path,
    o: QualityOptions,
) -> Result<(serde_json::Value, f64, bool)> {
    let cache = cache_path(out, file, o)?;
    if !o.fresh {
        // {"eval": tinygen eval's JSON, "seconds": how long it took}
        if let Some(c) = std::fs::read(&cache)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        {
            if let (true, Some(s)) = (c["eval"].is_object(), c["seconds"].as_f64()) {
                return Ok((c["eval"].clone(), s, true));
            }
        }
    }
    let t = Instant::now();
    let eval = eval_json(tinygen, root, file, o)?;
    let seconds = t.elapsed().as_secs_f64();
    if let Some(dir) = cache.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(
        &cache,
        serde_json::to_vec_pretty(&serde_json::json!({ "eval": eval, "seconds": seconds }))?,
    )?;
    Ok((eval, seconds, false))
}

fn fmt(v: &serde_json::Value, digits: usize) -> String {
    v.as_f64()
        .map_or_else(|| "-".to_string(), |x| format!("{x:.digits$}"))
}

/// One file the bench measures: a shipped `models/*.tgm`, or the f16
/// conversion of a shipped f32 file (written under the bench's `out`).
#[derive(Debug, Clone)]
pub struct BenchFile {
    /// Model kind as `tinygen info --json` names it.
    pub kind: String,
    /// File stem without its dtype suffix (`vae`, `vae2d`, ..).
    pub base: String,
    /// `f32`, `f16` or `int8`.
    pub dtype: String,
    /// Where it is.
    pub path: PathBuf,
    /// Converted by the bench (not shipped).
    pub converted: bool,
}

impl BenchFile {
    /// How the tables name it.
    pub fn shown(&self) -> String {
        let name = self
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("?")
            .to_string();
        if self.converted {
            format!("{name} (converted from {}-f32.tgm)", self.base)
        } else {
            name
        }
    }
}

/// Every `models/*.tgm` plus, for each f32 file without a shipped f16
/// twin, its `tinygen convert --quant f16` in `out/f16`; in name order, each
/// f16 conversion between its f32 and int8 files.
///
/// # Errors
/// If `models/` cannot be read, `tinygen info` or `tinygen convert` fails.
pub fn bench_files(tinygen: &Path, root: &Path, out: &Path) -> Result<Vec<BenchFile>> {
    let models = root.join("models");
    let mut files = Vec::new();
    let mut names: Vec<PathBuf> = std::fs::read_dir(&models)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "tgm"))
        .collect();
    names.sort();
    for p in names {
        let info = crate::info_json(tinygen, root, &p)?;
        let kind = info["kind"].as_str().unwrap_or("?").to_string();
        let dtype = info["dtype"].as_str().unwrap_or("?").to_string();
        let stem = p
            .file_stem()
            .and_then(|n| n.to_str())
            .unwrap_or("?")
            .to_string();
        let base = stem
            .strip_suffix(&format!("-{dtype}"))
            .unwrap_or(&stem)
            .to_string();
        if dtype == "f32" && !models.join(format!("{base}-f16.tgm")).exists() {
            // In a folder of their own: the bench's per-file folders are
            // `out/<file name>`.
            let dir = out.join("f16");
            std::fs::create_dir_all(&dir)?;
            let f16 = dir.join(format!("{base}-f16.tgm"));
            crate::run(
                root,
                tinygen.to_str().context("path")?,
                [
                    "convert".as_ref(),
                    p.as_os_str(),
                    "--quant".as_ref(),
                    "f16".as_ref(),
                    "-o".as_ref(),
                    f16.as_os_str(),
                ],
            )?;
            files.push(BenchFile {
                kind: kind.clone(),
                base: base.clone(),
                dtype: "f16".into(),
                path: f16,
                converted: true,
            });
        }
        files.push(BenchFile {
            kind,
            base,
            dtype,
            path: p,
            converted: false,
        });
    }
    files.sort_by(|a, b| (&a.base, dtype_rank(&a.dtype)).cmp(&(&b.base, dtype_rank(&b.dtype))));
    Ok(files)
}

/// Evaluates every generative file of `files` (see [`bench_files`]) and
/// returns the Markdown section.
///
/// # Errors
/// Only writing the cache; a file whose evaluation fails gets a row saying
/// so rather than stopping the bench.
pub fn quality_section(
    tinygen: &Path,
    root: &Path,
    out: &Path,
    files: &[BenchFile],
    o: QualityOptions,
) -> Result<String> {
    let mut files: Vec<&BenchFile> = files
        .iter()
        .filter(|f| KINDS.contains(&f.kind.as_str()))
        .collect();
    files.sort_by_key(|f| {
        (
            KINDS
                .iter()
                .position(|x| *x == f.kind)
                .unwrap_or(usize::MAX),
            f.base.clone(),
            dtype_rank(&f.dtype),
        )
    });

    let mut rows = String::new();
    let mut references: Vec<(bool, serde_json::Value)> = Vec::new();
    let mut n_cached = 0usize;
    // The classifier's own test accuracy (evaluations cached before the
    // field existed lack it).
    let mut judge_accuracy: Option<f64> = None;
    let t_all = Instant::now();
    for f in &files {
        let (kind, dtype, path) = (&f.kind, &f.dtype, &f.path);
        crate::step(&format!(
            "quality: tinygen eval {} (k {}, {} samples)",
            path.display(),
            o.k,
            o.samples
        ));
        let shown = f.shown();
        let (j, secs, cached) = match eval_cached(tinygen, root, out, path, o) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("warning: {e:#}");
                rows.push_str(&format!(
                    "| {shown} | {dtype} | evaluation failed: {} | | | | | |\n",
                    format!("{e:#}").replace('|', "/")
                ));
                continue;
            }
        };
        n_cached += usize::from(cached);
        let (metric, nats, extra) = match kind.as_str() {
            "vae" => (
                format!("IWAE NLL (k {})", o.k),
                fmt(&j["iwae_nll_nats"], 2),
                format!("-ELBO {}", fmt(&j["neg_elbo_nats"], 2)),
            ),
            "pixelcnn" | "pixelrnn" => (
                "exact NLL".to_string(),
                fmt(&j["nll_nats"], 2),
                format!("{} bits/dim", fmt(&j["bits_per_dim"], 4)),
            ),
            "autoencoder" => (
                "recon BCE".to_string(),
                fmt(&j["recon_bce_nats"], 2),
                format!("MSE {}", fmt(&j["mse"], 5)),
            ),
            _ => ("-".to_string(), "-".to_string(), String::new()),
        };
        let hist = j["label_histogram"]
            .as_array()
            .map(|h| {
                h.iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        rows.push_str(&format!(
            "| {shown} | {dtype} | {} | {} | {} | {} | {hist} | {secs:.0} |\n",
            if extra.is_empty() {
                nats
            } else {
                format!("{metric}: {nats} ({extra})")
            },
            fmt(&j["fcd"], 2),
            fmt(&j["inception_score"], 2),
            fmt(&j["label_entropy"], 3),
        ));
        let binarized = j["binarized"].as_bool().unwrap_or(false);
        if !references.iter().any(|(b, _)| *b == binarized) && j["reference"].is_object() {
            references.push((binarized, j["reference"].clone()));
        }
        if judge_accuracy.is_none() {
            judge_accuracy = j["reference"]["classifier_accuracy_test"].as_f64();
        }
    }
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .to_string()
    });
    let mut md = format!(
        "\n## Quality\n\n\
         `tinygen eval FILE --json --k {k} --samples {s}{flag}` on every generative file, through the runtime \
         (quantized files as the board runs them), on {test} of data/mnist-subset; \
         f16 files are `tinygen convert` of the f32 ones. Nats per image: VAE importance-weighted NLL \
         (Burda et al. 2015, k draws from the file's encoder per image; -ELBO beside it), PixelCNN/PixelRNN exact NLL, \
         autoencoder reconstruction cross-entropy (grayscale targets). Sample figures from {s} runtime samples \
         (seed 0) on the penultimate features and predictions of models/classifier.safetensors: Frechet classifier \
         distance to the test images (binarized for the binary families VAE, PixelCNN, PixelRNN; lower is better), \
         classifier inception score (max 10), entropy of the predicted-label histogram (ln 10 = 2.303: all digits equally present). \
         Eval seconds: the whole evaluation (likelihood on RAYON_NUM_THREADS = {threads}); host samples/s are in \
         the shipped-models table, from a run of their own.\n\n\
         | file | dtype | nats per image | FCD | IS | label entropy | labels 0..9 | eval s |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- |\n",
        k = o.k,
        s = o.samples,
        flag = o
            .test_images
            .map_or(String::new(), |n| format!(" --test-images {n}")),
        test = o.test_images.map_or("the test images (1,000)".to_string(), |n| {
            format!("the first {n} test images only (`--test-images {n}`)")
        }),
    );
    md.push_str(&rows);
    for (binarized, r) in &references {
        md.push_str(&format!(
            "| real data{}: FCD of {} training images to the test images; IS and entropy of the test images | - | - | {} | {} | {} | | |\n",
            if *binarized { ", binarized" } else { ", grayscale" },
            r["train_images"],
            fmt(&r["fcd_train_vs_test"], 2),
            fmt(&r["inception_score_test"], 2),
            fmt(&r["label_entropy_test"], 3),
        ));
    }
    if let Some(acc) = judge_accuracy {
        md.push_str(&format!(
            "\nThe judge, models/classifier.safetensors, labels {:.1} % of the grayscale test images correctly.\n",
            100.0 * acc
        ));
    }
    md.push_str(&format!(
        "\nThe real-data rows are the floor at this sample size (FCD has a positive bias at {} samples \
         of 128-dimensional features). The whole table took {:.0} s{}.\n",
        o.samples,
        t_all.elapsed().as_secs_f64(),
        if n_cached == 0 {
            String::new()
        } else {
            format!(
                "; {n_cached} of its {} rows were taken from `out/bench/eval-cache` (the same file bytes \
                 and options evaluated earlier; their eval s is that earlier run's; `--fresh` ignores the cache)",
                files.len()
            )
        }
    ));
    Ok(md)
}

/// `cargo xtask quality [--k N] [--samples N]`: only the quality section
/// (no QEMU), printed; BENCHMARKS.md is left alone.
///
/// # Errors
/// As [`quality_section`], or if the trainer does not build.
pub fn quality_only(root: &Path, o: QualityOptions) -> Result<()> {
    let tinygen = crate::build_trainer(root)?;
    let out = root.join("out").join("bench");
    std::fs::create_dir_all(&out)?;
    let files = bench_files(&tinygen, root, &out)?;
    let md = quality_section(&tinygen, root, &out, &files, o)?;
    println!("\n{md}");
    Ok(())
}
