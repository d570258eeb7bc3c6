//! DCGAN-style generative adversarial network for 28x28 digits, sized so
//! that the int8 generator fits a mid-range microcontroller.
//!
//! ```
//! use candle_core::Device;
//! use tinygen_trainer::models::gan::{Gan, GanConfig};
//! let gan = Gan::new(GanConfig::default(), 0, &Device::Cpu)?;
//! let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
//! let z = tinygen_trainer::models::standard_normal(&mut rng, (2, 32), &Device::Cpu)?;
//! let logits = gan.generate_logits(&z)?; // (2, 1, 28, 28); images are their sigmoid
//! assert_eq!(gan.discriminate(&candle_nn::ops::sigmoid(&logits)?)?.dims(), &[2]);
//! # candle_core::Result::Ok(())
//! ```
//!
//! Generator (exported, kind `Gan`, z ~ N(0, I)):
//!
//! | name | layer | output |
//! | --- | --- | --- |
//! | `gen.fc` | linear latent → C·7·7, ReLU | reshaped to (C, 7, 7) |
//! | `gen.up1` | conv_transpose2d C→C/2, k4 s2 p1, ReLU | (C/2, 14, 14) |
//! | `gen.up2` | conv_transpose2d C/2→1, k4 s2 p1 | (1, 28, 28) logits; image = sigmoid |
//!
//! with C = `g_channels` (default 32: the VAE decoder's shape, 0.45 M MACs
//! per sample; 64 doubles the parameters and quadruples `gen.up1`).
//! Discriminator (training only), D = `d_channels` (default 16): `disc.c1`
//! conv 1→D k4 s2 p1, LeakyReLU 0.2; `disc.c2` conv D→2D k4 s2 p1,
//! LeakyReLU 0.2; `disc.fc` 2D·7·7 → 1 logit of "real". No batch norm
//! anywhere, so nothing needs folding at export.
//!
//! Losses, with D(x) = sigmoid(logit) and softplus(t) = ln(1 + e^t):
//!
//! - discriminator: −log D(x) − log(1 − D(G(z))) = softplus(−l_real) + softplus(l_fake);
//! - generator, non-saturating (default): −log D(G(z)) = softplus(−l_fake);
//! - generator, minimax (the original objective): log(1 − D(G(z))) = −softplus(l_fake),
//!   whose gradient vanishes exactly when D rejects G's samples confidently,
//!   i.e. early in training.

use candle_core::{Device, Module, Result, Tensor, Var, D};
use candle_nn::{Conv2d, ConvTranspose2d, Linear, VarMap};
use serde::{Deserialize, Serialize};

use super::ae::{conv_fwd, down_cfg, named_tensors, up_cfg, up_fwd, upconv_decoder_net};
use super::seeded_var_builder;
use crate::export::FloatNet;

/// Side of the generator's first feature map.
pub const GEN_SIDE: usize = 7;
/// Kernel size of the transposed convolutions.
pub const GEN_KERNEL: usize = 4;
/// Negative slope of the discriminator's LeakyReLU.
pub const LEAKY_SLOPE: f64 = 0.2;

/// Names of the generator's tensors, in layer order (checkpoint and exporter names).
pub const GENERATOR_TENSORS: [&str; 6] = [
    "gen.fc.weight",
    "gen.fc.bias",
    "gen.up1.weight",
    "gen.up1.bias",
    "gen.up2.weight",
    "gen.up2.bias",
];

/// Names of the discriminator's tensors.
pub const DISCRIMINATOR_TENSORS: [&str; 6] = [
    "disc.c1.weight",
    "disc.c1.bias",
    "disc.c2.weight",
    "disc.c2.bias",
    "disc.fc.weight",
    "disc.fc.bias",
];

/// The generator's objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum GLoss {
    /// max log D(G(z)) (Goodfellow et al.'s practical variant).
    #[default]
    NonSaturating,
    /// min log(1 − D(G(z))), the original minimax game.
    Minimax,
}

