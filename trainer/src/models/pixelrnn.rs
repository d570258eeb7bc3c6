//! PixelRNN with Row LSTM layers (van den Oord et al. 2016, "Pixel Recurrent
//! Neural Networks", section 3.1) for 1x28x28 binarized images: one
//! Bernoulli per pixel, exact likelihood.
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use tinygen_trainer::models::pixelrnn::{PixelRnn, PixelRnnConfig};
//! let dev = Device::Cpu;
//! let cfg = PixelRnnConfig { channels: 4, hidden: 4, layers: 1 };
//! let m = PixelRnn::new(cfg, 0, &dev)?;
//! let x = Tensor::zeros((2, 1, 28, 28), DType::F32, &dev)?;
//! let logits = m.logits(&x)?; // (2, 1, 28, 28): logit of p(x_ij = 1 | x_<ij)
//! let nll = m.nll(&x)?; // scalar, nats per image
//! # candle_core::Result::Ok(())
//! ```
//!
//! Layers, exported layer for layer (`Op::MaskedConv2d`, `Op::RowLstm`):
//!
//! | name | layer | output |
//! | --- | --- | --- |
//! | `c0` | masked conv 1 → C, 7x7, mask A, ReLU | (C, 28, 28) |
//! | `lstm1` | Row LSTM C → H: input-to-state 1x3 mask B along the row, state-to-state 1x3 over the previous row | (H, 28, 28) |
//! | `lstm2`..`lstmL` | Row LSTM H → H, the same | (H, 28, 28) |
//! | `fc` | conv H → C, 1x1, ReLU | (C, 28, 28) |
//! | `out` | conv C → 1, 1x1 | (1, 28, 28) logits |
//!
//! A Row LSTM layer computes, for row `y` and every column `x` at once, the
//! 4H gate pre-activations (order i, f, o, g)
//! `pre = b + w_is ⋆ in[y] + w_ss ⋆ h[y-1]`, where `w_is ⋆` is a masked 1-D
//! convolution along the row (the whole map in one matmul) and `w_ss ⋆` a
//! 1-D convolution over the previous row's hidden states (a loop over the
//! 28 rows); then `c = σ(f) c_prev + σ(i) tanh(g)`, `h = σ(o) tanh(c)`.
//! Weights `lstmN.w_is` `[4H][in][k_in]`, `lstmN.w_ss` `[4H][H][k_state]`,
//! `lstmN.bias` `[4H]`: the file's own layout. As for PixelCNN, the stored
//! weights are raw parameters; the mask is applied in the forward pass
//! (only the unmasked taps enter the matmul) and by the exporter, which
//! writes masked taps as zeros.
//!
//! Internally every layer up to the last LSTM is a list of rows, each a
//! (batch, column, channel) tensor, so that a row is one contiguous
//! (batch·column, channel) matrix.

use candle_core::{Device, Result, Tensor, D};
use candle_nn::init::Init;
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use super::pixelcnn::{mask_values, row_taps, Mask};
use super::vae::bce_with_logits;
use super::{conv, seeded_var_builder};

/// Kernel of the first (mask A) convolution.
pub const FIRST_KERNEL: usize = 7;
/// Width of the input-to-state kernel along the row (mask B).
pub const K_IN: usize = 3;
/// Width of the state-to-state kernel over the previous row.
pub const K_STATE: usize = 3;
/// Initial bias of the forget gate (remember by default).
pub const FORGET_BIAS: f32 = 1.0;

/// PixelRNN hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PixelRnnConfig {
    /// Channels of the first convolution and of the 1x1 layer before the logits.
    pub channels: usize,
    /// Hidden (and cell) channels of every Row LSTM layer.
    pub hidden: usize,
    /// Number of Row LSTM layers.
    pub layers: usize,
}

impl Default for PixelRnnConfig {
    fn default() -> Self {
        Self {
            channels: 32,
            hidden: 32,
            layers: 2,
        }
    }
}

