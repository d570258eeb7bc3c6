//! GAN training runs (`tinygen train gan`): the lecture's loop, `d_steps`
//! discriminator updates (each on a fresh real batch and fresh noise) per
//! generator update.
//!
//! ```no_run
//! use tinygen_trainer::models::gan::GanConfig;
//! use tinygen_trainer::train::TrainOptions;
//! use tinygen_trainer::train_gan::{load_gan, train_gan, GAN_LR};
//! let opts = TrainOptions { epochs: 1, lr: GAN_LR, limit_train: Some(256), ..TrainOptions::default() };
//! let outcome = train_gan(&opts, GanConfig::default())?;
//! let (config, gan) = load_gan(&outcome.run_dir)?;
//! # anyhow::Ok(())
//! ```
//!
//! Both networks use Adam(W) with β1 = 0.5 (DCGAN's setting) and the run's
//! learning rate and weight decay. An epoch is one pass of the
//! discriminator over the real training images. `metrics.csv` has, per
//! epoch, the mean discriminator loss, the mean generator loss (in the
//! configured form), the mean D(x) on real and D(G(z)) on generated images
//! during the epoch, and the seconds; `samples.png` shows G on 64 fixed latents.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use candle_nn::ParamsAdamW;
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::models::gan::{GLoss, Gan, GanConfig};
use crate::models::standard_normal;
use crate::report;
use crate::run::{batch_images, load_family, Outcome, Run, Schedule};
use crate::train::{check_options, run_config, ModelConfig, RunConfig, TrainOptions, SAMPLES_FILE};
use crate::train_ae::{load_float_data, SAMPLE_STREAM};

const NOISE_STREAM: u64 = 0x4e4f_4953_4531_2d2d;

/// Default learning rate of both GAN optimizers (DCGAN's 2e-4 is slower to
/// start on 7,000 images; 5e-4 gives recognizable digits in 30 epochs).
pub const GAN_LR: f64 = 5e-4;
/// Adam's β1 for both GAN optimizers (DCGAN).
pub const GAN_BETA1: f64 = 0.5;

/// Header of a GAN run's `metrics.csv`.
pub const METRICS_HEADER: &str = "epoch,g_step,d_loss,g_loss,d_real,d_fake,seconds";

/// One row of a GAN run's `metrics.csv`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GanEpoch {
    /// 1-based epoch.
    pub epoch: usize,
    /// Generator updates so far.
    pub g_step: usize,
    /// Mean discriminator loss (nats, real + fake terms).
    pub d_loss: f64,
    /// Mean generator loss, in the configured form.
    pub g_loss: f64,
    /// Mean D(x) on real images during the epoch.
    pub d_real: f64,
    /// Mean D(G(z)) during the epoch.
    pub d_fake: f64,
    /// Seconds of this epoch.
    pub seconds: f64,
}

fn mean_sigmoid(logits: &Tensor) -> Result<f64> {
    Ok(f64::from(
        candle_nn::ops::sigmoid(logits)?
            .mean_all()?
            .to_scalar::<f32>()?,
    ))
}

/// Writes an 8x8 grid of G(z) for 64 latents drawn from a generator derived from `seed`.
///
/// # Errors
/// On candle or I/O errors.
pub fn write_gan_samples(gan: &Gan, seed: u64, path: &Path) -> Result<()> {
    let mut rng = StdRng::seed_from_u64(seed ^ SAMPLE_STREAM);
    let z = standard_normal(&mut rng, (64, gan.latent()), &Device::Cpu)?;
    let probs = gan.generate(&z)?.flatten_all()?.to_vec1::<f32>()?;
    report::write_grid_png(path, &report::probs_to_bytes(&probs), 64, 8)
}

