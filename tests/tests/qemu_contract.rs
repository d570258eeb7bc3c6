//! The host/target contract: for the same model file and seed, the firmware
//! on QEMU's Cortex-M4F (every shipped file, fixtures of every layer kind),
//! Cortex-M7 and Cortex-M33 (every shipped int8 file) produces exactly the
//! bytes the host runtime produces.
//!
//! Needs `qemu-system-arm` and the `thumbv7em-none-eabihf` and
//! `thumbv8m.main-none-eabihf` targets, which `cargo xtask test` installs
//! before it runs these with `--ignored`.

use std::time::Duration;

use tinygen_runtime::Model;
use tinygen_tests::firmware::{self, Board};
use tinygen_trainer::sample::sample_model_at;

const SAMPLES: u32 = 4;
const SEED: u64 = 7;

fn contract(model_file: &str) {
    contract_on(Board::M4, model_file);
}

/// The shipped `model_file` on `board`.
fn contract_on(board: Board, model_file: &str) {
    let path = firmware::project_root().join("models").join(model_file);
    contract_full(board, &path, model_file, SAMPLES, 1.0);
}

fn contract_at(path: &std::path::Path, model_file: &str) {
    contract_at_temperature(path, model_file, 1.0);
}

/// [`contract_at`] with the firmware built for, and the host sampling at,
/// temperature `t`.
fn contract_at_temperature(path: &std::path::Path, model_file: &str, t: f32) {
    contract_full(Board::M4, path, model_file, SAMPLES, t);
}

/// Builds the firmware for `board` with the model at `path`, `samples`
/// images and temperature `t`, runs it under QEMU, and compares its bytes
/// with the host's.
fn contract_full(board: Board, path: &std::path::Path, model_file: &str, samples: u32, t: f32) {
    assert!(
        firmware::qemu_available(),
        "qemu-system-arm is not installed: apt-get install -y qemu-system-arm (cargo xtask test does this)"
    );
    let path = path.to_path_buf();
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let work = tempfile::tempdir().unwrap();
    let elf = firmware::build_for(board, &path, samples, SEED, t, work.path()).unwrap();
    let run = firmware::run_qemu_on(board, &elf, work.path(), Duration::from_secs(600)).unwrap();
    // One instruction count per sample in the counts file (what the
    // demo and the bench read), none of them zero.
    assert_eq!(run.counts.len(), samples as usize, "{model_file}: counts");
    assert!(
        run.counts.iter().all(|&c| c > 0),
        "{model_file}: {:?}",
        run.counts
    );
    let model = Model::load(&bytes).unwrap();
    // The sampler the file's kind calls for, as the firmware picks it.
    let host = sample_model_at(&model, samples as usize, SEED, t).unwrap();
    let core = board.core();
    assert_eq!(
        run.pixels.len(),
        host.len(),
        "{model_file} on the {core}: pixel count"
    );
    let first_diff = run.pixels.iter().zip(&host).position(|(a, b)| a != b);
    assert_eq!(
        first_diff, None,
        "{model_file} on the {core}: QEMU and host bytes differ (first at byte {first_diff:?})"
    );
    // A firmware that ignored the temperature would then fail.
    if t != 1.0 {
        let plain = sample_model_at(&model, samples as usize, SEED, 1.0).unwrap();
        assert_ne!(host, plain, "{model_file}: the temperature changed nothing");
    }
    // A model that produced nothing but one value would pass vacuously.
    assert!(
        host.iter().any(|&p| p != host[0]),
        "{model_file}: constant image"
    );
}

#[test]
#[ignore = "needs qemu-system-arm and the thumbv7em target: run by cargo xtask test"]
fn vae_int8_qemu_equals_host() {
    contract("vae-int8.tgm");
}

#[test]
#[ignore = "needs qemu-system-arm and the thumbv7em target: run by cargo xtask test"]
fn vae_f32_qemu_equals_host() {
    contract("vae-f32.tgm");
}

#[test]
#[ignore = "needs qemu-system-arm and the thumbv7em target: run by cargo xtask test"]
fn ae_int8_qemu_equals_host() {
    contract("ae-int8.tgm");
}

#[test]
#[ignore = "needs qemu-system-arm and the thumbv7em target: run by cargo xtask test"]
fn gan_int8_qemu_equals_host() {
    contract("gan-int8.tgm");
}