/// Name prefix of the generator's variables.
const GEN_PREFIX: &str = "gen.";
/// Name prefix of the discriminator's variables.
const DISC_PREFIX: &str = "disc.";

/// GAN hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GanConfig {
    /// Latent dimensions.
    pub latent: usize,
    /// Discriminator updates per generator update.
    pub d_steps: usize,
    /// Generator objective.
    pub g_loss: GLoss,
    /// Channels of the generator's first feature map (`gen.up1` halves them).
    pub g_channels: usize,
    /// Channels of the discriminator's first convolution (`disc.c2` doubles them).
    pub d_channels: usize,
}

impl Default for GanConfig {
    fn default() -> Self {
        Self {
            latent: 32,
            d_steps: 1,
            g_loss: GLoss::NonSaturating,
            g_channels: 32,
            d_channels: 16,
        }
    }
}

/// Generator, discriminator and the one [`VarMap`] holding both
/// (`gen.*` and `disc.*`).
pub struct Gan {
    config: GanConfig,
    varmap: VarMap,
    gen_fc: Linear,
    gen_up1: ConvTranspose2d,
    gen_up2: ConvTranspose2d,
    disc_c1: Conv2d,
    disc_c2: Conv2d,
    disc_fc: Linear,
}

fn softplus(t: &Tensor) -> Result<Tensor> {
    t.relu()? + (t.abs()?.neg()?.exp()? + 1.0)?.log()?
}

/// The discriminator loss from its logits on real (`lr`) and generated
/// (`lf`) images: mean softplus(−lr) + mean softplus(lf).
///
/// # Errors
/// On candle errors.
pub fn d_loss_from_logits(lr: &Tensor, lf: &Tensor) -> Result<Tensor> {
    softplus(&lr.neg()?)?.mean_all()? + softplus(lf)?.mean_all()?
}

impl Gan {
    /// A freshly initialized GAN (weights from a generator seeded with `seed`).
    ///
    /// # Errors
    /// If `latent` or `d_steps` is 0, or candle fails to allocate.
    pub fn new(config: GanConfig, seed: u64, device: &Device) -> Result<Self> {
        Self::build(config, VarMap::new(), seed, device)
    }

    /// A GAN over a checkpoint's weights. The generator's tensors must be
    /// there; missing discriminator tensors are freshly initialized.
    ///
    /// # Errors
    /// If a generator tensor is missing or a shape is wrong.
    pub fn from_varmap(config: GanConfig, varmap: VarMap, device: &Device) -> Result<Self> {
        named_tensors(&varmap, &GENERATOR_TENSORS)?;
        Self::build(config, varmap, 0, device)
    }

    fn build(config: GanConfig, varmap: VarMap, seed: u64, device: &Device) -> Result<Self> {
        if config.latent == 0 {
            candle_core::bail!("GAN latent size must be at least 1");
        }
        if config.d_steps == 0 {
            candle_core::bail!("--d-steps must be at least 1");
        }
        if config.g_channels < 2 || config.d_channels == 0 {
            candle_core::bail!("GAN channels: generator at least 2, discriminator at least 1");
        }
        let vb = seeded_var_builder(&varmap, seed, device);
        let (c, s, k) = (config.g_channels, GEN_SIDE, GEN_KERNEL);
        let c1 = c / 2;
        let dc = config.d_channels;
        let gen_fc = candle_nn::linear(config.latent, c * s * s, vb.pp("gen.fc"))?;
        let gen_up1 = candle_nn::conv_transpose2d(c, c1, k, up_cfg(), vb.pp("gen.up1"))?;
        let gen_up2 = candle_nn::conv_transpose2d(c1, 1, k, up_cfg(), vb.pp("gen.up2"))?;
        let disc_c1 = candle_nn::conv2d(1, dc, 4, down_cfg(), vb.pp("disc.c1"))?;
        let disc_c2 = candle_nn::conv2d(dc, 2 * dc, 4, down_cfg(), vb.pp("disc.c2"))?;
        let disc_fc = candle_nn::linear(2 * dc * 7 * 7, 1, vb.pp("disc.fc"))?;
        Ok(Self {
            config,
            varmap,
            gen_fc,
            gen_up1,
            gen_up2,
            disc_c1,
            disc_c2,
            disc_fc,
        })
    }