/// Trains a GAN on grayscale MNIST; see the module docs. `opts.max_steps`
/// counts generator updates.
///
/// # Errors
/// Bad options, unreadable data, I/O errors, candle errors, and
/// [`crate::run::NonFiniteTraining`] when a loss turns NaN or infinite.
pub fn train_gan(opts: &TrainOptions, gan_config: GanConfig) -> Result<Outcome<GanEpoch>> {
    check_options(opts)?;
    if gan_config.d_steps == 0 {
        bail!("--d-steps must be at least 1");
    }
    let device = Device::Cpu;
    let d = load_float_data(opts)?;
    let config = run_config(
        ModelConfig::Gan(gan_config),
        opts,
        d.n_train,
        d.n_test,
        "grayscale in [0, 1] (pixel / 255)",
    );
    let gan = Gan::new(gan_config, opts.seed, &device)?;
    let params = ParamsAdamW {
        lr: opts.lr,
        beta1: GAN_BETA1,
        weight_decay: opts.weight_decay,
        ..ParamsAdamW::default()
    };
    let mut run = Run::create(opts, &config, METRICS_HEADER, gan.varmap())?;
    let mut opt_g = run.optimizer("generator", Gan::is_generator_var, params.clone())?;
    let mut opt_d = run.optimizer("discriminator", Gan::is_discriminator_var, params)?;
    run.announce(format_args!(
        "training GAN (latent {}, {} D step(s) per G step, {} G loss) on {} images",
        gan_config.latent,
        gan_config.d_steps,
        match gan_config.g_loss {
            GLoss::NonSaturating => "non-saturating",
            GLoss::Minimax => "minimax",
        },
        d.n_train
    ));
    let batches_per_epoch = d.n_train.div_ceil(opts.batch_size);
    let g_steps_per_epoch = batches_per_epoch.div_ceil(gan_config.d_steps);
    let mut schedule = run.schedule(Schedule::new(
        opts,
        d.n_train,
        opts.batch_size,
        g_steps_per_epoch,
    ))?;
    let noise = run.stream("noise", opts.seed ^ NOISE_STREAM)?;
    let mut metrics = Vec::new();
    let latent = gan_config.latent;
    while let Some(ep) = schedule.next_epoch() {
        let epoch = ep.epoch;
        let pb = run.progress_bar(ep.steps, epoch);
        pb.set_position(ep.done as u64);
        let t0 = Instant::now();
        // D loss, D steps, G loss, G steps, mean D(x), mean D(G(z)): summed.
        let mut sums = [0f64; 6];
        if let Ok(carried) = <[f64; 6]>::try_from(&ep.carried[..]) {
            sums = carried;
        }
        let mut batches = ep
            .order
            .chunks(opts.batch_size)
            .skip(ep.done * gan_config.d_steps);
        for _ in ep.done..ep.steps {
            run.check_interrupt(
                &schedule,
                &[&opt_g, &opt_d],
                &pb,
                &sums,
                ep.carried_seconds + t0.elapsed().as_secs_f64(),
            )?;
            let [sum_d, n_d, sum_g, n_g, sum_real, sum_fake] = &mut sums;
            let step = schedule.advance();
            for _ in 0..gan_config.d_steps {
                let Some(batch) = batches.next() else { break };
                let b = batch.len();
                let real = batch_images(&d.x_train, batch, step, opts)?;
                let z = standard_normal(&mut *noise.borrow_mut(), (b, latent), &device)?;
                let fake = gan.generate(&z)?.detach();
                let lr = gan.discriminate(&real)?;
                let lf = gan.discriminate(&fake)?;
                let loss = crate::models::gan::d_loss_from_logits(&lr, &lf)?;
                let v = f64::from(loss.to_scalar::<f32>()?);
                run.check_finite(Some(&pb), epoch, Some(step), &[("d_loss", v)])?;
                opt_d.backward_step(&loss)?;
                *sum_d += v;
                *n_d += 1.0;
                *sum_real += mean_sigmoid(&lr)?;
                *sum_fake += mean_sigmoid(&lf)?;
            }
            let z = standard_normal(&mut *noise.borrow_mut(), (opts.batch_size, latent), &device)?;
            let g = gan.g_loss(&z)?;
            let v = f64::from(g.to_scalar::<f32>()?);
            run.check_finite(Some(&pb), epoch, Some(step), &[("g_loss", v)])?;
            // Only the generator's variables are in opt_g: the gradient that
            // reaches the discriminator here is computed and dropped.
            opt_g.backward_step(&g)?;
            *sum_g += v;
            *n_g += 1.0;
            pb.inc(1);
            let nd = n_d.max(1.0);
            pb.set_message(format!(
                "D {:.3}  G {:.3}  D(x) {:.2}  D(G(z)) {:.2}",
                *sum_d / nd,
                *sum_g / *n_g,
                *sum_real / nd,
                *sum_fake / nd
            ));
        }
        let seconds = ep.carried_seconds + t0.elapsed().as_secs_f64();
        pb.finish_and_clear();
        let [sum_d, n_d, sum_g, n_g, sum_real, sum_fake] = sums;
        let nd = n_d.max(1.0);
        let step = schedule.step;
        let m = GanEpoch {
            epoch,
            g_step: step,
            d_loss: sum_d / nd,
            g_loss: sum_g / n_g.max(1.0),
            d_real: sum_real / nd,
            d_fake: sum_fake / nd,
            seconds,
        };
        let row = format!(
            "{},{},{:.4},{:.4},{:.4},{:.4},{:.3}",
            m.epoch, m.g_step, m.d_loss, m.g_loss, m.d_real, m.d_fake, m.seconds
        );
        run.save_epoch(&schedule, &[&opt_g, &opt_d], epoch, &row)?;
        write_gan_samples(&gan, opts.seed, &run.dir().join(SAMPLES_FILE))?;
        run.epoch_line(
            epoch,
            format_args!(
                "G step {step:>6}  D loss {:.4}  G loss {:.4}  D(x) {:.3}  D(G(z)) {:.3}  {seconds:6.1} s",
                m.d_loss, m.g_loss, m.d_real, m.d_fake
            ),
        );
        metrics.push(m);
    }
    run.finish(config, metrics, true)
}

