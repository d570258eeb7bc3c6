//! Convolutional variational autoencoder for 1x28x28 binarized images.
//!
//! ```
//! use candle_core::Device;
//! use rand::SeedableRng;
//! use tinygen_trainer::models::{standard_normal, vae::{Vae, VaeConfig}};
//! let dev = Device::Cpu;
//! let vae = Vae::new(VaeConfig::default(), 0, &dev)?;
//! let mut rng = rand::rngs::StdRng::seed_from_u64(0);
//! let x = candle_core::Tensor::zeros((2, 1, 28, 28), candle_core::DType::F32, &dev)?;
//! let eps = standard_normal(&mut rng, (2, vae.latent()), &dev)?;
//! let (recon, kl) = vae.loss(&x, &eps)?; // nats per image
//! let logits = vae.decode_logits(&eps)?; // (2, 1, 28, 28)
//! # candle_core::Result::Ok(())
//! ```
//!
//! Encoder q(z|x): `enc.c1` conv 1→32 k4 s2 p1 (28→14), ReLU, `enc.c2` conv 32→64
//! k4 s2 p1 (14→7), ReLU, flatten (C, H, W order), `enc.fc` linear 3136 → 2·latent
//! (mean, then log-variance).
//!
//! Decoder p(x|z), the part exported to the microcontroller, layer for layer:
//!
//! | name | layer | output |
//! | --- | --- | --- |
//! | `dec.fc` | linear latent → 1568, ReLU | reshaped to (32, 7, 7) |
//! | `dec.up1` | conv_transpose2d 32→16, k4 s2 p1, ReLU | (16, 14, 14) |
//! | `dec.up2` | conv_transpose2d 16→1, k4 s2 p1 | (1, 28, 28) Bernoulli logits |
//!
//! Weight layouts are candle's: linear `(out, in)`, conv `(out, in, kh, kw)`,
//! conv_transpose `(in, out, kh, kw)`; every layer has a `.bias` of length `out`.

use candle_core::{Device, Module, Result, Tensor, D};
use candle_nn::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig, Linear, VarMap};
use serde::{Deserialize, Serialize};

use super::{conv, seeded_var_builder};

/// Channels of the decoder's first feature map (after `dec.fc`).
pub const DEC_CHANNELS: usize = 32;
/// Channels after `dec.up1`.
pub const DEC_UP1_CHANNELS: usize = 16;
/// Side of the decoder's first feature map.
pub const DEC_SIDE: usize = 7;
/// Kernel size of both transposed convolutions.
pub const DEC_KERNEL: usize = 4;

/// Names of the decoder's tensors, in layer order. These names are the
/// checkpoint's and the exporter's: never rename one.
pub const DECODER_TENSORS: [&str; 6] = [
    "dec.fc.weight",
    "dec.fc.bias",
    "dec.up1.weight",
    "dec.up1.bias",
    "dec.up2.weight",
    "dec.up2.bias",
];

/// Names of the encoder's tensors: the autoencoder's (the same
/// convolutional encoder, [`super::ae::conv_encoder_net`]).
pub const ENCODER_TENSORS: [&str; 6] = super::ae::ENCODER_TENSORS;

/// VAE hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VaeConfig {
    /// Latent dimensions.
    pub latent: usize,
}

impl Default for VaeConfig {
    fn default() -> Self {
        Self { latent: 16 }
    }
}

/// A VAE: encoder, decoder and the [`VarMap`] that owns their weights.
pub struct Vae {
    config: VaeConfig,
    varmap: VarMap,
    enc_c1: Conv2d,
    enc_c2: Conv2d,
    enc_fc: Linear,
    dec_fc: Linear,
    dec_up1: ConvTranspose2d,
    dec_up2: ConvTranspose2d,
}

impl Vae {
    /// A freshly initialized VAE, weights drawn from a generator seeded with `seed`.
    ///
    /// # Errors
    /// If `config.latent` is 0, or candle fails to allocate.
    pub fn new(config: VaeConfig, seed: u64, device: &Device) -> Result<Self> {
        Self::build(config, VarMap::new(), seed, device)
    }

