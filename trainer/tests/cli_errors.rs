//! Bad command lines end with a clear message and a non-zero exit before
//! any work starts (no panics, no allocation aborts, no training that
//! fails only at export), and sampling works for any image size.

use std::path::PathBuf;
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tinygen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tinygen"))
        .args(args)
        .current_dir(std::env::temp_dir())
        .output()
        .expect("the tinygen binary runs")
}

/// Runs `args`, which must fail with exit status 1 or 2 (an error, not a
/// panic's 101 or an abort's signal) and a message containing `want`.
fn fails_with(args: &[&str], want: &str) {
    let out = tinygen(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        matches!(out.status.code(), Some(1 | 2)),
        "{args:?}: status {:?}, stderr {err}",
        out.status
    );
    assert!(
        err.contains(want),
        "{args:?}: stderr does not say {want:?}: {err}"
    );
    assert!(!err.contains("panicked"), "{args:?}: {err}");
}

fn model(name: &str) -> String {
    root().join("models").join(name).display().to_string()
}

#[test]
fn sample_counts_beyond_memory_are_refused_before_sampling() {
    let vae = model("vae-int8.tgm");
    fails_with(&["sample", &vae, "-n", "18446744073709551615"], "at most");
    fails_with(&["sample", &vae, "-n", "1000000000000"], "at most");
    fails_with(&["sample", &vae, "-n", "0"], "at least 1");
}

#[test]
fn negative_temperatures_are_values_with_a_clear_error() {
    let cnn = model("pixelcnn-int8.tgm");
    fails_with(&["sample", &cnn, "--temperature", "-1"], "positive number");
    fails_with(&["sample", &cnn, "--temperature", "0"], "positive number");
    fails_with(&["eval", &cnn, "--temperature", "-0.5"], "positive number");
}

#[test]
fn a_latent_the_runtime_cannot_sample_is_refused_before_training() {
    for family in ["vae", "ae", "gan"] {
        fails_with(&["train", family, "--latent", "65"], "1 to 64");
        fails_with(&["train", family, "--latent", "0"], "1 to 64");
    }
}

#[test]
fn eval_needs_test_images() {
    fails_with(
        &["eval", &model("vae-int8.tgm"), "--test-images", "0"],
        "at least 1",
    );
}

#[test]
fn sampling_and_grids_take_any_image_size() {
    // The hand-built fixture's images are 4 x 4.
    let tiny = root()
        .join("tests/fixtures/tiny_f32.tgm")
        .display()
        .to_string();
    let dir = std::env::temp_dir().join(format!("tinygen-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (png, raw) = (dir.join("s.png"), dir.join("s.raw"));
    let out = tinygen(&[
        "sample",
        &tiny,
        "-n",
        "6",
        "-o",
        png.to_str().unwrap(),
        "--raw",
        raw.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&raw).unwrap().len(), 6 * 16);
    let grid = dir.join("g.png");
    let out = tinygen(&[
        "grid",
        raw.to_str().unwrap(),
        "--size",
        "4x4",
        "-o",
        grid.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    fails_with(
        &["grid", raw.to_str().unwrap()],
        "not a whole number of 28x28 images",
    );
    // The same pixels as a board's defmt log (`pixels N: [..]` lines, as
    // probe-rs prints them) make the same PNG with --log.
    let bytes = std::fs::read(&raw).unwrap();
    let mut log = String::from("0.000000 [INFO ] sampling 6 images, seed 1\n");
    for (i, image) in bytes.chunks(16).enumerate() {
        let list: Vec<String> = image.iter().map(u8::to_string).collect();
        log += &format!(
            "0.{i:06} [INFO ] pixels {i}: [{}] (tinygen_firmware src/board/pico.rs:139)\n",
            list.join(", ")
        );
    }
    log += "0.100000 [INFO ] done\n";
    let log_file = dir.join("s.log");
    std::fs::write(&log_file, log).unwrap();
    let from_log = dir.join("l.png");
    let out = tinygen(&[
        "grid",
        "--log",
        log_file.to_str().unwrap(),
        "--size",
        "4x4",
        "-o",
        from_log.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(&from_log).unwrap(),
        std::fs::read(&grid).unwrap()
    );
    fails_with(
        &["grid", log_file.to_str().unwrap(), "--size", "4x4"],
        "looks like a firmware log, not raw pixel bytes: add --log",
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn eval_says_which_figures_a_gan_lacks() {
    let data = root().join("data/mnist-subset").display().to_string();
    let out = tinygen(&[
        "eval",
        &model("gan-int8.tgm"),
        "--k",
        "10",
        "--samples",
        "0",
        "--test-images",
        "2",
        "--data",
        &data,
    ]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("a GAN defines no density"), "{stdout}");
    assert!(stderr.contains("--k ignored"), "{stderr}");
}
