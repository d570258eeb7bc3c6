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
use tinygen_runtime::format::{Act, Mask, ModelKind, Op};

use crate::export::{ExportMeta, FloatLayer, FloatNet};
use crate::models::pixelcnn::{MaskKind, PixelCnn};

/// Exact NLL in nats per image of binarized images under an exported
/// PixelCNN, through the runtime (see [`crate::autoregressive::nll_runtime`]).
pub use crate::autoregressive::nll_runtime as pixelcnn_nll_runtime;

/// Exports a PixelCnn (see [`crate::autoregressive::export_autoregressive`]).
pub use crate::autoregressive::export_autoregressive as export_pixelcnn;

/// The network as the board runs it: every layer an `Op::MaskedConv2d`,
/// weights with the masked taps written as zeros.
///
/// # Errors
/// On candle errors.
pub fn pixelcnn_net(model: &PixelCnn) -> Result<FloatNet> {
    let layers = model
        .masked_layers()?
        .into_iter()
        .map(|(spec, weight, bias)| FloatLayer {
            op: Op::MaskedConv2d {
                in_c: spec.in_c as u16,
                out_c: spec.out_c as u16,
                k: spec.k as u8,
                mask: match spec.mask {
                    MaskKind::A => Mask::A,
                    MaskKind::B => Mask::B,
                },
            },
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
    use crate::models::pixelcnn::PixelCnnConfig;
    use candle_core::{Device, Tensor};
    use tinygen_runtime::{Model, PixelCnnSampler};

    fn image(seed: u32) -> Vec<u8> {
        (0..784u32)
            .map(|i| if (i * 7 + seed * 13) % 5 < 2 { 255 } else { 0 })
            .collect()
    }

    #[test]
    fn runtime_logits_match_candle_and_int8_loads() {
        let dev = Device::Cpu;
        let m = PixelCnn::new(
            PixelCnnConfig {
                channels: 4,
                layers: 1,
            },
            2,
            &dev,
        )
        .unwrap();
        let net = pixelcnn_net(&m).unwrap();
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

        // int8, calibrated on a few images: loads, masked weights stay zero,
        // and its NLL is finite and near the float one.
        let calib: Vec<Vec<f32>> = (0..8)
            .map(|s| image(s).iter().map(|&p| f32::from(p) / 255.0).collect())
            .collect();
        let b8 = export(&net, &pixelcnn_meta("test".into()), Quant::Int8, &calib).unwrap();
        let m8 = Model::load(&b8).unwrap();
        let w0 = m8.file.decoder.layers[0].weight;
        // Mask A 7x7: taps from the centre (index 24) on are zero.
        assert!(w0[..49].iter().skip(24).all(|&b| b == 0));
        let nll8 = pixelcnn_nll_runtime(&m8, &img).unwrap();
        assert!(
            nll8.is_finite() && (nll8 - nll).abs() < 0.1 * nll,
            "{nll8} vs {nll}"
        );
    }
}