#[test]
#[ignore = "needs qemu-system-arm and the thumbv7em target: run by cargo xtask test"]
fn ae_f32_qemu_equals_host() {
    contract("ae-f32.tgm");
}

#[test]
#[ignore = "needs qemu-system-arm and the thumbv7em target: run by cargo xtask test"]
fn gan_f32_qemu_equals_host() {
    contract("gan-f32.tgm");
}

#[test]
#[ignore = "needs qemu-system-arm and the thumbv7em target: run by cargo xtask test"]
fn vae2d_int8_qemu_equals_host() {
    contract("vae2d-int8.tgm");
}

#[test]
#[ignore = "needs qemu-system-arm and the thumbv7em target: run by cargo xtask test"]
fn vae2d_f32_qemu_equals_host() {
    contract("vae2d-f32.tgm");
}

#[test]
#[ignore = "needs qemu-system-arm and the thumbv7em target: run by cargo xtask test"]
fn pixelcnn_int8_qemu_equals_host() {
    contract("pixelcnn-int8.tgm");
}

#[test]
#[ignore = "needs qemu-system-arm and the thumbv7em target: run by cargo xtask test"]
fn pixelcnn_f32_qemu_equals_host() {
    contract("pixelcnn-f32.tgm");
}

#[test]
#[ignore = "needs qemu-system-arm and the thumbv7em target: run by cargo xtask test"]
fn pixelrnn_int8_qemu_equals_host() {
    contract("pixelrnn-int8.tgm");
}

#[test]
#[ignore = "needs qemu-system-arm and the thumbv7em target: run by cargo xtask test"]
fn pixelrnn_f32_qemu_equals_host() {
    contract("pixelrnn-f32.tgm");
}

/// A random 28x28 PixelRNN (7x7 mask A, two Row LSTMs, 1x1, 1x1; see
/// `tinygen_tests::pixelrnn`), written to a temporary file: the Row LSTM
/// kernels (f32 gates through `math::exp_precise`, exact int8 tables) give
/// the host's bytes on the Cortex-M4 too.
fn random_pixelrnn_contract(dtype: tinygen_runtime::DType) {
    use tinygen_tests::pixelrnn::{random_pixelrnn, RnnShape};
    let shape = RnnShape {
        chans: 8,
        hidden: 8,
        k0: 7,
        lstm_first: false,
        lstms: 2,
        k_out: 1,
    };
    let dir = tempfile::tempdir().unwrap();
    let name = format!("random-pixelrnn-{}.tgm", dtype.name());
    let path = dir.path().join(&name);
    std::fs::write(&path, random_pixelrnn(17, dtype, 28, 28, shape)).unwrap();
    contract_at(&path, &name);
}

#[test]
#[ignore = "needs qemu-system-arm and the thumbv7em target: run by cargo xtask test"]
fn random_pixelrnn_int8_qemu_equals_host() {
    random_pixelrnn_contract(tinygen_runtime::DType::I8);
}

#[test]
#[ignore = "needs qemu-system-arm and the thumbv7em target: run by cargo xtask test"]
fn random_pixelrnn_f32_qemu_equals_host() {
    random_pixelrnn_contract(tinygen_runtime::DType::F32);
}

/// A random 28x28 two-stack PixelCNN (7x7 mask A stack 1 -> 8 + 8, two 3x3
/// mask B stacks, the last to its 8 horizontal channels only, 1x1; see
/// `tinygen_tests::pixelrnn::random_stacks`), written to a temporary file:
/// the two-stack kernels (horizontal outputs pixel by pixel, vertical ones
/// once a row is complete) give the host's bytes on the Cortex-M4 too.
fn random_stacks_contract(dtype: tinygen_runtime::DType) {
    random_stacks_contract_at(dtype, 1.0);
}

fn random_stacks_contract_at(dtype: tinygen_runtime::DType, t: f32) {
    use tinygen_tests::pixelrnn::{random_stacks, StackShape};
    let shape = StackShape {
        chans: 8,
        k0: 7,
        k: 3,
        hidden: 2,
    };
    let bytes = random_stacks(19, dtype, 28, 28, shape);
    assert_eq!(bytes[4], 2, "a two-stack file is format version 2");
    let dir = tempfile::tempdir().unwrap();
    let name = format!("random-stacks-{}.tgm", dtype.name());
    let path = dir.path().join(&name);
    std::fs::write(&path, bytes).unwrap();
    contract_at_temperature(&path, &name, t);
}

