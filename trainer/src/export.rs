//! Export: a float network, layer by layer as it runs on the board, written
//! as a `.tgm` file in f32, f16 or full-integer int8.
//!
//! The file types are the runtime's own ([`tinygen_runtime::format`]); this
//! module only fills them. Every file written is loaded back with
//! [`tinygen_runtime::Model::load`] before it reaches the disk, so the
//! exporter can never write a file the board would reject.
//!
//! int8 calibration runs the float network through the runtime's own f32
//! kernels on calibration inputs and records each tensor's range.

use anyhow::{bail, Context, Result};
use tinygen_runtime::format::{
    self, Act, DType, Figure, Head, Layer, LayerQuant, Meta, ModelFile, ModelKind, Net, Op,
    QParams, Shape, FORMAT_VERSION, MAGIC,
};
use tinygen_runtime::kernels::{self, ConvGeom, F32Le};
use tinygen_runtime::ops;

use crate::quantize::{
    quantize_multiplier, quantize_weight_rows, quantize_weights, range_params, QuantParams,
};

/// One float layer in the runtime's layout (dense `[out][in]`, conv
/// `[out][in][k][k]`, transposed conv `[in][out][k][k]`).
#[derive(Debug, Clone)]
pub struct FloatLayer {
    /// Operation and geometry.
    pub op: Op,
    /// Activation.
    pub act: Act,
    /// Weights.
    pub weight: Vec<f32>,
    /// Bias, one per output channel.
    pub bias: Vec<f32>,
}

/// A float network as it will run on the board.
#[derive(Debug, Clone)]
pub struct FloatNet {
    /// Input shape.
    pub input: Shape,
    /// Layers in order.
    pub layers: Vec<FloatLayer>,
}

/// Weight storage for [`export`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Quant {
    /// f32 weights and activations.
    F32,
    /// f16 weights, f32 activations.
    F16,
    /// Full-integer int8.
    Int8,
}

impl Quant {
    /// The file's dtype.
    pub fn dtype(self) -> DType {
        match self {
            Quant::F32 => DType::F32,
            Quant::F16 => DType::F16,
            Quant::Int8 => DType::I8,
        }
    }
}

/// What the file says about the model besides its network.
#[derive(Debug, Clone)]
pub struct ExportMeta {
    /// Model kind.
    pub kind: ModelKind,
    /// Image shape.
    pub image: Shape,
    /// Latent size.
    pub latent: u16,
    /// Training data description.
    pub data: String,
    /// Quality figures.
    pub figures: Vec<(String, f32)>,
    /// Per-dimension mean and standard deviation of the latent `sample`
    /// draws from; `None` for N(0, I).
    pub prior: Option<(Vec<f32>, Vec<f32>)>,
}