    /// A VAE over existing weights (a loaded checkpoint). Every encoder and
    /// decoder tensor must be in `varmap` with the right shape.
    ///
    /// # Errors
    /// If a tensor is missing or has the wrong shape.
    pub fn from_varmap(config: VaeConfig, varmap: VarMap, device: &Device) -> Result<Self> {
        {
            let vars = varmap
                .data()
                .lock()
                .map_err(|_| candle_core::Error::Msg("VarMap lock poisoned".into()))?;
            for name in ENCODER_TENSORS.iter().chain(DECODER_TENSORS.iter()) {
                if !vars.contains_key(*name) {
                    candle_core::bail!("VAE checkpoint has no tensor {name}");
                }
            }
        }
        Self::build(config, varmap, 0, device)
    }

    fn build(config: VaeConfig, varmap: VarMap, seed: u64, device: &Device) -> Result<Self> {
        if config.latent == 0 {
            candle_core::bail!("VAE latent size must be at least 1");
        }
        let vb = seeded_var_builder(&varmap, seed, device);
        let conv = Conv2dConfig {
            padding: 1,
            stride: 2,
            ..Default::default()
        };
        let up = ConvTranspose2dConfig {
            padding: 1,
            stride: 2,
            ..Default::default()
        };
        let l = config.latent;
        use super::ae::{ENC_C1, ENC_C2, ENC_KERNEL, ENC_SIDE};
        let enc_c1 = candle_nn::conv2d(1, ENC_C1, ENC_KERNEL, conv, vb.pp("enc.c1"))?;
        let enc_c2 = candle_nn::conv2d(ENC_C1, ENC_C2, ENC_KERNEL, conv, vb.pp("enc.c2"))?;
        let enc_fc = candle_nn::linear(ENC_C2 * ENC_SIDE * ENC_SIDE, 2 * l, vb.pp("enc.fc"))?;
        let dec_fc = candle_nn::linear(l, DEC_CHANNELS * DEC_SIDE * DEC_SIDE, vb.pp("dec.fc"))?;
        let dec_up1 = candle_nn::conv_transpose2d(
            DEC_CHANNELS,
            DEC_UP1_CHANNELS,
            DEC_KERNEL,
            up,
            vb.pp("dec.up1"),
        )?;
        let dec_up2 =
            candle_nn::conv_transpose2d(DEC_UP1_CHANNELS, 1, DEC_KERNEL, up, vb.pp("dec.up2"))?;
        Ok(Self {
            config,
            varmap,
            enc_c1,
            enc_c2,
            enc_fc,
            dec_fc,
            dec_up1,
            dec_up2,
        })
    }

    /// The hyperparameters.
    pub fn config(&self) -> VaeConfig {
        self.config
    }

    /// Latent dimensions.
    pub fn latent(&self) -> usize {
        self.config.latent
    }

    /// The weights, for the optimizer and for saving (`varmap().save(path)`).
    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    /// q(z|x): mean and log-variance, each (batch, latent), for x of shape (batch, 1, 28, 28).
    ///
    /// # Errors
    /// On a wrong input shape.
    pub fn encode(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let h = conv_fwd(&self.enc_c1, x)?.relu()?;
        let h = conv_fwd(&self.enc_c2, &h)?.relu()?;
        let h = self.enc_fc.forward(&h.flatten_from(1)?)?;
        let l = self.config.latent;
        Ok((h.narrow(1, 0, l)?, h.narrow(1, l, l)?))
    }

    /// p(x|z): Bernoulli logits (batch, 1, 28, 28) for z of shape (batch, latent).
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

    /// [`Vae::decode_logits`] computed by candle_nn's own layers (candle's
    /// `conv_transpose2d`) instead of [`conv`]: the reference the fast path is tested against.
    ///
    /// # Errors
    /// On a wrong input shape.
    pub fn decode_logits_reference(&self, z: &Tensor) -> Result<Tensor> {
        let b = z.dim(0)?;
        let h = self.dec_fc.forward(z)?.relu()?;
        let h = h.reshape((b, DEC_CHANNELS, DEC_SIDE, DEC_SIDE))?;
        let h = self.dec_up1.forward(&h)?.relu()?;
        self.dec_up2.forward(&h)
    }

    /// Pixel probabilities sigmoid(decode_logits(z)), (batch, 1, 28, 28).
    ///
    /// # Errors
    /// On a wrong input shape.
    pub fn decode_probs(&self, z: &Tensor) -> Result<Tensor> {
        candle_nn::ops::sigmoid(&self.decode_logits(z)?)
    }

