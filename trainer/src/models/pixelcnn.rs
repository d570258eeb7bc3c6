//! PixelCNN (van den Oord et al. 2016) for 1x28x28 binarized images: masked
//! convolutions, one Bernoulli per pixel, exact likelihood.
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use tinygen_trainer::models::pixelcnn::{PixelCnn, PixelCnnConfig};
//! let dev = Device::Cpu;
//! let cfg = PixelCnnConfig { channels: 4, layers: 1 };
//! let m = PixelCnn::new(cfg, 0, &dev)?;
//! let x = Tensor::zeros((2, 1, 28, 28), DType::F32, &dev)?;
//! let logits = m.logits(&x)?; // (2, 1, 28, 28): logit of p(x_ij = 1 | x_<ij)
//! let nll = m.nll(&x)?; // scalar, nats per image
//! # candle_core::Result::Ok(())
//! ```
//!
//! Layers, all stride 1 with 'same' zero padding (k/2), exported layer for
//! layer as `Op::MaskedConv2d`:
//!
//! | name | layer | output |
//! | --- | --- | --- |
//! | `c0` | masked conv 1 → C, 7x7, mask A, ReLU | (C, 28, 28) |
//! | `c1`..`cL` | masked conv C → C, 3x3, mask B, ReLU | (C, 28, 28) |
//! | `out` | conv C → 1, 1x1 (mask B: the centre tap only) | (1, 28, 28) logits |
//!
//! Mask A lets output (r, c) see input rows above r and, on row r, columns
//! left of c; mask B also lets it see (r, c) itself. The stored weights are
//! the raw parameters; the mask is applied in every forward pass (and by the
//! exporter, which writes the masked taps as zeros).

use candle_core::{Device, Result, Tensor};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use super::vae::bce_with_logits;
use super::{conv, seeded_var_builder};

/// Kernel of the first (mask A) layer.
pub const FIRST_KERNEL: usize = 7;
/// Kernel of the hidden (mask B) layers.
pub const HIDDEN_KERNEL: usize = 3;

/// PixelCNN hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PixelCnnConfig {
    /// Channels of every hidden feature map.
    pub channels: usize,
    /// Number of 3x3 mask-B layers after the 7x7 mask-A layer.
    pub layers: usize,
}

impl Default for PixelCnnConfig {
    fn default() -> Self {
        Self {
            channels: 32,
            layers: 4,
        }
    }
}

/// Which taps of a masked kernel are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskKind {
    /// Excludes the centre: the first layer, which must not see its own pixel.
    A,
    /// Includes the centre: every later layer.
    B,
}

/// Whether tap (`ky`, `kx`) of a `k` x `k` kernel is used.
pub fn tap_allowed(mask: MaskKind, k: usize, ky: usize, kx: usize) -> bool {
    let c = k / 2;
    ky < c || (ky == c && (kx < c || (kx == c && mask == MaskKind::B)))
}

/// The k x k mask as 0.0 / 1.0, row-major.
pub fn mask_values(mask: MaskKind, k: usize) -> Vec<f32> {
    (0..k * k)
        .map(|i| f32::from(u8::from(tap_allowed(mask, k, i / k, i % k))))
        .collect()
}

/// One masked layer as the board runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerSpec {
    /// Parameter prefix (`c0`, `c1`, .., `out`).
    pub index: usize,
    /// Input channels.
    pub in_c: usize,
    /// Output channels.
    pub out_c: usize,
    /// Kernel size.
    pub k: usize,
    /// Mask.
    pub mask: MaskKind,
    /// ReLU after the layer.
    pub relu: bool,
}

impl PixelCnnConfig {
    /// The layers in order.
    pub fn layer_specs(&self) -> Vec<LayerSpec> {
        let c = self.channels;
        let mut v = vec![LayerSpec {
            index: 0,
            in_c: 1,
            out_c: c,
            k: FIRST_KERNEL,
            mask: MaskKind::A,
            relu: true,
        }];
        for i in 1..=self.layers {
            v.push(LayerSpec {
                index: i,
                in_c: c,
                out_c: c,
                k: HIDDEN_KERNEL,
                mask: MaskKind::B,
                relu: true,
            });
        }
        v.push(LayerSpec {
            index: self.layers + 1,
            in_c: c,
            out_c: 1,
            k: 1,
            mask: MaskKind::B,
            relu: false,
        });
        v
    }

    /// Checkpoint name of layer `spec` (`c0`, `c1`, .., `out`).
    pub fn layer_name(&self, spec: &LayerSpec) -> String {
        if spec.index == self.layers + 1 {
            "out".into()
        } else {
            format!("c{}", spec.index)
        }
    }
}

/// A layer's spec, masked weight `[out][in][k][k]` and bias.
pub type MaskedLayer = (LayerSpec, Vec<f32>, Vec<f32>);

struct MaskedConv {
    weight: Tensor,
    bias: Tensor,
    mask: Tensor,
    pad: usize,
    relu: bool,
}

/// A PixelCNN and the [`VarMap`] that owns its weights.
pub struct PixelCnn {
    config: PixelCnnConfig,
    varmap: VarMap,
    layers: Vec<MaskedConv>,
}

impl PixelCnn {
    /// A freshly initialized model, weights drawn from a generator seeded with `seed`.
    ///
    /// # Errors
    /// If the configuration is empty, or candle fails to allocate.
    pub fn new(config: PixelCnnConfig, seed: u64, device: &Device) -> Result<Self> {
        Self::build(config, VarMap::new(), seed, device)
    }

