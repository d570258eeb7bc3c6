//! Short VAE training runs on the shipped data: finite losses, reproducibility,
//! and the non-finite loss path keeping the last good checkpoint.

use std::path::{Path, PathBuf};
use std::process::Command;

use tinygen_trainer::models::vae::{VaeConfig, DECODER_TENSORS};
use tinygen_trainer::train::{
    load_vae, train_vae, ModelConfig, NonFiniteLoss, TrainOptions, CONFIG_FILE, METRICS_FILE,
    MODEL_FILE, SAMPLES_FILE,
};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/mnist-subset")
}

/// 256 images, batch 128: two steps per epoch.
fn small(out: &Path) -> TrainOptions {
    TrainOptions {
        data_dir: data_dir(),
        out: out.to_path_buf(),
        epochs: 1,
        batch_size: 128,
        limit_train: Some(256),
        seed: 3,
        ..TrainOptions::default()
    }
}

const CONFIG: VaeConfig = VaeConfig { latent: 4 };

fn all_finite(dir: &Path) -> bool {
    let (_, vae) = load_vae(dir).unwrap();
    tinygen_trainer::models::sorted_tensors(vae.varmap())
        .unwrap()
        .iter()
        .all(|(_, t)| {
            t.flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                .iter()
                .all(|v| v.is_finite())
        })
}

#[test]
fn two_steps_are_finite_and_the_run_loads_back() {
    let out = tempfile::tempdir().unwrap();
    let outcome = train_vae(&small(out.path()), CONFIG).unwrap();
    assert_eq!(outcome.metrics.len(), 1);
    let m = outcome.metrics[0];
    assert_eq!((m.epoch, m.step), (1, 2));
    for v in [m.train_recon, m.train_kl, m.test_recon, m.test_kl] {
        assert!(v.is_finite() && v >= 0.0, "{m:?}");
    }
    // An untrained Bernoulli decoder starts near 784 ln 2 = 543 nats; it must
    // not be absurdly far from it after two steps.
    assert!(m.test_elbo > 50.0 && m.test_elbo < 2000.0, "{m:?}");

    let dir = &outcome.run_dir;
    for f in [CONFIG_FILE, METRICS_FILE, MODEL_FILE, SAMPLES_FILE] {
        assert!(dir.join(f).is_file(), "{f} missing in {}", dir.display());
    }
    let csv = std::fs::read_to_string(dir.join(METRICS_FILE)).unwrap();
    assert_eq!(csv.lines().count(), 2, "{csv}");
    assert!(csv.lines().nth(1).unwrap().starts_with("1,2,"), "{csv}");

    let (config, vae) = load_vae(dir).unwrap();
    assert_eq!(config, outcome.config);
    assert_eq!(config.model, ModelConfig::Vae(CONFIG));
    assert_eq!(config.n_train, 256);
    let dec = vae.decoder_tensors().unwrap();
    let names: Vec<&str> = dec.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, DECODER_TENSORS);
    assert_eq!(dec[0].1.dims(), &[32 * 7 * 7, 4]);
    assert!(all_finite(dir));
}

#[test]
fn same_seed_same_checkpoint() {
    let out = tempfile::tempdir().unwrap();
    let a = train_vae(&small(out.path()), CONFIG).unwrap();
    let b = train_vae(&small(out.path()), CONFIG).unwrap();
    let c = train_vae(
        &TrainOptions {
            seed: 4,
            ..small(out.path())
        },
        CONFIG,
    )
    .unwrap();
    let bytes = |o: &tinygen_trainer::train::TrainOutcome| {
        std::fs::read(o.run_dir.join(MODEL_FILE)).unwrap()
    };
    assert_ne!(a.run_dir, b.run_dir);
    assert_eq!(a.metrics[0].test_elbo, b.metrics[0].test_elbo);
    assert!(
        bytes(&a) == bytes(&b),
        "same seed gave different checkpoints"
    );
    assert!(
        bytes(&a) != bytes(&c),
        "different seeds gave the same checkpoint"
    );
}

