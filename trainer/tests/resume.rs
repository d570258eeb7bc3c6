//! Interrupted and resumed runs end exactly as uninterrupted ones: the same
//! weights bit for bit and the same metrics, for every training loop (the
//! shared one through the VAE, autoencoder and PixelCNN; the GAN's and the
//! classifier's own), stopped mid-epoch, at an epoch's start and before the
//! first step; and `tinygen train` stops on a real SIGINT, then `--resume`
//! finishes the run.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Result;
use tinygen_trainer::models::ae::AeConfig;
use tinygen_trainer::models::gan::GanConfig;
use tinygen_trainer::models::pixelcnn::{PixelCnnArch, PixelCnnConfig};
use tinygen_trainer::models::vae::VaeConfig;
use tinygen_trainer::run::{resume_state, Interrupted, RunStatus, RESUME_FILE};
use tinygen_trainer::train::{resume_options, train_vae, TrainOptions, METRICS_FILE, MODEL_FILE};
use tinygen_trainer::train_ae::train_ae;
use tinygen_trainer::train_classifier::{train_classifier, ClassifierRunConfig};
use tinygen_trainer::train_gan::train_gan;
use tinygen_trainer::train_pixelcnn::train_pixelcnn;

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/mnist-subset")
}

/// 48 images in batches of 16: 3 steps per epoch, 2 epochs.
fn tiny(out: &Path) -> TrainOptions {
    TrainOptions {
        data_dir: data_dir(),
        out: out.to_path_buf(),
        epochs: 2,
        batch_size: 16,
        limit_train: Some(48),
        seed: 7,
        ..TrainOptions::default()
    }
}

/// The checkpoint's tensors as (name, bits).
fn weights(run: &Path) -> Vec<(String, Vec<u32>)> {
    let t = candle_core::safetensors::load(run.join(MODEL_FILE), &candle_core::Device::Cpu)
        .expect("checkpoint");
    let mut out: Vec<(String, Vec<u32>)> = t
        .into_iter()
        .map(|(n, t)| {
            let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
            (n, v.iter().map(|x| x.to_bits()).collect())
        })
        .collect();
    out.sort();
    out
}

/// `metrics.csv` without its last column (seconds).
fn metrics(run: &Path) -> Vec<String> {
    std::fs::read_to_string(run.join(METRICS_FILE))
        .unwrap()
        .lines()
        .map(|l| l.rsplit_once(',').map_or(l, |(a, _)| a).to_owned())
        .collect()
}

/// Trains `train` once uninterrupted, then once stopped after each of
/// `stops` steps (resumed from the command line's options each time, which
/// come from the run's own files), and compares.
fn check(family: &str, stops: &[usize], train: impl Fn(&TrainOptions) -> Result<PathBuf>) {
    let out = tempfile::tempdir().unwrap();
    let whole = train(&tiny(&out.path().join("whole"))).unwrap();
    assert!(
        resume_state(&whole).unwrap().is_none(),
        "{family}: finished runs have no resume file"
    );
    for &stop in stops {
        let opts = TrainOptions {
            interrupt_after: Some(stop),
            ..tiny(&out.path().join(format!("stop{stop}")))
        };
        let err = train(&opts).unwrap_err();
        let int = err
            .downcast_ref::<Interrupted>()
            .unwrap_or_else(|| panic!("{family}: not Interrupted: {err:#}"));
        assert_eq!(int.step, stop, "{family}");
        let dir = int.run_dir.clone();
        assert!(
            dir.join(MODEL_FILE).is_file(),
            "{family}: the checkpoint is written"
        );
        let state = resume_state(&dir).unwrap().expect("resume file");
        assert_eq!((state.status, state.step), (RunStatus::Interrupted, stop));
        let msg = format!("{err:#}");
        assert!(msg.contains("tinygen train --resume"), "{msg}");

        let (resumed, _) = resume_options(&dir, false).unwrap();
        let again = train(&resumed).unwrap();
        assert_eq!(again, dir);
        assert!(
            !dir.join(RESUME_FILE).exists(),
            "{family}: the resume file goes at the end"
        );
        assert_eq!(
            weights(&dir),
            weights(&whole),
            "{family} stopped after step {stop}: resumed weights differ from the uninterrupted run's"
        );
        assert_eq!(
            metrics(&dir),
            metrics(&whole),
            "{family} stopped after step {stop}"
        );
    }
}

