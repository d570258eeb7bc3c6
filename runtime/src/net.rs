//! Runs a validated [`Net`] over the arena's two activation buffers.

use crate::format::{Act, Layer, Net, Op, Shape};
use crate::kernels::{self, ConvGeom, FloatWeights, LstmGeom, MaskedGeom, RequantI8, StackGeom};
use crate::{features, ops};

/// Output shape of `op` on `inp`; the plan has checked it exists.
fn next_shape(op: &Op, inp: Shape) -> Shape {
    ops::out_shape(op, inp).unwrap_or(Shape { c: 0, h: 0, w: 0 })
}

/// Geometry of a two-stack convolution (`op`, a [`Op::StackConv2d`]) on
/// `inp` over buffers of `in_rows` and `out_rows` rows.
pub(crate) fn stack_geom(op: &Op, inp: Shape, in_rows: u16, out_rows: u16) -> StackGeom {
    ops::stack_geom(op, inp, in_rows, out_rows).unwrap_or_default()
}

/// Geometry of a masked convolution (`op`, a [`Op::MaskedConv2d`]) on
/// `inp` over buffers of `in_rows` and `out_rows` rows.
pub(crate) fn masked_geom(op: &Op, inp: Shape, in_rows: u16, out_rows: u16) -> MaskedGeom {
    ops::masked_geom(op, inp, in_rows, out_rows).unwrap_or_default()
}

/// Geometry of a Row LSTM (`op`, a [`Op::RowLstm`]) on `inp` over buffers
/// of `in_rows` and `out_rows` rows.
pub(crate) fn lstm_geom(op: &Op, inp: Shape, in_rows: u16, out_rows: u16) -> LstmGeom {
    ops::lstm_geom(op, inp, in_rows, out_rows).unwrap_or_default()
}

/// Geometry of a convolution or transposed convolution (`op`) on `inp`.
fn conv_geom(op: &Op, inp: Shape) -> ConvGeom {
    ops::conv_geom(op, inp).unwrap_or_default()
}

/// Runs `net` in f32 with weights read through `weights`. The input must
/// already be in `a`; `cell` is the Row LSTM scratch. Returns the output
/// shape and whether it is in `a`.
pub(crate) fn forward_float<'w, W: FloatWeights>(
    net: &Net<'w>,
    a: &mut [f32],
    b: &mut [f32],
    cell: &mut [f32],
    weights: fn(&'w [u8]) -> W,
) -> (Shape, bool) {
    let mut shape = net.input;
    let mut in_a = true;
    for layer in net.layers.iter() {
        let out = next_shape(&layer.op, shape);
        if ops::is_view(&layer.op) {
            shape = out;
            continue;
        }
        let (src, dst) = if in_a {
            (&a[..], &mut b[..])
        } else {
            (&b[..], &mut a[..])
        };
        let src = &src[..shape.numel() as usize];
        let dst = &mut dst[..out.numel() as usize];
        let relu = layer.act == Act::Relu;
        let w = weights(layer.weight);
        match layer.op {
            Op::Dense { .. } if features::DENSE => {
                kernels::dense_f32(src, w, layer.bias, dst, relu)
            }
            Op::Conv2d { .. } if features::CONV2D => {
                let g = conv_geom(&layer.op, shape);
                kernels::conv2d_f32(src, &g, w, layer.bias, dst, relu)
            }
            Op::ConvTranspose2d { .. } if features::CONV_TRANSPOSE2D => {
                let g = conv_geom(&layer.op, shape);
                kernels::conv_transpose2d_f32(src, &g, w, layer.bias, dst, relu)
            }
            Op::MaskedConv2d { .. } if features::MASKED_CONV2D => {
                let g = masked_geom(&layer.op, shape, shape.h, shape.h);
                kernels::masked_conv2d_f32(src, &g, w, layer.bias, dst, relu)
            }
            Op::RowLstm { .. } if features::ROW_LSTM => {
                let g = lstm_geom(&layer.op, shape, shape.h, shape.h);
                kernels::row_lstm_f32(src, &g, w, layer.bias, dst, cell)
            }
            Op::StackConv2d { .. } if features::STACK_CONV2D => {
                let g = stack_geom(&layer.op, shape, shape.h, shape.h);
                kernels::stack_conv2d_f32(src, &g, w, layer.bias, dst, relu)
            }
            // A reshape; or an op this build left out, which Model::load
            // refused.
            _ => {}
        }
        shape = out;
        in_a = !in_a;
    }
    (shape, in_a)
}

