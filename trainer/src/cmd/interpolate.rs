//! `tinygen interpolate FILE.tgm [--from I,.. --to J,.. | --seed S] [--steps 10] [--pairs 4] [-o interp.png]`

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use tinygen_runtime::{Model, ModelKind};

use tinygen_trainer::data::{self, load_mnist, Mnist, PIXELS};
use tinygen_trainer::eval::HostArena;
use tinygen_trainer::latent::{
    encode_code, interpolation_strip, random_latent_pairs, random_pairs, Interp,
};
use tinygen_trainer::report::write_grid_png;

/// Latent interpolation strips, one row per pair, through the runtime's
/// kernels (an int8 file shows what the board computes).
///
/// AutoEncoder and VAE files: two test digits are encoded with the file's
/// encoder (a VAE's posterior mean; the VAE sees the digits binarized, as in
/// training), `--steps` points on the straight line between the two codes
/// are decoded, and each row starts and ends with the two digits themselves.
/// GAN files (no encoder): two z ~ N(0, I) per row from `--seed`, joined by
/// spherical interpolation (slerp: the straight line's midpoint would have
/// an atypically small norm for a Gaussian draw); `--path` changes either.
#[derive(Debug, Args)]
pub struct InterpolateArgs {
    /// Model file (.tgm): AutoEncoder, VAE (exported with its encoder) or GAN.
    pub file: PathBuf,
    /// Test-split indices of the first digit of each row (comma-separated;
    /// AutoEncoder and VAE files; with --to).
    #[arg(long, value_delimiter = ',', value_name = "I,..", requires = "to")]
    pub from: Vec<usize>,
    /// Test-split indices of the last digit of each row (as many as --from).
    #[arg(long, value_delimiter = ',', value_name = "J,..", requires = "from")]
    pub to: Vec<usize>,
    /// Seed of the runtime RNG that picks the pairs (test digits with different
    /// labels, or GAN latents) when --from/--to are not given.
    #[arg(long, default_value_t = 1, conflicts_with = "from")]
    pub seed: u64,
    /// Decoded points per row, both ends included.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub steps: usize,
    /// Rows (pairs) drawn with --seed.
    #[arg(long, default_value_t = 4, value_name = "N", conflicts_with = "from")]
    pub pairs: usize,
    /// Path between the two codes [default: linear for AutoEncoder and VAE
    /// codes, slerp for GAN latents].
    #[arg(long, value_enum)]
    pub path: Option<Interp>,
    /// MNIST directory whose test split the indices refer to
    /// [default: data/mnist-subset].
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// PNG to write.
    #[arg(short, long, default_value = "interp.png")]
    pub output: PathBuf,
}

/// Test image `i` of `mnist` (loaded from `dir`).
fn test_image<'a>(mnist: &'a Mnist, dir: &Path, i: usize) -> Result<&'a [u8]> {
    if i >= mnist.n_test {
        bail!(
            "test index {i} is out of range: {} has {} test images",
            dir.display(),
            mnist.n_test
        );
    }
    Ok(&mnist.test_images[i * PIXELS..(i + 1) * PIXELS])
}

/// Runs `tinygen interpolate`.
///
/// # Errors
///
/// If the file cannot be read, has no encoder where one is needed (or is not
/// a decoder model), an index is out of range, or the PNG cannot be written.
pub fn run(args: InterpolateArgs) -> Result<()> {
    if args.steps < 2 {
        bail!("--steps must be at least 2 (both ends)");
    }
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let model = Model::load(&bytes).map_err(|e| anyhow!("{}: {e}", args.file.display()))?;
    let kind = model.file.kind;
    let mut arena = HostArena::new(model.arena_bytes());
    let mut pixels = Vec::new();
    let (rows, cols, how, what);
    match kind {
        ModelKind::AutoEncoder | ModelKind::Vae => {
            let dir = args.data.clone().unwrap_or_else(data::default_data_dir);
            let mnist = load_mnist(&dir)
                .with_context(|| format!("loading test digits from {}", dir.display()))?;
            let pairs: Vec<(usize, usize)> = if args.from.is_empty() {
                if args.pairs == 0 {
                    bail!("--pairs must be at least 1");
                }
                random_pairs(&mnist.test_labels, args.pairs, args.seed)
            } else {
                if args.from.len() != args.to.len() {
                    bail!(
                        "--from has {} indices and --to {}: one pair per row",
                        args.from.len(),
                        args.to.len()
                    );
                }
                args.from
                    .iter()
                    .copied()
                    .zip(args.to.iter().copied())
                    .collect()
            };
            how = args.path.unwrap_or(Interp::Linear);
            let image = |i: usize| test_image(&mnist, &dir, i);
            let mut labels = Vec::new();
            for &(i, j) in &pairs {
                let (xa, xb) = (image(i)?, image(j)?);
                let a = encode_code(&model, &mut arena, xa)
                    .with_context(|| args.file.display().to_string())?;
                let b = encode_code(&model, &mut arena, xb)?;
                pixels.extend(interpolation_strip(
                    &model,
                    &mut arena,
                    &a,
                    &b,
                    args.steps,
                    how,
                    Some((xa, xb)),
                )?);
                labels.push(format!(
                    "{i} ({}) -> {j} ({})",
                    mnist.test_labels[i], mnist.test_labels[j]
                ));
            }
            rows = pairs.len();
            cols = args.steps + 2;
            what = format!(
                "test digits {} encoded ({}), decoded along the way, real digits at both ends",
                labels.join(", "),
                if kind == ModelKind::Vae {
                    "posterior means"
                } else {
                    "z"
                }
            );
        }
        ModelKind::Gan => {
            if !args.from.is_empty() {
                bail!(
                    "{}: a GAN has no encoder, so it cannot start from test digits; \
                     use --seed S (random latents) instead of --from/--to",
                    args.file.display()
                );
            }
            if args.pairs == 0 {
                bail!("--pairs must be at least 1");
            }
            how = args.path.unwrap_or(Interp::Slerp);
            for (a, b) in random_latent_pairs(&model, args.pairs, args.seed) {
                pixels.extend(interpolation_strip(
                    &model, &mut arena, &a, &b, args.steps, how, None,
                )?);
            }
            rows = args.pairs;
            cols = args.steps;
            what = format!("{} pairs of z ~ N(0, I) from seed {}", rows, args.seed);
        }
        other => bail!(
            "{}: a {other:?} model has no latent to interpolate in \
             (interpolate takes AutoEncoder, VAE and GAN files)",
            args.file.display()
        ),
    }
    write_grid_png(&args.output, &pixels, rows * cols, cols)?;
    println!(
        "wrote {} ({rows} rows of {cols}: {what}; {} interpolation over {} steps; {} weights)",
        args.output.display(),
        match how {
            Interp::Linear => "linear",
            Interp::Slerp => "spherical (slerp)",
        },
        args.steps,
        model.file.dtype.name()
    );
    Ok(())
}