impl PixelRnnConfig {
    /// Input channels of Row LSTM layer `l` (1-based).
    pub fn lstm_in(&self, l: usize) -> usize {
        if l == 1 {
            self.channels
        } else {
            self.hidden
        }
    }
}

/// Taps `0..n` of a width-`k` 1-row kernel are the ones `mask` allows.
pub fn allowed_taps(mask: Mask, k: usize) -> usize {
    row_taps(mask, k)
}

/// One Row LSTM layer's float weights, in the file's layout.
#[derive(Debug, Clone, PartialEq)]
pub struct RowLstmWeights {
    /// Input channels.
    pub in_c: usize,
    /// Hidden channels.
    pub hidden: usize,
    /// `[4H][in_c][K_IN]`, masked taps 0.0.
    pub w_is: Vec<f32>,
    /// `[4H][H][K_STATE]`.
    pub w_ss: Vec<f32>,
    /// `[4H]`.
    pub bias: Vec<f32>,
}

/// A 1x1 or masked convolution's float weights `[out][in][k][k]` and bias.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvWeights {
    /// Input channels.
    pub in_c: usize,
    /// Output channels.
    pub out_c: usize,
    /// Kernel size.
    pub k: usize,
    /// Weights, masked taps 0.0.
    pub weight: Vec<f32>,
    /// Bias.
    pub bias: Vec<f32>,
}

/// Every layer's float weights, in order: `c0`, the Row LSTMs, `fc`, `out`.
#[derive(Debug, Clone, PartialEq)]
pub struct PixelRnnWeights {
    /// 7x7 mask A, 1 → C (ReLU).
    pub c0: ConvWeights,
    /// Row LSTM layers.
    pub lstm: Vec<RowLstmWeights>,
    /// 1x1, H → C (ReLU).
    pub fc: ConvWeights,
    /// 1x1, C → 1 (logits).
    pub out: ConvWeights,
}

struct Lstm {
    w_is: Tensor,
    w_ss: Tensor,
    bias: Tensor,
    hidden: usize,
}

/// A PixelRNN and the [`VarMap`] that owns its weights.
pub struct PixelRnn {
    config: PixelRnnConfig,
    varmap: VarMap,
    c0_w: Tensor,
    c0_b: Tensor,
    c0_mask: Tensor,
    lstm: Vec<Lstm>,
    fc_w: Tensor,
    fc_b: Tensor,
    out_w: Tensor,
    out_b: Tensor,
}

/// `out[.., x, ..] = in[.., x + d, ..]` along `dim`, zero outside.
fn shift(x: &Tensor, dim: usize, d: isize) -> Result<Tensor> {
    let n = x.dim(dim)?;
    let a = d.unsigned_abs();
    if a == 0 {
        return Ok(x.clone());
    }
    if a >= n {
        return x.zeros_like();
    }
    if d < 0 {
        x.narrow(dim, 0, n - a)?.pad_with_zeros(dim, a, 0)
    } else {
        x.narrow(dim, a, n - a)?.pad_with_zeros(dim, 0, a)
    }
}

/// 1-D convolution along `dim` (the column axis, followed by the channel
/// axis) with taps `0..n` of a width-`k` kernel centred at `k / 2`: the
/// shifted copies side by side, tap-major, (.., n·C).
fn taps(x: &Tensor, dim: usize, k: usize, n: usize) -> Result<Tensor> {
    let c = (k / 2) as isize;
    let parts = (0..n)
        .map(|t| shift(x, dim, t as isize - c))
        .collect::<Result<Vec<_>>>()?;
    Tensor::cat(&parts, D::Minus1)
}

/// Weight `[4H][in][k]` restricted to taps `0..n`, as the (n·in, 4H)
/// matrix that multiplies [`taps`].
fn tap_matrix(w: &Tensor, n: usize) -> Result<Tensor> {
    let (g, i, _) = w.dims3()?;
    w.narrow(2, 0, n)?.permute((2, 1, 0))?.reshape((n * i, g))
}