    /// A model over existing weights (a loaded checkpoint).
    ///
    /// # Errors
    /// If a tensor is missing or has the wrong shape.
    pub fn from_varmap(config: PixelCnnConfig, varmap: VarMap, device: &Device) -> Result<Self> {
        {
            let vars = varmap
                .data()
                .lock()
                .map_err(|_| candle_core::Error::Msg("VarMap lock poisoned".into()))?;
            for spec in config.layer_specs() {
                let name = format!("{}.weight", config.layer_name(&spec));
                if !vars.contains_key(&name) {
                    candle_core::bail!("PixelCNN checkpoint has no tensor {name}");
                }
            }
        }
        Self::build(config, varmap, 0, device)
    }

    fn build(config: PixelCnnConfig, varmap: VarMap, seed: u64, device: &Device) -> Result<Self> {
        if config.channels == 0 {
            candle_core::bail!("PixelCNN needs at least one channel");
        }
        let vb = seeded_var_builder(&varmap, seed, device);
        let mut layers = Vec::new();
        for spec in config.layer_specs() {
            let cfg = candle_nn::Conv2dConfig {
                padding: spec.k / 2,
                ..Default::default()
            };
            let l = candle_nn::conv2d(
                spec.in_c,
                spec.out_c,
                spec.k,
                cfg,
                vb.pp(config.layer_name(&spec)),
            )?;
            let mask = Tensor::from_vec(
                mask_values(spec.mask, spec.k),
                (1, 1, spec.k, spec.k),
                device,
            )?;
            let bias = match l.bias() {
                Some(b) => b.clone(),
                None => candle_core::bail!("conv layer without a bias"),
            };
            layers.push(MaskedConv {
                weight: l.weight().clone(),
                bias,
                mask,
                pad: spec.k / 2,
                relu: spec.relu,
            });
        }
        Ok(Self {
            config,
            varmap,
            layers,
        })
    }

    /// The hyperparameters.
    pub fn config(&self) -> PixelCnnConfig {
        self.config
    }

    /// The weights, for the optimizer and for saving.
    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    /// Logits (batch, 1, 28, 28) of p(x_ij = 1 | pixels before ij in raster order).
    ///
    /// # Errors
    /// On a wrong input shape.
    pub fn logits(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        for l in &self.layers {
            let w = l.weight.broadcast_mul(&l.mask)?;
            h = conv::conv2d(&h, &w, Some(&l.bias), 1, l.pad)?;
            if l.relu {
                h = h.relu()?;
            }
        }
        Ok(h)
    }

    /// Exact negative log-likelihood of binarized `x` (batch, 1, 28, 28), a
    /// scalar in nats per image (summed over pixels, averaged over the batch).
    ///
    /// # Errors
    /// On a wrong input shape.
    pub fn nll(&self, x: &Tensor) -> Result<Tensor> {
        let per_image = 1.0 / x.dim(0)? as f64;
        bce_with_logits(&self.logits(x)?, x)?
            .sum_all()?
            .affine(per_image, 0.0)
    }

    /// Per layer: spec, masked weight `[out][in][k][k]` (masked taps 0.0) and bias.
    ///
    /// # Errors
    /// On candle errors.
    pub fn masked_layers(&self) -> Result<Vec<MaskedLayer>> {
        let mut out = Vec::new();
        for (spec, l) in self.config.layer_specs().into_iter().zip(&self.layers) {
            let w = l
                .weight
                .broadcast_mul(&l.mask)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            let b = l.bias.to_vec1::<f32>()?;
            out.push((spec, w, b));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;

    #[test]
    fn masks() {
        assert_eq!(
            mask_values(MaskKind::A, 3),
            vec![1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
        );
        assert_eq!(
            mask_values(MaskKind::B, 3),
            vec![1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
        );
        assert_eq!(mask_values(MaskKind::B, 1), vec![1.0]);
        assert_eq!(mask_values(MaskKind::A, 7).iter().sum::<f32>(), 24.0);
    }

    #[test]
    fn default_has_38_6k_params() {
        let m = PixelCnn::new(PixelCnnConfig::default(), 0, &Device::Cpu).unwrap();
        let n: usize = m.varmap().all_vars().iter().map(|v| v.elem_count()).sum();
        assert_eq!(n, 38_625);
    }

    /// Changing pixel p changes no logit at or before p in raster order.
    #[test]
    fn causal() {
        let dev = Device::Cpu;
        let m = PixelCnn::new(
            PixelCnnConfig {
                channels: 4,
                layers: 2,
            },
            3,
            &dev,
        )
        .unwrap();
        let x0 = Tensor::zeros((1, 1, 28, 28), DType::F32, &dev).unwrap();
        let l0 = m
            .logits(&x0)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        for p in [0usize, 5, 28 * 10 + 13, 783] {
            let mut v = vec![0f32; 784];
            v[p] = 1.0;
            let x = Tensor::from_vec(v, (1, 1, 28, 28), &dev).unwrap();
            let l = m
                .logits(&x)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            for q in 0..=p {
                assert_eq!(l[q], l0[q], "pixel {p} leaks into logit {q}");
            }
            if p < 783 {
                assert_ne!(l[p + 1..], l0[p + 1..], "pixel {p} influences nothing");
            }
        }
    }
}
