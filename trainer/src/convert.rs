//! Converting a model file without its run: an f32 `.tgm` becomes the f16
//! file `tinygen export RUN --quant f16` writes; any file can drop its
//! encoder (for a board that only samples).
//!
//! ```no_run
//! let f32_bytes = std::fs::read("models/vae-f32.tgm")?;
//! let f16_bytes = tinygen_trainer::convert::f32_to_f16(&f32_bytes)?;
//! let sampling_only = tinygen_trainer::convert::without_encoder(&f16_bytes)?;
//! # anyhow::Ok(())
//! ```

use anyhow::{anyhow, bail, Result};
use tinygen_runtime::format::{self, DType, Net};
use tinygen_runtime::Model;

/// Little-endian f32 weights re-encoded as little-endian f16 (round to
/// nearest even, as the exporter's `half::f16::from_f32`).
fn f16_blob(f32_le: &[u8]) -> Vec<u8> {
    f32_le
        .chunks_exact(4)
        .flat_map(|b| {
            half::f16::from_f32(f32::from_le_bytes([b[0], b[1], b[2], b[3]])).to_le_bytes()
        })
        .collect()
}

/// The f16 weight blobs of every layer of `net`, in order.
fn net_blobs(net: &Net<'_>) -> Vec<Vec<u8>> {
    net.layers.iter().map(|l| f16_blob(l.weight)).collect()
}

/// Re-encodes an f32 model file with f16 weights: every layer's weight blob
/// (decoder and, if present, encoder) goes from f32 to f16, and everything
/// else (kind, metadata, quality figures, f32 biases, prior, heads) is kept
/// byte for byte. The weights, and so the file apart from its figures, are
/// those `tinygen export RUN --quant f16` writes; the figures stay the f32
/// file's (`tinygen eval` measures the f16 file's own). The result is
/// loaded back by the runtime before it is returned.
///
/// # Errors
/// If `bytes` is not a valid model file, is not f32, or the runtime rejects
/// the f16 file (a layer kind without f16 kernels).
pub fn f32_to_f16(bytes: &[u8]) -> Result<Vec<u8>> {
    let model = Model::load(bytes).map_err(|e| anyhow!("{e}"))?;
    let src = &model.file;
    if src.dtype != DType::F32 {
        bail!(
            "only f32 files convert to f16 (this one is {}; re-export its run with --quant f16)",
            src.dtype.name()
        );
    }
    let dec = net_blobs(&src.decoder);
    let enc = src.encoder.as_ref().map(net_blobs);
    let mut file = src.clone();
    file.dtype = DType::F16;
    for (l, w) in file.decoder.layers.iter_mut().zip(&dec) {
        l.weight = w;
    }
    if let (Some(net), Some(blobs)) = (file.encoder.as_mut(), enc.as_ref()) {
        for (l, w) in net.layers.iter_mut().zip(blobs) {
            l.weight = w;
        }
    }
    // f16 weights take half the bytes: the f32 file's size is room enough.
    let mut buf = vec![0u8; bytes.len() + 64];
    let out = format::encode(&file, &mut buf)
        .map_err(|e| anyhow!("encoding the f16 file: {e}"))?
        .to_vec();
    Model::load(&out).map_err(|e| anyhow!("the runtime rejects the f16 file: {e}"))?;
    Ok(out)
}

/// The same model file without its encoder: decoder, metadata, stored
/// figures and prior byte for byte, for a board that only samples (the
/// shipped int8 VAE's encoder is 134 KB of flash the sampler never runs).
/// The stored figures stay those measured with the encoder; `tinygen eval`
/// cannot compute a VAE's likelihood without it (a typed error says so).
///
/// # Errors
/// If `bytes` is not a valid model file or has no encoder.
pub fn without_encoder(bytes: &[u8]) -> Result<Vec<u8>> {
    let model = Model::load(bytes).map_err(|e| anyhow!("{e}"))?;
    if model.file.encoder.is_none() {
        bail!("this model file has no encoder to drop");
    }
    let mut file = model.file.clone();
    file.encoder = None;
    let mut buf = vec![0u8; bytes.len()];
    let out = format::encode(&file, &mut buf)
        .map_err(|e| anyhow!("encoding the file: {e}"))?
        .to_vec();
    Model::load(&out).map_err(|e| anyhow!("the runtime rejects the file: {e}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::{export_with_encoder, EncoderExport, ExportMeta, Quant};
    use crate::models::ae::{AeConfig, AutoEncoder};
    use candle_core::Device;
    use tinygen_runtime::format::{ModelKind, Shape};

    #[test]
    fn f16_conversion_equals_the_f16_export() {
        // An autoencoder file: decoder, encoder, fitted prior, figures.
        let ae = AutoEncoder::new(AeConfig::default(), 3, &Device::Cpu).unwrap();
        let dec = ae.decoder_net().unwrap();
        let enc = ae.encoder_net().unwrap();
        let latent = ae.latent();
        let meta = ExportMeta {
            kind: ModelKind::AutoEncoder,
            image: Shape { c: 1, h: 28, w: 28 },
            latent: latent as u16,
            data: "test".into(),
            figures: vec![("test_mse".into(), 0.25)],
            prior: Some((vec![0.5; latent], vec![2.0; latent])),
        };
        let encoder = Some(EncoderExport {
            net: &enc,
            calib: &[],
        });
        let f32_file = export_with_encoder(&dec, encoder, &meta, Quant::F32, &[]).unwrap();
        let f16_file = export_with_encoder(&dec, encoder, &meta, Quant::F16, &[]).unwrap();
        let converted = f32_to_f16(&f32_file).unwrap();
        assert_eq!(converted, f16_file);
        // An f16 file does not convert again.
        assert!(f32_to_f16(&converted).is_err());

        // Dropping the encoder keeps the decoder and everything else, and
        // the file decodes the same latents to the same bytes.
        let dec_only = without_encoder(&converted).unwrap();
        assert!(dec_only.len() < converted.len());
        let (a, b) = (
            Model::load(&converted).unwrap(),
            Model::load(&dec_only).unwrap(),
        );
        assert!(b.file.encoder.is_none());
        assert_eq!(a.file.decoder, b.file.decoder);
        assert_eq!(a.file.meta, b.file.meta);
        assert_eq!((a.file.kind, a.file.dtype), (b.file.kind, b.file.dtype));
        assert!(without_encoder(&dec_only).is_err());
    }
}
