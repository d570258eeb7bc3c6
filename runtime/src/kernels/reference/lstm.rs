//! Row LSTM (PixelRNN): input-to-state and state-to-state convolutions
//! along a row, gates i, f, o, g.

#[cfg(test)]
use super::mac_counter;
use super::mac_i8;
use crate::format::{f32_at, i32_at};
use crate::kernels::{FloatWeights, LstmGeom, RequantI8};

/// Taps of a Row LSTM at column `x`: `(t0, t1)` for the input-to-state
/// kernel (the unmasked taps reading inside the row) and `(s0, s1)` for the
/// state-to-state kernel (the taps reading inside the previous row). Tap
/// `t` reads column `x + t - k / 2`.
#[inline(always)]
pub(crate) fn lstm_taps(g: &LstmGeom, x: usize) -> ((usize, usize), (usize, usize)) {
    let (ci, cs) = (g.k_in / 2, g.k_state / 2);
    // Mask A: taps t < ci; mask B: t <= ci (never right of x, so always
    // inside the row on that side).
    let t1 = (ci + usize::from(g.mask_b)).min(g.k_in);
    let s1 = g.k_state.min(g.w + cs - x);
    ((ci.saturating_sub(x), t1), (cs.saturating_sub(x), s1))
}

/// Calls `f(acc, w_index, x_index)` for every input-to-state tap of gate
/// row `r` at (`y`, `x`) (order: input channel, tap), then
/// `s(acc, w_index, h_index)` for every state-to-state tap (order: hidden
/// channel, tap) when `y > 0`.
/// `w_index` counts from the start of the weight blob (`w_ss` follows
/// `w_is`); `h_index` is into the output buffer, row `y - 1`.
#[inline(always)]
pub(crate) fn lstm_gate_taps<A>(
    g: &LstmGeom,
    r: usize,
    y: usize,
    x: usize,
    acc: &mut A,
    f: impl Fn(&mut A, usize, usize),
    s: impl Fn(&mut A, usize, usize),
) {
    lstm_gate_runs(
        g,
        r,
        y,
        x,
        acc,
        |a, w0, x0, n| {
            for t in 0..n {
                f(a, w0 + t, x0 + t)
            }
        },
        |a, w0, h0, n| {
            for t in 0..n {
                s(a, w0 + t, h0 + t)
            }
        },
    )
}

/// [`lstm_gate_taps`] by runs: `f(acc, w_index, x_index, n)` for the `n`
/// consecutive input-to-state taps of each input channel, then
/// `s(acc, w_index, h_index, n)` for the state-to-state taps of each
/// hidden channel (when `y > 0`).
#[inline(always)]
pub(crate) fn lstm_gate_runs<A>(
    g: &LstmGeom,
    r: usize,
    y: usize,
    x: usize,
    acc: &mut A,
    f: impl Fn(&mut A, usize, usize, usize),
    s: impl Fn(&mut A, usize, usize, usize),
) {
    let ((t0, t1), (s0, s1)) = lstm_taps(g, x);
    let (ci, cs) = (g.k_in / 2, g.k_state / 2);
    let irow = y % g.in_rows;
    for i in 0..g.in_c {
        let wrow = (r * g.in_c + i) * g.k_in;
        // x + t >= ci for every t visited: no underflow.
        let xrow = (i * g.in_rows + irow) * g.w + x;
        #[cfg(test)]
        mac_counter::add(t1.saturating_sub(t0));
        if t1 > t0 {
            f(acc, wrow + t0, xrow + t0 - ci, t1 - t0);
        }
    }
    if y == 0 {
        return;
    }
    let prow = (y - 1) % g.out_rows;
    let base = g.w_is_len();
    for j in 0..g.hidden {
        let wrow = base + (r * g.hidden + j) * g.k_state;
        let hrow = (j * g.out_rows + prow) * g.w + x;
        #[cfg(test)]
        mac_counter::add(s1.saturating_sub(s0));
        if s1 > s0 {
            s(acc, wrow + s0, hrow + s0 - cs, s1 - s0);
        }
    }
}

