//! The runtime's reference kernels against candle.
//!
//! Every case (a proptest draw or a named edge case) runs the same checks:
//!
//! - **f32** (`F32Le` weights): against candle in f32, [`Approximation::Close`].
//! - **f16** (`F16Le` weights): against candle on the f16-rounded weights,
//!   [`Approximation::F16`]; and against candle on the *unrounded* weights
//!   within the derived bound `2⁻¹¹·Σ|w||x| + 2⁻²⁵·Σ|x| + Close`: rounding to
//!   f16 moves a normal weight by at most half an ulp, `2⁻¹¹·|w|`, and a
//!   subnormal one (`|w| < 2⁻¹⁴`) by at most `2⁻²⁵`; the error of a sum of
//!   products is at most the sum of those moves times `|x|`, and ReLU is
//!   1-Lipschitz. `Σ|w||x|` is candle's own convolution of `|x|` by `|w|`.
//! - **int8** (weights quantized per output channel by the trainer's
//!   `quantize_weights`, input and output per tensor by `range_params` over
//!   the case's own values, multipliers by `quantize_multiplier`, bias as the
//!   exporter does):
//!   - [`Approximation::Exact`] against an integer re-implementation: the
//!     accumulator is candle's f64 convolution of `(q - zp)` by the int8
//!     weights (every product and partial sum is an integer below 2⁵³, so
//!     f64 is exact), plus the i32 bias, then requantized in i128 with
//!     floor division (the runtime uses an arithmetic shift on i64);
//!   - against the float oracle (candle, f64, unquantized values) in output
//!     steps, within `QuantStep(1)` plus the quantization error of the
//!     accumulator, derived below in [`int8_bound`].
//! - **Two-stack convolution** (`stack_conv2d_f32`, `_i8`): the same
//!   checks, the oracle being candle's convolution by the compact blob
//!   spread over a dense kernel (zero where the op reads nothing) plus a
//!   1x1 convolution of the input shifted down one row for the vertical
//!   link (`tinygen_tests::stack_weights`); int8 weights per output row
//!   (`quantize_weight_rows`: the vertical and horizontal rows differ in
//!   length). Besides, the full-map kernels give the very bits of the
//!   per-position and per-row kernels run over row buffers as the
//!   incremental sampler runs them (`stack_incremental_case`).
//! - **Row LSTM** (`row_lstm_f32`, `_i8`; module `row_lstm` at the end):
//!   against an f64 oracle of the format's formula (candle has no Row
//!   LSTM), f32 `Close`, f16 `F16` on the rounded weights, int8 `Exact`
//!   against an integer transcription and within a per-element bound
//!   propagated row by row against the f64 oracle of the dequantized layer.

use candle_core::{DType, Device, Tensor};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tinygen_runtime::format::Mask;
use tinygen_runtime::kernels::{
    self, ConvGeom, F16Le, F32Le, FloatWeights, MaskedGeom, RequantI8, StackGeom,
};
use tinygen_tests::{
    add_channel_bias, assert_close, assert_within, chw, conv_t_weight, conv_weight, dense_weight,
    f16_le, f16_round, f32_le, i32_le, nchw, stack_conv2d, stack_row_lens, stack_weight_len,
    stack_weights, Approximation,
};
use tinygen_trainer::quantize::{
    quantize, quantize_multiplier, quantize_weight_rows, quantize_weights, range_params,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dense,
    Conv,
    ConvT,
    /// Masked convolution (PixelCNN), mask B if `true`, else mask A: stride
    /// 1, padding k/2, odd k. The case's weights have the masked taps set
    /// to zero (`mask_weights`), so candle's plain conv2d is the oracle,
    /// while the runtime's kernel never reads those taps.
    Masked(bool),
    /// Two-stack convolution (`in_v`, `out_v`, mask B): stride 1, padding
    /// k/2, odd k; the case's weights are the compact blob (only the taps
    /// used), which the oracle spreads over a dense kernel.
    Stack(usize, usize, bool),
}

/// One kernel call: geometry and values. For `Dense`, `in_c * h * w` is the
/// number of input features (the runtime flattens its input) and `k`,
/// `stride`, `pad`, `out_pad` are unused.
#[derive(Debug, Clone)]
struct Case {
    kind: Kind,
    in_c: usize,
    out_c: usize,
    h: usize,
    w: usize,
    k: usize,
    stride: usize,
    pad: usize,
    out_pad: usize,
    relu: bool,
    x: Vec<f32>,
    wt: Vec<f32>,
    b: Vec<f32>,
}

impl Case {
    fn n_in(&self) -> usize {
        self.in_c * self.h * self.w
    }

    fn out_hw(&self) -> (usize, usize) {
        let (k, s, p) = (self.k, self.stride, self.pad);
        match self.kind {
            Kind::Dense => (1, 1),
            Kind::Conv | Kind::Masked(_) | Kind::Stack(..) => {
                ((self.h + 2 * p - k) / s + 1, (self.w + 2 * p - k) / s + 1)
            }
            Kind::ConvT => (
                (self.h - 1) * s + k + self.out_pad - 2 * p,
                (self.w - 1) * s + k + self.out_pad - 2 * p,
            ),
        }
    }

    fn n_out(&self) -> usize {
        let (oh, ow) = self.out_hw();
        self.out_c * oh * ow
    }

    fn n_weights(&self) -> usize {
        match self.kind {
            Kind::Dense => self.out_c * self.n_in(),
            Kind::Conv | Kind::ConvT | Kind::Masked(_) => self.out_c * self.in_c * self.k * self.k,
            Kind::Stack(in_v, out_v, b) => {
                stack_weight_len(self.in_c, in_v, self.out_c, out_v, self.k, b)
            }
        }
    }

    /// Most products summed into one output (the longest weight row).
    fn max_terms(&self) -> usize {
        match self.kind {
            Kind::Stack(in_v, out_v, b) => {
                let rows = stack_row_lens(self.in_c, in_v, self.out_c, out_v, self.k, b);
                rows.into_iter().max().unwrap_or(0)
            }
            _ => self.n_weights() / self.out_c.max(1),
        }
    }

    /// Output channel of every output element.
    fn channel_of(&self, i: usize) -> usize {
        let (oh, ow) = self.out_hw();
        i / (oh * ow)
    }

    /// The weight layout as `quantize_weights` sees it: (outer, channels, inner).
    fn weight_blocks(&self) -> (usize, usize, usize) {
        match self.kind {
            Kind::Dense => (1, self.out_c, self.n_in()),
            Kind::Conv | Kind::Masked(_) => (1, self.out_c, self.in_c * self.k * self.k),
            Kind::ConvT => (self.in_c, self.out_c, self.k * self.k),
            Kind::Stack(..) => unreachable!("rows of two lengths: see weight_channels"),
        }
    }

    /// The output channel of every weight.
    fn weight_channels(&self) -> Vec<usize> {
        match self.kind {
            Kind::Stack(in_v, out_v, b) => {
                stack_row_lens(self.in_c, in_v, self.out_c, out_v, self.k, b)
                    .into_iter()
                    .enumerate()
                    .flat_map(|(o, n)| std::iter::repeat_n(o, n))
                    .collect()
            }
            _ => {
                let (_, ch, inner) = self.weight_blocks();
                (0..self.n_weights()).map(|i| (i / inner) % ch).collect()
            }
        }
    }

