//! PixelCNN (van den Oord et al. 2016) for 1x28x28 binarized images: masked
//! convolutions, one Bernoulli per pixel, exact likelihood.
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use tinygen_trainer::models::pixelcnn::{PixelCnn, PixelCnnArch, PixelCnnConfig};
//! let dev = Device::Cpu;
//! let cfg = PixelCnnConfig { channels: 4, layers: 1, ..PixelCnnConfig::default() };
//! let m = PixelCnn::new(cfg, 0, &dev)?;
//! let x = Tensor::zeros((2, 1, 28, 28), DType::F32, &dev)?;
//! let logits = m.logits(&x)?; // (2, 1, 28, 28): logit of p(x_ij = 1 | x_<ij)
//! let nll = m.nll(&x)?; // scalar, nats per image
//! // The same with vertical and horizontal stacks (no blind spot).
//! let stacks = PixelCnn::new(PixelCnnConfig { arch: PixelCnnArch::Stacks, ..cfg }, 0, &dev)?;
//! assert_eq!(stacks.logits(&x)?.dims(), &[2, 1, 28, 28]);
//! # candle_core::Result::Ok(())
//! ```
//!
//! # Plain ([`PixelCnnArch::Plain`])
//!
//! Layers, all stride 1 with 'same' zero padding (k/2), exported layer for
//! layer as `Op::MaskedConv2d`:
//!
//! | name | layer | output |
//! | --- | --- | --- |
//! | `c0` | masked conv 1 → C, 7x7, mask A, ReLU | (C, 28, 28) |
//! | `c1`..`cL` | masked conv C → C, KxK (`kernel`, 3), mask B, ReLU | (C, 28, 28) |
//! | `out` | conv C → 1, 1x1 (mask B: the centre tap only) | (1, 28, 28) logits |
//!
//! Mask A lets output (r, c) see input rows above r and, on row r, columns
//! left of c; mask B also lets it see (r, c) itself. The stored weights are
//! the raw parameters; the mask is applied in every forward pass (and by the
//! exporter, which writes the masked taps as zeros). Such a stack has a
//! blind spot: the pixels above and to the right of the cone its masks grow.
//!
//! # Two stacks ([`PixelCnnArch::Stacks`])
//!
//! Vertical and horizontal stacks (van den Oord et al. 2016, "Conditional
//! Image Generation with PixelCNN Decoders", without the gates), exported
//! layer for layer as `Op::StackConv2d` (see its documentation in
//! `tinygen_runtime::format` for the exact arithmetic). Every tensor holds
//! its vertical channels first, then its horizontal ones:
//!
//! | name | layer | output |
//! | --- | --- | --- |
//! | `c0` | stack conv 1 → C + C, 7x7, mask A, ReLU | (2C, 28, 28) |
//! | `c1`..`c(L-1)` | stack conv C + C → C + C, KxK, mask B, ReLU | (2C, 28, 28) |
//! | `cL` | stack conv C + C → 0 + C (horizontal only), KxK, mask B, ReLU | (C, 28, 28) |
//! | `out` | conv C → 1, 1x1 (as the plain head) | (1, 28, 28) logits |
//!
//! A vertical output at row y reads the vertical inputs (the image, in `c0`)
//! on rows y - k/2 ..= y, the whole kernel width (parameter `v_weight`,
//! (out_v, |V|, k, k), rows below the centre masked to zero every forward
//! pass). A horizontal output at (y, x) reads the horizontal inputs on row y
//! at columns x - k/2 .. x (x itself with mask B) and the vertical inputs at
//! (y - 1, x) (parameter `h_weight`, (out_h, in_h·n_h + in_v, 1, 1): a 1x1
//! convolution over shifted copies of the input, whose flattened rows are
//! exactly the runtime's horizontal weight rows). One `bias` of out_c.
//! Vertical outputs are never read on their own row, so every logit is
//! causal, and through the vertical stack it sees every row above within
//! reach, right of x included.

use candle_core::{Device, Result, Tensor};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use super::taps::{self, TapGroup, Taps};
use super::vae::bce_with_logits;
use super::{conv, seeded_var_builder};

/// Kernel of the first (mask A) layer.
pub const FIRST_KERNEL: usize = 7;
/// Default kernel of the hidden (mask B) layers.
pub const HIDDEN_KERNEL: usize = 3;

fn default_kernel() -> usize {
    HIDDEN_KERNEL
}