/// Loads a GAN run.
///
/// # Errors
/// As [`crate::train::load_run`], or if the run is not a GAN run or its tensors do not fit.
pub fn load_gan(dir: &Path) -> Result<(RunConfig, Gan)> {
    load_family(
        dir,
        "a GAN",
        |m| match m {
            ModelConfig::Gan(c) => Some(*c),
            _ => None,
        },
        |c, varmap| Gan::from_varmap(c, varmap, &Device::Cpu),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::NonFiniteTraining;
    use crate::train::{CONFIG_FILE, METRICS_FILE, MODEL_FILE};

    #[test]
    fn two_steps_write_a_run_and_nan_stops() {
        let out = tempfile::tempdir().unwrap();
        let opts = TrainOptions {
            out: out.path().to_path_buf(),
            epochs: 1,
            batch_size: 128,
            lr: GAN_LR,
            limit_train: Some(256),
            max_steps: Some(2),
            seed: 3,
            ..TrainOptions::default()
        };
        let cfg = GanConfig {
            d_steps: 1,
            ..GanConfig::default()
        };
        let outcome = train_gan(&opts, cfg).unwrap();
        let m = outcome.metrics.last().unwrap();
        assert_eq!(m.g_step, 2);
        assert!(m.d_loss.is_finite() && m.g_loss.is_finite());
        assert!((0.0..=1.0).contains(&m.d_real) && (0.0..=1.0).contains(&m.d_fake));
        for f in [CONFIG_FILE, METRICS_FILE, MODEL_FILE, SAMPLES_FILE] {
            assert!(outcome.run_dir.join(f).is_file(), "{f}");
        }
        let (config, gan) = load_gan(&outcome.run_dir).unwrap();
        assert_eq!(config.model, ModelConfig::Gan(cfg));
        assert_eq!(gan.latent(), 32);

        let poisoned = TrainOptions {
            poison_step: Some(1),
            ..opts
        };
        let err = train_gan(&poisoned, cfg).unwrap_err();
        let nf = err.downcast_ref::<NonFiniteTraining>().unwrap();
        assert_eq!((nf.step, nf.last_good_epoch), (Some(1), None));
    }

    #[test]
    fn two_d_steps_use_two_batches_per_g_step() {
        let out = tempfile::tempdir().unwrap();
        let opts = TrainOptions {
            out: out.path().to_path_buf(),
            epochs: 1,
            batch_size: 64,
            lr: GAN_LR,
            limit_train: Some(256),
            seed: 1,
            ..TrainOptions::default()
        };
        let cfg = GanConfig {
            d_steps: 2,
            g_loss: GLoss::Minimax,
            ..GanConfig::default()
        };
        // 256 images / 64 = 4 real batches = 2 generator steps.
        let outcome = train_gan(&opts, cfg).unwrap();
        assert_eq!(outcome.metrics[0].g_step, 2);
    }
}