    /// Reconstruction and KL terms of -ELBO, each a scalar in nats per image
    /// (summed over pixels or latent dimensions, averaged over the batch).
    ///
    /// `x` is binarized (0.0 / 1.0), shape (batch, 1, 28, 28); `eps` is standard
    /// normal noise of shape (batch, latent) for the reparameterization
    /// z = mu + exp(logvar / 2) * eps.
    ///
    /// # Errors
    /// On wrong shapes.
    pub fn loss(&self, x: &Tensor, eps: &Tensor) -> Result<(Tensor, Tensor)> {
        let (mu, logvar) = self.encode(x)?;
        let z = (&mu + (logvar.affine(0.5, 0.0)?.exp()? * eps)?)?;
        let logits = self.decode_logits(&z)?;
        let per_image = 1.0 / x.dim(0)? as f64;
        let recon = bce_with_logits(&logits, x)?
            .sum_all()?
            .affine(per_image, 0.0)?;
        let kl = gaussian_kl(&mu, &logvar)?
            .sum_all()?
            .affine(per_image, 0.0)?;
        Ok((recon, kl))
    }

    /// The encoder's tensors in layer order, named as in [`ENCODER_TENSORS`].
    ///
    /// # Errors
    /// If one is missing.
    pub fn encoder_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        super::ae::named_tensors(&self.varmap, &ENCODER_TENSORS)
    }

    /// The decoder's tensors in layer order, named as in [`DECODER_TENSORS`].
    ///
    /// # Errors
    /// If the weights' lock was poisoned by a panic.
    pub fn decoder_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        super::ae::named_tensors(&self.varmap, &DECODER_TENSORS)
    }
}

/// A candle_nn conv layer's forward pass through [`conv::conv2d`].
fn conv_fwd(layer: &Conv2d, x: &Tensor) -> Result<Tensor> {
    let cfg = layer.config();
    if cfg.dilation != 1 || cfg.groups != 1 {
        candle_core::bail!("tinygen conv2d supports dilation 1 and groups 1 only");
    }
    conv::conv2d(x, layer.weight(), layer.bias(), cfg.stride, cfg.padding)
}

/// A candle_nn transposed conv layer's forward pass through [`conv::conv_transpose2d`].
fn up_fwd(layer: &ConvTranspose2d, x: &Tensor) -> Result<Tensor> {
    let cfg = layer.config();
    if cfg.dilation != 1 || cfg.output_padding != 0 {
        candle_core::bail!(
            "tinygen conv_transpose2d supports dilation 1 and no output padding only"
        );
    }
    conv::conv_transpose2d(x, layer.weight(), layer.bias(), cfg.stride, cfg.padding)
}