    /// Weights quantized per output channel as the exporter does: the int8
    /// bytes and each channel's scale.
    fn quantize_weights(&self) -> (Vec<u8>, Vec<f32>) {
        match self.kind {
            Kind::Stack(in_v, out_v, b) => {
                let rows = stack_row_lens(self.in_c, in_v, self.out_c, out_v, self.k, b);
                quantize_weight_rows(&self.wt, &rows)
            }
            _ => {
                let (outer, ch, inner) = self.weight_blocks();
                quantize_weights(&self.wt, outer, ch, inner)
            }
        }
    }

    fn stack_geom(&self) -> StackGeom {
        let Kind::Stack(in_v, out_v, mask_b) = self.kind else {
            unreachable!("not a two-stack case")
        };
        StackGeom {
            in_c: self.in_c,
            in_v,
            out_c: self.out_c,
            out_v,
            h: self.h,
            w: self.w,
            k: self.k,
            mask_b,
            in_rows: self.h,
            out_rows: self.h,
        }
    }

    fn masked_geom(&self) -> MaskedGeom {
        MaskedGeom {
            in_c: self.in_c,
            out_c: self.out_c,
            h: self.h,
            w: self.w,
            k: self.k,
            mask_b: self.kind == Kind::Masked(true),
            in_rows: self.h,
            out_rows: self.h,
        }
    }

    /// Zeroes the weights of the taps a masked kind does not use.
    fn mask_weights(mut self) -> Self {
        if let Kind::Masked(b) = self.kind {
            let mask = if b { Mask::B } else { Mask::A };
            let k = self.k;
            for (i, v) in self.wt.iter_mut().enumerate() {
                if !mask.allows(k, (i / k) % k, i % k) {
                    *v = 0.0;
                }
            }
        }
        self
    }

    fn geom(&self) -> ConvGeom {
        let (out_h, out_w) = self.out_hw();
        ConvGeom {
            in_c: self.in_c,
            in_h: self.h,
            in_w: self.w,
            out_c: self.out_c,
            out_h,
            out_w,
            k: self.k,
            stride: self.stride,
            pad: self.pad,
        }
    }

    /// candle's `bias + op(x, w)` (then ReLU if asked) computed in `dtype`,
    /// returned as f64 in the runtime's CHW order.
    fn oracle(&self, x: &[f32], w: &[f32], b: &[f32], dtype: DType, relu: bool) -> Vec<f64> {
        let dev = Device::Cpu;
        let run = || -> candle_core::Result<Vec<f64>> {
            let bias = Tensor::from_slice(b, self.out_c, &dev)?.to_dtype(dtype)?;
            let y = match self.kind {
                Kind::Dense => {
                    let x = Tensor::from_slice(x, (1, self.n_in()), &dev)?.to_dtype(dtype)?;
                    let w = dense_weight(w, self.out_c, self.n_in(), &dev)?.to_dtype(dtype)?;
                    let y = x.matmul(&w.t()?)?.broadcast_add(&bias.unsqueeze(0)?)?;
                    y.reshape((1, self.out_c, 1, 1))?
                }
                Kind::Conv | Kind::Masked(_) => {
                    let x = nchw(x, self.in_c, self.h, self.w, &dev)?.to_dtype(dtype)?;
                    let w = conv_weight(w, self.out_c, self.in_c, self.k, &dev)?.to_dtype(dtype)?;
                    let y = x.conv2d(&w, self.pad, self.stride, 1, 1)?;
                    add_channel_bias(&y, &bias)?
                }
                Kind::ConvT => {
                    let x = nchw(x, self.in_c, self.h, self.w, &dev)?.to_dtype(dtype)?;
                    let w =
                        conv_t_weight(w, self.in_c, self.out_c, self.k, &dev)?.to_dtype(dtype)?;
                    let y = x.conv_transpose2d(&w, self.pad, self.out_pad, self.stride, 1)?;
                    add_channel_bias(&y, &bias)?
                }
                Kind::Stack(in_v, out_v, b) => {
                    let (in_c, out_c, k) = (self.in_c, self.out_c, self.k);
                    let (dense, link) = stack_weights(w, in_c, in_v, out_c, out_v, k, b);
                    let x = nchw(x, in_c, self.h, self.w, &dev)?.to_dtype(dtype)?;
                    let dense = conv_weight(&dense, out_c, in_c, k, &dev)?.to_dtype(dtype)?;
                    let link = conv_weight(&link, out_c, in_c, 1, &dev)?.to_dtype(dtype)?;
                    add_channel_bias(&stack_conv2d(&x, &dense, &link)?, &bias)?
                }
            };
            let y = if relu { y.relu()? } else { y };
            chw(&y)
        };
        let y = run().expect("candle oracle");
        assert_eq!(y.len(), self.n_out(), "candle's output shape");
        y
    }

    fn run_float<W: FloatWeights>(&self, w: W) -> Vec<f32> {
        let bias = f32_le(&self.b);
        let mut out = vec![f32::NAN; self.n_out()];
        match self.kind {
            Kind::Dense => kernels::dense_f32(&self.x, w, &bias, &mut out, self.relu),
            Kind::Conv => kernels::conv2d_f32(&self.x, &self.geom(), w, &bias, &mut out, self.relu),
            Kind::ConvT => {
                kernels::conv_transpose2d_f32(&self.x, &self.geom(), w, &bias, &mut out, self.relu)
            }
            Kind::Masked(_) => kernels::masked_conv2d_f32(
                &self.x,
                &self.masked_geom(),
                w,
                &bias,
                &mut out,
                self.relu,
            ),
            Kind::Stack(..) => kernels::stack_conv2d_f32(
                &self.x,
                &self.stack_geom(),
                w,
                &bias,
                &mut out,
                self.relu,
            ),
        }
        out
    }

    fn run_i8(&self, x: &[i8], w: &[u8], bias: &[u8], q: &RequantI8<'_>) -> Vec<i8> {
        let mut out = vec![0i8; self.n_out()];
        match self.kind {
            Kind::Dense => kernels::reference::dense_i8(x, w, bias, q, &mut out),
            Kind::Conv => kernels::reference::conv2d_i8(x, &self.geom(), w, bias, q, &mut out),
            Kind::ConvT => {
                kernels::reference::conv_transpose2d_i8(x, &self.geom(), w, bias, q, &mut out)
            }
            Kind::Masked(_) => {
                kernels::reference::masked_conv2d_i8(x, &self.masked_geom(), w, bias, q, &mut out)
            }
            Kind::Stack(..) => {
                kernels::reference::stack_conv2d_i8(x, &self.stack_geom(), w, bias, q, &mut out)
            }
        }
        out
    }
}

fn check_f32(c: &Case) {
    let got = c.run_float(F32Le(&f32_le(&c.wt)));
    let want = c.oracle(&c.x, &c.wt, &c.b, DType::F32, c.relu);
    // `Close` is relative to the largest output; where large terms cancel,
    // two f32 summation orders legitimately differ by up to n * 2^-24 *
    // sum|w x| (n terms per output; the classic gamma_n bound), which can
    // exceed it (proptest found such a dense case). Allow the larger of the two.
    let abs = |v: &[f32]| v.iter().map(|a| a.abs()).collect::<Vec<f32>>();
    let zeros = vec![0f32; c.out_c];
    let wx = c.oracle(&abs(&c.x), &abs(&c.wt), &zeros, DType::F64, false);
    let n = (c.max_terms() + 1) as f64;
    let close = Approximation::Close.tolerance(&want);
    let bound: Vec<f64> = wx
        .iter()
        .map(|wx| close.max(2.0 * n * 2f64.powi(-24) * wx))
        .collect();
    assert_within(&got, &want, &bound, &format!("{:?} f32", c.kind));
}