fn shape_numel(s: Shape) -> usize {
    s.c as usize * s.h as usize * s.w as usize
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Output shape of `op` on `s`: the runtime's rule ([`ops::out_shape`]).
fn out_shape(op: &Op, s: Shape) -> Result<Shape> {
    ops::out_shape(op, s).with_context(|| format!("layer {op:?} does not fit its input {s:?}"))
}

/// Geometry of a convolution or transposed convolution on `i`.
fn geom(op: &Op, i: Shape) -> Option<ConvGeom> {
    ops::conv_geom(op, i)
}

/// Geometry of a two-stack convolution over a whole `s`-shaped input.
fn stack_geom(op: &Op, s: Shape) -> Option<kernels::StackGeom> {
    ops::stack_geom(op, s, s.h, s.h)
}

/// Geometry of a Row LSTM over a whole `s`-shaped input.
fn lstm_geom(op: &Op, s: Shape) -> Option<kernels::LstmGeom> {
    ops::lstm_geom(op, s, s.h, s.h)
}

/// Largest |gate pre-activation| of a Row LSTM with input `x` (`[c][h][w]`)
/// whose hidden states were `h_out` (`[hidden][h][w]`): row `y`'s
/// pre-activations are the bias, the input-to-state convolution of row `y`
/// and the state-to-state convolution of row `y - 1` of `h_out`, so they
/// follow from the layer's input and output without rerunning the recurrence.
fn row_lstm_pre_absmax(
    g: &kernels::LstmGeom,
    w: &[f32],
    bias: &[f32],
    x: &[f32],
    h_out: &[f32],
) -> f32 {
    let (hid, wd) = (g.hidden, g.w);
    let mask = if g.mask_b {
        format::Mask::B
    } else {
        format::Mask::A
    };
    let (w_is, w_ss) = w.split_at(g.w_is_len());
    // acc[x] += wt * src[x + t - k/2] for the x where the source is inside the row.
    let taps = |acc: &mut [f32], src: &[f32], wt: f32, t: usize, k: usize| {
        let (lo, hi) = (
            (k / 2).saturating_sub(t),
            (wd + k / 2).saturating_sub(t).min(wd),
        );
        for xx in lo..hi {
            acc[xx] += wt * src[xx + t - k / 2];
        }
    };
    let mut acc = vec![0f32; wd];
    let mut m = 0f32;
    for y in 0..g.h {
        for r in 0..4 * hid {
            acc.fill(bias[r]);
            for i in 0..g.in_c {
                let row = &x[(i * g.h + y) * wd..][..wd];
                for t in (0..g.k_in).filter(|&t| mask.allows_1d(g.k_in, t)) {
                    taps(
                        &mut acc,
                        row,
                        w_is[(r * g.in_c + i) * g.k_in + t],
                        t,
                        g.k_in,
                    );
                }
            }
            if y > 0 {
                for j in 0..hid {
                    let row = &h_out[(j * g.h + y - 1) * wd..][..wd];
                    for t in 0..g.k_state {
                        taps(
                            &mut acc,
                            row,
                            w_ss[(r * hid + j) * g.k_state + t],
                            t,
                            g.k_state,
                        );
                    }
                }
            }
            m = acc.iter().fold(m, |m, a| m.max(a.abs()));
        }
    }
    m
}

/// Beyond this gate pre-activation, int8 sigmoid and tanh tables (steps of
/// 1/128) are saturated to within one step: sigmoid(5) = 0.9933 is 127/128.
pub const ROW_LSTM_PRE_CLIP: f32 = 6.0;

/// The int8 weight blob tail of a Row LSTM with pre-activation scale
/// `s_pre`: `sigmoid[256]`, `tanh[256]` (index q + 128 at scale `s_pre`)
/// and `cell_tanh[512]` (index i + 256, cell state i / 64), all at scale
/// 1/128 (see `Op::RowLstm`).
pub fn row_lstm_luts(s_pre: f64) -> Vec<u8> {
    let mut v = Vec::with_capacity(1024);
    let q8 = |x: f64, lo: f64| (128.0 * x).round().clamp(lo, 127.0) as i8 as u8;
    v.extend((-128i32..=127).map(|q| q8(1.0 / (1.0 + (-s_pre * q as f64).exp()), 0.0)));
    v.extend((-128i32..=127).map(|q| q8((s_pre * q as f64).tanh(), -128.0)));
    v.extend((-256i32..=255).map(|i| q8((i as f64 / 64.0).tanh(), -128.0)));
    v
}

impl FloatNet {
    /// Runs the network on one input with the runtime's f32 kernels and
    /// returns every layer's output (post-activation), in order.
    ///
    /// # Errors
    ///
    /// If the input length or a layer's geometry is wrong.
    pub fn forward_all(&self, input: &[f32]) -> Result<Vec<Vec<f32>>> {
        if input.len() != shape_numel(self.input) {
            bail!(
                "input has {} values, network takes {}",
                input.len(),
                shape_numel(self.input)
            );
        }
        let mut shape = self.input;
        let mut x = input.to_vec();
        let mut outs = Vec::with_capacity(self.layers.len());
        for l in &self.layers {
            let o = out_shape(&l.op, shape)?;
            let relu = l.act == Act::Relu;
            let w = f32_bytes(&l.weight);
            let b = f32_bytes(&l.bias);
            let mut y = vec![0f32; shape_numel(o)];
            match l.op {
                Op::Dense { .. } => kernels::dense_f32(&x, F32Le(&w), &b, &mut y, relu),
                Op::Conv2d { .. } => {
                    let g = geom(&l.op, shape).context("conv geometry")?;
                    kernels::conv2d_f32(&x, &g, F32Le(&w), &b, &mut y, relu)
                }
                Op::ConvTranspose2d { .. } => {
                    let g = geom(&l.op, shape).context("conv geometry")?;
                    kernels::conv_transpose2d_f32(&x, &g, F32Le(&w), &b, &mut y, relu)
                }
                Op::MaskedConv2d { .. } => {
                    let g = ops::masked_geom(&l.op, shape, shape.h, shape.h)
                        .context("masked geometry")?;
                    kernels::masked_conv2d_f32(&x, &g, F32Le(&w), &b, &mut y, relu)
                }
                Op::StackConv2d { .. } => {
                    let g = stack_geom(&l.op, shape).context("two-stack geometry")?;
                    if l.weight.len() != g.weight_len() || shape.c as usize != g.in_c {
                        bail!(
                            "two-stack layer: {} weights on {} input channels, expected {} on {}",
                            l.weight.len(),
                            shape.c,
                            g.weight_len(),
                            g.in_c
                        );
                    }
                    kernels::stack_conv2d_f32(&x, &g, F32Le(&w), &b, &mut y, relu)
                }
                Op::Reshape(_) => y.copy_from_slice(&x),
                Op::RowLstm { .. } => {
                    let g = lstm_geom(&l.op, shape).context("Row LSTM geometry")?;
                    if l.weight.len() != g.w_is_len() + g.w_ss_len() {
                        bail!(
                            "Row LSTM weights: {} values, expected w_is + w_ss",
                            l.weight.len()
                        );
                    }
                    let mut cell = vec![0f32; g.hidden * g.w];
                    kernels::row_lstm_f32(&x, &g, F32Le(&w), &b, &mut y, &mut cell)
                }
            }
            outs.push(y.clone());
            x = y;
            shape = o;
        }
        Ok(outs)
    }
}

/// Owned requantization blobs of one int8 layer.
struct QuantBlobs {
    in_zp: i8,
    out_zp: i8,
    out_scale: f32,
    multiplier: Vec<u8>,
    shift: Vec<u8>,
}

/// Owned blobs of one exported layer.
struct Blobs {
    weight: Vec<u8>,
    bias: Vec<u8>,
    quant: Option<QuantBlobs>,
}

/// Ranges of the input and of every layer output over `calib`. When the
/// output is logits (`logits_out`), its range is clipped to ±16.
///
/// Also returns, per layer, the largest |gate pre-activation| of a Row LSTM
/// (0 for other layers).
fn calibrate(
    net: &FloatNet,
    calib: &[Vec<f32>],
    logits_out: bool,
) -> Result<(QuantParams, Vec<QuantParams>, Vec<f32>)> {
    if calib.is_empty() {
        bail!("int8 export needs calibration inputs");
    }
    let n = net.layers.len();
    let mut lo = vec![f32::INFINITY; n + 1];
    let mut hi = vec![f32::NEG_INFINITY; n + 1];
    let mut pre = vec![0f32; n];
    for x in calib {
        let outs = net.forward_all(x)?;
        let mut shape = net.input;
        for (li, l) in net.layers.iter().enumerate() {
            if let Some(g) = lstm_geom(&l.op, shape) {
                let inp = if li == 0 { x } else { &outs[li - 1] };
                let m = row_lstm_pre_absmax(&g, &l.weight, &l.bias, inp, &outs[li]);
                if !m.is_finite() {
                    bail!("non-finite Row LSTM pre-activation during calibration (layer {li})");
                }
                pre[li] = pre[li].max(m);
            }
            shape = out_shape(&l.op, shape)?;
        }
        for (t, v) in std::iter::once(x).chain(outs.iter()).enumerate() {
            for &a in v {
                if !a.is_finite() {
                    bail!("non-finite activation during calibration (tensor {t})");
                }
                lo[t] = lo[t].min(a);
                hi[t] = hi[t].max(a);
            }
        }
    }
    if logits_out {
        // The last tensor holds logits: beyond +-16 the sigmoid is 0 or 1 to
        // within 1e-7, so spending int8 steps there only costs resolution.
        lo[n] = lo[n].max(-16.0);
        hi[n] = hi[n].min(16.0);
    }
    let params: Vec<QuantParams> = (0..=n).map(|t| range_params(lo[t], hi[t])).collect();
    Ok((params[0], params[1..].to_vec(), pre))
}

/// Which weights each output channel owns, for per-channel int8 scales.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ChannelRows {
    /// `outer` blocks of `channels` blocks of `inner` weights (see
    /// [`quantize_weights`]): dense, convolutions, transposed convolutions.
    Blocks {
        outer: usize,
        channels: usize,
        inner: usize,
    },
    /// One contiguous row per output channel, of these lengths, in order:
    /// a two-stack convolution's vertical rows, then its horizontal ones.
    Rows(Vec<usize>),
}