/// Requantization parameters of an int8 layer (validated by the plan).
pub(crate) fn requant<'w>(layer: &Layer<'w>) -> RequantI8<'w> {
    let (in_zp, out_zp, multiplier, shift) = match &layer.quant {
        Some(q) => (q.in_zp as i32, q.out_zp as i32, q.multiplier, q.shift),
        None => (0, 0, &[][..], &[][..]),
    };
    RequantI8 {
        in_zp,
        out_zp,
        multiplier,
        shift,
        min: if layer.act == Act::Relu { out_zp } else { -128 },
        max: 127,
    }
}

/// Runs an int8 `net`; the quantized input must already be in `a`; `cell`
/// is the Row LSTM scratch, `scratch` the kernels' ([`crate::Plan::scratch`]).
/// `SMALL`: the plan's profile is [`kernels::Profile::Small`] (a separate
/// instance, so that the [`kernels::Profile::Fast`] one compiles exactly to
/// the kernels it calls and nothing else).
pub(crate) fn forward_i8<const SMALL: bool>(
    net: &Net<'_>,
    a: &mut [i8],
    b: &mut [i8],
    cell: &mut [i32],
    scratch: &mut [u32],
) -> (Shape, bool) {
    let mut shape = net.input;
    let mut in_a = true;
    for layer in net.layers.iter() {
        let out = next_shape(&layer.op, shape);
        if ops::is_view(&layer.op) {
            shape = out;
            continue;
        }
        let (src, dst) = if in_a {
            (&a[..], &mut b[..])
        } else {
            (&b[..], &mut a[..])
        };
        let src = &src[..shape.numel() as usize];
        let dst = &mut dst[..out.numel() as usize];
        let q = requant(layer);
        match layer.op {
            Op::Dense { .. } if features::DENSE => {
                kernels::dense_i8(src, layer.weight, layer.bias, &q, dst, scratch)
            }
            Op::Conv2d { .. } if features::CONV2D => {
                let g = conv_geom(&layer.op, shape);
                let (w, bias) = (layer.weight, layer.bias);
                if SMALL {
                    let p = kernels::Profile::Small;
                    kernels::conv2d_i8_for(src, &g, w, bias, &q, dst, scratch, p)
                } else {
                    kernels::conv2d_i8(src, &g, w, bias, &q, dst, scratch)
                }
            }
            Op::ConvTranspose2d { .. } if features::CONV_TRANSPOSE2D => {
                let g = conv_geom(&layer.op, shape);
                let (w, bias) = (layer.weight, layer.bias);
                if SMALL {
                    let p = kernels::Profile::Small;
                    kernels::conv_transpose2d_i8_for(src, &g, w, bias, &q, dst, scratch, p)
                } else {
                    kernels::conv_transpose2d_i8(src, &g, w, bias, &q, dst, scratch)
                }
            }
            Op::MaskedConv2d { .. } if features::MASKED_CONV2D => {
                let g = masked_geom(&layer.op, shape, shape.h, shape.h);
                kernels::masked_conv2d_i8(src, &g, layer.weight, layer.bias, &q, dst, scratch)
            }
            Op::RowLstm { .. } if features::ROW_LSTM => {
                let g = lstm_geom(&layer.op, shape, shape.h, shape.h);
                kernels::row_lstm_i8(src, &g, layer.weight, layer.bias, &q, dst, cell, scratch)
            }
            Op::StackConv2d { .. } if features::STACK_CONV2D => {
                let g = stack_geom(&layer.op, shape, shape.h, shape.h);
                kernels::stack_conv2d_i8(src, &g, layer.weight, layer.bias, &q, dst, scratch)
            }
            // A reshape; or an op this build left out, which Model::load
            // refused.
            _ => {}
        }
        shape = out;
        in_a = !in_a;
    }
    (shape, in_a)
}