/// Row LSTM, f32 activations, at one position: every hidden channel of
/// pixel (`y`, `x`), written to `h` (buffer row `y % out_rows`), reading
/// the previous row of `h` (`y - 1`, nothing for `y == 0`) and updating
/// the cell-state row `cell` (`[hidden][w]`) in place at column `x`. The
/// full-map kernel [`row_lstm_f32`] and the incremental sampler both
/// compute through this function, so they give the same bits.
///
/// Per hidden channel `j`, the four gate rows `j`, `H + j`, `2H + j`,
/// `3H + j` (i, f, o, g) are summed bias first, then input channels and
/// taps, then hidden channels and taps (one f32 accumulator each); then
/// `i, f, o` = [`crate::kernels::sigmoid_precise_f32`], `g` = [`crate::kernels::tanh_f32`],
/// `c = f * c_prev + i * g`, `h = o * tanh_f32(c)`. No gate array is kept:
/// channel `j` needs only its own four rows, so any `hidden` works without
/// scratch beyond the cell row.
#[inline]
#[allow(clippy::too_many_arguments)]
pub fn row_lstm_at_f32<W: FloatWeights>(
    x: &[f32],
    g: &LstmGeom,
    w: W,
    bias: &[u8],
    h: &mut [f32],
    cell: &mut [f32],
    y: usize,
    xp: usize,
) {
    debug_assert!(y < g.h && xp < g.w && g.in_rows > 0 && (g.out_rows > 1 || g.out_rows >= g.h));
    debug_assert!(cell.len() >= g.hidden * g.w);
    let hid = g.hidden;
    let orow = y % g.out_rows;
    for j in 0..hid {
        let mut pre = [0f32; 4];
        for (q, p) in pre.iter_mut().enumerate() {
            let r = q * hid + j;
            let mut acc = f32_at(bias, r);
            lstm_gate_taps(
                g,
                r,
                y,
                xp,
                &mut acc,
                |a, wi, xi| *a += w.at(wi) * x[xi],
                |a, wi, hi| *a += w.at(wi) * h[hi],
            );
            *p = acc;
        }
        let ci = j * g.w + xp;
        let c_prev = if y > 0 { cell[ci] } else { 0.0 };
        let (c, hv) = lstm_unit_f32(pre, c_prev);
        cell[ci] = c;
        h[(j * g.out_rows + orow) * g.w + xp] = hv;
    }
}

/// The f32 Row LSTM's arithmetic after the gate sums `pre` (i, f, o, g):
/// returns the new cell state and hidden value. Every f32 Row LSTM kernel
/// (reference and optimized) ends here.
#[inline(always)]
pub(crate) fn lstm_unit_f32(pre: [f32; 4], c_prev: f32) -> (f32, f32) {
    let i = crate::kernels::sigmoid_precise_f32(pre[0]);
    let f = crate::kernels::sigmoid_precise_f32(pre[1]);
    let o = crate::kernels::sigmoid_precise_f32(pre[2]);
    let gg = crate::kernels::tanh_f32(pre[3]);
    let c = f * c_prev + i * gg;
    (c, o * crate::kernels::tanh_f32(c))
}

/// Row LSTM, f32 activations, over the whole image (buffers of `h` rows),
/// row by row and position by position through [`row_lstm_at_f32`].
/// `cell` is one row of scratch (`hidden * w`); it need not be zeroed.
pub fn row_lstm_f32<W: FloatWeights>(
    x: &[f32],
    g: &LstmGeom,
    w: W,
    bias: &[u8],
    out: &mut [f32],
    cell: &mut [f32],
) {
    debug_assert!(x.len() >= g.in_c * g.in_rows * g.w);
    debug_assert!(out.len() >= g.hidden * g.out_rows * g.w);
    for y in 0..g.h {
        for xp in 0..g.w {
            row_lstm_at_f32(x, g, w, bias, out, cell, y, xp);
        }
    }
}

/// `(acc * m + 2^(shift-1)) >> shift` in i64, without clamping (the Row
/// LSTM adds two of them before it clamps).
#[inline(always)]
fn rq_i64(acc: i32, m: i32, shift: u8) -> i64 {
    debug_assert!((1..=62).contains(&shift) && m >= 0);
    if shift > 32 {
        // Exact in i32 (see `kernels::rounding_shift`).
        crate::kernels::rounding_shift(acc, m, shift) as i64
    } else {
        (acc as i64 * m as i64 + (1i64 << (shift - 1))) >> shift
    }
}

