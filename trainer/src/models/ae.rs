//! Deterministic convolutional autoencoder (CS231n lecture 13's first family).
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use tinygen_trainer::models::ae::{AeConfig, AutoEncoder};
//! let ae = AutoEncoder::new(AeConfig { latent: 8 }, 0, &Device::Cpu)?;
//! let x = Tensor::zeros((2, 1, 28, 28), DType::F32, &Device::Cpu)?;
//! let z = ae.encode(&x)?; // (2, 8)
//! let logits = ae.decode_logits(&z)?; // (2, 1, 28, 28)
//! assert_eq!(logits.dims(), &[2, 1, 28, 28]);
//! # candle_core::Result::Ok(())
//! ```
//!
//! Encoder (image → z), exported as the file's encoder (head `Raw`):
//!
//! | name | layer | output |
//! | --- | --- | --- |
//! | `enc.c1` | conv2d 1→32, k4 s2 p1, ReLU | (32, 14, 14) |
//! | `enc.c2` | conv2d 32→64, k4 s2 p1, ReLU | (64, 7, 7) |
//! | `enc.fc` | linear 3136 → latent | z |
//!
//! Decoder (z → image), the VAE's decoder layer for layer (`dec.fc` latent →
//! 32·7·7 ReLU, reshape, `dec.up1` conv_transpose2d 32→16 k4 s2 p1 ReLU,
//! `dec.up2` 16→1 → logits), so [`upconv_decoder_net`] exports both.
//! The classifier ([`super::classifier`]) has the same `enc.c1` and `enc.c2`,
//! so it can start from a trained autoencoder's convolutions.
//!
//! Loss: Bernoulli cross-entropy of the grayscale targets in [0, 1] under the
//! decoder's logits, summed over pixels (nats per image; with soft targets it
//! includes the targets' own entropy, so it does not reach 0).

use candle_core::{Device, Module, Result, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig, Linear, VarMap};
use serde::{Deserialize, Serialize};
use tinygen_runtime::format::{Act, Op, Shape};

use super::vae::{bce_with_logits, DEC_CHANNELS, DEC_KERNEL, DEC_SIDE, DEC_UP1_CHANNELS};
use super::{conv, seeded_var_builder, sorted_tensors};
use crate::export::{FloatLayer, FloatNet};

/// Channels of `enc.c1`.
pub const ENC_C1: usize = 32;
/// Channels of `enc.c2`.
pub const ENC_C2: usize = 64;
/// Side of `enc.c2`'s output.
pub const ENC_SIDE: usize = 7;
/// Kernel size of the encoder's convolutions.
pub const ENC_KERNEL: usize = 4;

/// Names of the encoder's tensors, in layer order (checkpoint and exporter names).
pub const ENCODER_TENSORS: [&str; 6] = [
    "enc.c1.weight",
    "enc.c1.bias",
    "enc.c2.weight",
    "enc.c2.bias",
    "enc.fc.weight",
    "enc.fc.bias",
];

/// Names of the decoder's tensors, in layer order (the VAE's names).
pub const DECODER_TENSORS: [&str; 6] = super::vae::DECODER_TENSORS;

/// Autoencoder hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AeConfig {
    /// Latent dimensions.
    pub latent: usize,
}

impl Default for AeConfig {
    fn default() -> Self {
        Self { latent: 16 }
    }
}

/// Stride-2, padding-1 convolution settings shared by the conv models.
pub(crate) fn down_cfg() -> Conv2dConfig {
    Conv2dConfig {
        padding: 1,
        stride: 2,
        ..Default::default()
    }
}

/// Stride-2, padding-1 transposed convolution settings.
pub(crate) fn up_cfg() -> ConvTranspose2dConfig {
    ConvTranspose2dConfig {
        padding: 1,
        stride: 2,
        ..Default::default()
    }
}

/// A candle_nn conv layer's forward pass through [`conv::conv2d`] (fast on CPU).
pub(crate) fn conv_fwd(layer: &Conv2d, x: &Tensor) -> Result<Tensor> {
    let cfg = layer.config();
    if cfg.dilation != 1 || cfg.groups != 1 {
        candle_core::bail!("tinygen conv2d supports dilation 1 and groups 1 only");
    }
    conv::conv2d(x, layer.weight(), layer.bias(), cfg.stride, cfg.padding)
}