impl ChannelRows {
    /// Per-channel symmetric int8 weights and scales of `w`.
    fn quantize(&self, w: &[f32]) -> (Vec<u8>, Vec<f32>) {
        match *self {
            ChannelRows::Blocks {
                outer,
                channels,
                inner,
            } => quantize_weights(w, outer, channels, inner),
            ChannelRows::Rows(ref lens) => quantize_weight_rows(w, lens),
        }
    }
}

/// The per-output-channel weight layout of `op`; `None` for layers without
/// per-channel weights (reshape; the Row LSTM has its own path).
fn channel_rows(op: &Op) -> Option<ChannelRows> {
    if let Some((outer, channels, inner)) = ops::weight_blocks(op) {
        return Some(ChannelRows::Blocks {
            outer,
            channels,
            inner,
        });
    }
    let Op::StackConv2d { in_c, .. } = *op else {
        return None;
    };
    // The image size does not matter for the row lengths.
    let g = stack_geom(
        op,
        Shape {
            c: in_c,
            h: 1,
            w: 1,
        },
    )?;
    let mut rows = vec![g.v_row_len(); g.out_v];
    rows.resize(g.out_c, g.h_row_len());
    Some(ChannelRows::Rows(rows))
}

/// Owned blobs of one exported network.
struct NetBlobs {
    layers: Vec<Blobs>,
    input_q: Option<QParams>,
    /// int8: the logit -> pixel table of a `logits_out` network.
    lut: Vec<u8>,
}