impl PixelRnn {
    /// A freshly initialized model, weights drawn from a generator seeded
    /// with `seed` (forget-gate biases start at [`FORGET_BIAS`]).
    ///
    /// # Errors
    /// If the configuration is empty, or candle fails to allocate.
    pub fn new(config: PixelRnnConfig, seed: u64, device: &Device) -> Result<Self> {
        let m = Self::build(config, VarMap::new(), seed, device)?;
        for l in &m.lstm {
            let h = l.hidden;
            let b: Vec<f32> = (0..4 * h)
                .map(|r| {
                    if (h..2 * h).contains(&r) {
                        FORGET_BIAS
                    } else {
                        0.0
                    }
                })
                .collect();
            let vars = m.varmap.all_vars();
            let Some(var) = vars.iter().find(|v| v.as_tensor().id() == l.bias.id()) else {
                candle_core::bail!("Row LSTM bias is not a variable");
            };
            var.set(&Tensor::from_vec(b, 4 * h, device)?)?;
        }
        Ok(m)
    }

    /// A model over existing weights (a loaded checkpoint).
    ///
    /// # Errors
    /// If a tensor is missing or has the wrong shape.
    pub fn from_varmap(config: PixelRnnConfig, varmap: VarMap, device: &Device) -> Result<Self> {
        {
            let vars = varmap
                .data()
                .lock()
                .map_err(|_| candle_core::Error::Msg("VarMap lock poisoned".into()))?;
            let mut names = vec![
                "c0.weight".to_string(),
                "fc.weight".into(),
                "out.weight".into(),
            ];
            for l in 1..=config.layers {
                for p in ["w_is", "w_ss", "bias"] {
                    names.push(format!("lstm{l}.{p}"));
                }
            }
            for name in names {
                if !vars.contains_key(&name) {
                    candle_core::bail!("PixelRNN checkpoint has no tensor {name}");
                }
            }
        }
        Self::build(config, varmap, 0, device)
    }

    fn build(config: PixelRnnConfig, varmap: VarMap, seed: u64, device: &Device) -> Result<Self> {
        if config.channels == 0 || config.hidden == 0 || config.layers == 0 {
            candle_core::bail!("PixelRNN needs channels, hidden channels and layers >= 1");
        }
        let vb = seeded_var_builder(&varmap, seed, device);
        let conv = |in_c: usize, out_c: usize, k: usize, name: &str| -> Result<(Tensor, Tensor)> {
            let cfg = candle_nn::Conv2dConfig {
                padding: k / 2,
                ..Default::default()
            };
            let l = candle_nn::conv2d(in_c, out_c, k, cfg, vb.pp(name))?;
            match l.bias() {
                Some(b) => Ok((l.weight().clone(), b.clone())),
                None => candle_core::bail!("conv layer without a bias"),
            }
        };
        let (c, h) = (config.channels, config.hidden);
        let (c0_w, c0_b) = conv(1, c, FIRST_KERNEL, "c0")?;
        let c0_mask = Tensor::from_vec(
            mask_values(Mask::A, FIRST_KERNEL),
            (1, 1, FIRST_KERNEL, FIRST_KERNEL),
            device,
        )?;
        let mut lstm = Vec::new();
        for l in 1..=config.layers {
            let in_c = config.lstm_in(l);
            let vb = vb.pp(format!("lstm{l}"));
            // PyTorch's LSTM initialization: U(-1/sqrt(fan), 1/sqrt(fan)), here
            // with the fan-in of each convolution's used taps.
            let uniform = |fan: usize| {
                let b = 1.0 / (fan as f64).sqrt();
                Init::Uniform { lo: -b, up: b }
            };
            let w_is = vb.get_with_hints(
                (4 * h, in_c, K_IN),
                "w_is",
                uniform(in_c * allowed_taps(Mask::B, K_IN)),
            )?;
            let w_ss = vb.get_with_hints((4 * h, h, K_STATE), "w_ss", uniform(h * K_STATE))?;
            let bias = vb.get_with_hints(4 * h, "bias", Init::Const(0.0))?;
            lstm.push(Lstm {
                w_is,
                w_ss,
                bias,
                hidden: h,
            });
        }
        let (fc_w, fc_b) = conv(h, c, 1, "fc")?;
        let (out_w, out_b) = conv(c, 1, 1, "out")?;
        Ok(Self {
            config,
            varmap,
            c0_w,
            c0_b,
            c0_mask,
            lstm,
            fc_w,
            fc_b,
            out_w,
            out_b,
        })
    }