/// Row LSTM, int8, at one position (see [`row_lstm_at_f32`] and the exact
/// arithmetic in [`crate::format::Op::RowLstm`]). `w` is the whole int8
/// weight blob (`w_is`, `w_ss`, then the `sigmoid`, `tanh` and `cell_tanh`
/// tables); `q` holds the input zero point and the `8 * hidden`
/// multipliers and shifts; `cell` is the i32 cell-state row at scale 2^-14.
#[inline]
#[allow(clippy::too_many_arguments)]
pub fn row_lstm_at_i8(
    x: &[i8],
    g: &LstmGeom,
    w: &[u8],
    bias: &[u8],
    q: &RequantI8<'_>,
    h: &mut [i8],
    cell: &mut [i32],
    y: usize,
    xp: usize,
) {
    debug_assert!(y < g.h && xp < g.w && g.in_rows > 0 && (g.out_rows > 1 || g.out_rows >= g.h));
    debug_assert!(cell.len() >= g.hidden * g.w);
    let hid = g.hidden;
    let orow = y % g.out_rows;
    for j in 0..hid {
        let mut acc = [(0i32, 0i32); 4];
        for (qi, a) in acc.iter_mut().enumerate() {
            let r = qi * hid + j;
            // (input-to-state with the bias, state-to-state)
            *a = (i32_at(bias, r), 0i32);
            lstm_gate_taps(
                g,
                r,
                y,
                xp,
                a,
                |a, wi, xi| a.0 = mac_i8(a.0, x[xi], q.in_zp, w[wi]),
                |a, wi, hi| a.1 = mac_i8(a.1, h[hi], 0, w[wi]),
            );
        }
        let ci = j * g.w + xp;
        let c_prev = if y > 0 { cell[ci] } else { 0 };
        let (c, hv) = lstm_unit_i8(g, w, q, j, acc, c_prev);
        cell[ci] = c;
        h[(j * g.out_rows + orow) * g.w + xp] = hv;
    }
}

/// The int8 Row LSTM's arithmetic after the gate sums, for hidden channel
/// `j`: `acc[q]` = (input-to-state sum with the bias, state-to-state sum)
/// of gate `q` (i, f, o, g); returns the new cell state and hidden value.
/// Every int8 Row LSTM kernel (reference and optimized) ends here.
#[inline(always)]
pub(crate) fn lstm_unit_i8(
    g: &LstmGeom,
    w: &[u8],
    q: &RequantI8<'_>,
    j: usize,
    acc: [(i32, i32); 4],
    c_prev: i32,
) -> (i32, i8) {
    let hid = g.hidden;
    let luts = g.w_is_len() + g.w_ss_len();
    let (sigmoid, tanh, cell_tanh) = (
        &w[luts..luts + 256],
        &w[luts + 256..luts + 512],
        &w[luts + 512..luts + 1024],
    );
    let lut = |t: &[u8], i: i64| t[i as usize] as i8 as i32;
    let mut p = [0i64; 4];
    for (qi, pq) in p.iter_mut().enumerate() {
        let r = qi * hid + j;
        let (acc_is, acc_ss) = acc[qi];
        let m_is = i32_at(q.multiplier, r);
        let m_ss = i32_at(q.multiplier, 4 * hid + r);
        let v = rq_i64(acc_is, m_is, q.shift[r]) + rq_i64(acc_ss, m_ss, q.shift[4 * hid + r]);
        *pq = v.clamp(-128, 127) + 128;
    }
    let i = lut(sigmoid, p[0]);
    let f = lut(sigmoid, p[1]);
    let o = lut(sigmoid, p[2]);
    let gg = lut(tanh, p[3]);
    let c = (((f * c_prev + 64) >> 7) + i * gg).clamp(-(1 << 20), 1 << 20);
    let t = lut(cell_tanh, (((c + 128) >> 8).clamp(-256, 255) + 256) as i64);
    (c, ((o * t + 64) >> 7).clamp(-128, 127) as i8)
}

/// Row LSTM, int8, over the whole image through [`row_lstm_at_i8`].
pub fn row_lstm_i8(
    x: &[i8],
    g: &LstmGeom,
    w: &[u8],
    bias: &[u8],
    q: &RequantI8<'_>,
    out: &mut [i8],
    cell: &mut [i32],
) {
    for y in 0..g.h {
        for xp in 0..g.w {
            row_lstm_at_i8(x, g, w, bias, q, out, cell, y, xp);
        }
    }
}