/// The blobs of `net` stored as `quant` (int8 calibrated on `calib`).
fn net_blobs(
    net: &FloatNet,
    quant: Quant,
    calib: &[Vec<f32>],
    logits_out: bool,
) -> Result<NetBlobs> {
    let mut blobs = Vec::with_capacity(net.layers.len());
    let mut input_q = None;
    let mut lut = Vec::new();
    match quant {
        Quant::F32 | Quant::F16 => {
            for l in &net.layers {
                let weight = if quant == Quant::F32 {
                    f32_bytes(&l.weight)
                } else {
                    l.weight
                        .iter()
                        .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
                        .collect()
                };
                let bias = if ops::is_view(&l.op) {
                    Vec::new()
                } else {
                    f32_bytes(&l.bias)
                };
                blobs.push(Blobs {
                    weight,
                    bias,
                    quant: None,
                });
            }
        }
        Quant::Int8 => {
            let (inp, outs, pre) = calibrate(net, calib, logits_out)?;
            input_q = Some(QParams {
                scale: inp.scale,
                zero_point: inp.zero_point,
            });
            let mut cur = inp;
            for (li, (l, &outq)) in net.layers.iter().zip(&outs).enumerate() {
                if let Op::RowLstm {
                    in_c,
                    hidden,
                    k_in,
                    k_state,
                    ..
                } = l.op
                {
                    let (b, q) = row_lstm_int8(
                        l,
                        (
                            in_c as usize,
                            hidden as usize,
                            k_in as usize,
                            k_state as usize,
                        ),
                        cur,
                        pre[li],
                    )
                    .with_context(|| format!("layer {li} (Row LSTM)"))?;
                    blobs.push(b);
                    cur = q;
                    continue;
                }
                let Some(rows) = channel_rows(&l.op) else {
                    // A reshape keeps its input's quantization.
                    blobs.push(Blobs {
                        weight: Vec::new(),
                        bias: Vec::new(),
                        quant: None,
                    });
                    continue;
                };
                let outq = if l.act == Act::Relu {
                    // ReLU output: zero point at the bottom of the range.
                    QuantParams {
                        scale: outq.scale,
                        zero_point: -128,
                    }
                } else {
                    outq
                };
                let (w, ws) = rows.quantize(&l.weight);
                let ch = ws.len();
                if l.bias.len() != ch {
                    bail!(
                        "layer {}: {} biases for {ch} output channels",
                        blobs.len(),
                        l.bias.len()
                    );
                }
                let mut bias = Vec::with_capacity(ch * 4);
                let mut mult = Vec::with_capacity(ch * 4);
                let mut shift = Vec::with_capacity(ch);
                for (c, (&w_scale, &b_real)) in ws.iter().zip(&l.bias).enumerate() {
                    let acc_scale = cur.scale as f64 * w_scale as f64;
                    let b = (b_real as f64 / acc_scale).round();
                    if b.abs() > (1u64 << 30) as f64 {
                        bail!(
                            "layer {}: bias {b_real} of channel {c} does not fit the int8 \
                             accumulator (scale {acc_scale:e}); calibration ranges are degenerate",
                            blobs.len()
                        );
                    }
                    bias.extend_from_slice(&(b as i32).to_le_bytes());
                    let (m, s) = quantize_multiplier(acc_scale / outq.scale as f64);
                    mult.extend_from_slice(&m.to_le_bytes());
                    shift.push(s);
                }
                blobs.push(Blobs {
                    weight: w,
                    bias,
                    quant: Some(QuantBlobs {
                        in_zp: cur.zero_point,
                        out_zp: outq.zero_point,
                        out_scale: outq.scale,
                        multiplier: mult,
                        shift,
                    }),
                });
                cur = outq;
            }
            if logits_out {
                // Logit -> pixel table, exact sigmoid computed here.
                lut = (-128i32..=127)
                    .map(|q| {
                        let logit = cur.scale as f64 * (q - cur.zero_point as i32) as f64;
                        let p = 1.0 / (1.0 + (-logit).exp());
                        (p * 255.0 + 0.5).floor().clamp(0.0, 255.0) as u8
                    })
                    .collect();
            }
        }
    }
    Ok(NetBlobs {
        layers: blobs,
        input_q,
        lut,
    })
}