fn check_f16(c: &Case) {
    let got = c.run_float(F16Le(&f16_le(&c.wt)));
    let rounded = f16_round(&c.wt);
    let want = c.oracle(&c.x, &rounded, &c.b, DType::F32, c.relu);
    assert_close(
        &got,
        &want,
        Approximation::F16,
        &format!("{:?} f16 vs rounded weights", c.kind),
    );

    // Against the unrounded weights: the derived bound of the module docs.
    let exact = c.oracle(&c.x, &c.wt, &c.b, DType::F64, c.relu);
    let abs = |v: &[f32]| v.iter().map(|a| a.abs()).collect::<Vec<f32>>();
    let zeros = vec![0f32; c.out_c];
    let ones = vec![1f32; c.n_weights()];
    let wx = c.oracle(&abs(&c.x), &abs(&c.wt), &zeros, DType::F64, false);
    let x1 = c.oracle(&abs(&c.x), &ones, &zeros, DType::F64, false);
    let close = Approximation::Close.tolerance(&exact);
    let bound: Vec<f64> = wx
        .iter()
        .zip(&x1)
        .map(|(wx, x1)| 2f64.powi(-11) * wx + 2f64.powi(-25) * x1 + close)
        .collect();
    assert_within(
        &got,
        &exact,
        &bound,
        &format!("{:?} f16 vs unrounded weights", c.kind),
    );
}

/// Everything an int8 call needs, quantized from a float case as the
/// exporter does.
struct Quantized {
    x: Vec<i8>,
    in_zp: i8,
    in_scale: f32,
    w: Vec<u8>,
    w_scale: Vec<f32>,
    bias: Vec<i32>,
    mult: Vec<i32>,
    shift: Vec<u8>,
    out_zp: i8,
    out_scale: f32,
    /// The float oracle before the activation (f64).
    y: Vec<f64>,
    /// A bias did not fit an i32 at its accumulator scale (a tiny input
    /// range times a tiny weight scale under a large bias) and was clamped:
    /// int8 cannot represent that output, so only the exact check applies.
    bias_clamped: bool,
}

fn quantize_case(c: &Case) -> Quantized {
    let (lo, hi) = min_max(c.x.iter().map(|&v| v as f64));
    let pin = range_params(lo as f32, hi as f32);
    let x: Vec<i8> = c.x.iter().map(|&v| quantize(v, pin)).collect();
    let (w, w_scale) = c.quantize_weights();
    let y = c.oracle(&c.x, &c.wt, &c.b, DType::F64, false);
    let post = y.iter().map(|&v| if c.relu { v.max(0.0) } else { v });
    let (lo, hi) = min_max(post);
    let mut pout = range_params(lo as f32, hi as f32);
    if c.relu {
        // As the exporter: a ReLU output's zero point is the bottom code.
        pout.zero_point = -128;
    }
    let mut bias = Vec::new();
    let mut mult = Vec::new();
    let mut shift = Vec::new();
    let mut bias_clamped = false;
    for (&b, &ws) in c.b.iter().zip(&w_scale) {
        let acc_scale = pin.scale as f64 * ws as f64;
        let raw = (b as f64 / acc_scale).round();
        bias_clamped |= raw < i32::MIN as f64 || raw > i32::MAX as f64;
        bias.push(raw.clamp(i32::MIN as f64, i32::MAX as f64) as i32);
        let (m, s) = quantize_multiplier(acc_scale / pout.scale as f64);
        mult.push(m);
        shift.push(s);
    }
    Quantized {
        x,
        in_zp: pin.zero_point,
        in_scale: pin.scale,
        w,
        w_scale,
        bias,
        mult,
        shift,
        out_zp: pout.zero_point,
        out_scale: pout.scale,
        y,
        bias_clamped,
    }
}

fn min_max(v: impl Iterator<Item = f64>) -> (f64, f64) {
    v.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
        (lo.min(x), hi.max(x))
    })
}

/// The test's own requantization: `clamp(floor((acc·m + 2^(s-1)) / 2^s) + zp)`
/// in i128 (round half up), independent of the runtime's i64 shift.
fn requantize_oracle(acc: i128, m: i32, shift: u8, zp: i8, min: i32, max: i32) -> i8 {
    let d = 1i128 << shift;
    let r = (acc * m as i128 + d / 2).div_euclid(d);
    (r + zp as i128).clamp(min as i128, max as i128) as i8
}

/// Bound, in output steps, of `|q - (y/s_out + zp)|` for output element `i`
/// (before clamping; clamping both sides to the same range cannot increase
/// it). With `x̂ = s_in(q_x - zp_in)`, `ŵ = s_w q_w`, `b̂ = s_in s_w B`:
///
/// - `|x̂ - x| <= s_in/2`: `range_params` covers the input's range, and at
///   its ends the zero point's rounding moves the representable end by at
///   most half a step;
/// - `|ŵ - w| <= s_w/2` (symmetric, `s_w = max|w|/127`, no clipping);
/// - `|b̂ - b| <= s_in s_w / 2`.
///
/// The integer accumulator is exactly `(b̂ + Σ ŵ x̂) / (s_in s_w)` and
/// `ŵx̂ - wx = ŵ(x̂ - x) + (ŵ - w)x`, so in real units the accumulator is off
/// by at most `E = s_in s_w/2 + (s_in/2)·Σ|ŵ| + (s_w/2)·Σ|x|` over the taps
/// that land inside the input (padding contributes exactly 0 on both sides).
/// Requantization then rounds to nearest (1/2 step) with a multiplier
/// accurate to 2⁻³⁰ relative. `QuantStep(1)` covers the rounding, the
/// multiplier and the f32 rounding of scales; `E / s_out` is the rest.
fn int8_bound(c: &Case, q: &Quantized) -> Vec<f64> {
    let zeros = vec![0f32; c.out_c];
    // |ŵ|, each weight at its output channel's scale.
    let w_abs: Vec<f32> = (q.w.iter().zip(c.weight_channels()))
        .map(|(&b, ch)| ((b as i8) as f32 * q.w_scale[ch]).abs())
        .collect();
    let ones_x = vec![1f32; c.n_in()];
    let ones_w = vec![1f32; c.n_weights()];
    let abs_x: Vec<f32> = c.x.iter().map(|v| v.abs()).collect();
    let sum_w = c.oracle(&ones_x, &w_abs, &zeros, DType::F64, false);
    let sum_x = c.oracle(&abs_x, &ones_w, &zeros, DType::F64, false);
    let (s_in, s_out) = (q.in_scale as f64, q.out_scale as f64);
    let (qs, _) = Approximation::QuantStep(1).atol_rtol();
    (0..c.n_out())
        .map(|i| {
            let s_w = q.w_scale[c.channel_of(i)] as f64;
            let e = s_in * s_w / 2.0 + s_in / 2.0 * sum_w[i] + s_w / 2.0 * sum_x[i];
            qs + e / s_out
        })
        .collect()
}

fn check_i8(c: &Case) {
    check_i8_parts(c, true);
}

