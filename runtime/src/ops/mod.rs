//! One module per [`Op`]: everything the rest of the crate (and the
//! trainer) needs to know about an op besides its kernels.
//!
//! Each op module owns, as plain functions of the op's fields and its
//! input [`Shape`], the op's output shape (`None` when the geometry does
//! not fit), its weight and bias element counts, its multiply-accumulates
//! (per pass and, for the ops the incremental sampler runs, per
//! position), the rows of its input that a consumer keeps, its kernel
//! geometry and its int8 kernel's scratch. The functions here are the only
//! dispatch on [`Op`] for these: each `match` lists every op, so adding
//! one fails to compile until every question has its answer.

pub mod conv2d;
pub mod conv_transpose2d;
pub mod dense;
pub mod masked_conv2d;
pub mod reshape;
pub mod row_lstm;
pub mod stack_conv2d;

use crate::format::{Act, DType, LayerQuant, Mask, Op, Shape};
use crate::kernels::{ConvGeom, LstmGeom, MaskedGeom, StackGeom};

/// Output shape of `op` on `inp`; `None` where the geometry does not fit
/// (channels that do not match, an empty or non-positive output, an even
/// kernel where an odd one is needed).
pub fn out_shape(op: &Op, inp: Shape) -> Option<Shape> {
    match *op {
        Op::Dense { inp: i, out } => dense::out_shape(i, out, inp),
        Op::Conv2d {
            in_c,
            out_c,
            k,
            stride,
            pad,
        } => conv2d::out_shape(in_c, out_c, k, stride, pad, inp),
        Op::ConvTranspose2d {
            in_c,
            out_c,
            k,
            stride,
            pad,
            out_pad,
        } => conv_transpose2d::out_shape(in_c, out_c, k, stride, pad, out_pad, inp),
        Op::MaskedConv2d { in_c, out_c, k, .. } => masked_conv2d::out_shape(in_c, out_c, k, inp),
        Op::StackConv2d {
            in_c,
            in_v,
            out_c,
            out_v,
            k,
            ..
        } => stack_conv2d::out_shape(in_c, in_v, out_c, out_v, k, inp),
        Op::RowLstm {
            in_c,
            hidden,
            k_in,
            k_state,
            ..
        } => row_lstm::out_shape(in_c, hidden, k_in, k_state, inp),
        Op::Reshape(to) => reshape::out_shape(to, inp),
    }
}

/// Whether `op` only renames its input ([`Op::Reshape`]): no weights, no
/// kernel, no buffer of its own.
pub fn is_view(op: &Op) -> bool {
    match op {
        Op::Reshape(_) => true,
        Op::Dense { .. }
        | Op::Conv2d { .. }
        | Op::ConvTranspose2d { .. }
        | Op::MaskedConv2d { .. }
        | Op::StackConv2d { .. }
        | Op::RowLstm { .. } => false,
    }
}

/// Whether a layer's activation and output quantization suit `op` (the Row
/// LSTM has none and a fixed int8 output scale; the others take any).
pub fn layer_ok(op: &Op, act: Act, quant: Option<&LayerQuant<'_>>, dtype: DType) -> bool {
    match op {
        Op::RowLstm { .. } => row_lstm::layer_ok(act, quant, dtype),
        Op::Dense { .. }
        | Op::Conv2d { .. }
        | Op::ConvTranspose2d { .. }
        | Op::MaskedConv2d { .. }
        | Op::StackConv2d { .. }
        | Op::Reshape(_) => true,
    }
}

/// Weight elements of `op` (the blob holds these times
/// [`DType::weight_bytes`], plus [`extra_weight_bytes`]).
pub fn weight_elems(op: &Op) -> u64 {
    match *op {
        Op::Dense { inp: i, out } => dense::weights(i, out),
        Op::Conv2d { in_c, out_c, k, .. } => conv2d::weights(in_c, out_c, k),
        Op::ConvTranspose2d { in_c, out_c, k, .. } => conv_transpose2d::weights(in_c, out_c, k),
        Op::MaskedConv2d { in_c, out_c, k, .. } => masked_conv2d::weights(in_c, out_c, k),
        Op::StackConv2d {
            in_c,
            in_v,
            out_c,
            out_v,
            k,
            mask,
        } => stack_conv2d::weights(in_c, in_v, out_c, out_v, k, mask),
        Op::RowLstm {
            in_c,
            hidden,
            k_in,
            k_state,
            ..
        } => row_lstm::weights(in_c, hidden, k_in, k_state),
        Op::Reshape(_) => 0,
    }
}