/// int8 blobs of a Row LSTM `l` (geometry `(in_c, hidden, k_in, k_state)`)
/// whose input is quantized as `inp` and whose largest calibrated |gate
/// pre-activation| is `pre_absmax`, and its output's quantization (always
/// scale 1/128, zero point 0).
///
/// Pre-activation scale `s_pre = min(pre_absmax, ROW_LSTM_PRE_CLIP) / 127`;
/// per gate row `r`: `w_is` and `w_ss` int8 per row, bias i32 at
/// `s_in * s_wis[r]`, multipliers for `s_in * s_wis[r] / s_pre` (rows
/// `0..4H`) and `s_wss[r] / 128 / s_pre` (rows `4H..8H`); the three tables
/// appended to the weights.
fn row_lstm_int8(
    l: &FloatLayer,
    (in_c, hidden, k_in, k_state): (usize, usize, usize, usize),
    inp: QuantParams,
    pre_absmax: f32,
) -> Result<(Blobs, QuantParams)> {
    let gates = 4 * hidden;
    let n_is = gates * in_c * k_in;
    if l.weight.len() != n_is + gates * hidden * k_state || l.bias.len() != gates {
        bail!("Row LSTM weights or bias of the wrong size");
    }
    let s_pre = (pre_absmax.clamp(1e-3, ROW_LSTM_PRE_CLIP) / 127.0) as f64;
    let (wis, s_is) = quantize_weights(&l.weight[..n_is], 1, gates, in_c * k_in);
    let (wss, s_ss) = quantize_weights(&l.weight[n_is..], 1, gates, hidden * k_state);
    let mut weight = wis;
    weight.extend_from_slice(&wss);
    weight.extend_from_slice(&row_lstm_luts(s_pre));
    let mut bias = Vec::with_capacity(gates * 4);
    let mut mult = Vec::with_capacity(gates * 8);
    let mut shift = Vec::with_capacity(gates * 2);
    for (r, (&ws, &b_real)) in s_is.iter().zip(&l.bias).enumerate() {
        let acc_scale = inp.scale as f64 * ws as f64;
        let b = (b_real as f64 / acc_scale).round();
        if b.abs() > (1u64 << 30) as f64 {
            bail!("bias {b_real} of gate row {r} does not fit the int8 accumulator (scale {acc_scale:e})");
        }
        bias.extend_from_slice(&(b as i32).to_le_bytes());
        let (m, s) = quantize_multiplier(acc_scale / s_pre);
        mult.extend_from_slice(&m.to_le_bytes());
        shift.push(s);
    }
    for &ws in &s_ss {
        let (m, s) = quantize_multiplier(ws as f64 / 128.0 / s_pre);
        mult.extend_from_slice(&m.to_le_bytes());
        shift.push(s);
    }
    let out = QuantParams {
        scale: 1.0 / 128.0,
        zero_point: 0,
    };
    Ok((
        Blobs {
            weight,
            bias,
            quant: Some(QuantBlobs {
                in_zp: inp.zero_point,
                out_zp: 0,
                out_scale: out.scale,
                multiplier: mult,
                shift,
            }),
        },
        out,
    ))
}

