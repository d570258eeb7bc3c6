//! PixelRNN helpers: an f64 oracle of the Row LSTM (and of the masked
//! convolution it is stacked with), the int8 Row LSTM lookup tables, and
//! random tiny PixelRNN and PixelCNN (masked or two-stack) files in f32,
//! f16 and int8, all from one builder ([`random_autoregressive`]).
//!
//! The oracle is the formula of `Op::RowLstm` (runtime/src/format.rs) in
//! f64 with exact `exp`/`tanh`, written independently of the runtime's
//! kernels: plain loops over whole rows, gates as four arrays.

use tinygen_runtime::format::{
    self, Act, DType, Head, Layer, LayerQuant, Mask, Meta, ModelFile, ModelKind, Net, Op, QParams,
    Shape, MAGIC,
};
use tinygen_runtime::Rng;

/// A Row LSTM's parameters in f64: `w_is [4H][in_c][k_in]` (masked taps are
/// ignored whatever they hold), `w_ss [4H][H][k_state]`, `bias [4H]`, gate
/// rows in the order i, f, o, g.
#[derive(Debug, Clone)]
pub struct LstmParams {
    /// Input channels.
    pub in_c: usize,
    /// Hidden channels.
    pub hidden: usize,
    /// Input-to-state kernel width.
    pub k_in: usize,
    /// Mask of the input-to-state kernel.
    pub mask: Mask,
    /// State-to-state kernel width.
    pub k_state: usize,
    /// Input-to-state weights.
    pub w_is: Vec<f64>,
    /// State-to-state weights.
    pub w_ss: Vec<f64>,
    /// Biases.
    pub bias: Vec<f64>,
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

impl LstmParams {
    /// The pre-activations of row `y` (`[4H][w]`) from the input `x`
    /// (`[in_c][h][w]`) and the previous row of hidden states `h_prev`
    /// (`[H][w]`, zeros for row 0).
    pub fn pre_activations(
        &self,
        x: &[f64],
        h: usize,
        w: usize,
        y: usize,
        h_prev: &[f64],
    ) -> Vec<f64> {
        let (hid, ci, cs) = (self.hidden, self.k_in / 2, self.k_state / 2);
        let mut pre = vec![0f64; 4 * hid * w];
        for r in 0..4 * hid {
            for col in 0..w {
                let mut acc = self.bias[r];
                for i in 0..self.in_c {
                    for t in 0..self.k_in {
                        let xc = col as isize + t as isize - ci as isize;
                        if !self.mask.allows_1d(self.k_in, t) || xc < 0 || xc >= w as isize {
                            continue;
                        }
                        acc += self.w_is[(r * self.in_c + i) * self.k_in + t]
                            * x[(i * h + y) * w + xc as usize];
                    }
                }
                for j in 0..hid {
                    for t in 0..self.k_state {
                        let xc = col as isize + t as isize - cs as isize;
                        if xc < 0 || xc >= w as isize {
                            continue;
                        }
                        acc += self.w_ss[(r * hid + j) * self.k_state + t]
                            * h_prev[j * w + xc as usize];
                    }
                }
                pre[r * w + col] = acc;
            }
        }
        pre
    }