/// Which PixelCNN: masked convolutions, or vertical and horizontal stacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PixelCnnArch {
    /// One stack of masked convolutions (exported as MaskedConv2d); has a
    /// blind spot. What every run before this option trained.
    #[default]
    Plain,
    /// A vertical and a horizontal stack (exported as StackConv2d): no
    /// blind spot.
    Stacks,
}

/// PixelCNN hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PixelCnnConfig {
    /// Channels of every hidden feature map (per stack with
    /// [`PixelCnnArch::Stacks`]).
    pub channels: usize,
    /// Number of mask-B layers after the 7x7 mask-A layer.
    pub layers: usize,
    /// Architecture (absent from older `config.json` files: plain).
    #[serde(default)]
    pub arch: PixelCnnArch,
    /// Kernel of the mask-B layers, odd (absent from older `config.json`
    /// files: 3).
    #[serde(default = "default_kernel")]
    pub kernel: usize,
}

impl Default for PixelCnnConfig {
    fn default() -> Self {
        Self {
            channels: 32,
            layers: 4,
            arch: PixelCnnArch::Plain,
            kernel: HIDDEN_KERNEL,
        }
    }
}

/// Which taps of a masked kernel are used: the runtime's [`Mask`] (A
/// excludes the centre, for the first layer, which must not see its own
/// pixel; B includes it, for every later layer), whose
/// [`Mask::allows`] is the one rule the trainer and the board share.
pub use tinygen_runtime::format::Mask;

/// The k x k mask as 0.0 / 1.0, row-major.
pub fn mask_values(mask: Mask, k: usize) -> Vec<f32> {
    (0..k * k)
        .map(|i| f32::from(u8::from(mask.allows(k, i / k, i % k))))
        .collect()
}

/// How many channels of a two-stack layer's input and output are vertical
/// (the first ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StackSplit {
    /// Vertical input channels (0: the input is all horizontal, the image).
    pub in_v: usize,
    /// Vertical output channels (0: horizontal outputs only, the last layer).
    pub out_v: usize,
}

/// Used taps of a `k`-wide horizontal kernel row (`k / 2`, plus the
/// centre with mask B): those [`Mask::allows_1d`] allows.
pub fn row_taps(mask: Mask, k: usize) -> usize {
    (0..k).filter(|&t| mask.allows_1d(k, t)).count()
}

/// One layer as the board runs it: a masked convolution
/// (`Op::MaskedConv2d`), or a two-stack one (`Op::StackConv2d`) when
/// `stack` is set.
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
    pub mask: Mask,
    /// ReLU after the layer.
    pub relu: bool,
    /// Vertical channels of a two-stack layer; `None` for a masked one.
    pub stack: Option<StackSplit>,
}

impl LayerSpec {
    /// The runtime's geometry of this layer as a two-stack convolution
    /// (none of its vertical channels for a masked one); its row lengths do
    /// not depend on the image size.
    pub fn stack_geom(&self) -> tinygen_runtime::kernels::StackGeom {
        let s = self.stack.unwrap_or(StackSplit { in_v: 0, out_v: 0 });
        let inp = tinygen_runtime::format::Shape {
            c: self.in_c as u16,
            h: 1,
            w: 1,
        };
        tinygen_runtime::ops::stack_conv2d::geom(
            self.in_c as u16,
            s.in_v as u16,
            self.out_c as u16,
            s.out_v as u16,
            self.k as u8,
            self.mask,
            inp,
            1,
            1,
        )
    }

    /// Of a two-stack layer: input channels its vertical outputs read
    /// (the vertical ones, or all when there are none).
    pub fn v_src(&self) -> usize {
        self.stack_geom().v_src()
    }

    /// Of a two-stack layer: weights of one horizontal output row,
    /// `in_h * n_h + in_v`.
    pub fn h_row_len(&self) -> usize {
        self.stack_geom().h_row_len()
    }

    /// Of a two-stack layer: weights of one vertical output row,
    /// `|V| * (k / 2 + 1) * k`.
    pub fn v_row_len(&self) -> usize {
        self.stack_geom().v_row_len()
    }
}