/// The file's view of `net` over its owned blobs.
fn net_ref<'a>(net: &FloatNet, b: &'a NetBlobs, head: Head<'a>) -> Result<Net<'a>> {
    let mut layers = heapless::Vec::<Layer<'_>, { format::MAX_LAYERS }>::new();
    for (l, b) in net.layers.iter().zip(&b.layers) {
        let layer = Layer {
            op: l.op,
            act: l.act,
            weight: &b.weight,
            bias: &b.bias,
            quant: b.quant.as_ref().map(|q| LayerQuant {
                in_zp: q.in_zp,
                out_zp: q.out_zp,
                out_scale: q.out_scale,
                multiplier: &q.multiplier,
                shift: &q.shift,
            }),
        };
        if layers.push(layer).is_err() {
            bail!("more than {} layers", format::MAX_LAYERS);
        }
    }
    Ok(Net {
        input: net.input,
        input_q: b.input_q,
        layers,
        head,
    })
}

/// Writes `net` as a model file.
///
/// `calib` holds calibration inputs (required for int8, ignored otherwise).
///
/// # Errors
///
/// If the network is malformed, calibration sees non-finite values, or the
/// runtime rejects the result.
pub fn export(
    net: &FloatNet,
    meta: &ExportMeta,
    quant: Quant,
    calib: &[Vec<f32>],
) -> Result<Vec<u8>> {
    export_with_encoder(net, None, meta, quant, calib)
}

/// An encoder network to store next to the decoder (the AutoEncoder's),
/// with its own int8 calibration inputs (images as the runtime's
/// `Encoder` feeds them: pixel / 255).
#[derive(Debug, Clone, Copy)]
pub struct EncoderExport<'a> {
    /// The encoder: image shape in, latent out (head `Raw`).
    pub net: &'a FloatNet,
    /// Calibration inputs for int8.
    pub calib: &'a [Vec<f32>],
}