#[test]
fn vae_resumes_exactly() {
    // Mid-epoch 2, at epoch 2's start, and before the first step.
    check("vae", &[4, 3, 0], |o| {
        Ok(train_vae(o, VaeConfig { latent: 4 })?.run_dir)
    });
}

#[test]
fn autoencoder_resumes_exactly() {
    check("ae", &[2], |o| {
        Ok(train_ae(o, AeConfig { latent: 4 })?.run_dir)
    });
}

#[test]
fn gan_resumes_exactly() {
    // Two D steps per G step: 2 G steps per epoch, 4 in all.
    let cfg = GanConfig {
        latent: 4,
        d_steps: 2,
        g_channels: 8,
        d_channels: 4,
        ..GanConfig::default()
    };
    check("gan", &[3, 1], |o| Ok(train_gan(o, cfg)?.run_dir));
}

#[test]
fn classifier_resumes_exactly() {
    let cfg = ClassifierRunConfig {
        hidden: 16,
        ..ClassifierRunConfig::default()
    };
    check("classifier", &[4], |o| {
        Ok(train_classifier(o, cfg, None)?.run_dir)
    });
}

#[test]
fn pixelcnn_resumes_exactly() {
    let cfg = PixelCnnConfig {
        channels: 4,
        layers: 1,
        arch: PixelCnnArch::Plain,
        kernel: 3,
    };
    check("pixelcnn", &[5], |o| Ok(train_pixelcnn(o, cfg)?.run_dir));
}

#[test]
fn resume_refuses_a_finished_run() {
    let out = tempfile::tempdir().unwrap();
    let run = train_vae(&tiny(out.path()), VaeConfig { latent: 4 })
        .unwrap()
        .run_dir;
    let (opts, _) = resume_options(&run, false).unwrap();
    let err = format!(
        "{:#}",
        train_vae(&opts, VaeConfig { latent: 4 }).unwrap_err()
    );
    assert!(err.contains("nothing to resume"), "{err}");
}

/// `tinygen train` on a real SIGINT: exit status 130, a message naming the
/// resume command, an export that says the run stopped; `--resume` then
/// finishes it.
#[test]
fn sigint_stops_and_resume_finishes() {
    let out = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_tinygen");
    let mut child = Command::new(bin)
        .args([
            "train",
            "vae",
            "--latent",
            "4",
            "--epochs",
            "2",
            "--batch-size",
            "8",
        ])
        .args(["--limit-train", "2048", "--data"])
        .arg(data_dir())
        .arg("--out")
        .arg(out.path())
        .env("RAYON_NUM_THREADS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The run directory is announced once the handler is installed and
    // before the first of its 512 steps.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let dir = loop {
        let line = lines
            .next()
            .expect("tinygen ended before announcing its run")
            .unwrap();
        if let Some(d) = line.strip_prefix("run directory: ") {
            break PathBuf::from(d);
        }
    };
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let done = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert_eq!(done.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("tinygen train --resume"), "{stderr}");
    let state = resume_state(&dir).unwrap().expect("resume file");
    assert_eq!(state.status, RunStatus::Interrupted);
    assert!(state.step < 512, "{state:?}");

    let tgm = out.path().join("vae.tgm");
    let export = Command::new(bin)
        .args(["export"])
        .arg(&dir)
        .arg("-o")
        .arg(&tgm)
        .args(["--eval", "0", "--quant", "f32"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&export.stderr);
    assert!(export.status.success(), "{stderr}");
    assert!(stderr.contains("was interrupted"), "{stderr}");

    let resumed = Command::new(bin)
        .args(["train", "--resume"])
        .arg(&dir)
        .arg("--quiet")
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert!(resumed.status.success(), "{stderr}");
    assert!(resume_state(&dir).unwrap().is_none());
    assert_eq!(metrics(&dir).len(), 3, "header and two epochs");
}
