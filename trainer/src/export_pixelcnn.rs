//! Exporting PixelCNN runs: the masked layers as the board runs them; int8
//! calibration on training images and the exact test likelihood measured
//! through the runtime are shared with PixelRNN ([`crate::autoregressive`]).
//!
//! ```no_run
//! use tinygen_trainer::data::load_mnist;
//! use tinygen_trainer::export::Quant;
//! use tinygen_trainer::export_pixelcnn::export_pixelcnn;
//! use tinygen_trainer::train_pixelcnn::load_pixelcnn;
//! let (config, model) = load_pixelcnn(std::path::Path::new("runs/pixelcnn-s0-..."))?;
//! let mnist = load_mnist(&config.data_dir)?;
//! let bytes = export_pixelcnn(&model, &mnist, "MNIST".into(), Quant::Int8, 1000, 1000)?;
//! # anyhow::Ok(())
//! ```

use anyhow::Result;
use tinygen_runtime::format::{Act, ModelKind, Op};

use crate::export::{ExportMeta, FloatLayer, FloatNet};
use crate::models::pixelcnn::PixelCnn;

/// Exact NLL in nats per image of binarized images under an exported
/// PixelCNN, through the runtime (see [`crate::autoregressive::nll_runtime`]).
pub use crate::autoregressive::nll_runtime as pixelcnn_nll_runtime;

/// Exports a PixelCnn (see [`crate::autoregressive::export_autoregressive`]).
pub use crate::autoregressive::export_autoregressive as export_pixelcnn;

/// The network as the board runs it. Plain: every layer an
/// `Op::MaskedConv2d`, weights with the masked taps written as zeros. Two
/// stacks: `Op::StackConv2d` layers (the compact blob of used taps), then
/// the 1x1 `Op::MaskedConv2d` head.
///
/// # Errors
/// On candle errors.
pub fn pixelcnn_net(model: &PixelCnn) -> Result<FloatNet> {
    let layers = model
        .masked_layers()?
        .into_iter()
        .map(|(spec, weight, bias)| {
            let mask = spec.mask;
            let op = match spec.stack {
                None => Op::MaskedConv2d {
                    in_c: spec.in_c as u16,
                    out_c: spec.out_c as u16,
                    k: spec.k as u8,
                    mask,
                },
                Some(s) => Op::StackConv2d {
                    in_c: spec.in_c as u16,
                    in_v: s.in_v as u16,
                    out_c: spec.out_c as u16,
                    out_v: s.out_v as u16,
                    k: spec.k as u8,
                    mask,
                },
            };
            (spec, op, weight, bias)
        })
        .map(|(spec, op, weight, bias)| FloatLayer {
            op,
            act: if spec.relu { Act::Relu } else { Act::None },
            weight,
            bias,
        })
        .collect();
    Ok(FloatNet {
        input: crate::autoregressive::IMAGE,
        layers,
    })
}