impl PixelCnnConfig {
    /// The layers in order.
    pub fn layer_specs(&self) -> Vec<LayerSpec> {
        let c = self.channels;
        // Stacks: the tensors between layers hold C vertical then C
        // horizontal channels; the image is all horizontal, and the last
        // stack layer outputs only the C horizontal ones.
        let stack = |i: usize| match self.arch {
            PixelCnnArch::Plain => None,
            PixelCnnArch::Stacks => Some(StackSplit {
                in_v: if i == 0 { 0 } else { c },
                out_v: if i == self.layers { 0 } else { c },
            }),
        };
        let s0 = stack(0);
        let mut v = vec![LayerSpec {
            index: 0,
            in_c: 1,
            out_c: s0.map_or(c, |s| s.out_v + c),
            k: FIRST_KERNEL,
            mask: Mask::A,
            relu: true,
            stack: s0,
        }];
        for i in 1..=self.layers {
            let s = stack(i);
            v.push(LayerSpec {
                index: i,
                in_c: s.map_or(c, |s| s.in_v + c),
                out_c: s.map_or(c, |s| s.out_v + c),
                k: self.kernel,
                mask: Mask::B,
                relu: true,
                stack: s,
            });
        }
        v.push(LayerSpec {
            index: self.layers + 1,
            in_c: c,
            out_c: 1,
            k: 1,
            mask: Mask::B,
            relu: false,
            stack: None,
        });
        v
    }

    /// Parameter names layer `spec` needs in a checkpoint.
    pub fn param_names(&self, spec: &LayerSpec) -> Vec<String> {
        let name = self.layer_name(spec);
        match spec.stack {
            None => vec![format!("{name}.weight"), format!("{name}.bias")],
            Some(s) => {
                let mut v = Vec::with_capacity(3);
                if s.out_v > 0 {
                    v.push(format!("{name}.v_weight"));
                }
                v.push(format!("{name}.h_weight"));
                v.push(format!("{name}.bias"));
                v
            }
        }
    }

    /// What the terminal says is trained.
    pub fn describe(&self) -> String {
        let k = self.kernel;
        match self.arch {
            PixelCnnArch::Plain => format!(
                "PixelCNN ({} channels, 7x7 mask A + {} {k}x{k} mask B)",
                self.channels, self.layers
            ),
            PixelCnnArch::Stacks => format!(
                "PixelCNN (two stacks, {} channels each, 7x7 + {} {k}x{k} layers)",
                self.channels, self.layers
            ),
        }
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

/// A layer's spec, weight in the runtime's layout for its op (masked:
/// `[out][in][k][k]` with the masked taps 0.0; two stacks: the compact
/// `Op::StackConv2d` rows) and bias.
pub type MaskedLayer = (LayerSpec, Vec<f32>, Vec<f32>);

struct MaskedConv {
    weight: Tensor,
    bias: Tensor,
    mask: Tensor,
    pad: usize,
    relu: bool,
}

impl MaskedConv {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let w = self.weight.broadcast_mul(&self.mask)?;
        let h = conv::conv2d(x, &w, Some(&self.bias), 1, self.pad)?;
        if self.relu {
            h.relu()
        } else {
            Ok(h)
        }
    }

    /// The layer on a channels-last `(b * h * w, in)` matrix of
    /// pre-activations (ReLU'd first when `relu_in`), for 1x1 kernels only
    /// (the two-stack PixelCNN's head); output `(b * h * w, out)` before this
    /// layer's own ReLU.
    fn forward_rows(&self, x: &Tensor, (h, w): (usize, usize), relu_in: bool) -> Result<Tensor> {
        let (out, in_c, k, _) = self.weight.dims4()?;
        if k != 1 {
            candle_core::bail!("channels-last masked conv: only 1x1 kernels, got {k}x{k}");
        }
        let gather = Taps::new(
            h,
            w,
            in_c,
            vec![TapGroup::new(0, in_c, vec![(0, 0)])],
            relu_in,
            true,
        );
        taps::affine(
            &x.apply_op1(gather)?,
            &self.weight.reshape((out, in_c))?,
            &self.bias,
        )
    }

    /// Masked weight `[out][in][k][k]`, flattened.
    fn runtime_weight(&self) -> Result<Vec<f32>> {
        self.weight
            .broadcast_mul(&self.mask)?
            .flatten_all()?
            .to_vec1::<f32>()
    }
}

/// A two-stack layer (`Op::StackConv2d`).
struct StackConv {
    spec: LayerSpec,
    split: StackSplit,
    /// (out_v, |V|, k, k), used rows `0..=k/2`; `None` when `out_v = 0`.
    v_weight: Option<Tensor>,
    /// (out_h, in_h * n_h + in_v, 1, 1).
    h_weight: Tensor,
    /// (out_c,), vertical outputs first.
    bias: Tensor,
}

impl StackConv {
    fn new(spec: LayerSpec, split: StackSplit, vb: &candle_nn::VarBuilder) -> Result<Self> {
        use candle_nn::Init;
        let k = spec.k;
        let out_h = spec.out_c - split.out_v;
        // Kaiming normal by fan-in with the ReLU gain (candle_nn::conv2d's
        // default), each part by its own fan-in: the taps it really reads.
        let kaiming = |fan_in: usize| Init::Randn {
            mean: 0.0,
            stdev: 2f64.sqrt() / (fan_in.max(1) as f64).sqrt(),
        };
        let v_weight = if split.out_v > 0 {
            Some(vb.get_with_hints(
                (split.out_v, spec.v_src(), k, k),
                "v_weight",
                kaiming(spec.v_row_len()),
            )?)
        } else {
            None
        };
        let h_weight = vb.get_with_hints(
            (out_h, spec.h_row_len(), 1, 1),
            "h_weight",
            kaiming(spec.h_row_len()),
        )?;
        // As candle_nn::conv2d: uniform in +-1/sqrt(in_channels).
        let bound = 1.0 / (spec.in_c as f64).sqrt();
        let bias = vb.get_with_hints(
            spec.out_c,
            "bias",
            Init::Uniform {
                lo: -bound,
                up: bound,
            },
        )?;
        Ok(Self {
            spec,
            split,
            v_weight,
            h_weight,
            bias,
        })
    }