    /// The layer over a whole `in_c x h x w` input: `[H][h][w]` hidden
    /// states, exact sigmoid and tanh.
    pub fn forward(&self, x: &[f64], h: usize, w: usize) -> Vec<f64> {
        let hid = self.hidden;
        let mut out = vec![0f64; hid * h * w];
        let (mut h_prev, mut c) = (vec![0f64; hid * w], vec![0f64; hid * w]);
        for y in 0..h {
            let pre = self.pre_activations(x, h, w, y, &h_prev);
            for j in 0..hid {
                for col in 0..w {
                    let g = |q: usize| pre[(q * hid + j) * w + col];
                    let (i, f, o, gg) = (sigmoid(g(0)), sigmoid(g(1)), sigmoid(g(2)), g(3).tanh());
                    let k = j * w + col;
                    c[k] = f * c[k] + i * gg;
                    h_prev[k] = o * c[k].tanh();
                    out[(j * h + y) * w + col] = h_prev[k];
                }
            }
        }
        out
    }
}

/// A masked convolution in f64 over `in_c x h x w` (weights
/// `[out_c][in_c][k][k]`, masked taps ignored), optionally with ReLU.
#[allow(clippy::too_many_arguments)]
pub fn masked_conv_f64(
    x: &[f64],
    in_c: usize,
    h: usize,
    w: usize,
    wt: &[f64],
    bias: &[f64],
    k: usize,
    mask: Mask,
    relu: bool,
) -> Vec<f64> {
    let out_c = bias.len();
    let c = k / 2;
    let mut out = vec![0f64; out_c * h * w];
    for o in 0..out_c {
        for y in 0..h {
            for xp in 0..w {
                let mut acc = bias[o];
                for i in 0..in_c {
                    for ky in 0..k {
                        for kx in 0..k {
                            let (iy, ix) = (
                                (y + ky) as isize - c as isize,
                                (xp + kx) as isize - c as isize,
                            );
                            if !mask.allows(k, ky, kx)
                                || iy < 0
                                || ix < 0
                                || iy >= h as isize
                                || ix >= w as isize
                            {
                                continue;
                            }
                            acc += wt[((o * in_c + i) * k + ky) * k + kx]
                                * x[(i * h + iy as usize) * w + ix as usize];
                        }
                    }
                }
                out[(o * h + y) * w + xp] = if relu { acc.max(0.0) } else { acc };
            }
        }
    }
    out
}

/// The three int8 tables of a Row LSTM (1024 bytes, appended to its weight
/// blob): `sigmoid[p + 128]` and `tanh[p + 128]` of the pre-activation
/// `p * pre_scale`, and `cell_tanh[i + 256] = tanh(i / 64)`, all as
/// `round(128 * value)` clamped to the i8 range (so 1.0 becomes 127).
pub fn lstm_luts(pre_scale: f64) -> Vec<u8> {
    let q = |v: f64| (128.0 * v).round().clamp(-128.0, 127.0) as i8 as u8;
    let mut t: Vec<u8> = (-128..128)
        .map(|p| q(sigmoid(p as f64 * pre_scale)))
        .collect();
    t.extend((-128..128).map(|p| q((p as f64 * pre_scale).tanh())));
    t.extend((-256..256).map(|i| q((i as f64 / 64.0).tanh())));
    t
}

/// One layer of a random autoregressive network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerSpec {
    /// Masked convolution `in_c -> out_c`, kernel `k`, with its mask and
    /// activation.
    Conv(u16, u16, u8, Mask, Act),
    /// Row LSTM `in_c -> hidden`, `k_in`, mask, `k_state`.
    Lstm(u16, u16, u8, Mask, u8),
    /// Two-stack convolution `in_c` (of which `in_v` vertical) -> `out_c`
    /// (of which `out_v` vertical), kernel `k`, mask of the horizontal
    /// taps, activation.
    Stack(u16, u16, u16, u16, u8, Mask, Act),
}

/// The shape of a random PixelRNN as the trainer builds them: the first
/// layer (a mask A convolution of kernel `k0` to `chans`, or with
/// `lstm_first` a mask A Row LSTM of `k_in = k0` to `hidden`), `lstms` Row
/// LSTMs to `hidden` (k_in 3, mask B, k_state 3), a mask B convolution of
/// kernel `k_out` to `chans` with ReLU, and a 1x1 to one logit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RnnShape {
    /// Channels of the convolutions.
    pub chans: u16,
    /// Hidden channels of the Row LSTMs.
    pub hidden: u16,
    /// First layer's kernel.
    pub k0: u8,
    /// A Row LSTM first rather than a convolution.
    pub lstm_first: bool,
    /// Row LSTMs after the first layer.
    pub lstms: usize,
    /// Kernel of the convolution after the LSTMs.
    pub k_out: u8,
}

impl RnnShape {
    /// The layers.
    pub fn layers(&self) -> Vec<LayerSpec> {
        let mut v = Vec::new();
        let mut c = if self.lstm_first {
            v.push(LayerSpec::Lstm(1, self.hidden, self.k0, Mask::A, 3));
            self.hidden
        } else {
            v.push(LayerSpec::Conv(1, self.chans, self.k0, Mask::A, Act::Relu));
            self.chans
        };
        for _ in 0..self.lstms {
            v.push(LayerSpec::Lstm(c, self.hidden, 3, Mask::B, 3));
            c = self.hidden;
        }
        v.push(LayerSpec::Conv(
            c,
            self.chans,
            self.k_out,
            Mask::B,
            Act::Relu,
        ));
        v.push(LayerSpec::Conv(self.chans, 1, 1, Mask::B, Act::None));
        v
    }
}