    /// The hyperparameters.
    pub fn config(&self) -> PixelRnnConfig {
        self.config
    }

    /// The weights, for the optimizer and for saving.
    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    /// One Row LSTM layer over a list of rows (each (batch, cols, in)):
    /// the hidden states, one (batch, cols, H) per row.
    ///
    /// Each row is one matmul per gate of [input taps ‖ previous-row hidden
    /// taps]; nothing is sliced out of a whole-map tensor, because candle's
    /// backward of such a slice is a whole-map tensor per row.
    fn row_lstm(l: &Lstm, x: &[Tensor]) -> Result<Vec<Tensor>> {
        let h = l.hidden;
        let n_in = allowed_taps(Mask::B, K_IN);
        // Per gate q: (n_in·in, H) input-to-state, (K_STATE·H, H) state-to-state.
        let mut w_first = Vec::with_capacity(4);
        let mut w_next = Vec::with_capacity(4);
        let mut bias = Vec::with_capacity(4);
        for q in 0..4 {
            let wi = tap_matrix(&l.w_is.narrow(0, q * h, h)?, n_in)?;
            let ws = tap_matrix(&l.w_ss.narrow(0, q * h, h)?, K_STATE)?;
            w_next.push(Tensor::cat(&[&wi, &ws], 0)?);
            w_first.push(wi);
            bias.push(l.bias.narrow(0, q * h, h)?);
        }
        let mut hs: Vec<Tensor> = Vec::with_capacity(x.len());
        let mut c_prev: Option<Tensor> = None;
        for xy in x {
            let (b, cols, _) = xy.dims3()?;
            let xt = taps(xy, 1, K_IN, n_in)?;
            let (inp, w) = match hs.last() {
                Some(hp) => (
                    Tensor::cat(&[xt, taps(hp, 1, K_STATE, K_STATE)?], 2)?,
                    &w_next,
                ),
                None => (xt, &w_first),
            };
            let k = inp.dim(2)?;
            let inp = inp.reshape((b * cols, k))?;
            let gate = |q: usize| inp.matmul(&w[q])?.broadcast_add(&bias[q]);
            let i = candle_nn::ops::sigmoid(&gate(0)?)?;
            let o = candle_nn::ops::sigmoid(&gate(2)?)?;
            let g = gate(3)?.tanh()?;
            let mut c = (i * g)?;
            if let Some(cp) = &c_prev {
                let f = candle_nn::ops::sigmoid(&gate(1)?)?;
                c = (c + (f * cp)?)?;
            }
            hs.push((o * c.tanh()?)?.reshape((b, cols, h))?);
            c_prev = Some(c);
        }
        Ok(hs)
    }