    /// The layer on a channels-last `(b * h * w, in_c)` matrix (vertical
    /// channels first) of pre-activations, ReLU'd first when `relu_in`:
    /// `(b * h * w, out_c)`, before this layer's own ReLU. The same
    /// arithmetic as [`StackConv::forward`] (the tests compare both), without
    /// its copies: see [`super::taps`].
    fn forward_rows(&self, x: &Tensor, (h, w): (usize, usize), relu_in: bool) -> Result<Tensor> {
        let StackSplit { in_v, out_v } = self.split;
        let (k, in_c, out_c) = (self.spec.k, self.spec.in_c, self.spec.out_c);
        let c = k / 2;
        let in_h = in_c - in_v;
        let n_h = row_taps(self.spec.mask, k);
        let mut parts = Vec::with_capacity(2);
        if let Some(wv) = &self.v_weight {
            // Rows y - c ..= y, the whole width: the blob's [|V|][k/2 + 1][k].
            let offsets = (0..=c)
                .flat_map(|ky| {
                    (0..k).map(move |kx| (ky as isize - c as isize, kx as isize - c as isize))
                })
                .collect();
            let group = TapGroup::new(0, self.spec.v_src(), offsets);
            let cols = x.apply_op1(Taps::new(h, w, in_c, vec![group], relu_in, true))?;
            let wv = wv
                .narrow(2, 0, c + 1)?
                .reshape((out_v, self.spec.v_row_len()))?;
            parts.push(taps::affine(&cols, &wv, &self.bias.narrow(0, 0, out_v)?)?);
        }
        // Row y at columns x - c .. x - c + n_h, then the vertical inputs at
        // (y - 1, x): the blob's [in_h][n_h] then [in_v].
        let mut groups = Vec::with_capacity(2);
        if in_h > 0 && n_h > 0 {
            let offsets = (0..n_h).map(|t| (0, t as isize - c as isize)).collect();
            groups.push(TapGroup::new(in_v, in_h, offsets));
        }
        if in_v > 0 {
            groups.push(TapGroup::new(0, in_v, vec![(-1, 0)]));
        }
        let cols = x.apply_op1(Taps::new(h, w, in_c, groups, relu_in, true))?;
        let out_h = out_c - out_v;
        let wh = self.h_weight.reshape((out_h, self.spec.h_row_len()))?;
        parts.push(taps::affine(
            &cols,
            &wh,
            &self.bias.narrow(0, out_v, out_h)?,
        )?);
        if parts.len() == 1 {
            Ok(parts.swap_remove(0))
        } else {
            Tensor::cat(&parts, 1)
        }
    }