/// A random PixelRNN file of `shape` over a 1 x `h` x `w` image.
pub fn random_pixelrnn(seed: u64, dtype: DType, h: u16, w: u16, shape: RnnShape) -> Vec<u8> {
    random_autoregressive(seed, dtype, h, w, ModelKind::PixelRnn, &shape.layers())
}

/// The shape of a random two-stack PixelCNN as the trainer builds them: a
/// mask A stack layer of kernel `k0` from the image to `chans` vertical and
/// `chans` horizontal channels, `hidden` mask B stack layers of kernel `k`
/// (`2 * chans -> 2 * chans`, the last to its `chans` horizontal channels
/// only), all with ReLU, and a 1x1 to one logit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StackShape {
    /// Channels of each stack.
    pub chans: u16,
    /// First layer's kernel.
    pub k0: u8,
    /// Kernel of the mask B stack layers.
    pub k: u8,
    /// Mask B stack layers after the first.
    pub hidden: usize,
}

impl StackShape {
    /// The layers.
    pub fn layers(&self) -> Vec<LayerSpec> {
        let c = self.chans;
        // Vertical channels out of layer `i` (0: the first).
        let out_v = |i: usize| if i == self.hidden { 0 } else { c };
        let mut v = vec![LayerSpec::Stack(
            1,
            0,
            c + out_v(0),
            out_v(0),
            self.k0,
            Mask::A,
            Act::Relu,
        )];
        for i in 1..=self.hidden {
            let in_v = out_v(i - 1);
            v.push(LayerSpec::Stack(
                c + in_v,
                in_v,
                c + out_v(i),
                out_v(i),
                self.k,
                Mask::B,
                Act::Relu,
            ));
        }
        v.push(LayerSpec::Conv(c, 1, 1, Mask::B, Act::None));
        v
    }
}

/// A random two-stack PixelCNN file (format version 2) of `shape` over a
/// 1 x `h` x `w` image.
pub fn random_stacks(seed: u64, dtype: DType, h: u16, w: u16, shape: StackShape) -> Vec<u8> {
    random_autoregressive(seed, dtype, h, w, ModelKind::PixelCnn, &shape.layers())
}

/// Owned blobs of one layer.
struct Blobs {
    op: Op,
    act: Act,
    weight: Vec<u8>,
    bias: Vec<u8>,
    mult: Vec<u8>,
    shift: Vec<u8>,
    zps: (i8, i8),
    out_scale: f32,
}