/// A candle_nn transposed conv layer's forward pass through [`conv::conv_transpose2d`].
pub(crate) fn up_fwd(layer: &ConvTranspose2d, x: &Tensor) -> Result<Tensor> {
    let cfg = layer.config();
    if cfg.dilation != 1 || cfg.output_padding != 0 {
        candle_core::bail!("tinygen conv_transpose2d supports dilation 1, no output padding");
    }
    conv::conv_transpose2d(x, layer.weight(), layer.bias(), cfg.stride, cfg.padding)
}

/// The tensors of `varmap` named in `names`, in that order.
///
/// # Errors
/// If one is missing.
pub(crate) fn named_tensors(varmap: &VarMap, names: &[&str]) -> Result<Vec<(String, Tensor)>> {
    let all = sorted_tensors(varmap)?;
    names
        .iter()
        .map(|name| match all.iter().find(|(n, _)| n == name) {
            Some(t) => Ok(t.clone()),
            None => candle_core::bail!("checkpoint has no tensor {name}"),
        })
        .collect()
}

/// The encoder's two convolutions, `enc.c1` and `enc.c2` (ReLU after each):
/// (b, 1, 28, 28) → (b, 3136).
pub(crate) struct ConvFeatures {
    pub(crate) c1: Conv2d,
    pub(crate) c2: Conv2d,
}

impl ConvFeatures {
    pub(crate) fn new(vb: &candle_nn::VarBuilder<'_>) -> Result<Self> {
        Ok(Self {
            c1: candle_nn::conv2d(1, ENC_C1, ENC_KERNEL, down_cfg(), vb.pp("enc.c1"))?,
            c2: candle_nn::conv2d(ENC_C1, ENC_C2, ENC_KERNEL, down_cfg(), vb.pp("enc.c2"))?,
        })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = conv_fwd(&self.c1, x)?.relu()?;
        conv_fwd(&self.c2, &h)?.relu()?.flatten_from(1)
    }
}

/// An autoencoder: encoder, decoder and the [`VarMap`] that owns their weights.
pub struct AutoEncoder {
    config: AeConfig,
    varmap: VarMap,
    features: ConvFeatures,
    enc_fc: Linear,
    dec_fc: Linear,
    dec_up1: ConvTranspose2d,
    dec_up2: ConvTranspose2d,
}

impl AutoEncoder {
    /// A freshly initialized autoencoder, weights drawn from a generator seeded with `seed`.
    ///
    /// # Errors
    /// If `config.latent` is 0, or candle fails to allocate.
    pub fn new(config: AeConfig, seed: u64, device: &Device) -> Result<Self> {
        Self::build(config, VarMap::new(), seed, device)
    }

    /// An autoencoder over existing weights (a loaded checkpoint).
    ///
    /// # Errors
    /// If a tensor is missing or has the wrong shape.
    pub fn from_varmap(config: AeConfig, varmap: VarMap, device: &Device) -> Result<Self> {
        named_tensors(&varmap, &ENCODER_TENSORS)?;
        named_tensors(&varmap, &DECODER_TENSORS)?;
        Self::build(config, varmap, 0, device)
    }

    fn build(config: AeConfig, varmap: VarMap, seed: u64, device: &Device) -> Result<Self> {
        if config.latent == 0 {
            candle_core::bail!("autoencoder latent size must be at least 1");
        }
        let vb = seeded_var_builder(&varmap, seed, device);
        let l = config.latent;
        let features = ConvFeatures::new(&vb)?;
        let enc_fc = candle_nn::linear(ENC_C2 * ENC_SIDE * ENC_SIDE, l, vb.pp("enc.fc"))?;
        let dec_fc = candle_nn::linear(l, DEC_CHANNELS * DEC_SIDE * DEC_SIDE, vb.pp("dec.fc"))?;
        let dec_up1 = candle_nn::conv_transpose2d(
            DEC_CHANNELS,
            DEC_UP1_CHANNELS,
            DEC_KERNEL,
            up_cfg(),
            vb.pp("dec.up1"),
        )?;
        let dec_up2 = candle_nn::conv_transpose2d(
            DEC_UP1_CHANNELS,
            1,
            DEC_KERNEL,
            up_cfg(),
            vb.pp("dec.up2"),
        )?;
        Ok(Self {
            config,
            varmap,
            features,
            enc_fc,
            dec_fc,
            dec_up1,
            dec_up2,
        })
    }