    /// Output (b, out_c, h, w), vertical channels first, after the ReLU.
    /// The NCHW formulation, kept as the reference of
    /// [`StackConv::forward_rows`].
    #[cfg(test)]
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, _, h, w) = x.dims4()?;
        let StackSplit { in_v, out_v } = self.split;
        let (k, in_c, out_c) = (self.spec.k, self.spec.in_c, self.spec.out_c);
        let c = k / 2;
        let in_h = in_c - in_v;
        let n_h = row_taps(self.spec.mask, k);
        let mut parts = Vec::with_capacity(2);
        if let Some(wv) = &self.v_weight {
            let v_src = if in_v == 0 {
                x.clone()
            } else {
                x.narrow(1, 0, in_v)?
            };
            // Rows below the centre masked to zero.
            let rows: Vec<f32> = (0..k * k)
                .map(|i| f32::from(u8::from(i / k <= c)))
                .collect();
            let mask = Tensor::from_vec(rows, (1, 1, k, k), x.device())?;
            let wv = wv.broadcast_mul(&mask)?;
            let bv = self.bias.narrow(0, 0, out_v)?;
            parts.push(conv::conv2d(&v_src, &wv, Some(&bv), 1, c)?);
        }
        // Horizontal: per input channel i and tap t, the channel shifted
        // right by c - t columns (value at x is in[i][y][x + t - c]), in the
        // order [i][t]; then the vertical inputs one row down; one 1x1 conv.
        let mut cols = Vec::with_capacity(2);
        if in_h > 0 && n_h > 0 {
            let padded = x.narrow(1, in_v, in_h)?.pad_with_zeros(3, c, 0)?;
            let taps = (0..n_h)
                .map(|t| padded.narrow(3, t, w))
                .collect::<Result<Vec<_>>>()?;
            cols.push(Tensor::stack(&taps, 2)?.reshape((b, in_h * n_h, h, w))?);
        }
        if in_v > 0 {
            cols.push(
                x.narrow(1, 0, in_v)?
                    .pad_with_zeros(2, 1, 0)?
                    .narrow(2, 0, h)?,
            );
        }
        let cols = if cols.len() == 1 {
            cols.swap_remove(0)
        } else {
            Tensor::cat(&cols, 1)?
        };
        let bh = self.bias.narrow(0, out_v, out_c - out_v)?;
        parts.push(conv::conv2d(&cols, &self.h_weight, Some(&bh), 1, 0)?);
        let y = if parts.len() == 1 {
            parts.swap_remove(0)
        } else {
            Tensor::cat(&parts, 1)?
        };
        if self.spec.relu {
            y.relu()
        } else {
            Ok(y)
        }
    }

    /// The `Op::StackConv2d` weight blob: vertical rows
    /// `[out_v][|V|][k/2 + 1][k]`, then horizontal rows
    /// `[in_h * n_h + in_v]`.
    fn runtime_weight(&self) -> Result<Vec<f32>> {
        let mut w = match &self.v_weight {
            // Only rows 0..=k/2 are read (forward_rows gathers no others).
            Some(wv) => wv
                .narrow(2, 0, self.spec.k / 2 + 1)?
                .flatten_all()?
                .to_vec1::<f32>()?,
            None => Vec::new(),
        };
        w.extend(self.h_weight.flatten_all()?.to_vec1::<f32>()?);
        Ok(w)
    }
}

enum Layer {
    Masked(MaskedConv),
    Stack(StackConv),
}

impl Layer {
    /// NCHW forward (the plain PixelCNN; the two-stack one in tests).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Layer::Masked(l) => l.forward(x),
            #[cfg(test)]
            Layer::Stack(l) => l.forward(x),
            #[cfg(not(test))]
            Layer::Stack(_) => candle_core::bail!("two-stack layers run channels-last"),
        }
    }

    /// Channels-last forward (the two-stack PixelCNN), before this layer's ReLU.
    fn forward_rows(&self, x: &Tensor, hw: (usize, usize), relu_in: bool) -> Result<Tensor> {
        match self {
            Layer::Masked(l) => l.forward_rows(x, hw, relu_in),
            Layer::Stack(l) => l.forward_rows(x, hw, relu_in),
        }
    }

    fn relu(&self) -> bool {
        match self {
            Layer::Masked(l) => l.relu,
            Layer::Stack(l) => l.spec.relu,
        }
    }

    fn runtime_weight(&self) -> Result<Vec<f32>> {
        match self {
            Layer::Masked(l) => l.runtime_weight(),
            Layer::Stack(l) => l.runtime_weight(),
        }
    }

    fn bias(&self) -> &Tensor {
        match self {
            Layer::Masked(l) => &l.bias,
            Layer::Stack(l) => &l.bias,
        }
    }
}

/// A PixelCNN and the [`VarMap`] that owns its weights.
pub struct PixelCnn {
    config: PixelCnnConfig,
    varmap: VarMap,
    layers: Vec<Layer>,
}

