//! Exporting PixelRNN runs: the layers as the board runs them (masked
//! convolutions and `Op::RowLstm`); int8 calibration on training images
//! (Row LSTM gate pre-activation ranges included) and the exact test
//! likelihood measured through the runtime are shared with PixelCNN
//! ([`crate::autoregressive`]).
//!
//! ```no_run
//! use tinygen_trainer::data::load_mnist;
//! use tinygen_trainer::export::Quant;
//! use tinygen_trainer::export_pixelrnn::export_pixelrnn;
//! use tinygen_trainer::train_pixelrnn::load_pixelrnn;
//! let (config, model) = load_pixelrnn(std::path::Path::new("runs/pixelrnn-s0-..."))?;
//! let mnist = load_mnist(&config.data_dir)?;
//! let bytes = export_pixelrnn(&model, &mnist, "MNIST".into(), Quant::Int8, 1000, 1000)?;
//! # anyhow::Ok(())
//! ```

use anyhow::Result;
use tinygen_runtime::format::{Act, Mask, ModelKind, Op};

use crate::export::{ExportMeta, FloatLayer, FloatNet};
use crate::models::pixelrnn::{ConvWeights, PixelRnn, K_IN, K_STATE};

/// Exact NLL in nats per image of binarized images under an exported
/// PixelRNN, through the runtime (see [`crate::autoregressive::nll_runtime`]).
pub use crate::autoregressive::nll_runtime as pixelrnn_nll_runtime;

/// Exports a PixelRnn (see [`crate::autoregressive::export_autoregressive`]).
pub use crate::autoregressive::export_autoregressive as export_pixelrnn;

fn masked(c: ConvWeights, mask: Mask, act: Act) -> FloatLayer {
    FloatLayer {
        op: Op::MaskedConv2d {
            in_c: c.in_c as u16,
            out_c: c.out_c as u16,
            k: c.k as u8,
            mask,
        },
        act,
        weight: c.weight,
        bias: c.bias,
    }
}

/// The network as the board runs it: `Op::MaskedConv2d` 7x7 mask A (ReLU),
/// one `Op::RowLstm` per layer (weights `w_is` then `w_ss`, masked taps
/// written as zeros), then the two 1x1 layers as `Op::MaskedConv2d` k 1.
///
/// # Errors
/// On candle errors.
pub fn pixelrnn_net(model: &PixelRnn) -> Result<FloatNet> {
    let w = model.weights()?;
    let mut layers = vec![masked(w.c0, Mask::A, Act::Relu)];
    for l in w.lstm {
        let mut weight = l.w_is;
        weight.extend_from_slice(&l.w_ss);
        layers.push(FloatLayer {
            op: Op::RowLstm {
                in_c: l.in_c as u16,
                hidden: l.hidden as u16,
                k_in: K_IN as u8,
                mask: Mask::B,
                k_state: K_STATE as u8,
            },
            act: Act::None,
            weight,
            bias: l.bias,
        });
    }
    layers.push(masked(w.fc, Mask::B, Act::Relu));
    layers.push(masked(w.out, Mask::B, Act::None));
    Ok(FloatNet {
        input: crate::autoregressive::IMAGE,
        layers,
    })
}