/// [`export`] plus, if given, an encoder (`ModelFile::encoder`, head `Raw`,
/// int8 calibrated on `encoder.calib`).
///
/// # Errors
///
/// As [`export`].
pub fn export_with_encoder(
    net: &FloatNet,
    encoder: Option<EncoderExport<'_>>,
    meta: &ExportMeta,
    quant: Quant,
    calib: &[Vec<f32>],
) -> Result<Vec<u8>> {
    let dtype = quant.dtype();
    let dec = net_blobs(net, quant, calib, true)?;
    let enc = match encoder {
        Some(e) => Some((e.net, net_blobs(e.net, quant, e.calib, false)?)),
        None => None,
    };
    let mut figures = heapless::Vec::new();
    for (name, value) in &meta.figures {
        if figures
            .push(Figure {
                name: name.as_str(),
                value: *value,
            })
            .is_err()
        {
            bail!("more than {} quality figures", format::MAX_FIGURES);
        }
    }
    let (prior_mean, prior_std) = match &meta.prior {
        Some((m, s)) => (f32_bytes(m), f32_bytes(s)),
        None => (Vec::new(), Vec::new()),
    };
    let head = if quant == Quant::Int8 {
        Head::SigmoidLut(&dec.lut)
    } else {
        Head::Sigmoid
    };
    let mut file = ModelFile {
        magic: MAGIC,
        version: FORMAT_VERSION,
        kind: meta.kind,
        dtype,
        meta: Meta {
            image: meta.image,
            latent: meta.latent,
            data: &meta.data,
            figures,
            prior_mean: &prior_mean,
            prior_std: &prior_std,
        },
        decoder: net_ref(net, &dec, head)?,
        encoder: match &enc {
            Some((n, b)) => Some(net_ref(n, b, Head::Raw)?),
            None => None,
        },
    };
    // The oldest version that holds the file: old runtimes read every file
    // without a two-stack layer.
    file.version = file.min_version();
    let cap = dec
        .layers
        .iter()
        .chain(enc.iter().flat_map(|(_, b)| b.layers.iter()))
        .map(|b| {
            let q = b
                .quant
                .as_ref()
                .map_or(0, |q| q.multiplier.len() + q.shift.len());
            b.weight.len() + b.bias.len() + q + 1024
        })
        .sum::<usize>()
        + dec.lut.len()
        + meta.data.len()
        + prior_mean.len() * 2
        + 8192;
    let mut buf = vec![0u8; cap];
    let bytes = format::encode(&file, &mut buf)
        .map_err(|e| anyhow::anyhow!("encoding the model file: {e}"))?
        .to_vec();
    tinygen_runtime::Model::load(&bytes)
        .map_err(|e| anyhow::anyhow!("the runtime rejects the exported file: {e}"))?;
    Ok(bytes)
}

/// The VAE decoder as the board runs it: `dec.fc` (ReLU), reshape to
/// (32, 7, 7), `dec.up1` (ReLU), `dec.up2` (logits).
///
/// # Errors
///
/// If a decoder tensor is missing or has an unexpected shape.
pub fn vae_decoder_net(vae: &crate::models::vae::Vae) -> Result<FloatNet> {
    use crate::models::vae::{DEC_CHANNELS, DEC_KERNEL, DEC_SIDE, DEC_UP1_CHANNELS};
    Ok(crate::models::ae::upconv_decoder_net(
        &vae.decoder_tensors()?,
        "dec",
        vae.latent(),
        (DEC_CHANNELS, DEC_UP1_CHANNELS, DEC_SIDE, DEC_KERNEL),
    )?)
}

/// The VAE encoder q(z|x) as the board runs it: the autoencoder's
/// convolutional encoder ([`crate::models::ae::conv_encoder_net`]) with
/// 2·latent outputs, [mean ‖ log-variance].
///
/// # Errors
///
/// If an encoder tensor is missing or has an unexpected shape.
pub fn vae_encoder_net(vae: &crate::models::vae::Vae) -> Result<FloatNet> {
    Ok(crate::models::ae::conv_encoder_net(
        &vae.encoder_tensors()?,
        2 * vae.latent(),
    )?)
}