/// Quantizes a real number: `clamp(round(x / scale) + zp)`, rounding half
/// away from zero.
pub(crate) fn quantize(x: f32, scale: f32, zp: i8) -> i8 {
    let v = x / scale;
    let r = if v >= 0.0 { v + 0.5 } else { v - 0.5 };
    // `as` saturates (NaN -> 0).
    (r as i32).saturating_add(zp as i32).clamp(-128, 127) as i8
}

/// Runs `net` (validated by `plan`) on a real-valued input in the arena
/// (checked by `arena::check_bytes`). Returns whether the output is in buffer A.
pub(crate) fn run(
    net: &Net<'_>,
    dtype: crate::format::DType,
    plan: &crate::Plan,
    arena: &mut [u8],
    input: impl Iterator<Item = f32>,
) -> bool {
    use crate::format::DType;
    match dtype {
        // (A dtype this build left out was refused by Model::load.)
        DType::F32 | DType::F16 if features::F32 || features::F16 => {
            let (a, b, cell) = crate::plan::split_f32_cell(plan, arena);
            for (d, x) in a.iter_mut().zip(input) {
                *d = x;
            }
            if dtype == DType::F32 && features::F32 {
                forward_float(net, a, b, cell, kernels::F32Le).1
            } else if features::F16 {
                forward_float(net, a, b, cell, kernels::F16Le).1
            } else {
                true
            }
        }
        DType::F32 | DType::F16 => true,
        DType::I8 if !features::INT8 => true,
        DType::I8 => {
            let (a, b, cell, scratch) = crate::plan::split_i8_cell(plan, arena);
            // The plan guarantees input_q for int8 networks.
            let (scale, zp) = net.input_q.map_or((1.0, 0), |q| (q.scale, q.zero_point));
            for (d, x) in a.iter_mut().zip(input) {
                *d = quantize(x, scale, zp);
            }
            // Without the feature, no test at all: Model::load refused
            // Profile::Small, and a Fast build runs exactly the Fast path.
            if cfg!(feature = "small-profile") && plan.profile == kernels::Profile::Small {
                forward_i8_small(net, a, b, cell, scratch)
            } else {
                forward_i8::<false>(net, a, b, cell, scratch).1
            }
        }
    }
}

/// [`forward_i8`] in [`kernels::Profile::Small`], kept out of the Fast
/// callers; without the feature `small-profile`, never reached
/// ([`crate::Model::load_for`] refuses that profile).
#[inline(never)]
fn forward_i8_small(
    net: &Net<'_>,
    a: &mut [i8],
    b: &mut [i8],
    cell: &mut [i32],
    scratch: &mut [u32],
) -> bool {
    if cfg!(feature = "small-profile") {
        forward_i8::<true>(net, a, b, cell, scratch).1
    } else {
        true
    }
}

/// Scale and zero point of an int8 network's output: the last quantized
/// layer's (a reshape keeps its input's), or the input's if none is.
pub(crate) fn output_q(net: &Net<'_>) -> (f32, i8) {
    net.layers
        .iter()
        .rev()
        .find_map(|l| l.quant.map(|q| (q.out_scale, q.out_zp)))
        .or(net.input_q.map(|q| (q.scale, q.zero_point)))
        .unwrap_or((1.0, 0))
}

/// Copies the output of a [`run`] into `out` as real numbers (dequantized
/// for int8).
pub(crate) fn read_output(
    net: &Net<'_>,
    dtype: crate::format::DType,
    plan: &crate::Plan,
    arena: &mut [u8],
    in_a: bool,
    out: &mut [f32],
) {
    use crate::format::DType;
    match dtype {
        DType::F32 | DType::F16 => {
            let (a, b) = crate::plan::split_f32(plan, arena);
            let src = if in_a { a } else { b };
            for (d, &v) in out.iter_mut().zip(src.iter()) {
                *d = v;
            }
        }
        DType::I8 => {
            let (a, b) = crate::plan::split_i8(plan, arena);
            let src = if in_a { a } else { b };
            let (scale, zp) = output_q(net);
            for (d, &v) in out.iter_mut().zip(src.iter()) {
                *d = scale * (v as i32 - zp as i32) as f32;
            }
        }
    }
}
