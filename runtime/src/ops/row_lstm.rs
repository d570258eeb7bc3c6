//! [`Op::RowLstm`](crate::format::Op::RowLstm): Row LSTM (PixelRNN), a
//! 1-D masked input-to-state and an unmasked state-to-state convolution
//! along each row, `4 * hidden` gate rows. Weight layout: [`LstmGeom`]; an
//! int8 blob ends with the lookup tables ([`ROW_LSTM_LUT_BYTES`]).

use crate::format::{Act, DType, LayerQuant, Mask, Shape, ROW_LSTM_LUT_BYTES, ROW_LSTM_OUT_SCALE};
use crate::kernels::{fast, LstmGeom};

/// Output shape on `inp` (the hidden states), if the geometry fits (odd
/// kernels).
pub fn out_shape(in_c: u16, hidden: u16, k_in: u8, k_state: u8, inp: Shape) -> Option<Shape> {
    if inp.c != in_c || hidden == 0 || k_in.is_multiple_of(2) || k_state.is_multiple_of(2) {
        return None;
    }
    Some(Shape { c: hidden, ..inp })
}

/// Whether a layer's activation and (int8) output quantization suit a Row
/// LSTM: no activation; hidden states at zero point 0 and scale
/// [`ROW_LSTM_OUT_SCALE`].
pub fn layer_ok(act: Act, quant: Option<&LayerQuant<'_>>, dtype: DType) -> bool {
    if act != Act::None {
        return false;
    }
    match quant {
        Some(q) if dtype == DType::I8 => q.out_zp == 0 && q.out_scale == ROW_LSTM_OUT_SCALE,
        _ => true,
    }
}

/// Weight elements (`w_is` then `w_ss`).
pub fn weights(in_c: u16, hidden: u16, k_in: u8, k_state: u8) -> u64 {
    4 * hidden as u64 * (in_c as u64 * k_in as u64 + hidden as u64 * k_state as u64)
}

/// Bytes of the weight blob besides the weights: the int8 lookup tables.
pub fn extra_weight_bytes(dtype: DType) -> u64 {
    if dtype == DType::I8 {
        ROW_LSTM_LUT_BYTES as u64
    } else {
        0
    }
}

/// Bias elements: one per gate row.
pub fn channels(hidden: u16) -> u64 {
    4 * hidden as u64
}

/// Requantization channels: two per gate row in int8 (input-to-state and
/// state-to-state), else the bias channels.
pub fn quant_channels(hidden: u16, dtype: DType) -> u64 {
    if dtype == DType::I8 {
        2 * channels(hidden)
    } else {
        channels(hidden)
    }
}

/// Elements of the cell-state row on `inp`: `hidden * w`.
pub fn cell_elems(hidden: u16, inp: Shape) -> u64 {
    hidden as u64 * inp.w as u64
}

/// Taps at one position (`y`, `x`) of an image `w` wide, per gate row:
/// `(input taps, state taps)`, the taps that read inside the row
/// (input-to-state, unmasked) and inside the previous row
/// (state-to-state, none on row 0, where the state is zero and the kernel
/// skips it). Multiply by `in_c` and `hidden` respectively, then by
/// `4 * hidden` gate rows.
pub fn taps_at(w: u16, k_in: u8, mask: Mask, k_state: u8, y: u16, x: u16) -> (u64, u64) {
    let inside = |k: u8, t: u8| {
        let col = x as i64 + t as i64 - (k / 2) as i64;
        (0..w as i64).contains(&col)
    };
    let t_in = (0..k_in)
        .filter(|&t| mask.allows_1d(k_in as usize, t as usize) && inside(k_in, t))
        .count() as u64;
    let t_ss = if y == 0 {
        0
    } else {
        (0..k_state).filter(|&t| inside(k_state, t)).count() as u64
    };
    (t_in, t_ss)
}

/// MACs at (`y`, `x`) of an image `w` wide: all `4 * hidden` gate rows.
#[allow(clippy::too_many_arguments)]
pub fn macs_at(
    in_c: u16,
    hidden: u16,
    k_in: u8,
    mask: Mask,
    k_state: u8,
    w: u16,
    y: u16,
    x: u16,
) -> u64 {
    let (t_in, t_ss) = taps_at(w, k_in, mask, k_state, y, x);
    4 * hidden as u64 * (in_c as u64 * t_in + hidden as u64 * t_ss)
}

/// Multiply-accumulates of one pass on `inp`.
pub fn macs(in_c: u16, hidden: u16, k_in: u8, mask: Mask, k_state: u8, inp: Shape) -> u64 {
    let mut macs = 0u64;
    for y in 0..inp.h.min(2) {
        for x in 0..inp.w {
            // Rows 1.. all cost what row 1 costs.
            let m = macs_at(in_c, hidden, k_in, mask, k_state, inp.w, y, x);
            macs += if y == 0 { m } else { m * (inp.h as u64 - 1) };
        }
    }
    macs
}

/// Rows of its input the layer reads at row `y`: row `y` only.
pub fn rows_read() -> u16 {
    1
}

/// Rows of its own output the layer keeps: row `y - 1` is the state while
/// row `y` is written.
pub fn rows_kept() -> u16 {
    2
}

/// The geometry on an input of `inp`'s height and width (its channels are
/// the op's `in_c`) over buffers of `in_rows` and `out_rows` rows.
#[allow(clippy::too_many_arguments)]
pub fn geom(
    in_c: u16,
    hidden: u16,
    k_in: u8,
    mask: Mask,
    k_state: u8,
    inp: Shape,
    in_rows: u16,
    out_rows: u16,
) -> LstmGeom {
    LstmGeom {
        in_c: in_c as usize,
        hidden: hidden as usize,
        h: inp.h as usize,
        w: inp.w as usize,
        k_in: k_in as usize,
        mask_b: mask == Mask::B,
        k_state: k_state as usize,
        in_rows: in_rows as usize,
        out_rows: out_rows as usize,
    }
}

/// Scratch words of the optimized int8 kernel on `inp`.
pub fn scratch_words(in_c: u16, hidden: u16, k_in: u8, mask: Mask, k_state: u8, inp: Shape) -> u64 {
    fast::lstm_scratch_words(&geom(in_c, hidden, k_in, mask, k_state, inp, 1, 1))
}