    /// The hyperparameters.
    pub fn config(&self) -> AeConfig {
        self.config
    }

    /// Latent dimensions.
    pub fn latent(&self) -> usize {
        self.config.latent
    }

    /// The weights, for the optimizer and for saving.
    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    /// z, (batch, latent), for x of shape (batch, 1, 28, 28) in [0, 1].
    ///
    /// # Errors
    /// On a wrong input shape.
    pub fn encode(&self, x: &Tensor) -> Result<Tensor> {
        self.enc_fc.forward(&self.features.forward(x)?)
    }

    /// Pixel logits (batch, 1, 28, 28) for z of shape (batch, latent).
    ///
    /// # Errors
    /// On a wrong input shape.
    pub fn decode_logits(&self, z: &Tensor) -> Result<Tensor> {
        let b = z.dim(0)?;
        let h = self.dec_fc.forward(z)?.relu()?;
        let h = h.reshape((b, DEC_CHANNELS, DEC_SIDE, DEC_SIDE))?;
        let h = up_fwd(&self.dec_up1, &h)?.relu()?;
        up_fwd(&self.dec_up2, &h)
    }

    /// Pixel intensities sigmoid(decode_logits(z)).
    ///
    /// # Errors
    /// On a wrong input shape.
    pub fn decode_probs(&self, z: &Tensor) -> Result<Tensor> {
        candle_nn::ops::sigmoid(&self.decode_logits(z)?)
    }

    /// Reconstruction losses of `x` (batch, 1, 28, 28) in [0, 1]: (BCE in
    /// nats per image, summed over pixels and averaged over the batch; MSE
    /// per pixel of sigmoid(logits) against x). Both scalars; BCE is the
    /// training loss.
    ///
    /// # Errors
    /// On wrong shapes.
    pub fn loss(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let logits = self.decode_logits(&self.encode(x)?)?;
        let per_image = 1.0 / x.dim(0)? as f64;
        let bce = bce_with_logits(&logits, x)?
            .sum_all()?
            .affine(per_image, 0.0)?;
        let mse = (candle_nn::ops::sigmoid(&logits)? - x)?.sqr()?.mean_all()?;
        Ok((bce, mse))
    }

    /// The encoder's tensors, named as in [`ENCODER_TENSORS`].
    ///
    /// # Errors
    /// If one is missing.
    pub fn encoder_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        named_tensors(&self.varmap, &ENCODER_TENSORS)
    }

    /// The decoder's tensors, named as in [`DECODER_TENSORS`].
    ///
    /// # Errors
    /// If one is missing.
    pub fn decoder_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        named_tensors(&self.varmap, &DECODER_TENSORS)
    }
}

/// The float tensor `name` of `tensors`, flattened, checked to have shape `dims`.
fn flat(tensors: &[(String, Tensor)], name: &str, dims: &[usize]) -> Result<Vec<f32>> {
    let Some((_, t)) = tensors.iter().find(|(n, _)| n == name) else {
        candle_core::bail!("tensor {name} missing");
    };
    if t.dims() != dims {
        candle_core::bail!("{name} has shape {:?}, expected {dims:?}", t.dims());
    }
    t.flatten_all()?.to_vec1::<f32>()
}