#[test]
fn nan_stops_training_and_keeps_the_last_good_checkpoint() {
    let out = tempfile::tempdir().unwrap();
    // What the checkpoint after epoch 1 is: the same run stopped there.
    let reference = train_vae(&small(out.path()), CONFIG).unwrap();
    let good = std::fs::read(reference.run_dir.join(MODEL_FILE)).unwrap();

    // Three epochs of two steps; the batch of step 3 (epoch 2) is all NaN.
    let opts = TrainOptions {
        epochs: 3,
        poison_step: Some(3),
        ..small(out.path())
    };
    let err = train_vae(&opts, CONFIG).unwrap_err();
    let msg = format!("{err:#}");
    let nf = err
        .downcast_ref::<NonFiniteLoss>()
        .unwrap_or_else(|| panic!("not NonFiniteLoss: {msg}"));
    assert_eq!(
        (nf.epoch, nf.step, nf.last_good_epoch),
        (2, Some(3), Some(1)),
        "{nf:?}"
    );
    assert!(nf.losses[0].1.is_nan(), "{nf:?}");
    assert!(
        msg.contains("epoch 2") && msg.contains("step 3") && msg.contains("epoch 1"),
        "{msg}"
    );

    let dir = nf.checkpoint.parent().unwrap();
    assert!(msg.contains(&nf.checkpoint.display().to_string()), "{msg}");
    assert_eq!(
        std::fs::read(&nf.checkpoint).unwrap(),
        good,
        "checkpoint is not epoch 1's"
    );
    assert!(!dir.join("model.safetensors.tmp").exists());
    let csv = std::fs::read_to_string(dir.join(METRICS_FILE)).unwrap();
    assert_eq!(csv.lines().count(), 2, "only epoch 1 is recorded: {csv}");
    assert!(all_finite(dir));
}

#[test]
fn diverging_run_never_writes_a_checkpoint() {
    let out = tempfile::tempdir().unwrap();
    // Step 1 is finite; its update (about lr per weight) blows up step 2.
    let opts = TrainOptions {
        lr: 1e30,
        epochs: 2,
        ..small(out.path())
    };
    let err = train_vae(&opts, CONFIG).unwrap_err();
    let nf = err
        .downcast_ref::<NonFiniteLoss>()
        .unwrap_or_else(|| panic!("{err:#}"));
    assert_eq!(
        (nf.epoch, nf.step, nf.last_good_epoch),
        (1, Some(2), None),
        "{nf:?}"
    );
    assert!(err.to_string().contains("no checkpoint"), "{err}");
    assert!(!nf.checkpoint.exists());
    let dir = nf.checkpoint.parent().unwrap();
    assert!(dir.join(CONFIG_FILE).is_file());
    assert!(load_vae(dir).is_err());
}

#[test]
fn max_steps_stops_mid_epoch() {
    let out = tempfile::tempdir().unwrap();
    let opts = TrainOptions {
        epochs: 5,
        max_steps: Some(3),
        ..small(out.path())
    };
    let outcome = train_vae(&opts, CONFIG).unwrap();
    let steps: Vec<(usize, usize)> = outcome.metrics.iter().map(|m| (m.epoch, m.step)).collect();
    assert_eq!(steps, vec![(1, 2), (2, 3)]);
}

#[test]
fn cli_trains_and_prints_the_run_directory() {
    let out = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_tinygen"))
        .args([
            "train",
            "vae",
            "--epochs",
            "1",
            "--limit-train",
            "64",
            "--batch-size",
            "32",
            "--latent",
            "3",
        ])
        .arg("--data")
        .arg(data_dir())
        .arg("--out")
        .arg(out.path())
        .arg("--quiet")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let dir = PathBuf::from(stdout.trim());
    assert!(dir.starts_with(out.path()), "{stdout}");
    let (config, vae) = load_vae(&dir).unwrap();
    assert_eq!(
        (config.n_train, config.batch_size, vae.latent()),
        (64, 32, 3)
    );
}

#[test]
fn cli_reports_missing_data_with_the_path() {
    let output = Command::new(env!("CARGO_BIN_EXE_tinygen"))
        .args(["train", "vae", "--data", "/nonexistent/mnist", "--out"])
        .arg(tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("/nonexistent/mnist/train-images-idx3-ubyte"),
        "{stderr}"
    );
}
