//! Autoencoder and GAN: train for two optimizer steps on 256 shipped
//! images, load the run back, export f32 / f16 / int8, and compare what the
//! runtime computes (encoder and decoder / generator) with candle's forward
//! pass of the trained model. Plus the shipped files: the runtime's
//! autoencoder round trip reconstructs test digits the shipped classifier
//! still recognizes.
//!
//! Tolerances:
//!
//! - f32 file vs candle: `Close` (atol = rtol = 1e-5, normwise), for the
//!   encoder's z and the decoder's logits.
//! - f16 file vs candle: `F16` on the encoder's z and the decoder's logits
//!   would need the rounded-weight oracle of `end_to_end.rs`; here the f16
//!   file is held to a normwise 1e-2, a hundred times looser than its
//!   weights' relative rounding (2^-11), which catches layout errors.
//! - int8 encoder: ‖z_int8 − z‖∞ ≤ 0.1 · ‖z‖∞ over the compared images (the
//!   input is exact, 256 levels of pixel/255; three layers of weight and
//!   activation rounding; measured about 0.01-0.02).
//! - int8 round trip: the reconstruction BCE through the runtime (int8
//!   encoder, then int8 decoder) within 2 % of candle's.

use std::path::Path;

use candle_core::{Device, Tensor};
use tinygen_runtime::{Decoder, Encoder, Model};
use tinygen_tests::{assert_close, AlignedBuf, Approximation};
use tinygen_trainer::data::{load_mnist, Mnist};
use tinygen_trainer::export::Quant;
use tinygen_trainer::export_runs::{ae_recon_runtime, export_ae, export_gan, ExportData};
use tinygen_trainer::models::ae::AeConfig;
use tinygen_trainer::models::classifier::{Classifier, ClassifierConfig};
use tinygen_trainer::models::gan::{GLoss, GanConfig};
use tinygen_trainer::models::standard_normal;
use tinygen_trainer::sample::sample_decoder;
use tinygen_trainer::train::TrainOptions;
use tinygen_trainer::train_ae::{evaluate_ae, load_ae, train_ae};
use tinygen_trainer::train_gan::{load_gan, train_gan, GAN_LR};

const N_IMG: usize = 16;

fn root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn opts(out: &Path, lr: f64) -> TrainOptions {
    TrainOptions {
        data_dir: root().join("data/mnist-subset"),
        out: out.to_path_buf(),
        epochs: 1,
        batch_size: 128,
        lr,
        limit_train: Some(256),
        max_steps: Some(2),
        seed: 11,
        ..TrainOptions::default()
    }
}

fn mnist_256() -> Mnist {
    let mut m = load_mnist(&root().join("data/mnist-subset")).unwrap();
    m.limit_train(256);
    m
}

fn runtime_encode(bytes: &[u8], images: &[u8]) -> Vec<Vec<f32>> {
    let model = Model::load(bytes).unwrap();
    let mut arena = AlignedBuf::new(model.arena_bytes() as usize);
    let mut enc = Encoder::new(&model, arena.bytes()).unwrap();
    images
        .chunks_exact(784)
        .map(|img| {
            let mut z = vec![0f32; enc.latent_len()];
            enc.encode(img, &mut z).unwrap();
            z
        })
        .collect()
}

fn runtime_logits(bytes: &[u8], zs: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let model = Model::load(bytes).unwrap();
    let mut arena = AlignedBuf::new(model.arena_bytes() as usize);
    let mut dec = Decoder::new(&model, arena.bytes()).unwrap();
    zs.iter()
        .map(|z| {
            let mut l = vec![0f32; 784];
            dec.decode_logits(z, &mut l).unwrap();
            l
        })
        .collect()
}

fn max_abs(v: &[Vec<f32>]) -> f64 {
    v.iter()
        .flatten()
        .fold(0f64, |m, &x| m.max((x as f64).abs()))
}

fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f64 {
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .fold(0f64, |m, (&x, &y)| m.max((x as f64 - y as f64).abs()))
}

#[test]
fn ae_train_export_and_compare() {
    let out = tempfile::tempdir().unwrap();
    let outcome = train_ae(&opts(out.path(), 3e-3), AeConfig::default()).unwrap();
    assert_eq!(outcome.metrics.last().unwrap().step, 2);
    let (_, ae) = load_ae(&outcome.run_dir).unwrap();
    let mnist = mnist_256();
    let data = ExportData {
        mnist: &mnist,
        description: "ae end-to-end test".into(),
        calib: 256,
        eval: 0,
        seed: 1,
    };
    let files: Vec<Vec<u8>> = [Quant::F32, Quant::F16, Quant::Int8]
        .iter()
        .map(|&q| export_ae(&ae, &data, q).unwrap())
        .collect();

    // Test images as bytes (what the runtime's Encoder takes) and as candle input.
    let images = &mnist.test_images[..N_IMG * 784];
    let x = tinygen_trainer::data::images_float(images, N_IMG, &Device::Cpu).unwrap();
    let z_candle: Vec<Vec<f32>> = ae.encode(&x).unwrap().to_vec2().unwrap();
    let logits_candle: Vec<Vec<f32>> = ae
        .decode_logits(&Tensor::new(z_candle.clone(), &Device::Cpu).unwrap())
        .unwrap()
        .flatten_from(1)
        .unwrap()
        .to_vec2()
        .unwrap();

    // f32: encoder and decoder Close to candle.
    let z32 = runtime_encode(&files[0], images);
    for (i, (a, e)) in z32.iter().zip(&z_candle).enumerate() {
        assert_close(
            a,
            e,
            Approximation::Close,
            &format!("image {i}: f32 encoder"),
        );
    }
    for (i, (a, e)) in runtime_logits(&files[0], &z_candle)
        .iter()
        .zip(&logits_candle)
        .enumerate()
    {
        assert_close(a, e, Approximation::Close, &format!("z{i}: f32 decoder"));
    }

    // f16: normwise 1e-2.
    let z16 = runtime_encode(&files[1], images);
    let d16 = max_diff(&z16, &z_candle) / max_abs(&z_candle);
    assert!(d16 <= 1e-2, "f16 encoder: relative error {d16}");

    // int8 encoder: within 10 % of the largest |z|.
    let z8 = runtime_encode(&files[2], images);
    let d8 = max_diff(&z8, &z_candle) / max_abs(&z_candle);
    println!("int8 encoder: max |z8 - z| / max |z| = {d8:.4}; f16: {d16:.2e}");
    assert!(d8 <= 0.1, "int8 encoder: relative error {d8}");

    // Round trip through the runtime: BCE against candle's.
    let (bce_candle, _) = evaluate_ae(&ae, &x, 64).unwrap();
    for (name, bytes, rel) in [("f32", &files[0], 1e-4), ("int8", &files[2], 0.02)] {
        let model = Model::load(bytes).unwrap();
        let (bce, mse) = ae_recon_runtime(&model, images).unwrap();
        println!("{name}: round-trip BCE {bce:.3} (candle {bce_candle:.3}), MSE {mse:.5}");
        assert!(
            (bce - bce_candle).abs() <= rel * bce_candle,
            "{name}: BCE {bce} vs candle {bce_candle}"
        );
    }

    // The file samples from the fitted Gaussian, deterministically.
    let model = Model::load(&files[2]).unwrap();
    assert_eq!(model.file.meta.prior_mean.len(), 4 * 16);
    assert_eq!(
        sample_decoder(&model, 3, 5).unwrap(),
        sample_decoder(&model, 3, 5).unwrap()
    );
}