/// The weight blob of `op` as `(outer, channels, inner)`: `outer` blocks
/// of one row of `inner` weights per output channel (how per-channel int8
/// scales apply); `None` for ops whose rows differ in length (the
/// two-stack convolution: [`StackGeom`]) or are laid out otherwise (the Row
/// LSTM: [`LstmGeom`]) and for those without weights.
pub fn weight_blocks(op: &Op) -> Option<(usize, usize, usize)> {
    match *op {
        Op::Dense { inp, out } => Some(dense::weight_blocks(inp, out)),
        Op::Conv2d { in_c, out_c, k, .. } => Some(conv2d::weight_blocks(in_c, out_c, k)),
        Op::ConvTranspose2d { in_c, out_c, k, .. } => {
            Some(conv_transpose2d::weight_blocks(in_c, out_c, k))
        }
        Op::MaskedConv2d { in_c, out_c, k, .. } => {
            Some(masked_conv2d::weight_blocks(in_c, out_c, k))
        }
        Op::StackConv2d { .. } | Op::RowLstm { .. } | Op::Reshape(_) => None,
    }
}

/// Bytes of `op`'s weight blob besides the weights (the int8 Row LSTM's
/// lookup tables).
pub fn extra_weight_bytes(op: &Op, dtype: DType) -> u64 {
    match op {
        Op::RowLstm { .. } => row_lstm::extra_weight_bytes(dtype),
        Op::Dense { .. }
        | Op::Conv2d { .. }
        | Op::ConvTranspose2d { .. }
        | Op::MaskedConv2d { .. }
        | Op::StackConv2d { .. }
        | Op::Reshape(_) => 0,
    }
}

/// Bias elements of `op` (4 bytes each: f32, or i32 for int8).
pub fn bias_elems(op: &Op) -> u64 {
    match *op {
        Op::Dense { out, .. } => dense::channels(out),
        Op::Conv2d { out_c, .. } => conv2d::channels(out_c),
        Op::ConvTranspose2d { out_c, .. } => conv_transpose2d::channels(out_c),
        Op::MaskedConv2d { out_c, .. } => masked_conv2d::channels(out_c),
        Op::StackConv2d { out_c, .. } => stack_conv2d::channels(out_c),
        Op::RowLstm { hidden, .. } => row_lstm::channels(hidden),
        Op::Reshape(_) => 0,
    }
}

/// Requantization channels of `op` in `dtype` (multipliers and shifts of
/// an int8 layer).
pub fn quant_channels(op: &Op, dtype: DType) -> u64 {
    match *op {
        Op::RowLstm { hidden, .. } => row_lstm::quant_channels(hidden, dtype),
        Op::Dense { .. }
        | Op::Conv2d { .. }
        | Op::ConvTranspose2d { .. }
        | Op::MaskedConv2d { .. }
        | Op::StackConv2d { .. }
        | Op::Reshape(_) => bias_elems(op),
    }
}

/// Multiply-accumulates of one pass of `op` on `inp`: the taps that read
/// inside the tensors, as the kernels compute them.
pub fn macs(op: &Op, inp: Shape) -> u64 {
    match *op {
        Op::Dense { inp: i, out } => dense::macs(i, out),
        Op::Conv2d {
            in_c,
            out_c,
            k,
            stride,
            pad,
        } => conv2d::macs(in_c, out_c, k, stride, pad, inp),
        Op::ConvTranspose2d {
            in_c,
            out_c,
            k,
            stride,
            pad,
            out_pad,
        } => conv_transpose2d::macs(in_c, out_c, k, stride, pad, out_pad, inp),
        Op::MaskedConv2d {
            in_c,
            out_c,
            k,
            mask,
        } => masked_conv2d::macs(in_c, out_c, k, mask, inp),
        Op::StackConv2d {
            in_c,
            in_v,
            out_c,
            out_v,
            k,
            mask,
        } => stack_conv2d::macs(in_c, in_v, out_c, out_v, k, mask, inp),
        Op::RowLstm {
            in_c,
            hidden,
            k_in,
            mask,
            k_state,
        } => row_lstm::macs(in_c, hidden, k_in, mask, k_state, inp),
        Op::Reshape(_) => 0,
    }
}

