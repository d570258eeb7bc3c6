//! Train a VAE for two optimizer steps on 256 shipped images, load the run
//! back, export it as f32, f16 and int8, and compare what the runtime
//! computes with candle's `Vae::decode_logits` for the same latents.
//!
//! Oracles:
//!
//! - `vae.decode_logits` (candle, f32): the trained model.
//! - an f64 forward pass of the exported `FloatNet` through candle ops (one
//!   function, [`forward`]); checked `Close` to the VAE first, so the
//!   exporter's view of the network is the VAE's. The f16 and int8 bounds are
//!   derived against it, layer by layer, in [`f16_bound`] and [`int8_bound`].

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tinygen_runtime::format::{Act, Op};
use tinygen_runtime::{Decoder, Model, Rng};
use tinygen_tests::{
    add_channel_bias, assert_close, assert_within, bound_used, chw, f16_round, AlignedBuf,
    Approximation,
};
use tinygen_trainer::export::{export, vae_decoder_net, ExportMeta, FloatNet, Quant};
use tinygen_trainer::models::standard_normal;
use tinygen_trainer::models::vae::{Vae, VaeConfig};
use tinygen_trainer::quantize::quantize_weights;
use tinygen_trainer::sample::sample_decoder;
use tinygen_trainer::train::{load_vae, train_vae, TrainOptions};

const LATENT: usize = 4;
/// Latents compared per file.
const N_Z: usize = 16;

type R<T> = candle_core::Result<T>;

// ---------------------------------------------------------------------------
// The network in candle, f64.