/// The int8 checks; `float_oracle: false` keeps only the exact one (for the
/// degenerate all-zero input, see `int8_zero_input_range_keeps_the_bias`).
fn check_i8_parts(c: &Case, float_oracle: bool) {
    let q = quantize_case(c);
    let (mult, bias) = (i32_le(&q.mult), i32_le(&q.bias));
    let min = if c.relu { q.out_zp as i32 } else { -128 };
    let rq = RequantI8 {
        in_zp: q.in_zp as i32,
        out_zp: q.out_zp as i32,
        multiplier: &mult,
        shift: &q.shift,
        min,
        max: 127,
    };
    let got = c.run_i8(&q.x, &q.w, &bias, &rq);

    // Exact: the integer re-implementation.
    let xc: Vec<f32> =
        q.x.iter()
            .map(|&v| (v as i32 - q.in_zp as i32) as f32)
            .collect();
    let wi: Vec<f32> = q.w.iter().map(|&b| (b as i8) as f32).collect();
    let acc = c.oracle(&xc, &wi, &vec![0f32; c.out_c], DType::F64, false);
    let want: Vec<i8> = acc
        .iter()
        .enumerate()
        .map(|(i, &a)| {
            assert_eq!(a, a.round(), "integer accumulator");
            let ch = c.channel_of(i);
            let acc = a as i128 + q.bias[ch] as i128;
            requantize_oracle(acc, q.mult[ch], q.shift[ch], q.out_zp, min, 127)
        })
        .collect();
    assert_close(
        &got,
        &want,
        Approximation::Exact,
        &format!("{:?} i8 vs integer oracle", c.kind),
    );

    if !float_oracle || q.bias_clamped {
        return;
    }
    // Float oracle, in output steps, within QuantStep(1) + E / s_out.
    let s_out = q.out_scale as f64;
    let want_steps: Vec<f64> =
        q.y.iter()
            .map(|&y| {
                let y = if c.relu { y.max(0.0) } else { y };
                (y / s_out + q.out_zp as f64).clamp(min as f64, 127.0)
            })
            .collect();
    let bound = int8_bound(c, &q);
    assert_within(
        &got,
        &want_steps,
        &bound,
        &format!("{:?} i8 vs float oracle (steps)", c.kind),
    );
}

fn check_all(c: &Case) {
    check_all_parts(c, true);
}

fn check_all_parts(c: &Case, i8_float_oracle: bool) {
    assert_eq!(c.x.len(), c.n_in());
    assert_eq!(c.wt.len(), c.n_weights());
    assert_eq!(c.b.len(), c.out_c);
    check_f32(c);
    check_f16(c);
    check_i8_parts(c, i8_float_oracle);
}

// ---------------------------------------------------------------------------
// Strategies.

fn values(n: usize, scale: f32) -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(-1.0f32..1.0, n).prop_map(move |v| v.iter().map(|x| x * scale).collect())
}

fn scale() -> impl Strategy<Value = f32> {
    prop_oneof![Just(1.0f32), Just(0.01), Just(50.0)]
}

#[allow(clippy::too_many_arguments)]
fn case_with_values(
    kind: Kind,
    (in_c, out_c, h, w): (usize, usize, usize, usize),
    (k, stride, pad, out_pad): (usize, usize, usize, usize),
    relu: bool,
    x_scale: f32,
) -> impl Strategy<Value = Case> {
    let shell = Case {
        kind,
        in_c,
        out_c,
        h,
        w,
        k,
        stride,
        pad,
        out_pad,
        relu,
        x: Vec::new(),
        wt: Vec::new(),
        b: Vec::new(),
    };
    (
        values(shell.n_in(), x_scale),
        values(shell.n_weights(), 1.0),
        values(out_c, 1.0),
    )
        .prop_map(move |(x, wt, b)| {
            Case {
                x,
                wt,
                b,
                ..shell.clone()
            }
            .mask_weights()
        })
}

fn dense_case() -> impl Strategy<Value = Case> {
    (
        1..=8usize,
        1..=16usize,
        1..=12usize,
        1..=2usize,
        any::<bool>(),
        scale(),
    )
        .prop_flat_map(|(in_c, out_c, h, w, relu, s)| {
            case_with_values(Kind::Dense, (in_c, out_c, h, w), (1, 1, 0, 0), relu, s)
        })
}

fn conv_case() -> impl Strategy<Value = Case> {
    (
        (1..=8usize, 1..=8usize, 1..=12usize, 1..=12usize),
        (1..=5usize, 1..=3usize, 0..=2usize),
        any::<bool>(),
        scale(),
    )
        .prop_filter(
            "the output must have a pixel",
            |((_, _, h, w), (k, _, p), ..)| h + 2 * p >= *k && w + 2 * p >= *k,
        )
        .prop_flat_map(|(dims, (k, s, p), relu, sc)| {
            case_with_values(Kind::Conv, dims, (k, s, p, 0), relu, sc)
        })
}

fn masked_case() -> impl Strategy<Value = Case> {
    (
        (1..=8usize, 1..=8usize, 1..=12usize, 1..=12usize),
        prop_oneof![Just(1usize), Just(3), Just(5), Just(7)],
        any::<bool>(),
        any::<bool>(),
        scale(),
    )
        .prop_flat_map(|(dims, k, b, relu, sc)| {
            case_with_values(Kind::Masked(b), dims, (k, 1, k / 2, 0), relu, sc)
        })
}

/// A two-stack case: `in_v` in `0..in_c`, `out_v` in `0..=out_c`.
fn stack_case() -> impl Strategy<Value = Case> {
    (
        (1..=6usize, 1..=6usize, 1..=8usize, 1..=8usize),
        prop_oneof![Just(1usize), Just(3), Just(5), Just(7)],
        (any::<bool>(), any::<bool>(), scale()),
    )
        .prop_flat_map(|((in_c, out_c, h, w), k, (b, relu, sc))| {
            (0..in_c, 0..=out_c).prop_flat_map(move |(in_v, out_v)| {
                let kind = Kind::Stack(in_v, out_v, b);
                case_with_values(kind, (in_c, out_c, h, w), (k, 1, k / 2, 0), relu, sc)
            })
        })
}

fn conv_t_case() -> impl Strategy<Value = Case> {
    (
        (1..=8usize, 1..=8usize, 1..=12usize, 1..=12usize),
        (1..=5usize, 1..=3usize, 0..=2usize, 0..=2usize),
        any::<bool>(),
        scale(),
    )
        .prop_map(|(dims, (k, s, p, op), relu, sc)| (dims, (k, s, p, op % s), relu, sc))
        .prop_filter(
            "the output must have a pixel",
            |((_, _, h, w), (k, s, p, op), ..)| {
                (h - 1) * s + k + op > 2 * p && (w - 1) * s + k + op > 2 * p
            },
        )
        .prop_flat_map(|(dims, geo, relu, sc)| case_with_values(Kind::ConvT, dims, geo, relu, sc))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn dense_f32_vs_candle(c in dense_case()) { check_f32(&c) }
    #[test]
    fn dense_f16_vs_candle(c in dense_case()) { check_f16(&c) }
    #[test]
    fn dense_i8_vs_oracles(c in dense_case()) { check_i8(&c) }

    #[test]
    fn conv2d_f32_vs_candle(c in conv_case()) { check_f32(&c) }
    #[test]
    fn conv2d_f16_vs_candle(c in conv_case()) { check_f16(&c) }
    #[test]
    fn conv2d_i8_vs_oracles(c in conv_case()) { check_i8(&c) }

    #[test]
    fn masked_conv2d_f32_vs_candle(c in masked_case()) { check_f32(&c) }
    #[test]
    fn masked_conv2d_f16_vs_candle(c in masked_case()) { check_f16(&c) }
    #[test]
    fn masked_conv2d_i8_vs_oracles(c in masked_case()) { check_i8(&c) }

    #[test]
    fn stack_conv2d_f32_vs_candle(c in stack_case()) { check_f32(&c) }
    #[test]
    fn stack_conv2d_f16_vs_candle(c in stack_case()) { check_f16(&c) }
    #[test]
    fn stack_conv2d_i8_vs_oracles(c in stack_case()) { check_i8(&c) }
    #[test]
    fn stack_conv2d_full_equals_incremental(c in stack_case()) { stack_incremental_case(&c) }

    #[test]
    fn conv_transpose2d_f32_vs_candle(c in conv_t_case()) { check_f32(&c) }
    #[test]
    fn conv_transpose2d_f16_vs_candle(c in conv_t_case()) { check_f16(&c) }
    #[test]
    fn conv_transpose2d_i8_vs_oracles(c in conv_t_case()) { check_i8(&c) }
}