/// A random PixelCNN or PixelRNN file of `layers` over a 1 x `h` x `w`
/// image, well formed: float weights uniform in `±2 / sqrt(fan_in)`, float
/// biases in `±0.25`; int8 weights uniform codes, biases in `±10000`,
/// multipliers in `[2^30, 2^31)` with shifts 40..=42 (an accumulator scale
/// of 2^-10..2^-12, which keeps the codes inside their range without
/// saturating), Row LSTM tables from [`lstm_luts`] at pre-activation scale
/// 1/16, the int8 Row LSTM's output at scale 1/128 and zero point 0 as the
/// format requires.
pub fn random_autoregressive(
    seed: u64,
    dtype: DType,
    h: u16,
    w: u16,
    kind: ModelKind,
    layers: &[LayerSpec],
) -> Vec<u8> {
    let mut r = Rng::new(seed);
    let mut blobs = Vec::new();
    let mut zp_in: i8 = -128;
    for &spec in layers {
        let (op, act, n, channels, fan, qc) = match spec {
            LayerSpec::Conv(in_c, out_c, k, mask, act) => (
                Op::MaskedConv2d {
                    in_c,
                    out_c,
                    k,
                    mask,
                },
                act,
                in_c as usize * out_c as usize * k as usize * k as usize,
                out_c,
                (in_c as f32 * k as f32 * k as f32).sqrt(),
                out_c,
            ),
            LayerSpec::Lstm(in_c, hidden, k_in, mask, k_state) => (
                Op::RowLstm {
                    in_c,
                    hidden,
                    k_in,
                    mask,
                    k_state,
                },
                Act::None,
                4 * hidden as usize
                    * (in_c as usize * k_in as usize + hidden as usize * k_state as usize),
                4 * hidden,
                (in_c as f32 * k_in as f32 + hidden as f32 * k_state as f32).sqrt(),
                8 * hidden,
            ),
            LayerSpec::Stack(in_c, in_v, out_c, out_v, k, mask, act) => {
                let c = k as usize / 2;
                let v_src = if in_v == 0 { in_c } else { in_v };
                (
                    Op::StackConv2d {
                        in_c,
                        in_v,
                        out_c,
                        out_v,
                        k,
                        mask,
                    },
                    act,
                    crate::stack_weight_len(
                        in_c.into(),
                        in_v.into(),
                        out_c.into(),
                        out_v.into(),
                        k.into(),
                        mask == Mask::B,
                    ),
                    out_c,
                    // The vertical rows' fan-in, the larger.
                    (v_src as f32 * (c + 1) as f32 * k as f32).sqrt(),
                    out_c,
                )
            }
        };
        let lstm = matches!(op, Op::RowLstm { .. });
        let b = match dtype {
            DType::I8 => {
                let mut weight: Vec<u8> = (0..n).map(|_| r.next_u32() as u8).collect();
                if lstm {
                    weight.extend(lstm_luts(1.0 / 16.0));
                }
                let out_zp = if lstm {
                    0
                } else if act == Act::Relu {
                    -128
                } else {
                    (r.next_u32() % 40) as i8 - 20
                };
                let zps = (zp_in, out_zp);
                zp_in = out_zp;
                Blobs {
                    op,
                    act,
                    weight,
                    bias: (0..channels)
                        .flat_map(|_| ((r.next_u32() % 20001) as i32 - 10000).to_le_bytes())
                        .collect(),
                    mult: (0..qc)
                        .flat_map(|_| ((1u32 << 30) + (r.next_u32() >> 2)).to_le_bytes())
                        .collect(),
                    shift: (0..qc).map(|_| 40 + (r.next_u32() % 3) as u8).collect(),
                    zps,
                    out_scale: if lstm { 1.0 / 128.0 } else { 0.05 },
                }
            }
            DType::F32 | DType::F16 => {
                let mut weight = Vec::new();
                for _ in 0..n {
                    let v = (r.uniform() * 2.0 - 1.0) * 2.0 / fan;
                    if dtype == DType::F32 {
                        weight.extend_from_slice(&v.to_le_bytes());
                    } else {
                        weight.extend_from_slice(&half::f16::from_f32(v).to_le_bytes());
                    }
                }
                Blobs {
                    op,
                    act,
                    weight,
                    bias: (0..channels)
                        .flat_map(|_| ((r.uniform() - 0.5) * 0.5).to_le_bytes())
                        .collect(),
                    mult: Vec::new(),
                    shift: Vec::new(),
                    zps: (0, 0),
                    out_scale: 1.0,
                }
            }
        };
        blobs.push(b);
    }
    let lut: Vec<u8> = (0..=255u8).collect();
    let image = Shape { c: 1, h, w };
    let mut file = ModelFile {
        magic: MAGIC,
        version: 1,
        kind,
        dtype,
        meta: Meta {
            image,
            latent: 0,
            data: "random (tinygen_tests::pixelrnn)",
            figures: Default::default(),
            prior_mean: &[],
            prior_std: &[],
        },
        decoder: Net {
            input: image,
            input_q: (dtype == DType::I8).then_some(QParams {
                scale: 1.0 / 255.0,
                zero_point: -128,
            }),
            layers: Default::default(),
            head: if dtype == DType::I8 {
                Head::SigmoidLut(&lut)
            } else {
                Head::Sigmoid
            },
        },
        encoder: None,
    };
    for b in &blobs {
        let quant = (dtype == DType::I8).then(|| LayerQuant {
            in_zp: b.zps.0,
            out_zp: b.zps.1,
            out_scale: b.out_scale,
            multiplier: &b.mult,
            shift: &b.shift,
        });
        file.decoder
            .layers
            .push(Layer {
                op: b.op,
                act: b.act,
                weight: &b.weight,
                bias: &b.bias,
                quant,
            })
            .expect("at most MAX_LAYERS layers");
    }
    // Version 1 unless a layer needs version 2 (a two-stack convolution).
    file.version = file.min_version();
    let mut buf = vec![0u8; 1 << 22];
    format::encode(&file, &mut buf)
        .expect("fits 4 MiB")
        .to_vec()
}
