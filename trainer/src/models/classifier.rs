//! A small MNIST digit classifier whose convolutions are the autoencoder's
//! encoder convolutions, so they can start from a trained autoencoder
//! (the lecture's "encoder features as initial weights of a supervised
//! model"). It also serves the sample-quality metrics (Frechet classifier
//! distance on [`Classifier::features`], classifier inception score).
//!
//! | name | layer | output |
//! | --- | --- | --- |
//! | `enc.c1` | conv2d 1→32, k4 s2 p1, ReLU | (32, 14, 14) |
//! | `enc.c2` | conv2d 32→64, k4 s2 p1, ReLU | (64, 7, 7) |
//! | `cls.fc1` | linear 3136 → 128, ReLU | features |
//! | `cls.fc2` | linear 128 → 10 | logits |
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use tinygen_trainer::models::classifier::{Classifier, ClassifierConfig};
//! let c = Classifier::new(ClassifierConfig::default(), 0, &Device::Cpu)?;
//! let x = Tensor::zeros((2, 1, 28, 28), DType::F32, &Device::Cpu)?; // pixels in [0, 1]
//! assert_eq!(c.logits(&x)?.dims(), &[2, 10]);
//! # candle_core::Result::Ok(())
//! ```

use std::path::Path;

use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::{Linear, VarMap};
use serde::{Deserialize, Serialize};

use super::ae::{named_tensors, ConvFeatures, ENC_C2, ENC_SIDE};
use super::seeded_var_builder;

/// Number of classes.
pub const CLASSES: usize = 10;

/// The tensors the classifier shares with the autoencoder's encoder.
pub const SHARED_TENSORS: [&str; 4] = [
    "enc.c1.weight",
    "enc.c1.bias",
    "enc.c2.weight",
    "enc.c2.bias",
];

/// Every tensor of the classifier.
pub const TENSORS: [&str; 8] = [
    "enc.c1.weight",
    "enc.c1.bias",
    "enc.c2.weight",
    "enc.c2.bias",
    "cls.fc1.weight",
    "cls.fc1.bias",
    "cls.fc2.weight",
    "cls.fc2.bias",
];

/// Classifier hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassifierConfig {
    /// Width of the feature layer `cls.fc1`.
    pub hidden: usize,
}

impl Default for ClassifierConfig {
    fn default() -> Self {
        Self { hidden: 128 }
    }
}

/// The classifier and the [`VarMap`] that owns its weights.
pub struct Classifier {
    config: ClassifierConfig,
    varmap: VarMap,
    features: ConvFeatures,
    fc1: Linear,
    fc2: Linear,
}

impl Classifier {
    /// A freshly initialized classifier (weights from a generator seeded with `seed`).
    ///
    /// # Errors
    /// If `hidden` is 0 or candle fails to allocate.
    pub fn new(config: ClassifierConfig, seed: u64, device: &Device) -> Result<Self> {
        Self::build(config, VarMap::new(), seed, device)
    }

    /// A classifier whose `enc.c1`/`enc.c2` start as copies of `encoder`'s
    /// (an autoencoder's checkpoint) and whose other layers are freshly
    /// initialized from `seed`. The copies are trained further (fine-tuning).
    ///
    /// # Errors
    /// If `encoder` lacks one of [`SHARED_TENSORS`] or shapes differ.
    pub fn from_encoder(
        config: ClassifierConfig,
        encoder: &VarMap,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        let shared = named_tensors(encoder, &SHARED_TENSORS)?;
        // Copies, so training the classifier leaves the autoencoder's weights alone.
        let copies = shared
            .into_iter()
            .map(|(n, t)| Ok((n, t.copy()?)))
            .collect::<Result<Vec<_>>>()?;
        Self::build(config, super::varmap_from_tensors(copies)?, seed, device)
    }

    /// A classifier over a checkpoint's weights.
    ///
    /// # Errors
    /// If a tensor is missing or has the wrong shape.
    pub fn from_varmap(config: ClassifierConfig, varmap: VarMap, device: &Device) -> Result<Self> {
        named_tensors(&varmap, &TENSORS)?;
        Self::build(config, varmap, 0, device)
    }