    /// Logits (batch, 1, 28, 28) of p(x_ij = 1 | pixels before ij in raster order).
    ///
    /// # Errors
    /// On a wrong input shape.
    pub fn logits(&self, x: &Tensor) -> Result<Tensor> {
        let (b, _, rows, cols) = x.dims4()?;
        let w0 = self.c0_w.broadcast_mul(&self.c0_mask)?;
        // The 7x7 convolution row by row (7 padded input rows each: the
        // input needs no gradient, so slicing it is free), each row as
        // (batch, cols, C).
        let p = FIRST_KERNEL / 2;
        let xp = x.pad_with_zeros(2, p, p)?.pad_with_zeros(3, p, p)?;
        let mut h = (0..rows)
            .map(|y| {
                conv::conv2d(&xp.narrow(2, y, FIRST_KERNEL)?, &w0, Some(&self.c0_b), 1, 0)?
                    .relu()?
                    .permute((0, 2, 3, 1))?
                    .reshape((b, cols, self.config.channels))
            })
            .collect::<Result<Vec<_>>>()?;
        for l in &self.lstm {
            h = Self::row_lstm(l, &h)?;
        }
        let (c, hid) = (self.config.channels, self.config.hidden);
        // (rows, b, cols, H)
        let flat = Tensor::stack(&h, 0)?.reshape((rows * b * cols, hid))?;
        let f = flat
            .matmul(&self.fc_w.reshape((c, hid))?.t()?)?
            .broadcast_add(&self.fc_b)?
            .relu()?;
        let out = f
            .matmul(&self.out_w.reshape((1, c))?.t()?)?
            .broadcast_add(&self.out_b)?;
        out.reshape((rows, b, cols))?
            .permute((1, 0, 2))?
            .reshape((b, 1, rows, cols))
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

    /// Every layer's weights in the file's layout (masked taps 0.0).
    ///
    /// # Errors
    /// On candle errors.
    pub fn weights(&self) -> Result<PixelRnnWeights> {
        let v = |t: &Tensor| t.flatten_all()?.to_vec1::<f32>();
        let (c, hid) = (self.config.channels, self.config.hidden);
        let n_in = allowed_taps(Mask::B, K_IN);
        let mut lstm = Vec::new();
        for (i, l) in self.lstm.iter().enumerate() {
            let in_c = self.config.lstm_in(i + 1);
            let mut w_is = v(&l.w_is)?;
            for (j, w) in w_is.iter_mut().enumerate() {
                if j % K_IN >= n_in {
                    *w = 0.0;
                }
            }
            lstm.push(RowLstmWeights {
                in_c,
                hidden: hid,
                w_is,
                w_ss: v(&l.w_ss)?,
                bias: v(&l.bias)?,
            });
        }
        Ok(PixelRnnWeights {
            c0: ConvWeights {
                in_c: 1,
                out_c: c,
                k: FIRST_KERNEL,
                weight: v(&self.c0_w.broadcast_mul(&self.c0_mask)?)?,
                bias: v(&self.c0_b)?,
            },
            lstm,
            fc: ConvWeights {
                in_c: hid,
                out_c: c,
                k: 1,
                weight: v(&self.fc_w)?,
                bias: v(&self.fc_b)?,
            },
            out: ConvWeights {
                in_c: c,
                out_c: 1,
                k: 1,
                weight: v(&self.out_w)?,
                bias: v(&self.out_b)?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;

    fn tiny() -> PixelRnn {
        PixelRnn::new(
            PixelRnnConfig {
                channels: 4,
                hidden: 3,
                layers: 2,
            },
            3,
            &Device::Cpu,
        )
        .unwrap()
    }

    fn flat(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }

    #[test]
    fn default_has_52_1k_params() {
        let m = PixelRnn::new(PixelRnnConfig::default(), 0, &Device::Cpu).unwrap();
        let n: usize = m.varmap().all_vars().iter().map(|v| v.elem_count()).sum();
        // c0 32·49+32, two LSTMs 128·(32·3 + 32·3 + 1), fc 32·32+32, out 33.
        assert_eq!(n, 1_600 + 2 * 24_704 + 1_056 + 33);
        assert_eq!(n, 52_097);
    }

    #[test]
    fn forget_bias_and_masked_taps() {
        let m = tiny();
        let w = m.weights().unwrap();
        assert_eq!(w.lstm.len(), 2);
        assert_eq!(
            w.lstm[0].bias,
            [0., 0., 0., 1., 1., 1., 0., 0., 0., 0., 0., 0.]
        );
        assert_eq!(w.lstm[0].w_is.len(), 12 * 4 * 3);
        assert_eq!(w.lstm[1].w_ss.len(), 12 * 3 * 3);
        assert!(w.lstm[0].w_is.iter().skip(2).step_by(3).all(|&x| x == 0.0));
        assert!(w.lstm[0].w_is.iter().step_by(3).any(|&x| x != 0.0));
        assert!(w.c0.weight[24..49].iter().all(|&x| x == 0.0));
    }

    /// Changing pixel p changes no logit at or before p in raster order.
    #[test]
    fn causal() {
        let dev = Device::Cpu;
        let m = tiny();
        let x0 = Tensor::zeros((1, 1, 28, 28), DType::F32, &dev).unwrap();
        let l0 = flat(&m.logits(&x0).unwrap());
        for p in [0usize, 5, 27, 28 * 10 + 13, 28 * 27, 783] {
            let mut v = vec![0f32; 784];
            v[p] = 1.0;
            let x = Tensor::from_vec(v, (1, 1, 28, 28), &dev).unwrap();
            let l = flat(&m.logits(&x).unwrap());
            for q in 0..=p {
                assert_eq!(l[q], l0[q], "pixel {p} leaks into logit {q}");
            }
            if p < 783 {
                assert_ne!(l[p + 1..], l0[p + 1..], "pixel {p} influences nothing");
            }
        }
    }

    /// A batch is the images one by one.
    #[test]
    fn batch_rows_are_independent() {
        let dev = Device::Cpu;
        let m = tiny();
        let v: Vec<f32> = (0..2 * 784)
            .map(|i| ((i * 7) % 3 == 0) as u8 as f32)
            .collect();
        let x = Tensor::from_vec(v, (2, 1, 28, 28), &dev).unwrap();
        let both = flat(&m.logits(&x).unwrap());
        for i in 0..2 {
            let one = flat(&m.logits(&x.narrow(0, i, 1).unwrap()).unwrap());
            for (a, b) in one.iter().zip(&both[i * 784..]) {
                assert!((a - b).abs() < 1e-5, "{a} vs {b}");
            }
        }
    }

    /// Backpropagated gradients of the NLL match central differences.
    #[test]
    fn gradient_matches_finite_differences() {
        let dev = Device::Cpu;
        let m = tiny();
        let v: Vec<f32> = (0..784).map(|i| ((i * 5) % 7 < 3) as u8 as f32).collect();
        let x = Tensor::from_vec(v, (1, 1, 28, 28), &dev).unwrap();
        let grads = m.nll(&x).unwrap().backward().unwrap();
        let vars = m.varmap().data().lock().unwrap().clone();
        for (name, idx) in [
            ("lstm1.w_ss", 7usize),
            ("lstm2.w_is", 4),
            ("lstm2.bias", 4),
            ("lstm1.w_is", 30),
            ("c0.weight", 10),
        ] {
            let var = &vars[name];
            let g = flat(grads.get(var.as_tensor()).unwrap())[idx] as f64;
            let orig = flat(var.as_tensor());
            // Small enough to step over no ReLU kink at these points.
            let eps = 3e-3f32;
            let f = |d: f32| {
                let mut w = orig.clone();
                w[idx] += d;
                var.set(&Tensor::from_vec(w, var.shape(), &dev).unwrap())
                    .unwrap();
                f64::from(m.nll(&x).unwrap().to_scalar::<f32>().unwrap())
            };
            let num = (f(eps) - f(-eps)) / (2.0 * eps as f64);
            var.set(&Tensor::from_vec(orig, var.shape(), &dev).unwrap())
                .unwrap();
            assert!(
                (num - g).abs() <= 2e-2 * (1.0 + g.abs()),
                "{name}[{idx}]: backprop {g} vs finite differences {num}"
            );
        }
    }
}