/// Multiply-accumulates of `op` at output position (`y`, `x`) of an image
/// of `inp`'s size, for the ops the incremental sampler runs; `None` for
/// the others.
pub fn macs_at(op: &Op, inp: Shape, y: u16, x: u16) -> Option<u64> {
    match *op {
        Op::MaskedConv2d {
            in_c,
            out_c,
            k,
            mask,
        } => Some(masked_conv2d::macs_at(in_c, out_c, k, mask, inp, y, x)),
        Op::StackConv2d {
            in_c,
            in_v,
            out_c,
            out_v,
            k,
            mask,
        } => Some(stack_conv2d::macs_at(
            in_c, in_v, out_c, out_v, k, mask, inp.w, y, x,
        )),
        Op::RowLstm {
            in_c,
            hidden,
            k_in,
            mask,
            k_state,
        } => Some(row_lstm::macs_at(
            in_c, hidden, k_in, mask, k_state, inp.w, y, x,
        )),
        Op::Dense { .. } | Op::Conv2d { .. } | Op::ConvTranspose2d { .. } | Op::Reshape(_) => None,
    }
}

/// Rows of its input that `op` reads to compute its output row `y` (the
/// rows the incremental sampler keeps of that input); `None` for ops the
/// incremental sampler does not run.
pub fn rows_read(op: &Op) -> Option<u16> {
    match *op {
        Op::MaskedConv2d { k, .. } => Some(masked_conv2d::rows_read(k)),
        Op::StackConv2d { k, .. } => Some(stack_conv2d::rows_read(k)),
        Op::RowLstm { .. } => Some(row_lstm::rows_read()),
        Op::Dense { .. } | Op::Conv2d { .. } | Op::ConvTranspose2d { .. } | Op::Reshape(_) => None,
    }
}

/// Rows of its own output that `op` needs kept while it writes a row (its
/// recurrent state): 2 for the Row LSTM, 1 for the others.
pub fn rows_kept(op: &Op) -> u16 {
    match op {
        Op::RowLstm { .. } => row_lstm::rows_kept(),
        Op::Dense { .. }
        | Op::Conv2d { .. }
        | Op::ConvTranspose2d { .. }
        | Op::MaskedConv2d { .. }
        | Op::StackConv2d { .. }
        | Op::Reshape(_) => 1,
    }
}

/// Whether `op` carries state along the image (a cell-state row).
pub fn recurrent(op: &Op) -> bool {
    match op {
        Op::RowLstm { .. } => true,
        Op::Dense { .. }
        | Op::Conv2d { .. }
        | Op::ConvTranspose2d { .. }
        | Op::MaskedConv2d { .. }
        | Op::StackConv2d { .. }
        | Op::Reshape(_) => false,
    }
}

/// Elements (4 bytes each) of `op`'s cell-state row on `inp`; 0 unless
/// [`recurrent`].
pub fn cell_elems(op: &Op, inp: Shape) -> u64 {
    match *op {
        Op::RowLstm { hidden, .. } => row_lstm::cell_elems(hidden, inp),
        Op::Dense { .. }
        | Op::Conv2d { .. }
        | Op::ConvTranspose2d { .. }
        | Op::MaskedConv2d { .. }
        | Op::StackConv2d { .. }
        | Op::Reshape(_) => 0,
    }
}

/// What the causality check needs of an autoregressive op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CausalIo {
    /// Vertical input channels (the first `in_v`), read at rows up to the
    /// output's (a two-stack layer's vertical outputs) or one row up (its
    /// horizontal outputs).
    pub in_v: u16,
    /// Vertical output channels (the first `out_v`).
    pub out_v: u16,
    /// Whether the per-position outputs at pixel p read any position of
    /// the per-position inputs (false for a 1x1 mask A convolution, a
    /// mask A Row LSTM with a 1-wide input kernel, a 1x1 mask A stack).
    pub reads: bool,
    /// Whether they read the inputs at p itself (mask B).
    pub reads_own: bool,
}

/// The causality facts of an autoregressive op (see [`CausalIo`]); `None`
/// for ops that are not autoregressive.
pub fn causal_io(op: &Op) -> Option<CausalIo> {
    let io = |in_v, out_v, own_taps: u8, mask: Mask| CausalIo {
        in_v,
        out_v,
        reads: own_taps > 0 || mask == Mask::B,
        reads_own: mask == Mask::B,
    };
    match *op {
        // The taps left of and above the centre (k / 2 rows above, or k / 2
        // to the left).
        Op::MaskedConv2d { mask, k, .. } => Some(io(0, 0, k / 2, mask)),
        Op::RowLstm { mask, k_in, .. } => Some(io(0, 0, k_in / 2, mask)),
        Op::StackConv2d {
            in_v,
            out_v,
            mask,
            k,
            ..
        } => Some(io(in_v, out_v, k / 2, mask)),
        Op::Dense { .. } | Op::Conv2d { .. } | Op::ConvTranspose2d { .. } | Op::Reshape(_) => None,
    }
}