/// File metadata of a PixelRNN (no latent, no prior).
pub fn pixelrnn_meta(data: String) -> ExportMeta {
    crate::autoregressive::meta(ModelKind::PixelRnn, data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::HostArena;
    use crate::export::export;
    use crate::export::Quant;
    use crate::models::pixelrnn::PixelRnnConfig;
    use candle_core::{Device, Tensor};
    use tinygen_runtime::Model;
    use tinygen_runtime::PixelCnnSampler;

    fn image(seed: u32) -> Vec<u8> {
        (0..784u32)
            .map(|i| if (i * 7 + seed * 13) % 5 < 2 { 255 } else { 0 })
            .collect()
    }

    #[test]
    fn luts() {
        let t = crate::export::row_lstm_luts(6.0 / 127.0);
        assert_eq!(t.len(), 1024);
        let i8s = |r: std::ops::Range<usize>| t[r].iter().map(|&b| b as i8).collect::<Vec<_>>();
        let (sig, tanh, cell) = (i8s(0..256), i8s(256..512), i8s(512..1024));
        assert_eq!((sig[0], sig[128], sig[255]), (0, 64, 127));
        assert_eq!((tanh[0], tanh[128], tanh[255]), (-128, 0, 127));
        assert_eq!(
            (cell[0], cell[256], cell[256 + 64], cell[511]),
            (-128, 0, 97, 127)
        );
        assert!(sig.windows(2).all(|w| w[0] <= w[1]));
        assert!(tanh.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn runtime_logits_match_candle_and_int8_loads() {
        let dev = Device::Cpu;
        let m = PixelRnn::new(
            PixelRnnConfig {
                channels: 4,
                hidden: 3,
                layers: 2,
            },
            2,
            &dev,
        )
        .unwrap();
        let net = pixelrnn_net(&m).unwrap();
        let img = image(1);
        let x: Vec<f32> = img.iter().map(|&p| f32::from(p) / 255.0).collect();
        let xt = Tensor::from_vec(x.clone(), (1, 1, 28, 28), &dev).unwrap();
        let want = m
            .logits(&xt)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        // The float network (the runtime's f32 kernels) is candle's.
        let fwd = net.forward_all(&x).unwrap();
        for (g, w) in fwd.last().unwrap().iter().zip(&want) {
            assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "{g} vs {w}");
        }
        for (quant, tol) in [(Quant::F32, 1e-4f32), (Quant::F16, 2e-2)] {
            let bytes = export(&net, &pixelrnn_meta("test".into()), quant, &[]).unwrap();
            let model = Model::load(&bytes).unwrap();
            let mut arena = HostArena::new(model.arena_bytes());
            let mut scratch = HostArena::new(model.forward_arena_bytes());
            let s = PixelCnnSampler::new(&model, arena.bytes()).unwrap();
            let mut got = vec![0f32; 784];
            s.logits(&img, scratch.bytes(), &mut got).unwrap();
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g - w).abs() <= tol * (1.0 + w.abs()),
                    "{quant:?}: {g} vs {w}"
                );
            }
        }
        let bytes = export(&net, &pixelrnn_meta("test".into()), Quant::F32, &[]).unwrap();
        let model = Model::load(&bytes).unwrap();
        let nll = pixelrnn_nll_runtime(&model, &img).unwrap();
        let candle_nll = f64::from(m.nll(&xt).unwrap().to_scalar::<f32>().unwrap());
        assert!((nll - candle_nll).abs() < 1e-2, "{nll} vs {candle_nll}");

        // int8, calibrated on a few images: loads, masked taps stay zero, the
        // tables follow the weights, and the NLL is near the float one.
        let calib: Vec<Vec<f32>> = (0..8)
            .map(|s| image(s).iter().map(|&p| f32::from(p) / 255.0).collect())
            .collect();
        let b8 = export(&net, &pixelrnn_meta("test".into()), Quant::Int8, &calib).unwrap();
        let m8 = Model::load(&b8).unwrap();
        let l1 = &m8.file.decoder.layers[1];
        let (n_is, n_ss) = (12 * 4 * 3, 12 * 3 * 3);
        assert_eq!(l1.weight.len(), n_is + n_ss + 1024);
        assert!(l1.weight[..n_is].iter().skip(2).step_by(3).all(|&b| b == 0));
        assert_eq!(l1.bias.len(), 12 * 4);
        let q = l1.quant.unwrap();
        assert_eq!(
            (q.out_zp, q.out_scale, q.multiplier.len(), q.shift.len()),
            (0, 1.0 / 128.0, 24 * 4, 24)
        );
        let nll8 = pixelrnn_nll_runtime(&m8, &img).unwrap();
        assert!(
            nll8.is_finite() && (nll8 - nll).abs() < 0.1 * nll,
            "{nll8} vs {nll}"
        );
        let s8 = crate::sample::sample_model(&m8, 2, 1).unwrap();
        assert_eq!(s8.len(), 2 * 784);
    }
}