/// `op` without its bias on a `(1, c, h, w)` f64 tensor, with weights `w` in
/// the runtime's (= candle's) layout.
fn linear(op: &Op, x: &Tensor, w: &[f64]) -> R<Tensor> {
    let dev = x.device();
    match *op {
        Op::Dense { inp, out } => {
            let w = Tensor::from_slice(w, (out as usize, inp as usize), dev)?;
            x.reshape((1, inp as usize))?
                .matmul(&w.t()?)?
                .reshape((1, out as usize, 1, 1))
        }
        Op::Conv2d {
            in_c,
            out_c,
            k,
            stride,
            pad,
        } => {
            let k = k as usize;
            let w = Tensor::from_slice(w, (out_c as usize, in_c as usize, k, k), dev)?;
            x.conv2d(&w, pad as usize, stride as usize, 1, 1)
        }
        Op::ConvTranspose2d {
            in_c,
            out_c,
            k,
            stride,
            pad,
            out_pad,
        } => {
            let k = k as usize;
            let w = Tensor::from_slice(w, (in_c as usize, out_c as usize, k, k), dev)?;
            x.conv_transpose2d(&w, pad as usize, out_pad as usize, stride as usize, 1)
        }
        // The masked taps are stored as zeros: a plain 'same' convolution.
        Op::MaskedConv2d { in_c, out_c, k, .. } => {
            let k = k as usize;
            let w = Tensor::from_slice(w, (out_c as usize, in_c as usize, k, k), dev)?;
            x.conv2d(&w, k / 2, 1, 1, 1)
        }
        Op::Reshape(s) => x.reshape((1, s.c as usize, s.h as usize, s.w as usize)),
        Op::RowLstm { .. } | Op::StackConv2d { .. } => {
            unreachable!("decoder networks have no Row LSTM or two-stack convolution")
        }
    }
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

fn abs(v: &[f64]) -> Vec<f64> {
    v.iter().map(|x| x.abs()).collect()
}

/// Sums of products per output: at most this many terms (plus the bias).
fn terms(op: &Op) -> f64 {
    match *op {
        Op::Dense { inp, .. } => inp as f64,
        Op::Conv2d { in_c, k, .. }
        | Op::ConvTranspose2d { in_c, k, .. }
        | Op::MaskedConv2d { in_c, k, .. } => in_c as f64 * k as f64 * k as f64,
        Op::Reshape(_) => 0.0,
        Op::RowLstm { .. } | Op::StackConv2d { .. } => {
            unreachable!("decoder networks have no Row LSTM or two-stack convolution")
        }
    }
}

/// Per-output-channel values as a `(1, c, 1, 1)` tensor to broadcast.
fn per_channel(v: &[f64], dev: &Device) -> R<Tensor> {
    Tensor::from_slice(v, (1, v.len(), 1, 1), dev)
}

/// The f64 forward pass of `net` with `weights[l]` for layer l: returns the
/// input of every layer and the output.
fn forward(net: &FloatNet, weights: &[Vec<f64>], z: &[f32]) -> R<(Vec<Tensor>, Tensor)> {
    let dev = Device::Cpu;
    let s = net.input;
    let mut x = Tensor::from_slice(
        &f64s(z),
        (1, s.c as usize, s.h as usize, s.w as usize),
        &dev,
    )?;
    let mut inputs = Vec::new();
    for (l, layer) in net.layers.iter().enumerate() {
        inputs.push(x.clone());
        let mut y = linear(&layer.op, &x, &weights[l])?;
        if !matches!(layer.op, Op::Reshape(_)) {
            y = add_channel_bias(
                &y,
                &Tensor::from_slice(&f64s(&layer.bias), layer.bias.len(), &dev)?,
            )?;
        }
        if layer.act == Act::Relu {
            y = y.relu()?;
        }
        x = y;
    }
    Ok((inputs, x))
}

fn float_weights(net: &FloatNet) -> Vec<Vec<f64>> {
    net.layers.iter().map(|l| f64s(&l.weight)).collect()
}

fn u() -> f64 {
    2f64.powi(-24)
}

/// Elementwise bound of |runtime f16 logits − exact logits| (f64 forward with
/// the unrounded weights), propagated layer by layer. For a layer with input
/// x (exact), runtime input x̂ with |x̂ − x| <= e, weights w and their f16
/// roundings ŵ (|ŵ − w| <= 2⁻¹¹|w| + 2⁻²⁵: half an ulp, or half the
/// subnormal spacing):
///
/// |fl(b + Σŵx̂) − (b + Σwx)| <= Σ|ŵ|e + Σ(2⁻¹¹|w| + 2⁻²⁵)|x| + γ(|b| + Σ|ŵ|(|x| + e))
///
/// with γ = (n + 2)·2⁻²⁴ for n products (the runtime's f32 accumulation, one
/// rounding per product and per addition). ReLU is 1-Lipschitz and a reshape
/// moves nothing, so the bound passes through them.
fn f16_bound(net: &FloatNet, z: &[f32]) -> R<Vec<f64>> {
    let w = float_weights(net);
    let (inputs, out) = forward(net, &w, z)?;
    let dev = Device::Cpu;
    let mut e = inputs[0].zeros_like()?;
    for (l, layer) in net.layers.iter().enumerate() {
        let x = inputs[l].abs()?;
        if let Op::Reshape(_) = layer.op {
            e = linear(&layer.op, &e, &[])?;
            continue;
        }
        let w_abs = abs(&w[l]);
        let w16_abs = abs(&f64s(&f16_round(&layer.weight)));
        let ones = vec![1f64; w_abs.len()];
        let propagated = linear(&layer.op, &e, &w16_abs)?;
        let rounding = (linear(&layer.op, &x, &w_abs)? * 2f64.powi(-11))?
            .add(&(linear(&layer.op, &x, &ones)? * 2f64.powi(-25))?)?;
        let gamma = (terms(&layer.op) + 2.0) * u();
        let b_abs = per_channel(&abs(&f64s(&layer.bias)), &dev)?;
        let magnitude = linear(&layer.op, &(&x + &e)?, &w16_abs)?.broadcast_add(&b_abs)?;
        e = ((propagated + rounding)? + (magnitude * gamma)?)?;
    }
    assert_eq!(e.dims(), out.dims());
    chw(&e)
}

/// Standard deviation, per output element and in real units, of the int8
/// logits' error against the exact logits, propagated layer by layer.
///
/// A worst-case bound (every rounding with the same sign, as in the kernel
/// tests' single-layer bound) is correct but grows with Σ|ŵ| per layer: for
/// this network it reaches ~170 output steps, while the error seen is below
/// two. So, as usual for quantization noise, each rounding is modelled as an
/// independent error uniform over its step (variance s²/12), and variances
/// propagate. With s_in the input scale, s_w[c] the exporter's per-channel
/// weight scale (`quantize_weights`), ŵ = s_w·q_w, s_out the output scale
/// and v the input's error variance (v₀ = s_in²/12: z rounded to a code):
///
/// Var(out) = s_in²s_w²/12 (bias) + Σŵ²·v (input error) + (s_w²/12)·Σx²
///            (weight rounding) + s_out²/12 (requantization).
///
/// ReLU (a clamp at the zero point) never increases an error. The compared
/// z are part of the calibration set, so no exact activation is clipped.
fn int8_sigma(net: &FloatNet, model: &Model<'_>, z: &[f32]) -> R<Vec<f64>> {
    let w = float_weights(net);
    let (inputs, out) = forward(net, &w, z)?;
    let dev = Device::Cpu;
    let file = &model.file.decoder;
    let mut s_in = file.input_q.expect("int8 input quantization").scale as f64;
    let mut v = (inputs[0].ones_like()? * (s_in * s_in / 12.0))?;
    for (l, layer) in net.layers.iter().enumerate() {
        let (outer, ch, inner) = match layer.op {
            Op::Dense { inp, out } => (1, out as usize, inp as usize),
            Op::Conv2d { in_c, out_c, k, .. } | Op::MaskedConv2d { in_c, out_c, k, .. } => {
                (1, out_c as usize, in_c as usize * (k as usize).pow(2))
            }
            Op::ConvTranspose2d { in_c, out_c, k, .. } => {
                (in_c as usize, out_c as usize, (k as usize).pow(2))
            }
            Op::Reshape(_) => {
                v = linear(&layer.op, &v, &[])?;
                continue;
            }
            Op::RowLstm { .. } | Op::StackConv2d { .. } => {
                unreachable!("decoder networks have no Row LSTM or two-stack convolution")
            }
        };
        let q = file.layers[l].quant.expect("int8 layer quantization");
        let s_out = q.out_scale as f64;
        let (qw, s_w) = quantize_weights(&layer.weight, outer, ch, inner);
        // The exporter's bytes are these very quantized weights.
        assert_eq!(file.layers[l].weight, &qw[..], "layer {l} weights");
        let w_hat_sq: Vec<f64> = qw
            .iter()
            .enumerate()
            .map(|(i, &b)| ((b as i8) as f64 * s_w[(i / inner) % ch] as f64).powi(2))
            .collect();
        let w_var: Vec<f64> = s_w.iter().map(|&s| (s as f64).powi(2) / 12.0).collect();
        let bias_var: Vec<f64> = s_w
            .iter()
            .map(|&s| (s_in * s as f64).powi(2) / 12.0)
            .collect();
        let ones = vec![1f64; w_hat_sq.len()];
        let x_sq = inputs[l].sqr()?;
        v = linear(&layer.op, &v, &w_hat_sq)?
            .broadcast_add(&per_channel(&bias_var, &dev)?)?
            .add(&linear(&layer.op, &x_sq, &ones)?.broadcast_mul(&per_channel(&w_var, &dev)?)?)?;
        v = (v + s_out * s_out / 12.0)?;
        s_in = s_out;
    }
    assert_eq!(v.dims(), out.dims());
    Ok(chw(&v)?.iter().map(|v| v.sqrt()).collect())
}

// ---------------------------------------------------------------------------

fn data_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/mnist-subset")
}