/// Elementwise Bernoulli negative log-likelihood from logits, in the stable
/// form softplus(l) - x·l with softplus(l) = max(l, 0) + ln(1 + exp(-|l|)).
///
/// # Errors
/// On mismatched shapes.
pub fn bce_with_logits(logits: &Tensor, x: &Tensor) -> Result<Tensor> {
    let softplus = (logits.relu()? + (logits.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
    softplus - (x * logits)?
}

/// KL(N(mu, exp(logvar)) || N(0, I)) per row: -1/2 Σ (1 + logvar - mu² - exp(logvar)), shape (batch,).
///
/// # Errors
/// On mismatched shapes.
pub fn gaussian_kl(mu: &Tensor, logvar: &Tensor) -> Result<Tensor> {
    let t = ((logvar + 1.0)? - mu.sqr()?)?;
    let t = (t - logvar.exp()?)?;
    t.sum(D::Minus1)?.affine(-0.5, 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::sorted_tensors;
    use candle_core::DType;

    #[test]
    fn shapes_and_names() {
        let dev = Device::Cpu;
        let vae = Vae::new(VaeConfig { latent: 5 }, 0, &dev).unwrap();
        let x = Tensor::zeros((3, 1, 28, 28), DType::F32, &dev).unwrap();
        let (mu, lv) = vae.encode(&x).unwrap();
        assert_eq!((mu.dims(), lv.dims()), (&[3, 5][..], &[3, 5][..]));
        assert_eq!(vae.decode_logits(&mu).unwrap().dims(), &[3, 1, 28, 28]);
        let dec = vae.decoder_tensors().unwrap();
        let shapes: Vec<(&str, Vec<usize>)> = dec
            .iter()
            .map(|(n, t)| (n.as_str(), t.dims().to_vec()))
            .collect();
        assert_eq!(
            shapes,
            vec![
                ("dec.fc.weight", vec![1568, 5]),
                ("dec.fc.bias", vec![1568]),
                ("dec.up1.weight", vec![32, 16, 4, 4]),
                ("dec.up1.bias", vec![16]),
                ("dec.up2.weight", vec![16, 1, 4, 4]),
                ("dec.up2.bias", vec![1]),
            ]
        );
        let all = sorted_tensors(vae.varmap()).unwrap();
        assert_eq!(all.len(), 12);
        assert!(Vae::new(VaeConfig { latent: 0 }, 0, &dev).is_err());
    }

    #[test]
    fn fast_decoder_matches_candle_layers() {
        let dev = Device::Cpu;
        let vae = Vae::new(VaeConfig { latent: 6 }, 9, &dev).unwrap();
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(1);
        let z = crate::models::standard_normal(&mut rng, (4, 6), &dev).unwrap();
        let a = vae.decode_logits(&z).unwrap();
        let b = vae.decode_logits_reference(&z).unwrap();
        let diff: f32 = (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(diff < 1e-4, "{diff}");
    }

    #[test]
    fn bce_is_stable_and_correct() {
        let dev = Device::Cpu;
        let l = Tensor::new(&[-200f32, -2.0, 0.0, 3.0, 200.0], &dev).unwrap();
        let x = Tensor::new(&[0f32, 1.0, 1.0, 0.0, 1.0], &dev).unwrap();
        let got = bce_with_logits(&l, &x).unwrap().to_vec1::<f32>().unwrap();
        let exact = |l: f64, x: f64| -> f64 {
            let p = 1.0 / (1.0 + (-l).exp());
            -(x * p.ln() + (1.0 - x) * (1.0 - p).ln())
        };
        assert_eq!(got[0], 0.0);
        assert!((got[1] as f64 - exact(-2.0, 1.0)).abs() < 1e-5);
        assert!((got[2] as f64 - 2f64.ln()).abs() < 1e-6);
        assert!((got[3] as f64 - exact(3.0, 0.0)).abs() < 1e-5);
        assert_eq!(got[4], 0.0);
        assert!(got.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn kl_of_prior_is_zero() {
        let dev = Device::Cpu;
        let z = Tensor::zeros((2, 4), DType::F32, &dev).unwrap();
        assert_eq!(
            gaussian_kl(&z, &z).unwrap().to_vec1::<f32>().unwrap(),
            vec![0.0, 0.0]
        );
        // mu = 1 in each of 4 dims, unit variance: KL = 4 * 1/2.
        let mu = Tensor::ones((1, 4), DType::F32, &dev).unwrap();
        let lv = Tensor::zeros((1, 4), DType::F32, &dev).unwrap();
        assert_eq!(
            gaussian_kl(&mu, &lv).unwrap().to_vec1::<f32>().unwrap(),
            vec![2.0]
        );
    }

    #[test]
    fn from_varmap_requires_every_tensor() {
        let dev = Device::Cpu;
        let vae = Vae::new(VaeConfig::default(), 3, &dev).unwrap();
        let mut tensors = sorted_tensors(vae.varmap()).unwrap();
        let copy = super::super::varmap_from_tensors(tensors.clone()).unwrap();
        let again = Vae::from_varmap(VaeConfig::default(), copy, &dev).unwrap();
        let z = Tensor::ones((1, 16), DType::F32, &dev).unwrap();
        let a = vae
            .decode_logits(&z)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let b = again
            .decode_logits(&z)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(a, b);
        tensors.retain(|(n, _)| n != "dec.up2.bias");
        let missing = super::super::varmap_from_tensors(tensors).unwrap();
        let err = Vae::from_varmap(VaeConfig::default(), missing, &dev)
            .err()
            .unwrap();
        assert!(err.to_string().contains("dec.up2.bias"), "{err}");
    }
}