#[test]
fn gan_train_export_and_compare() {
    let out = tempfile::tempdir().unwrap();
    let cfg = GanConfig {
        d_steps: 1,
        g_loss: GLoss::NonSaturating,
        ..GanConfig::default()
    };
    let outcome = train_gan(&opts(out.path(), GAN_LR), cfg).unwrap();
    assert_eq!(outcome.metrics.last().unwrap().g_step, 2);
    let (_, gan) = load_gan(&outcome.run_dir).unwrap();
    let mnist = mnist_256();
    let data = ExportData {
        mnist: &mnist,
        description: "gan end-to-end test".into(),
        calib: 256,
        eval: 0,
        seed: 3,
    };
    let f32_file = export_gan(&gan, &data, Quant::F32).unwrap();
    let i8_file = export_gan(&gan, &data, Quant::Int8).unwrap();
    let model = Model::load(&i8_file).unwrap();
    assert_eq!(model.file.kind, tinygen_runtime::ModelKind::Gan);
    assert!(model.file.meta.prior_mean.is_empty());
    assert!(model.file.encoder.is_none());

    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(3);
    let zt = standard_normal(&mut rng, (N_IMG, 32), &Device::Cpu).unwrap();
    let zs: Vec<Vec<f32>> = zt.to_vec2().unwrap();
    let want: Vec<Vec<f32>> = gan
        .generate_logits(&zt)
        .unwrap()
        .flatten_from(1)
        .unwrap()
        .to_vec2()
        .unwrap();
    for (i, (a, e)) in runtime_logits(&f32_file, &zs).iter().zip(&want).enumerate() {
        assert_close(a, e, Approximation::Close, &format!("z{i}: f32 generator"));
    }
    // int8: the same latents are within the calibration set's distribution;
    // the logits stay within 10 % of their largest magnitude.
    let got = runtime_logits(&i8_file, &zs);
    let d = max_diff(&got, &want) / max_abs(&want);
    println!("int8 generator: max |l8 - l| / max |l| = {d:.4}");
    assert!(d <= 0.1, "int8 generator: relative error {d}");
    for bytes in [&f32_file, &i8_file] {
        let m = Model::load(bytes).unwrap();
        let a = sample_decoder(&m, 2, 9).unwrap();
        assert_eq!(a, sample_decoder(&m, 2, 9).unwrap());
        assert_ne!(a, sample_decoder(&m, 2, 10).unwrap());
    }
}

/// The shipped autoencoder, run by the runtime on 200 test digits (int8
/// encoder, int8 decoder): the shipped classifier gives the reconstruction
/// the original's label at least 90 % of the time.
#[test]
fn shipped_ae_reconstructions_are_recognizable() {
    let models = root().join("models");
    let bytes = std::fs::read(models.join("ae-int8.tgm")).unwrap();
    let model = Model::load(&bytes).unwrap();
    let classifier = Classifier::load(
        &models.join("classifier.safetensors"),
        ClassifierConfig::default(),
    )
    .unwrap();
    let mnist = load_mnist(&root().join("data/mnist-subset")).unwrap();
    let n = 200;
    let images = &mnist.test_images[..n * 784];
    let zs = runtime_encode(&bytes, images);
    let mut arena = AlignedBuf::new(model.arena_bytes() as usize);
    let mut dec = Decoder::new(&model, arena.bytes()).unwrap();
    let mut recon = vec![0u8; n * 784];
    for (z, px) in zs.iter().zip(recon.chunks_exact_mut(784)) {
        dec.decode(z, px).unwrap();
    }
    let x = tinygen_trainer::data::images_float(&recon, n, &Device::Cpu).unwrap();
    let pred: Vec<u32> = classifier.predict(&x).unwrap().to_vec1().unwrap();
    let hits = pred
        .iter()
        .zip(&mnist.test_labels[..n])
        .filter(|(&p, &l)| p == l as u32)
        .count();
    println!("shipped ae-int8 round trip: classifier agrees on {hits}/{n}");
    assert!(
        hits * 10 >= n * 9,
        "only {hits}/{n} reconstructions keep their label"
    );
}