// ---------------------------------------------------------------------------
// Named edge cases (deterministic values).

#[allow(clippy::too_many_arguments)]
fn fixed(
    kind: Kind,
    (in_c, out_c, h, w): (usize, usize, usize, usize),
    (k, stride, pad, out_pad): (usize, usize, usize, usize),
    relu: bool,
    seed: u64,
) -> Case {
    let mut c = Case {
        kind,
        in_c,
        out_c,
        h,
        w,
        k,
        stride,
        pad,
        out_pad,
        relu,
        x: Vec::new(),
        wt: Vec::new(),
        b: Vec::new(),
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let mut draw = |n: usize| {
        (0..n)
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect::<Vec<_>>()
    };
    c.x = draw(c.n_in());
    c.wt = draw(c.n_weights());
    c.b = draw(c.out_c);
    c.mask_weights()
}

fn all_kinds(dims: (usize, usize, usize, usize), geo: (usize, usize, usize, usize)) -> Vec<Case> {
    let mut v = Vec::new();
    for relu in [false, true] {
        v.push(fixed(Kind::Dense, dims, (1, 1, 0, 0), relu, 1));
        v.push(fixed(Kind::Conv, dims, (geo.0, geo.1, geo.2, 0), relu, 2));
        v.push(fixed(Kind::ConvT, dims, geo, relu, 3));
        for b in [false, true] {
            let k = 2 * (geo.0 / 2) + 1;
            v.push(fixed(Kind::Masked(b), dims, (k, 1, k / 2, 0), relu, 4));
            // Half the channels vertical (none of a single input channel).
            let stack = Kind::Stack(dims.0 / 2, dims.1 / 2, b);
            v.push(fixed(stack, dims, (k, 1, k / 2, 0), relu, 5));
        }
    }
    v
}

#[test]
fn kernels_zeros() {
    // Zero input or zero weights: every output is its channel's bias, exactly
    // (f32 and f16: 0·w adds +0; int8: the bias alone is requantized).
    for c0 in all_kinds((3, 4, 5, 6), (3, 2, 1, 1)) {
        for zero_x in [true, false] {
            let mut c = c0.clone();
            if zero_x {
                c.x.iter_mut().for_each(|v| *v = 0.0);
            } else {
                c.wt.iter_mut().for_each(|v| *v = 0.0);
            }
            let bias: Vec<f32> = (0..c.n_out())
                .map(|i| c.b[c.channel_of(i)])
                .map(|b| if c.relu { b.max(0.0) } else { b })
                .collect();
            let got = c.run_float(F32Le(&f32_le(&c.wt)));
            assert_close(&got, &bias, Approximation::Exact, &format!("{c:?}"));
            let got = c.run_float(F16Le(&f16_le(&c.wt)));
            assert_close(&got, &bias, Approximation::Exact, &format!("{c:?}"));
            // An all-zero input has a degenerate int8 range (see
            // `int8_zero_input_range_keeps_the_bias`): exact check only.
            check_all_parts(&c, !zero_x);
        }
    }
}

#[test]
fn kernels_one_pixel() {
    // One input pixel, one channel. A 3x3 convolution with padding 1 sees
    // only its centre tap; a transposed convolution with stride 2 and no
    // padding writes the kernel scaled by the pixel.
    let mut c = fixed(Kind::Conv, (1, 2, 1, 1), (3, 1, 1, 0), false, 4);
    c.x = vec![0.5];
    let got = c.run_float(F32Le(&f32_le(&c.wt)));
    let want: Vec<f32> = (0..2).map(|o| c.b[o] + 0.5 * c.wt[o * 9 + 4]).collect();
    assert_close(&got, &want, Approximation::Exact, "conv one pixel");
    check_all(&c);

    let mut c = fixed(Kind::ConvT, (1, 1, 1, 1), (3, 2, 0, 1), false, 5);
    c.x = vec![-2.0];
    c.b = vec![0.0];
    let got = c.run_float(F32Le(&f32_le(&c.wt)));
    // 3x3 kernel plus one row and column of output padding (bias only).
    let mut want = vec![0f32; 16];
    for ky in 0..3 {
        for kx in 0..3 {
            want[ky * 4 + kx] = -2.0 * c.wt[ky * 3 + kx];
        }
    }
    assert_close(&got, &want, Approximation::Exact, "conv_t one pixel");
    check_all(&c);

    for c in all_kinds((1, 1, 1, 1), (1, 1, 0, 0)) {
        check_all(&c);
    }
    for c in all_kinds((2, 3, 1, 1), (5, 3, 2, 2)) {
        check_all(&c);
    }
}

#[test]
fn kernels_tails() {
    // Odd sizes, stride larger than the kernel, padding at or above k/2, and
    // output padding: the loops' remainders and border conditions.
    let dims = [(3, 5, 7, 5), (1, 3, 11, 3), (5, 2, 2, 9)];
    let geos = [
        (1, 3, 0, 2), // stride > kernel: gaps in a transposed conv's output
        (2, 3, 1, 1), // stride > kernel, padding = k/2
        (3, 2, 2, 1), // padding > k/2: whole border rows read only padding
        (4, 2, 2, 1), // even kernel, padding = k/2
        (5, 1, 2, 0), // "same" convolution
        (2, 1, 0, 0),
    ];
    for d in dims {
        for g in geos {
            for c in all_kinds(d, g) {
                if c.kind == Kind::Conv && (c.h + 2 * c.pad < c.k || c.w + 2 * c.pad < c.k) {
                    continue;
                }
                let (oh, ow) = c.out_hw();
                assert!(oh > 0 && ow > 0);
                check_all(&c);
            }
        }
    }
}

/// Runs a two-stack convolution over row buffers as the incremental
/// sampler does (geometry `g`, `g.in_rows` and `g.out_rows` rows): the input
/// `x` (whole `[in_c][h][w]`) arrives pixel by pixel, all channels, the
/// rest of its row holding `blank` until then; `h_at(buf, out, y, x)`
/// computes the horizontal outputs of each pixel as it arrives,
/// `v_row(buf, out, y)` the vertical ones once its row is complete. Returns
/// every output row, collected as each row completes (`[out_c][h][w]`).
fn stack_rows<T: Copy>(
    g: &StackGeom,
    x: &[T],
    blank: T,
    mut h_at: impl FnMut(&[T], &mut [T], usize, usize),
    mut v_row: impl FnMut(&[T], &mut [T], usize),
) -> Vec<T> {
    let (h, w) = (g.h, g.w);
    let mut buf = vec![blank; g.in_c * g.in_rows * w];
    let mut out = vec![blank; g.out_c * g.out_rows * w];
    let mut all = vec![blank; g.out_c * h * w];
    for y in 0..h {
        let r = y % g.in_rows;
        for i in 0..g.in_c {
            buf[(i * g.in_rows + r) * w..][..w].fill(blank);
        }
        for xp in 0..w {
            for i in 0..g.in_c {
                buf[(i * g.in_rows + r) * w + xp] = x[(i * h + y) * w + xp];
            }
            h_at(&buf, &mut out, y, xp);
        }
        v_row(&buf, &mut out, y);
        let orow = y % g.out_rows;
        for o in 0..g.out_c {
            all[(o * h + y) * w..][..w].copy_from_slice(&out[(o * g.out_rows + orow) * w..][..w]);
        }
    }
    all
}

/// The float full-map kernel and [`stack_rows`] over `g`, as bits.
fn stack_float_bits<W: FloatWeights>(c: &Case, g: &StackGeom, wt: W) -> (Vec<u32>, Vec<u32>) {
    let bias = f32_le(&c.b);
    let mut full = vec![f32::NAN; c.n_out()];
    kernels::stack_conv2d_f32(&c.x, &c.stack_geom(), wt, &bias, &mut full, c.relu);
    let rows = stack_rows(
        g,
        &c.x,
        f32::NAN,
        |x, o, y, xp| kernels::stack_conv2d_h_at_f32(x, g, wt, &bias, o, c.relu, y, xp),
        |x, o, y| kernels::stack_conv2d_v_row_f32(x, g, wt, &bias, o, c.relu, y),
    );
    let bits = |v: &[f32]| v.iter().map(|a| a.to_bits()).collect();
    (bits(&rows), bits(&full))
}

/// A two-stack case run as the incremental sampler runs it ([`stack_rows`]:
/// an input buffer of `max(k/2 + 1, 2)` rows, an output buffer of one row,
/// as the sampler's logits, or two): every output must be the full-map
/// kernel's, bit for bit (f32 and f16 weights, int8). A NaN in the part of
/// the input row not yet arrived catches a float read right of the pixel
/// (an int8 code cannot be poisoned: there the ring of rows and the
/// requantization are checked); the ring, a wrong row index.
fn stack_incremental_case(c: &Case) {
    let full = c.stack_geom();
    let in_rows = (c.k / 2 + 1).max(2).min(c.h);
    for out_rows in [1, 2.min(c.h)] {
        let g = StackGeom {
            in_rows,
            out_rows,
            ..full
        };
        let what = format!("{c:?} out_rows {out_rows}");
        let (got, want) = stack_float_bits(c, &g, F32Le(&f32_le(&c.wt)));
        assert_eq!(got, want, "{what}: f32 weights");
        let (got, want) = stack_float_bits(c, &g, F16Le(&f16_le(&c.wt)));
        assert_eq!(got, want, "{what}: f16 weights");

        let q = quantize_case(c);
        let (mult, bias) = (i32_le(&q.mult), i32_le(&q.bias));
        let rq = RequantI8 {
            in_zp: q.in_zp as i32,
            out_zp: q.out_zp as i32,
            multiplier: &mult,
            shift: &q.shift,
            min: if c.relu { q.out_zp as i32 } else { -128 },
            max: 127,
        };
        let mut want = vec![0i8; c.n_out()];
        kernels::reference::stack_conv2d_i8(&q.x, &full, &q.w, &bias, &rq, &mut want);
        let got = stack_rows(
            &g,
            &q.x,
            i8::MIN,
            |x, o, y, xp| {
                kernels::reference::stack_conv2d_h_at_i8(x, &g, &q.w, &bias, &rq, o, y, xp)
            },
            |x, o, y| kernels::reference::stack_conv2d_v_row_i8(x, &g, &q.w, &bias, &rq, o, y),
        );
        assert_eq!(got, want, "{what}: int8");
    }
}

/// An all-zero tensor (e.g. a layer whose ReLUs are all dead on the
/// calibration set) once got a scale of ~4e-11, so the next layer's bias
/// saturated i32 and its multiplier underflowed to 0: the layer output its
/// zero point instead of its bias. `range_params` now gives such a tensor a
/// unit range.
#[test]
fn int8_zero_input_range_keeps_the_bias() {
    let mut c = fixed(Kind::Dense, (3, 4, 1, 1), (1, 1, 0, 0), false, 1);
    c.x.iter_mut().for_each(|v| *v = 0.0);
    check_i8(&c);
}

// ---------------------------------------------------------------------------
// Row LSTM (PixelRNN). candle has no Row LSTM, so the oracle is the format's
// formula in plain f64 (`tinygen_tests::pixelrnn::LstmParams::forward`,
// exact sigmoid and tanh), written apart from the runtime's kernels.
//
// - f32 (`F32Le`): `Close`. The runtime's gate sigmoid and tanh are within
//   1e-6 of exact (`kernels::tanh_f32`), the sums are short, and the
//   recurrence over at most 5 rows adds at most a few such errors: the
//   observed worst is well inside 1e-5.
// - f16 (`F16Le`): against the oracle on the f16-rounded weights, `F16`.
// - int8: `Exact` against an integer transcription of the format's
//   arithmetic (i128, whole rows, `int8_lstm_integer`); and against the f64
//   oracle run on the *dequantized* parameters (so weight rounding, which
//   the convolution cases already cover, is not counted twice) within a
//   bound derived element by element in `int8_lstm_bound`.

mod row_lstm {
    use super::*;
    use tinygen_tests::pixelrnn::{lstm_luts, LstmParams};

    /// Pre-activation scale of the int8 cases: codes span [-8, 8).
    const PRE_SCALE: f64 = 1.0 / 16.0;

    #[derive(Debug, Clone)]
    pub(super) struct LstmCase {
        in_c: usize,
        hidden: usize,
        h: usize,
        w: usize,
        k_in: usize,
        mask_b: bool,
        k_state: usize,
        x: Vec<f32>,
        w_is: Vec<f32>,
        w_ss: Vec<f32>,
        b: Vec<f32>,
    }

    impl LstmCase {
        fn geom(&self) -> kernels::LstmGeom {
            kernels::LstmGeom {
                in_c: self.in_c,
                hidden: self.hidden,
                h: self.h,
                w: self.w,
                k_in: self.k_in,
                mask_b: self.mask_b,
                k_state: self.k_state,
                in_rows: self.h,
                out_rows: self.h,
            }
        }

        fn mask(&self) -> Mask {
            if self.mask_b {
                Mask::B
            } else {
                Mask::A
            }
        }

        fn params(&self, w_is: &[f32], w_ss: &[f32], b: &[f64]) -> LstmParams {
            LstmParams {
                in_c: self.in_c,
                hidden: self.hidden,
                k_in: self.k_in,
                mask: self.mask(),
                k_state: self.k_state,
                w_is: w_is.iter().map(|&v| v as f64).collect(),
                w_ss: w_ss.iter().map(|&v| v as f64).collect(),
                bias: b.to_vec(),
            }
        }

        /// The float oracle on the given weights.
        fn oracle(&self, w_is: &[f32], w_ss: &[f32]) -> Vec<f64> {
            let b: Vec<f64> = self.b.iter().map(|&v| v as f64).collect();
            let x: Vec<f64> = self.x.iter().map(|&v| v as f64).collect();
            self.params(w_is, w_ss, &b).forward(&x, self.h, self.w)
        }

        fn run_float<W: FloatWeights>(&self, w: W) -> Vec<f32> {
            let mut out = vec![f32::NAN; self.hidden * self.h * self.w];
            // Dirty scratch: row 0 must not read it.
            let mut cell = vec![f32::NAN; self.hidden * self.w];
            kernels::row_lstm_f32(
                &self.x,
                &self.geom(),
                w,
                &f32_le(&self.b),
                &mut out,
                &mut cell,
            );
            out
        }
    }

    fn weights_blob(c: &LstmCase, f: fn(&[f32]) -> Vec<u8>) -> Vec<u8> {
        let mut v = f(&c.w_is);
        v.extend(f(&c.w_ss));
        v
    }

    pub(super) fn check_f32(c: &LstmCase) {
        let got = c.run_float(F32Le(&weights_blob(c, f32_le)));
        let want = c.oracle(&c.w_is, &c.w_ss);
        assert_close(&got, &want, Approximation::Close, "row_lstm_f32 vs f64");
    }

    pub(super) fn check_f16(c: &LstmCase) {
        let got = c.run_float(F16Le(&weights_blob(c, f16_le)));
        let want = c.oracle(&f16_round(&c.w_is), &f16_round(&c.w_ss));
        assert_close(&got, &want, Approximation::F16, "row_lstm f16 vs f64");
    }

    /// The case quantized as an exporter would: input per tensor over its
    /// range, weights symmetric per gate row (`w_is` and `w_ss` apart), bias
    /// in units of `s_x * s_w_is[r]`, pre-activations at [`PRE_SCALE`], the
    /// hidden states at 1/128.
    struct Q {
        x: Vec<i8>,
        zp: i32,
        s_x: f64,
        w_is: Vec<i8>,
        w_ss: Vec<i8>,
        s_is: Vec<f64>,
        s_ss: Vec<f64>,
        bias: Vec<i32>,
        mult: Vec<i32>,
        shift: Vec<u8>,
        luts: Vec<u8>,
    }

    fn per_row(w: &[f32], rows: usize) -> (Vec<i8>, Vec<f64>) {
        let n = w.len() / rows;
        let mut q = Vec::new();
        let mut s = Vec::new();
        for r in 0..rows {
            let row = &w[r * n..(r + 1) * n];
            let m = row.iter().fold(0f64, |a, &v| a.max((v as f64).abs()));
            let sc = if m == 0.0 { 1.0 } else { m / 127.0 };
            q.extend(
                row.iter()
                    .map(|&v| (v as f64 / sc).round().clamp(-127.0, 127.0) as i8),
            );
            s.push(sc);
        }
        (q, s)
    }

    fn quantize_lstm(c: &LstmCase) -> Q {
        let (lo, hi) = min_max(c.x.iter().map(|&v| v as f64));
        let p = range_params(lo as f32, hi as f32);
        let x: Vec<i8> = c.x.iter().map(|&v| quantize(v, p)).collect();
        let rows = 4 * c.hidden;
        let (w_is, s_is) = per_row(&c.w_is, rows);
        let (w_ss, s_ss) = per_row(&c.w_ss, rows);
        let s_x = p.scale as f64;
        let bias: Vec<i32> = (0..rows)
            .map(|r| (c.b[r] as f64 / (s_x * s_is[r])).round() as i32)
            .collect();
        // Input-to-state rows (input scale x weight scale to the
        // pre-activation scale), then state-to-state rows (1/128 x weight
        // scale to it).
        let (mult, shift): (Vec<i32>, Vec<u8>) = s_is
            .iter()
            .map(|&s| quantize_multiplier(s_x * s / PRE_SCALE))
            .chain(
                s_ss.iter()
                    .map(|&s| quantize_multiplier(s / 128.0 / PRE_SCALE)),
            )
            .unzip();
        Q {
            x,
            zp: p.zero_point as i32,
            s_x,
            w_is,
            w_ss,
            s_is,
            s_ss,
            bias,
            mult,
            shift,
            luts: lstm_luts(PRE_SCALE),
        }
    }

    fn run_i8(c: &LstmCase, q: &Q) -> Vec<i8> {
        let mut w: Vec<u8> = q.w_is.iter().chain(&q.w_ss).map(|&v| v as u8).collect();
        w.extend_from_slice(&q.luts);
        let mult = i32_le(&q.mult);
        let rq = RequantI8 {
            in_zp: q.zp,
            out_zp: 0,
            multiplier: &mult,
            shift: &q.shift,
            min: -128,
            max: 127,
        };
        let mut out = vec![99i8; c.hidden * c.h * c.w];
        let mut cell = vec![i32::MIN; c.hidden * c.w];
        kernels::reference::row_lstm_i8(
            &q.x,
            &c.geom(),
            &w,
            &i32_le(&q.bias),
            &rq,
            &mut out,
            &mut cell,
        );
        out
    }

    /// The format's int8 arithmetic, transcribed: whole rows, i128, floor
    /// shifts written as `div_euclid`.
    fn int8_lstm_integer(c: &LstmCase, q: &Q) -> Vec<i8> {
        let (hid, w, h) = (c.hidden, c.w, c.h);
        let rq = |acc: i128, r: usize| -> i128 {
            let s = q.shift[r] as u32;
            (acc * q.mult[r] as i128 + (1i128 << (s - 1))).div_euclid(1i128 << s)
        };
        let lut = |t: usize, i: i128| q.luts[t + i as usize] as i8 as i128;
        let mut out = vec![0i8; hid * h * w];
        let mut hp = vec![0i128; hid * w];
        let mut cp = vec![0i128; hid * w];
        for y in 0..h {
            let mut p = vec![0i128; 4 * hid * w];
            for r in 0..4 * hid {
                for col in 0..w {
                    let mut a_is = q.bias[r] as i128;
                    for i in 0..c.in_c {
                        for t in 0..c.k_in {
                            let xc = col as isize + t as isize - (c.k_in / 2) as isize;
                            if c.mask().allows_1d(c.k_in, t) && xc >= 0 && xc < w as isize {
                                a_is += (q.x[(i * h + y) * w + xc as usize] as i128 - q.zp as i128)
                                    * q.w_is[(r * c.in_c + i) * c.k_in + t] as i128;
                            }
                        }
                    }
                    let mut a_ss = 0i128;
                    for j in 0..hid {
                        for t in 0..c.k_state {
                            let xc = col as isize + t as isize - (c.k_state / 2) as isize;
                            if xc >= 0 && xc < w as isize {
                                a_ss += hp[j * w + xc as usize]
                                    * q.w_ss[(r * hid + j) * c.k_state + t] as i128;
                            }
                        }
                    }
                    p[r * w + col] = (rq(a_is, r) + rq(a_ss, 4 * hid + r)).clamp(-128, 127);
                }
            }
            for j in 0..hid {
                for col in 0..w {
                    let g = |k: usize| p[(k * hid + j) * w + col] + 128;
                    let (i, f, o, gg) = (lut(0, g(0)), lut(0, g(1)), lut(0, g(2)), lut(256, g(3)));
                    let k = j * w + col;
                    let c_new =
                        ((f * cp[k] + 64).div_euclid(128) + i * gg).clamp(-(1 << 20), 1 << 20);
                    let ti = (c_new + 128).div_euclid(256).clamp(-256, 255) + 256;
                    let t = lut(512, ti);
                    cp[k] = c_new;
                    hp[k] = ((o * t + 64).div_euclid(128)).clamp(-128, 127);
                    out[(j * h + y) * w + col] = hp[k] as i8;
                }
            }
        }
        out
    }

    fn sigmoid(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    /// The f64 oracle on the dequantized parameters, in output codes (h *
    /// 128), and the bound of every code, derived by following each error
    /// through one step, row after row (`E_h` of row `y - 1` feeds row `y`):
    ///
    /// - pre-activation (real): the int8 path computes exactly
    ///   `bias + Σ w_is·x + Σ w_ss·ĥ_prev` on the dequantized values, then
    ///   rounds two requantizations (≤ 1/2 step each, `PRE_SCALE` per step)
    ///   with multipliers exact to 2⁻³⁰ relative; against the oracle's own
    ///   `h_prev`: `Δpre ≤ PRE_SCALE·(1 + 2⁻³⁰·(|pre_is| + |pre_ss|)/PRE_SCALE)
    ///   + Σ|w_ss|·E_h(prev)`;
    /// - gates: the code `p` lies in `[(pre-Δpre), (pre+Δpre)]/PRE_SCALE`,
    ///   clamped to [-128, 127]; σ and tanh are monotone, so the table's
    ///   argument `p·PRE_SCALE` is off by at most the larger of the two
    ///   endpoints' differences; the table itself is exact to 1/128
    ///   (rounding 1/256, plus the clamp of 128/128 to 127/128);
    /// - cell: `ĉ = f̂·ĉ_prev + î·ĝ` to 2⁻¹⁵ (the `>> 7` rounds):
    ///   `E_c ≤ (|f| + E_f)·E_c(prev) + |c_prev|·E_f + (|i| + E_i)·E_g + |g|·E_i + 2⁻¹⁵`
    ///   (the ±64 clamp is asserted never to bind);
    /// - `tanh(c)` through the table: index `round(64·ĉ)` (±1/128 in c),
    ///   clamped to [-4, 255/64], monotone again, table exact to 1/128;
    /// - `h = o·t`: `E_h ≤ (|o| + E_o)·E_t + |t|·E_o + 1/256` (the final
    ///   `>> 7` rounds to 1/256; |o·t| < 1, so the i8 clamp never binds).
    fn int8_lstm_bound(c: &LstmCase, q: &Q) -> (Vec<f64>, Vec<f64>) {
        let (hid, h, w) = (c.hidden, c.h, c.w);
        let rows = 4 * hid;
        let deq = |v: &[i8], s: &[f64]| -> Vec<f64> {
            let n = v.len() / rows;
            v.iter()
                .enumerate()
                .map(|(k, &x)| x as f64 * s[k / n])
                .collect()
        };
        let w_is = deq(&q.w_is, &q.s_is);
        let w_ss = deq(&q.w_ss, &q.s_ss);
        let bias: Vec<f64> = (0..rows)
            .map(|r| q.bias[r] as f64 * q.s_x * q.s_is[r])
            .collect();
        let x: Vec<f64> =
            q.x.iter()
                .map(|&v| (v as i32 - q.zp) as f64 * q.s_x)
                .collect();
        let p = LstmParams {
            in_c: c.in_c,
            hidden: hid,
            k_in: c.k_in,
            mask: c.mask(),
            k_state: c.k_state,
            w_is,
            w_ss: w_ss.clone(),
            bias,
        };
        let zeros = vec![0f64; hid * w];
        let step = 1.0 / 128.0;
        let mut want = vec![0f64; hid * h * w];
        let mut bound = vec![0f64; hid * h * w];
        let (mut hp, mut cp) = (zeros.clone(), zeros.clone());
        let (mut ehp, mut ecp) = (zeros.clone(), zeros.clone());
        let cs = c.k_state / 2;
        for y in 0..h {
            let pre = p.pre_activations(&x, h, w, y, &hp);
            // Input-to-state part alone, for the multiplier error term.
            let pre_is = p.pre_activations(&x, h, w, y, &zeros);
            let gate = |r: usize, col: usize, f: fn(f64) -> f64| -> (f64, f64) {
                let mut d_state = 0.0;
                let mut abs_ss = 0.0;
                for j in 0..hid {
                    for t in 0..c.k_state {
                        let xc = col as isize + t as isize - cs as isize;
                        if xc >= 0 && xc < w as isize {
                            let wv = w_ss[(r * hid + j) * c.k_state + t].abs();
                            d_state += wv * ehp[j * w + xc as usize];
                            abs_ss += wv;
                        }
                    }
                }
                let v = pre[r * w + col];
                let big = pre_is[r * w + col].abs() + abs_ss;
                let d = PRE_SCALE * (1.0 + big / PRE_SCALE * 2f64.powi(-30)) + d_state;
                let clampc = |z: f64| (z / PRE_SCALE).clamp(-128.0, 127.0) * PRE_SCALE;
                let exact = f(v);
                let e = (f(clampc(v - d)) - exact)
                    .abs()
                    .max((f(clampc(v + d)) - exact).abs());
                (exact, e + step)
            };
            let mut hn = zeros.clone();
            let mut cn = zeros.clone();
            let mut ehn = zeros.clone();
            let mut ecn = zeros.clone();
            for j in 0..hid {
                for col in 0..w {
                    let (i, ei) = gate(j, col, sigmoid);
                    let (f, ef) = gate(hid + j, col, sigmoid);
                    let (o, eo) = gate(2 * hid + j, col, sigmoid);
                    let (g, eg) = gate(3 * hid + j, col, f64::tanh);
                    let k = j * w + col;
                    let cv = f * cp[k] + i * g;
                    let ec = (f.abs() + ef) * ecp[k]
                        + cp[k].abs() * ef
                        + (i.abs() + ei) * eg
                        + g.abs() * ei
                        + 2f64.powi(-15);
                    assert!(cv.abs() + ec < 63.0, "the cell clamp would bind");
                    let t = cv.tanh();
                    let clampt = |z: f64| z.clamp(-4.0, 255.0 / 64.0).tanh();
                    let et = (clampt(cv - ec - step) - t)
                        .abs()
                        .max((clampt(cv + ec + step) - t).abs())
                        + step;
                    let hv = o * t;
                    let eh = (o.abs() + eo) * et + t.abs() * eo + step / 2.0;
                    hn[k] = hv;
                    cn[k] = cv;
                    ehn[k] = eh;
                    ecn[k] = ec;
                    want[(j * h + y) * w + col] = hv * 128.0;
                    bound[(j * h + y) * w + col] = eh * 128.0 + 1e-9;
                }
            }
            (hp, cp, ehp, ecp) = (hn, cn, ehn, ecn);
        }
        (want, bound)
    }

    pub(super) fn check_i8(c: &LstmCase) {
        let q = quantize_lstm(c);
        let got = run_i8(c, &q);
        let exact = int8_lstm_integer(c, &q);
        assert_close(
            &got,
            &exact,
            Approximation::Exact,
            "row_lstm_i8 vs integer oracle",
        );
        let (want, bound) = int8_lstm_bound(c, &q);
        assert_within(&got, &want, &bound, "row_lstm_i8 vs f64 oracle");
    }

    pub(super) fn lstm_case() -> impl Strategy<Value = LstmCase> {
        (
            (1usize..4, 1usize..4, 1usize..6, 1usize..8),
            (0usize..3, any::<bool>(), 0usize..3),
            (0.2f32..3.0, any::<u64>()),
        )
            .prop_map(|((in_c, hidden, h, w), (ki, mask_b, ks), (gain, seed))| {
                let (k_in, k_state) = (2 * ki + 1, 2 * ks + 1);
                let mut r = StdRng::seed_from_u64(seed);
                let fan = (in_c * k_in + hidden * k_state) as f32;
                let mut u = |n: usize, s: f32| -> Vec<f32> {
                    (0..n).map(|_| r.random_range(-s..=s)).collect()
                };
                let x = u(in_c * h * w, 1.0);
                let w_is = u(4 * hidden * in_c * k_in, gain / fan.sqrt());
                let w_ss = u(4 * hidden * hidden * k_state, gain / fan.sqrt());
                let b = u(4 * hidden, 0.5);
                LstmCase {
                    in_c,
                    hidden,
                    h,
                    w,
                    k_in,
                    mask_b,
                    k_state,
                    x,
                    w_is,
                    w_ss,
                    b,
                }
            })
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn row_lstm_f32_vs_f64(c in row_lstm::lstm_case()) { row_lstm::check_f32(&c) }
    #[test]
    fn row_lstm_f16_vs_f64(c in row_lstm::lstm_case()) { row_lstm::check_f16(&c) }
    #[test]
    fn row_lstm_i8_vs_oracles(c in row_lstm::lstm_case()) { row_lstm::check_i8(&c) }
}