fn decode_all(bytes: &[u8], zs: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let model = Model::load(bytes).unwrap();
    let mut arena = AlignedBuf::new(model.arena_bytes() as usize);
    let mut dec = Decoder::new(&model, arena.bytes()).unwrap();
    zs.iter()
        .map(|z| {
            let mut logits = vec![0f32; 784];
            dec.decode_logits(z, &mut logits).unwrap();
            logits
        })
        .collect()
}

#[test]
fn train_export_and_compare() {
    let out = tempfile::tempdir().unwrap();
    let opts = TrainOptions {
        data_dir: data_dir(),
        out: out.path().to_path_buf(),
        epochs: 1,
        batch_size: 128,
        limit_train: Some(256),
        max_steps: Some(2),
        seed: 5,
        ..TrainOptions::default()
    };
    let outcome = train_vae(&opts, VaeConfig { latent: LATENT }).unwrap();
    assert_eq!(outcome.metrics.last().unwrap().step, 2);
    let (_, vae) = load_vae(&outcome.run_dir).unwrap();
    let fresh = Vae::new(VaeConfig { latent: LATENT }, 5, &Device::Cpu).unwrap();
    let net = vae_decoder_net(&vae).unwrap();
    assert_ne!(
        net.layers[0].weight,
        vae_decoder_net(&fresh).unwrap().layers[0].weight,
        "two steps of training moved no weight"
    );

    // Latents: the compared ones are part of the int8 calibration set.
    let mut rng = StdRng::seed_from_u64(17);
    let zt = standard_normal(&mut rng, (N_Z, LATENT), &Device::Cpu).unwrap();
    let zs: Vec<Vec<f32>> = zt.to_vec2().unwrap();
    let mut calib = zs.clone();
    calib.extend(
        standard_normal(&mut rng, (256, LATENT), &Device::Cpu)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap(),
    );
    let meta = ExportMeta {
        kind: tinygen_runtime::ModelKind::Vae,
        image: tinygen_runtime::format::Shape { c: 1, h: 28, w: 28 },
        latent: LATENT as u16,
        data: "end_to_end test".into(),
        figures: Vec::new(),
        prior: None,
    };
    let file = |q| export(&net, &meta, q, &calib).unwrap();
    let (f32_file, f16_file, i8_file) = (file(Quant::F32), file(Quant::F16), file(Quant::Int8));

    // candle: the VAE itself, and the f64 pass over the exported network.
    let want = vae.decode_logits(&zt).unwrap();
    let want: Vec<Vec<f32>> = want.flatten_from(1).unwrap().to_vec2().unwrap();
    let exact: Vec<Vec<f64>> = zs
        .iter()
        .map(|z| chw(&forward(&net, &float_weights(&net), z).unwrap().1).unwrap())
        .collect();
    for (i, (w, x)) in want.iter().zip(&exact).enumerate() {
        assert_close(
            w,
            x,
            Approximation::Close,
            &format!("z{i}: Vae vs f64 FloatNet"),
        );
    }

    // f32: the runtime against candle's VAE.
    for (i, got) in decode_all(&f32_file, &zs).iter().enumerate() {
        assert_close(
            got,
            &want[i],
            Approximation::Close,
            &format!("z{i}: f32 file"),
        );
    }

    // f16: against the same network on f16-rounded weights (F16), and
    // against the exact logits within the derived bound.
    let rounded: Vec<Vec<f64>> = net
        .layers
        .iter()
        .map(|l| f64s(&f16_round(&l.weight)))
        .collect();
    let mut used = 0f64;
    for (i, got) in decode_all(&f16_file, &zs).iter().enumerate() {
        let on_rounded = chw(&forward(&net, &rounded, &zs[i]).unwrap().1).unwrap();
        assert_close(
            got,
            &on_rounded,
            Approximation::F16,
            &format!("z{i}: f16 vs rounded"),
        );
        let bound = f16_bound(&net, &zs[i]).unwrap();
        assert_within(got, &exact[i], &bound, &format!("z{i}: f16 vs exact"));
        used = used.max(bound_used(got, &exact[i], &bound));
    }
    println!("f16: largest share of the derived bound used: {used:.3}");

    // int8: dequantized logits against the VAE, within the derived bound
    // (plus Close, for candle's f32 against the exact pass), clamped to the
    // output's representable range as the runtime's codes are.
    let model = Model::load(&i8_file).unwrap();
    let last = model.file.decoder.layers[3].quant.unwrap();
    let s = last.out_scale as f64;
    let (lo, hi) = (
        s * (-128.0 - last.out_zp as f64),
        s * (127.0 - last.out_zp as f64),
    );
    let (mut err_steps, mut sum_err, mut sum_sigma, mut n) = (0f64, 0f64, 0f64, 0usize);
    for (i, got) in decode_all(&i8_file, &zs).iter().enumerate() {
        let close = Approximation::Close.tolerance(&want[i]);
        let sigma = int8_sigma(&net, &model, &zs[i]).unwrap();
        // 6σ: for a Gaussian, 2e-9 per element; 12544 elements are compared.
        let bound: Vec<f64> = sigma.iter().map(|sg| 6.0 * sg + close).collect();
        let clamped: Vec<f64> = want[i].iter().map(|&v| (v as f64).clamp(lo, hi)).collect();
        assert_within(
            got,
            &clamped,
            &bound,
            &format!("z{i}: int8 vs VAE (6 sigma)"),
        );
        for ((&g, &c), &sg) in got.iter().zip(&clamped).zip(&sigma) {
            let d = (g as f64 - c).abs() / s;
            err_steps = err_steps.max(d);
            sum_err += d;
            sum_sigma += sg / s;
            n += 1;
        }
    }
    let (mean_err, mean_sigma) = (sum_err / n as f64, sum_sigma / n as f64);
    println!(
        "int8: output step {s:.4}; error up to {err_steps:.2} steps, mean {mean_err:.3}; \
         modelled sigma mean {mean_sigma:.3} steps"
    );
    // A systematic error (a zero point or a bias off by one step) hides
    // inside 6σ per element but not in the mean: E|N(0, σ)| = 0.80σ, and
    // the errors must not average more than that plus a quarter.
    assert!(
        mean_err <= 1.25 * 0.80 * mean_sigma,
        "int8 mean error {mean_err:.3} steps, model expects about {:.3}",
        0.80 * mean_sigma
    );

    // Sampling through the runtime: the same seed gives the same bytes, another
    // seed other bytes, for every storage type.
    for (name, bytes) in [("f32", &f32_file), ("f16", &f16_file), ("int8", &i8_file)] {
        let model = Model::load(bytes).unwrap();
        let a = sample_decoder(&model, 4, 7).unwrap();
        let b = sample_decoder(&model, 4, 7).unwrap();
        let c = sample_decoder(&model, 4, 8).unwrap();
        assert_eq!(a.len(), 4 * 784);
        assert_eq!(a, b, "{name}: same seed, different bytes");
        assert_ne!(a, c, "{name}: another seed, same bytes");
    }

    // f32 samples against candle at the same seed: the runtime's own Rng
    // draws the latents (one stream, image after image), and each pixel is
    // round(255·sigmoid(logit)) with micromath's exp, whose sigmoid is within
    // 1e-3: |pixel − 255·p| <= 0.5 + 0.255 (+ 1e-3 for the logits).
    let model = Model::load(&f32_file).unwrap();
    let pixels = sample_decoder(&model, 4, 7).unwrap();
    let mut rng = Rng::new(7);
    let mut z = vec![0f32; 4 * LATENT];
    for img in z.chunks_exact_mut(LATENT) {
        rng.fill_gaussian(img);
    }
    let zt = Tensor::from_vec(z, (4, LATENT), &Device::Cpu).unwrap();
    let probs = vae.decode_probs(&zt).unwrap().flatten_all().unwrap();
    let scaled: Vec<f64> = (probs.to_dtype(DType::F64).unwrap() * 255.0)
        .unwrap()
        .to_vec1()
        .unwrap();
    let bound = vec![0.5 + 0.255 + 1e-3; scaled.len()];
    assert_within(&pixels, &scaled, &bound, "f32 samples vs candle");
}