    /// Loads a classifier's weights (safetensors, e.g. the shipped
    /// `models/classifier.safetensors`; its hidden width is in the
    /// `config.json` next to it).
    ///
    /// # Errors
    /// If a file is missing or malformed.
    pub fn load(weights: &Path, config: ClassifierConfig) -> Result<Self> {
        let tensors = candle_core::safetensors::load(weights, &Device::Cpu)?;
        Self::from_varmap(config, super::varmap_from_tensors(tensors)?, &Device::Cpu)
    }

    fn build(config: ClassifierConfig, varmap: VarMap, seed: u64, device: &Device) -> Result<Self> {
        if config.hidden == 0 {
            candle_core::bail!("classifier hidden width must be at least 1");
        }
        let vb = seeded_var_builder(&varmap, seed, device);
        let features = ConvFeatures::new(&vb)?;
        let fc1 = candle_nn::linear(
            ENC_C2 * ENC_SIDE * ENC_SIDE,
            config.hidden,
            vb.pp("cls.fc1"),
        )?;
        let fc2 = candle_nn::linear(config.hidden, CLASSES, vb.pp("cls.fc2"))?;
        Ok(Self {
            config,
            varmap,
            features,
            fc1,
            fc2,
        })
    }

    /// The hyperparameters.
    pub fn config(&self) -> ClassifierConfig {
        self.config
    }

    /// The weights.
    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    /// The `cls.fc1` activations (batch, hidden) for images (batch, 1, 28, 28) in [0, 1].
    ///
    /// # Errors
    /// On a wrong input shape.
    pub fn features(&self, x: &Tensor) -> Result<Tensor> {
        self.fc1.forward(&self.features.forward(x)?)?.relu()
    }

    /// Class logits (batch, 10).
    ///
    /// # Errors
    /// On a wrong input shape.
    pub fn logits(&self, x: &Tensor) -> Result<Tensor> {
        self.fc2.forward(&self.features(x)?)
    }

    /// Mean cross-entropy in nats of `labels` (u32, (batch,)) under the logits of `x`.
    ///
    /// # Errors
    /// On wrong shapes.
    pub fn loss(&self, x: &Tensor, labels: &Tensor) -> Result<Tensor> {
        candle_nn::loss::cross_entropy(&self.logits(x)?, labels)
    }

    /// Predicted classes (u32, (batch,)).
    ///
    /// # Errors
    /// On a wrong input shape.
    pub fn predict(&self, x: &Tensor) -> Result<Tensor> {
        self.logits(x)?.argmax(D::Minus1)?.to_dtype(DType::U32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::ae::{AeConfig, AutoEncoder};

    #[test]
    fn shapes_loss_and_encoder_init() {
        let dev = Device::Cpu;
        let c = Classifier::new(ClassifierConfig::default(), 0, &dev).unwrap();
        let x = Tensor::ones((3, 1, 28, 28), DType::F32, &dev).unwrap();
        assert_eq!(c.logits(&x).unwrap().dims(), &[3, 10]);
        assert_eq!(c.features(&x).unwrap().dims(), &[3, 128]);
        let y = Tensor::new(&[0u32, 5, 9], &dev).unwrap();
        let l = c.loss(&x, &y).unwrap().to_scalar::<f32>().unwrap();
        assert!(l.is_finite() && l > 0.0);
        assert_eq!(c.predict(&x).unwrap().dims(), &[3]);

        let ae = AutoEncoder::new(AeConfig::default(), 7, &dev).unwrap();
        let init =
            Classifier::from_encoder(ClassifierConfig::default(), ae.varmap(), 1, &dev).unwrap();
        let a = named_tensors(ae.varmap(), &SHARED_TENSORS).unwrap();
        let b = named_tensors(init.varmap(), &SHARED_TENSORS).unwrap();
        for ((n, ta), (_, tb)) in a.iter().zip(&b) {
            let ta = ta.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let tb = tb.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert_eq!(ta, tb, "{n}");
        }
        // Not shared: the fresh classifier's convolutions differ.
        let fresh = named_tensors(c.varmap(), &SHARED_TENSORS).unwrap();
        assert_ne!(
            fresh[0].1.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            a[0].1.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
        assert_eq!(
            crate::models::sorted_tensors(init.varmap()).unwrap().len(),
            8
        );
    }
}