/// A dense → reshape → two stride-2 transposed convolutions decoder as the
/// board runs it (the VAE's and the autoencoder's with `prefix` "dec" and
/// channels (32, 16); the GAN generator's with "gen" and (64, 32)):
/// `{prefix}.fc` latent → c·side² ReLU, reshape (c, side, side),
/// `{prefix}.up1` c → c1 k s2 p1 ReLU, `{prefix}.up2` c1 → 1 (logits).
///
/// # Errors
/// If a tensor is missing or has an unexpected shape.
pub fn upconv_decoder_net(
    tensors: &[(String, Tensor)],
    prefix: &str,
    latent: usize,
    (c, c1, side, k): (usize, usize, usize, usize),
) -> Result<FloatNet> {
    let hidden = c * side * side;
    let up = |in_c: usize, out_c: usize| Op::ConvTranspose2d {
        in_c: in_c as u16,
        out_c: out_c as u16,
        k: k as u8,
        stride: 2,
        pad: 1,
        out_pad: 0,
    };
    let t = |name: &str, dims: &[usize]| flat(tensors, &format!("{prefix}.{name}"), dims);
    Ok(FloatNet {
        input: Shape {
            c: latent as u16,
            h: 1,
            w: 1,
        },
        layers: vec![
            FloatLayer {
                op: Op::Dense {
                    inp: latent as u16,
                    out: hidden as u16,
                },
                act: Act::Relu,
                weight: t("fc.weight", &[hidden, latent])?,
                bias: t("fc.bias", &[hidden])?,
            },
            FloatLayer {
                op: Op::Reshape(Shape {
                    c: c as u16,
                    h: side as u16,
                    w: side as u16,
                }),
                act: Act::None,
                weight: Vec::new(),
                bias: Vec::new(),
            },
            FloatLayer {
                op: up(c, c1),
                act: Act::Relu,
                weight: t("up1.weight", &[c, c1, k, k])?,
                bias: t("up1.bias", &[c1])?,
            },
            FloatLayer {
                op: up(c1, 1),
                act: Act::None,
                weight: t("up2.weight", &[c1, 1, k, k])?,
                bias: t("up2.bias", &[1])?,
            },
        ],
    })
}

impl AutoEncoder {
    /// The decoder as the board runs it (see [`upconv_decoder_net`]).
    ///
    /// # Errors
    /// If a tensor is missing or has an unexpected shape.
    pub fn decoder_net(&self) -> Result<FloatNet> {
        upconv_decoder_net(
            &self.decoder_tensors()?,
            "dec",
            self.latent(),
            (DEC_CHANNELS, DEC_UP1_CHANNELS, DEC_SIDE, DEC_KERNEL),
        )
    }

    /// The encoder as the board runs it (see [`conv_encoder_net`]), to
    /// the latent z.
    ///
    /// # Errors
    /// If a tensor is missing or has an unexpected shape.
    pub fn encoder_net(&self) -> Result<FloatNet> {
        conv_encoder_net(&self.encoder_tensors()?, self.latent())
    }
}