/// Geometry of a convolution or transposed convolution on `inp`; `None`
/// for other ops or a geometry that does not fit.
pub fn conv_geom(op: &Op, inp: Shape) -> Option<ConvGeom> {
    match *op {
        Op::Conv2d {
            in_c,
            out_c,
            k,
            stride,
            pad,
        } => conv2d::geom(in_c, out_c, k, stride, pad, inp),
        Op::ConvTranspose2d {
            in_c,
            out_c,
            k,
            stride,
            pad,
            out_pad,
        } => conv_transpose2d::geom(in_c, out_c, k, stride, pad, out_pad, inp),
        Op::Dense { .. }
        | Op::MaskedConv2d { .. }
        | Op::StackConv2d { .. }
        | Op::RowLstm { .. }
        | Op::Reshape(_) => None,
    }
}

/// Geometry of a masked convolution on an input of `inp`'s height and
/// width over buffers of `in_rows` and `out_rows` rows (`inp.h` both:
/// whole tensors); `None` for other ops.
pub fn masked_geom(op: &Op, inp: Shape, in_rows: u16, out_rows: u16) -> Option<MaskedGeom> {
    match *op {
        Op::MaskedConv2d {
            in_c,
            out_c,
            k,
            mask,
        } => Some(masked_conv2d::geom(
            in_c, out_c, k, mask, inp, in_rows, out_rows,
        )),
        Op::Dense { .. }
        | Op::Conv2d { .. }
        | Op::ConvTranspose2d { .. }
        | Op::StackConv2d { .. }
        | Op::RowLstm { .. }
        | Op::Reshape(_) => None,
    }
}

/// Geometry of a two-stack convolution, as [`masked_geom`].
pub fn stack_geom(op: &Op, inp: Shape, in_rows: u16, out_rows: u16) -> Option<StackGeom> {
    match *op {
        Op::StackConv2d {
            in_c,
            in_v,
            out_c,
            out_v,
            k,
            mask,
        } => Some(stack_conv2d::geom(
            in_c, in_v, out_c, out_v, k, mask, inp, in_rows, out_rows,
        )),
        Op::Dense { .. }
        | Op::Conv2d { .. }
        | Op::ConvTranspose2d { .. }
        | Op::MaskedConv2d { .. }
        | Op::RowLstm { .. }
        | Op::Reshape(_) => None,
    }
}

/// Geometry of a Row LSTM, as [`masked_geom`].
pub fn lstm_geom(op: &Op, inp: Shape, in_rows: u16, out_rows: u16) -> Option<LstmGeom> {
    match *op {
        Op::RowLstm {
            in_c,
            hidden,
            k_in,
            mask,
            k_state,
        } => Some(row_lstm::geom(
            in_c, hidden, k_in, mask, k_state, inp, in_rows, out_rows,
        )),
        Op::Dense { .. }
        | Op::Conv2d { .. }
        | Op::ConvTranspose2d { .. }
        | Op::MaskedConv2d { .. }
        | Op::StackConv2d { .. }
        | Op::Reshape(_) => None,
    }
}

/// Scratch words the optimized int8 kernel of `op` needs on `inp` in
/// `profile` (which changes only convolutions and transposed
/// convolutions); the plan has checked the layer, so every size is bounded by its weight blob
/// or tensors.
pub fn scratch_words(op: &Op, inp: Shape, profile: crate::kernels::Profile) -> u64 {
    match *op {
        Op::Dense { .. } => dense::scratch_words(inp),
        Op::Conv2d {
            in_c,
            out_c,
            k,
            stride,
            pad,
        } => conv2d::scratch_words(in_c, out_c, k, stride, pad, inp, profile),
        Op::ConvTranspose2d {
            in_c,
            out_c,
            k,
            stride,
            pad,
            out_pad,
        } => conv_transpose2d::scratch_words(in_c, out_c, k, stride, pad, out_pad, inp, profile),
        Op::MaskedConv2d {
            in_c,
            out_c,
            k,
            mask,
        } => masked_conv2d::scratch_words(in_c, out_c, k, mask, inp),
        Op::StackConv2d {
            in_c,
            in_v,
            out_c,
            out_v,
            k,
            mask,
        } => stack_conv2d::scratch_words(in_c, in_v, out_c, out_v, k, mask, inp),
        Op::RowLstm {
            in_c,
            hidden,
            k_in,
            mask,
            k_state,
        } => row_lstm::scratch_words(in_c, hidden, k_in, mask, k_state, inp),
        Op::Reshape(_) => 0,
    }
}