#[test]
#[ignore = "needs qemu-system-arm and the thumbv7em target: run by cargo xtask test"]
fn random_stacks_int8_qemu_equals_host() {
    random_stacks_contract(tinygen_runtime::DType::I8);
}

#[test]
#[ignore = "needs qemu-system-arm and the thumbv7em target: run by cargo xtask test"]
fn random_stacks_f32_qemu_equals_host() {
    random_stacks_contract(tinygen_runtime::DType::F32);
}

/// At a sampling temperature other than 1 (`TINYGEN_TEMPERATURE`), the board
/// still draws the host's bytes: the f32 path divides logits the same way,
/// and the int8 path builds the same tempered table.
#[test]
#[ignore = "needs qemu-system-arm and the thumbv7em target: run by cargo xtask test"]
fn tempered_stacks_int8_qemu_equals_host() {
    random_stacks_contract_at(tinygen_runtime::DType::I8, 0.6);
}

#[test]
#[ignore = "needs qemu-system-arm and the thumbv7em target: run by cargo xtask test"]
fn tempered_stacks_f32_qemu_equals_host() {
    random_stacks_contract_at(tinygen_runtime::DType::F32, 0.6);
}

// Every shipped int8 file on QEMU's Cortex-M7 (mps2-an500) and Cortex-M33
// (mps2-an505, thumbv8m.main with the DSP extension).

#[test]
#[ignore = "needs qemu-system-arm and the thumb targets: run by cargo xtask test"]
fn vae_int8_m7_equals_host() {
    contract_on(Board::M7, "vae-int8.tgm");
}

#[test]
#[ignore = "needs qemu-system-arm and the thumb targets: run by cargo xtask test"]
fn ae_int8_m7_equals_host() {
    contract_on(Board::M7, "ae-int8.tgm");
}

#[test]
#[ignore = "needs qemu-system-arm and the thumb targets: run by cargo xtask test"]
fn gan_int8_m7_equals_host() {
    contract_on(Board::M7, "gan-int8.tgm");
}

#[test]
#[ignore = "needs qemu-system-arm and the thumb targets: run by cargo xtask test"]
fn vae2d_int8_m7_equals_host() {
    contract_on(Board::M7, "vae2d-int8.tgm");
}

#[test]
#[ignore = "needs qemu-system-arm and the thumb targets: run by cargo xtask test"]
fn pixelcnn_int8_m7_equals_host() {
    contract_on(Board::M7, "pixelcnn-int8.tgm");
}

#[test]
#[ignore = "needs qemu-system-arm and the thumb targets: run by cargo xtask test"]
fn pixelrnn_int8_m7_equals_host() {
    contract_on(Board::M7, "pixelrnn-int8.tgm");
}

#[test]
#[ignore = "needs qemu-system-arm and the thumb targets: run by cargo xtask test"]
fn vae_int8_m33_equals_host() {
    contract_on(Board::M33, "vae-int8.tgm");
}

#[test]
#[ignore = "needs qemu-system-arm and the thumb targets: run by cargo xtask test"]
fn ae_int8_m33_equals_host() {
    contract_on(Board::M33, "ae-int8.tgm");
}

#[test]
#[ignore = "needs qemu-system-arm and the thumb targets: run by cargo xtask test"]
fn gan_int8_m33_equals_host() {
    contract_on(Board::M33, "gan-int8.tgm");
}

#[test]
#[ignore = "needs qemu-system-arm and the thumb targets: run by cargo xtask test"]
fn vae2d_int8_m33_equals_host() {
    contract_on(Board::M33, "vae2d-int8.tgm");
}

#[test]
#[ignore = "needs qemu-system-arm and the thumb targets: run by cargo xtask test"]
fn pixelcnn_int8_m33_equals_host() {
    contract_on(Board::M33, "pixelcnn-int8.tgm");
}

#[test]
#[ignore = "needs qemu-system-arm and the thumb targets: run by cargo xtask test"]
fn pixelrnn_int8_m33_equals_host() {
    contract_on(Board::M33, "pixelrnn-int8.tgm");
}