/// The convolutional encoder shared by the autoencoder and the VAE, as the
/// board runs it: input (1, 28, 28) = pixel / 255, `enc.c1` conv 1→32 k4
/// s2 p1 ReLU, `enc.c2` conv 32→64 ReLU, `enc.fc` dense 3136 → `out` (no
/// activation): the autoencoder's z (`out` = latent), or the VAE's
/// [mean ‖ log-variance] (`out` = 2·latent).
///
/// # Errors
/// If a tensor of `t` is missing or has an unexpected shape.
pub fn conv_encoder_net(t: &[(String, Tensor)], out: usize) -> Result<FloatNet> {
    let k = ENC_KERNEL;
    let conv = |in_c: usize, out_c: usize| Op::Conv2d {
        in_c: in_c as u16,
        out_c: out_c as u16,
        k: k as u8,
        stride: 2,
        pad: 1,
    };
    let flat_in = ENC_C2 * ENC_SIDE * ENC_SIDE;
    Ok(FloatNet {
        input: Shape { c: 1, h: 28, w: 28 },
        layers: vec![
            FloatLayer {
                op: conv(1, ENC_C1),
                act: Act::Relu,
                weight: flat(t, "enc.c1.weight", &[ENC_C1, 1, k, k])?,
                bias: flat(t, "enc.c1.bias", &[ENC_C1])?,
            },
            FloatLayer {
                op: conv(ENC_C1, ENC_C2),
                act: Act::Relu,
                weight: flat(t, "enc.c2.weight", &[ENC_C2, ENC_C1, k, k])?,
                bias: flat(t, "enc.c2.bias", &[ENC_C2])?,
            },
            FloatLayer {
                op: Op::Dense {
                    inp: flat_in as u16,
                    out: out as u16,
                },
                act: Act::None,
                weight: flat(t, "enc.fc.weight", &[out, flat_in])?,
                bias: flat(t, "enc.fc.bias", &[out])?,
            },
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;

    #[test]
    fn shapes_and_names() {
        let dev = Device::Cpu;
        let ae = AutoEncoder::new(AeConfig { latent: 5 }, 0, &dev).unwrap();
        let x = Tensor::zeros((3, 1, 28, 28), DType::F32, &dev).unwrap();
        let z = ae.encode(&x).unwrap();
        assert_eq!(z.dims(), &[3, 5]);
        assert_eq!(ae.decode_logits(&z).unwrap().dims(), &[3, 1, 28, 28]);
        let shapes = |t: Vec<(String, Tensor)>| -> Vec<(String, Vec<usize>)> {
            t.into_iter().map(|(n, t)| (n, t.dims().to_vec())).collect()
        };
        assert_eq!(
            shapes(ae.encoder_tensors().unwrap()),
            vec![
                ("enc.c1.weight".into(), vec![32, 1, 4, 4]),
                ("enc.c1.bias".into(), vec![32]),
                ("enc.c2.weight".into(), vec![64, 32, 4, 4]),
                ("enc.c2.bias".into(), vec![64]),
                ("enc.fc.weight".into(), vec![5, 3136]),
                ("enc.fc.bias".into(), vec![5]),
            ]
        );
        assert_eq!(ae.decoder_tensors().unwrap()[0].1.dims(), &[1568, 5]);
        assert_eq!(sorted_tensors(ae.varmap()).unwrap().len(), 12);
        assert!(AutoEncoder::new(AeConfig { latent: 0 }, 0, &dev).is_err());
    }

    #[test]
    fn losses_are_finite_and_sensible() {
        let dev = Device::Cpu;
        let ae = AutoEncoder::new(AeConfig::default(), 1, &dev).unwrap();
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(2);
        let x = crate::models::standard_normal(&mut rng, (4, 1, 28, 28), &dev)
            .unwrap()
            .abs()
            .unwrap()
            .clamp(0f32, 1f32)
            .unwrap();
        let (bce, mse) = ae.loss(&x).unwrap();
        let (bce, mse) = (
            bce.to_scalar::<f32>().unwrap(),
            mse.to_scalar::<f32>().unwrap(),
        );
        assert!(bce.is_finite() && bce > 0.0, "{bce}");
        // Untrained: outputs near 1/2, so about ln 2 per pixel, MSE under 1.
        assert!(bce < 784.0 * 3.0, "{bce}");
        assert!(mse.is_finite() && (0.0..1.0).contains(&mse), "{mse}");
    }

    #[test]
    fn from_varmap_roundtrips_and_checks() {
        let dev = Device::Cpu;
        let ae = AutoEncoder::new(AeConfig { latent: 3 }, 4, &dev).unwrap();
        let mut tensors = sorted_tensors(ae.varmap()).unwrap();
        let copy = super::super::varmap_from_tensors(tensors.clone()).unwrap();
        let again = AutoEncoder::from_varmap(AeConfig { latent: 3 }, copy, &dev).unwrap();
        let x = Tensor::ones((1, 1, 28, 28), DType::F32, &dev).unwrap();
        assert_eq!(
            ae.encode(&x).unwrap().to_vec2::<f32>().unwrap(),
            again.encode(&x).unwrap().to_vec2::<f32>().unwrap()
        );
        tensors.retain(|(n, _)| n != "enc.fc.bias");
        let missing = super::super::varmap_from_tensors(tensors).unwrap();
        let err = AutoEncoder::from_varmap(AeConfig { latent: 3 }, missing, &dev)
            .err()
            .unwrap();
        assert!(err.to_string().contains("enc.fc.bias"), "{err}");
    }
}