    /// The hyperparameters.
    pub fn config(&self) -> GanConfig {
        self.config
    }

    /// Latent dimensions.
    pub fn latent(&self) -> usize {
        self.config.latent
    }

    /// All weights (generator and discriminator), for saving.
    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    /// Whether the variable `name` is the generator's (its optimizer's selection).
    pub fn is_generator_var(name: &str) -> bool {
        name.starts_with(GEN_PREFIX)
    }

    /// Whether the variable `name` is the discriminator's.
    pub fn is_discriminator_var(name: &str) -> bool {
        name.starts_with(DISC_PREFIX)
    }

    fn vars_with_prefix(&self, prefix: &str) -> Result<Vec<Var>> {
        let vars = self
            .varmap
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("VarMap lock poisoned".into()))?;
        let mut named: Vec<(&String, &Var)> =
            vars.iter().filter(|(n, _)| n.starts_with(prefix)).collect();
        named.sort_by(|a, b| a.0.cmp(b.0));
        Ok(named.into_iter().map(|(_, v)| v.clone()).collect())
    }

    /// The generator's variables (for its optimizer).
    ///
    /// # Errors
    /// If the weights' lock was poisoned.
    pub fn generator_vars(&self) -> Result<Vec<Var>> {
        self.vars_with_prefix(GEN_PREFIX)
    }

    /// The discriminator's variables (for its optimizer).
    ///
    /// # Errors
    /// If the weights' lock was poisoned.
    pub fn discriminator_vars(&self) -> Result<Vec<Var>> {
        self.vars_with_prefix(DISC_PREFIX)
    }

    /// G(z) as logits (batch, 1, 28, 28); the image is their sigmoid.
    ///
    /// # Errors
    /// On a wrong input shape.
    pub fn generate_logits(&self, z: &Tensor) -> Result<Tensor> {
        let b = z.dim(0)?;
        let h = self.gen_fc.forward(z)?.relu()?;
        let h = h.reshape((b, self.config.g_channels, GEN_SIDE, GEN_SIDE))?;
        let h = up_fwd(&self.gen_up1, &h)?.relu()?;
        up_fwd(&self.gen_up2, &h)
    }

    /// G(z) as images in [0, 1].
    ///
    /// # Errors
    /// On a wrong input shape.
    pub fn generate(&self, z: &Tensor) -> Result<Tensor> {
        candle_nn::ops::sigmoid(&self.generate_logits(z)?)
    }

    /// The discriminator's logit of "real", (batch,), for images in [0, 1].
    ///
    /// # Errors
    /// On a wrong input shape.
    pub fn discriminate(&self, x: &Tensor) -> Result<Tensor> {
        let h = candle_nn::ops::leaky_relu(&conv_fwd(&self.disc_c1, x)?, LEAKY_SLOPE)?;
        let h = candle_nn::ops::leaky_relu(&conv_fwd(&self.disc_c2, &h)?, LEAKY_SLOPE)?;
        self.disc_fc
            .forward(&h.flatten_from(1)?)?
            .squeeze(D::Minus1)
    }

    /// Discriminator loss, nats averaged over the batch (sum of the real and
    /// fake terms), on real images and generated ones (`fake`, detached by
    /// the caller so no gradient reaches the generator).
    ///
    /// # Errors
    /// On wrong shapes.
    pub fn d_loss(&self, real: &Tensor, fake: &Tensor) -> Result<Tensor> {
        d_loss_from_logits(&self.discriminate(real)?, &self.discriminate(fake)?)
    }

    /// Generator loss (per the configured [`GLoss`]) on latents `z`, mean over the batch.
    ///
    /// # Errors
    /// On wrong shapes.
    pub fn g_loss(&self, z: &Tensor) -> Result<Tensor> {
        let lf = self.discriminate(&self.generate(z)?)?;
        match self.config.g_loss {
            GLoss::NonSaturating => softplus(&lf.neg()?)?.mean_all(),
            GLoss::Minimax => softplus(&lf)?.mean_all()?.neg(),
        }
    }

    /// The generator as the board runs it (see [`upconv_decoder_net`]).
    ///
    /// # Errors
    /// If a tensor is missing or has an unexpected shape.
    pub fn generator_net(&self) -> Result<FloatNet> {
        upconv_decoder_net(
            &self.generator_tensors()?,
            "gen",
            self.latent(),
            (
                self.config.g_channels,
                self.config.g_channels / 2,
                GEN_SIDE,
                GEN_KERNEL,
            ),
        )
    }

    /// The generator's tensors, named as in [`GENERATOR_TENSORS`].
    ///
    /// # Errors
    /// If one is missing.
    pub fn generator_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        named_tensors(&self.varmap, &GENERATOR_TENSORS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;

    #[test]
    fn shapes_vars_and_losses() {
        let dev = Device::Cpu;
        let gan = Gan::new(GanConfig::default(), 0, &dev).unwrap();
        assert_eq!(gan.generator_vars().unwrap().len(), 6);
        assert_eq!(gan.discriminator_vars().unwrap().len(), 6);
        let shapes: Vec<Vec<usize>> = gan
            .generator_tensors()
            .unwrap()
            .iter()
            .map(|(_, t)| t.dims().to_vec())
            .collect();
        assert_eq!(
            shapes,
            vec![
                vec![1568, 32],
                vec![1568],
                vec![32, 16, 4, 4],
                vec![16],
                vec![16, 1, 4, 4],
                vec![1]
            ]
        );
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(3);
        let z = crate::models::standard_normal(&mut rng, (4, 32), &dev).unwrap();
        let fake = gan.generate(&z).unwrap();
        assert_eq!(fake.dims(), &[4, 1, 28, 28]);
        let real = Tensor::ones((4, 1, 28, 28), DType::F32, &dev).unwrap();
        let d = gan.d_loss(&real, &fake.detach()).unwrap();
        let d = d.to_scalar::<f32>().unwrap();
        // Two cross-entropies of an untrained discriminator: positive, a few nats.
        assert!(d.is_finite() && d > 0.0 && d < 10.0, "{d}");
        let g = gan.g_loss(&z).unwrap().to_scalar::<f32>().unwrap();
        assert!(g.is_finite() && g > 0.0, "{g}");
        let mm = Gan::new(
            GanConfig {
                g_loss: GLoss::Minimax,
                ..GanConfig::default()
            },
            0,
            &dev,
        )
        .unwrap();
        let m = mm.g_loss(&z).unwrap().to_scalar::<f32>().unwrap();
        assert!(m.is_finite() && m < 0.0, "{m}");
        assert!(Gan::new(
            GanConfig {
                d_steps: 0,
                ..GanConfig::default()
            },
            0,
            &dev
        )
        .is_err());
    }

    #[test]
    fn softplus_is_stable() {
        let dev = Device::Cpu;
        let t = Tensor::new(&[-200f32, 0.0, 200.0], &dev).unwrap();
        let v = softplus(&t).unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(v[0], 0.0);
        assert!((v[1] - 2f32.ln()).abs() < 1e-6);
        assert_eq!(v[2], 200.0);
    }

    #[test]
    fn generator_gradient_does_not_touch_the_discriminator_through_detach() {
        let dev = Device::Cpu;
        let gan = Gan::new(GanConfig::default(), 1, &dev).unwrap();
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(3);
        let z = crate::models::standard_normal(&mut rng, (2, 32), &dev).unwrap();
        let real = Tensor::ones((2, 1, 28, 28), DType::F32, &dev).unwrap();
        let loss = gan
            .d_loss(&real, &gan.generate(&z).unwrap().detach())
            .unwrap();
        let grads = loss.backward().unwrap();
        for v in gan.generator_vars().unwrap() {
            assert!(grads.get(v.as_tensor()).is_none());
        }
        for v in gan.discriminator_vars().unwrap() {
            assert!(grads.get(v.as_tensor()).is_some());
        }
    }
}