impl PixelCnn {
    /// A freshly initialized model, weights drawn from a generator seeded with `seed`.
    ///
    /// # Errors
    /// If the configuration is empty or invalid (even kernel, two stacks
    /// without a mask-B layer), or candle fails to allocate.
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
                for name in config.param_names(&spec) {
                    if !vars.contains_key(&name) {
                        candle_core::bail!("PixelCNN checkpoint has no tensor {name}");
                    }
                }
            }
        }
        Self::build(config, varmap, 0, device)
    }

    fn build(config: PixelCnnConfig, varmap: VarMap, seed: u64, device: &Device) -> Result<Self> {
        if config.channels == 0 {
            candle_core::bail!("PixelCNN needs at least one channel");
        }
        if config.kernel.is_multiple_of(2) || config.kernel > 27 {
            candle_core::bail!(
                "PixelCNN kernel must be odd and at most 27, got {}",
                config.kernel
            );
        }
        if config.arch == PixelCnnArch::Stacks && config.layers == 0 {
            candle_core::bail!(
                "a two-stack PixelCNN needs at least one mask-B layer (its last layer \
                 outputs the horizontal stack only)"
            );
        }
        let vb = seeded_var_builder(&varmap, seed, device);
        let mut layers = Vec::new();
        for spec in config.layer_specs() {
            let vb = vb.pp(config.layer_name(&spec));
            if let Some(split) = spec.stack {
                layers.push(Layer::Stack(StackConv::new(spec, split, &vb)?));
                continue;
            }
            let cfg = candle_nn::Conv2dConfig {
                padding: spec.k / 2,
                ..Default::default()
            };
            let l = candle_nn::conv2d(spec.in_c, spec.out_c, spec.k, cfg, vb)?;
            let mask = Tensor::from_vec(
                mask_values(spec.mask, spec.k),
                (1, 1, spec.k, spec.k),
                device,
            )?;
            let bias = match l.bias() {
                Some(b) => b.clone(),
                None => candle_core::bail!("conv layer without a bias"),
            };
            layers.push(Layer::Masked(MaskedConv {
                weight: l.weight().clone(),
                bias,
                mask,
                pad: spec.k / 2,
                relu: spec.relu,
            }));
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
        if self.config.arch == PixelCnnArch::Stacks {
            return self.logits_rows(x);
        }
        self.logits_nchw(x)
    }

    /// Every layer through [`Layer::forward`] (NCHW).
    fn logits_nchw(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        for l in &self.layers {
            h = l.forward(&h)?;
        }
        Ok(h)
    }

    /// Every layer through [`Layer::forward_rows`] (channels-last, each
    /// layer's ReLU applied by the next one's gather).
    fn logits_rows(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        if c != 1 {
            candle_core::bail!("PixelCNN input must have one channel, got {c}");
        }
        let mut t = x.reshape((b * h * w, 1))?;
        // The image's values are 0 or 1: no ReLU before the first layer.
        let mut relu_in = false;
        for l in &self.layers {
            t = l.forward_rows(&t, (h, w), relu_in)?;
            relu_in = l.relu();
        }
        if relu_in {
            t = t.relu()?;
        }
        t.reshape((b, (), h, w))
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

    /// Per layer: spec, weight in the runtime's layout for its op (masked:
    /// `[out][in][k][k]`, masked taps 0.0; two stacks: the compact
    /// `Op::StackConv2d` blob) and bias.
    ///
    /// # Errors
    /// On candle errors.
    pub fn masked_layers(&self) -> Result<Vec<MaskedLayer>> {
        let mut out = Vec::new();
        for (spec, l) in self.config.layer_specs().into_iter().zip(&self.layers) {
            let w = l.runtime_weight()?;
            let b = l.bias().to_vec1::<f32>()?;
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
            mask_values(Mask::A, 3),
            vec![1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
        );
        assert_eq!(
            mask_values(Mask::B, 3),
            vec![1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
        );
        assert_eq!(mask_values(Mask::B, 1), vec![1.0]);
        assert_eq!(mask_values(Mask::A, 7).iter().sum::<f32>(), 24.0);
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
                ..PixelCnnConfig::default()
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

    fn stacks(channels: usize, layers: usize, kernel: usize) -> PixelCnnConfig {
        PixelCnnConfig {
            channels,
            layers,
            arch: PixelCnnArch::Stacks,
            kernel,
        }
    }

    /// A random binary image (0.0 / 1.0), raster order.
    fn random_image(seed: u64) -> Vec<f32> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..784)
            .map(|_| f32::from(u8::from(rng.random_bool(0.4))))
            .collect()
    }

    fn logits_of(m: &PixelCnn, img: &[f32]) -> Vec<f32> {
        let x = Tensor::from_vec(img.to_vec(), (1, 1, 28, 28), &Device::Cpu).unwrap();
        m.logits(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    /// The channels-last two-stack graph (what trains) computes the NCHW
    /// one's logits and gradients (kernels 1, 3 and 5).
    #[test]
    fn stacks_channels_last_matches_nchw() {
        for (seed, kernel) in [(1u64, 3usize), (2, 5), (3, 1)] {
            let m = PixelCnn::new(stacks(3, 2, kernel), seed, &Device::Cpu).unwrap();
            let imgs: Vec<f32> = (0..2).flat_map(|i| random_image(seed * 10 + i)).collect();
            let x = Tensor::from_vec(imgs, (2, 1, 28, 28), &Device::Cpu).unwrap();
            let (a, b) = (m.logits_rows(&x).unwrap(), m.logits_nchw(&x).unwrap());
            let d = (&a - &b).unwrap().abs().unwrap().max_all().unwrap();
            assert!(
                d.to_scalar::<f32>().unwrap() < 1e-4,
                "k {kernel}: logits differ"
            );
            let loss = |l: &Tensor| bce_with_logits(l, &x).unwrap().sum_all().unwrap();
            let (ga, gb) = (loss(&a).backward().unwrap(), loss(&b).backward().unwrap());
            for v in m.varmap().all_vars() {
                let (da, db) = (ga.get(&v).unwrap(), gb.get(&v).unwrap());
                let scale = db
                    .abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                let d = (da - db).unwrap().abs().unwrap().max_all().unwrap();
                let d = d.to_scalar::<f32>().unwrap();
                assert!(
                    d <= 1e-4 * scale.max(1.0),
                    "k {kernel}: gradient differs by {d}"
                );
            }
        }
    }

    #[test]
    fn stacks_layer_specs() {
        let specs = stacks(4, 2, 5).layer_specs();
        let dims: Vec<_> = specs
            .iter()
            .map(|s| {
                let st = s.stack.map(|st| (st.in_v, st.out_v));
                (s.in_c, s.out_c, s.k, s.mask, st)
            })
            .collect();
        assert_eq!(
            dims,
            vec![
                (1, 8, 7, Mask::A, Some((0, 4))),
                (8, 8, 5, Mask::B, Some((4, 4))),
                (8, 4, 5, Mask::B, Some((4, 0))),
                (4, 1, 1, Mask::B, None),
            ]
        );
        // c0: |V| = 1 (the image), 4 rows of 7; 3 horizontal taps, no link.
        assert_eq!((specs[0].v_row_len(), specs[0].h_row_len()), (28, 3));
        // c1: 4 vertical inputs x 3 rows x 5; 4 x 3 taps + 4 links.
        assert_eq!((specs[1].v_row_len(), specs[1].h_row_len()), (60, 16));
        let m = PixelCnn::new(stacks(4, 2, 5), 0, &Device::Cpu).unwrap();
        let layers = m.masked_layers().unwrap();
        let lens: Vec<_> = layers.iter().map(|(_, w, b)| (w.len(), b.len())).collect();
        assert_eq!(
            lens,
            vec![
                (4 * 28 + 4 * 3, 8),
                (4 * 60 + 4 * 16, 8),
                (4 * 16, 4),
                (4, 1)
            ]
        );
        assert_eq!(
            PixelCnn::new(stacks(4, 0, 3), 0, &Device::Cpu)
                .err()
                .map(|e| e.to_string().contains("at least one")),
            Some(true)
        );
        assert!(PixelCnn::new(stacks(4, 1, 4), 0, &Device::Cpu).is_err());
    }

    #[test]
    fn stacks_from_varmap_checks_names() {
        let dev = Device::Cpu;
        let m = PixelCnn::new(stacks(4, 2, 3), 5, &dev).unwrap();
        let mut names: Vec<String> = m.varmap().data().lock().unwrap().keys().cloned().collect();
        names.sort();
        assert_eq!(
            names,
            [
                "c0.bias",
                "c0.h_weight",
                "c0.v_weight",
                "c1.bias",
                "c1.h_weight",
                "c1.v_weight",
                "c2.bias",
                "c2.h_weight",
                "out.bias",
                "out.weight",
            ]
        );
        let tensors = super::super::sorted_tensors(m.varmap()).unwrap();
        let full = super::super::varmap_from_tensors(tensors.clone()).unwrap();
        let back = PixelCnn::from_varmap(stacks(4, 2, 3), full, &dev).unwrap();
        let img = random_image(1);
        assert_eq!(logits_of(&back, &img), logits_of(&m, &img));
        let partial = super::super::varmap_from_tensors(
            tensors.into_iter().filter(|(n, _)| n != "c1.v_weight"),
        )
        .unwrap();
        let err = PixelCnn::from_varmap(stacks(4, 2, 3), partial, &dev)
            .err()
            .unwrap();
        assert!(err.to_string().contains("c1.v_weight"), "{err}");
    }

    /// Two stacks: changing pixel j changes no logit at or before j (bit for
    /// bit), and some logit after it (checked where a whole row follows: a
    /// single later logit may sit behind a dead ReLU).
    #[test]
    fn stacks_causal() {
        for (cfg, seed) in [(stacks(4, 2, 3), 3), (stacks(3, 3, 5), 4)] {
            let m = PixelCnn::new(cfg, seed, &Device::Cpu).unwrap();
            let img = random_image(seed);
            let l0 = logits_of(&m, &img);
            for j in [
                0usize,
                1,
                27,
                28,
                29,
                28 * 5 + 27,
                28 * 6,
                28 * 10 + 13,
                782,
                783,
            ] {
                let mut x = img.clone();
                x[j] = 1.0 - x[j];
                let l = logits_of(&m, &x);
                for q in 0..=j {
                    assert_eq!(
                        l[q].to_bits(),
                        l0[q].to_bits(),
                        "{cfg:?}: pixel {j} leaks into logit {q}"
                    );
                }
                if j < 28 * 27 {
                    assert_ne!(l[j + 1..], l0[j + 1..], "pixel {j} influences nothing");
                }
            }
        }
    }

    /// The vertical stack sees the pixels above and to the right that a
    /// plain masked stack is blind to: the logit at (y, x) depends on
    /// (y - 1, x + 2) (through `c0`'s vertical outputs) and, with one more
    /// 3x3 layer, on (y - 1, x + 4), which no plain PixelCNN can see.
    #[test]
    fn stacks_no_blind_spot() {
        let (y, x) = (10usize, 10usize);
        let at = |yy: usize, xx: usize| yy * 28 + xx;
        let changes = |m: &PixelCnn, p: usize| {
            let img = random_image(9);
            let mut flipped = img.clone();
            flipped[p] = 1.0 - flipped[p];
            logits_of(m, &img)[at(y, x)] != logits_of(m, &flipped)[at(y, x)]
        };
        let one = PixelCnn::new(stacks(8, 1, 3), 1, &Device::Cpu).unwrap();
        assert!(changes(&one, at(y - 1, x + 2)));
        let two = PixelCnn::new(stacks(8, 2, 3), 1, &Device::Cpu).unwrap();
        assert!(changes(&two, at(y - 1, x + 2)));
        assert!(changes(&two, at(y - 1, x + 4)));
        assert!(changes(&two, at(y - 5, x + 4)));
        let plain = PixelCnn::new(
            PixelCnnConfig {
                channels: 8,
                layers: 4,
                ..PixelCnnConfig::default()
            },
            1,
            &Device::Cpu,
        )
        .unwrap();
        assert!(changes(&plain, at(y - 1, x + 3)));
        assert!(!changes(&plain, at(y - 1, x + 4)), "plain: the blind spot");
    }

    #[test]
    fn plain_kernel_option() {
        let cfg = PixelCnnConfig {
            channels: 4,
            layers: 2,
            kernel: 5,
            ..PixelCnnConfig::default()
        };
        let m = PixelCnn::new(cfg, 0, &Device::Cpu).unwrap();
        let ks: Vec<usize> = m.masked_layers().unwrap().iter().map(|l| l.0.k).collect();
        assert_eq!(ks, vec![7, 5, 5, 1]);
        assert_eq!(
            cfg.describe(),
            "PixelCNN (4 channels, 7x7 mask A + 2 5x5 mask B)"
        );
        assert_eq!(
            stacks(32, 6, 3).describe(),
            "PixelCNN (two stacks, 32 channels each, 7x7 + 6 3x3 layers)"
        );
    }

    /// `config.json` written before `arch` and `kernel` existed loads as
    /// the plain architecture with 3x3 kernels.
    #[test]
    fn old_config_is_plain_3x3() {
        let old: PixelCnnConfig = serde_json::from_str(r#"{"channels": 32, "layers": 6}"#).unwrap();
        assert_eq!(
            old,
            PixelCnnConfig {
                channels: 32,
                layers: 6,
                arch: PixelCnnArch::Plain,
                kernel: 3,
            }
        );
        let cfg = stacks(16, 5, 5);
        let json = serde_json::to_string(&cfg).unwrap();
        assert!(json.contains(r#""arch":"stacks""#), "{json}");
        assert_eq!(serde_json::from_str::<PixelCnnConfig>(&json).unwrap(), cfg);
    }
}