/// File metadata of a PixelCNN (no latent, no prior).
pub fn pixelcnn_meta(data: String) -> ExportMeta {
    crate::autoregressive::meta(ModelKind::PixelCnn, data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::HostArena;
    use crate::export::export;
    use crate::export::Quant;
    use crate::models::pixelcnn::{PixelCnnArch, PixelCnnConfig};
    use candle_core::{Device, Tensor};
    use tinygen_runtime::format::Mask;
    use tinygen_runtime::{Model, PixelCnnSampler};

    fn image(seed: u32) -> Vec<u8> {
        (0..784u32)
            .map(|i| if (i * 7 + seed * 13) % 5 < 2 { 255 } else { 0 })
            .collect()
    }

    /// f32 export of `m`: the runtime's logits are candle's, and so is its
    /// NLL; int8 (calibrated on a few images) loads and its NLL is finite
    /// and near the float one. Returns the int8 model bytes.
    fn check_runtime_agreement(m: &PixelCnn) -> Vec<u8> {
        let dev = Device::Cpu;
        let net = pixelcnn_net(m).unwrap();
        let img = image(1);
        let x: Vec<f32> = img.iter().map(|&p| f32::from(p) / 255.0).collect();
        let want = m
            .logits(&Tensor::from_vec(x.clone(), (1, 1, 28, 28), &dev).unwrap())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let bytes = export(&net, &pixelcnn_meta("test".into()), Quant::F32, &[]).unwrap();
        let model = Model::load(&bytes).unwrap();
        let mut arena = HostArena::new(model.arena_bytes());
        let mut scratch = HostArena::new(model.forward_arena_bytes());
        let s = PixelCnnSampler::new(&model, arena.bytes()).unwrap();
        let mut got = vec![0f32; 784];
        s.logits(&img, scratch.bytes(), &mut got).unwrap();
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "{g} vs {w}");
        }
        // The runtime's NLL is candle's.
        let nll = pixelcnn_nll_runtime(&model, &img).unwrap();
        let candle_nll = f64::from(
            m.nll(&Tensor::from_vec(x, (1, 1, 28, 28), &dev).unwrap())
                .unwrap()
                .to_scalar::<f32>()
                .unwrap(),
        );
        assert!((nll - candle_nll).abs() < 1e-2, "{nll} vs {candle_nll}");

        let calib: Vec<Vec<f32>> = (0..8)
            .map(|s| image(s).iter().map(|&p| f32::from(p) / 255.0).collect())
            .collect();
        let b8 = export(&net, &pixelcnn_meta("test".into()), Quant::Int8, &calib).unwrap();
        let nll8 = pixelcnn_nll_runtime(&Model::load(&b8).unwrap(), &img).unwrap();
        assert!(
            nll8.is_finite() && (nll8 - nll).abs() < 0.1 * nll,
            "{nll8} vs {nll}"
        );
        b8
    }

    #[test]
    fn runtime_logits_match_candle_and_int8_loads() {
        let m = PixelCnn::new(
            PixelCnnConfig {
                channels: 4,
                layers: 1,
                ..PixelCnnConfig::default()
            },
            2,
            &Device::Cpu,
        )
        .unwrap();
        let b8 = check_runtime_agreement(&m);
        let m8 = Model::load(&b8).unwrap();
        let w0 = m8.file.decoder.layers[0].weight;
        // Mask A 7x7: taps from the centre (index 24) on are zero.
        assert!(w0[..49].iter().skip(24).all(|&b| b == 0));
    }

    #[test]
    fn two_stacks_export_as_stack_convs() {
        let m = PixelCnn::new(
            PixelCnnConfig {
                channels: 4,
                layers: 2,
                arch: PixelCnnArch::Stacks,
                kernel: 5,
            },
            2,
            &Device::Cpu,
        )
        .unwrap();
        let net = pixelcnn_net(&m).unwrap();
        let ops: Vec<Op> = net.layers.iter().map(|l| l.op).collect();
        assert_eq!(
            ops,
            vec![
                Op::StackConv2d {
                    in_c: 1,
                    in_v: 0,
                    out_c: 8,
                    out_v: 4,
                    k: 7,
                    mask: Mask::A
                },
                Op::StackConv2d {
                    in_c: 8,
                    in_v: 4,
                    out_c: 8,
                    out_v: 4,
                    k: 5,
                    mask: Mask::B
                },
                Op::StackConv2d {
                    in_c: 8,
                    in_v: 4,
                    out_c: 4,
                    out_v: 0,
                    k: 5,
                    mask: Mask::B
                },
                Op::MaskedConv2d {
                    in_c: 4,
                    out_c: 1,
                    k: 1,
                    mask: Mask::B
                },
            ]
        );
        assert!(net.layers[..3].iter().all(|l| l.act == Act::Relu));
        assert_eq!(net.layers[3].act, Act::None);
        // c1: vertical rows [4][3][5] = 60, horizontal rows 4 x 3 taps + 4 links.
        assert_eq!(net.layers[1].weight.len(), 4 * 60 + 4 * 16);
        // The first vertical row of c0 is v_weight[0][0], rows 0..=3 of 7.
        let vars = m.varmap().data().lock().unwrap();
        let v0: Vec<f32> = vars["c0.v_weight"]
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(net.layers[0].weight[..28], v0[..28]);
        let h1: Vec<f32> = vars["c1.h_weight"]
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(net.layers[1].weight[4 * 60..], h1[..]);
    }

    #[test]
    fn two_stacks_runtime_logits_match_candle_and_int8_loads() {
        let m = PixelCnn::new(
            PixelCnnConfig {
                channels: 4,
                layers: 2,
                arch: PixelCnnArch::Stacks,
                kernel: 5,
            },
            2,
            &Device::Cpu,
        )
        .unwrap();
        let b8 = check_runtime_agreement(&m);
        let m8 = Model::load(&b8).unwrap();
        let l1 = &m8.file.decoder.layers[1];
        assert_eq!(l1.weight.len(), 4 * 60 + 4 * 16);
        // Per-row scales: every row's largest weight is +-127.
        let row_max = |r: &[u8]| r.iter().map(|&b| (b as i8).unsigned_abs()).max();
        for row in l1.weight[..240]
            .chunks(60)
            .chain(l1.weight[240..].chunks(16))
        {
            assert_eq!(row_max(row), Some(127));
        }
    }
}
