//! Reference kernels: the specification. Layouts are CHW for activations,
//! `[out][in]` for dense weights, `[out_c][in_c][k][k]` for convolution and
//! `[in_c][out_c][k][k]` for transposed convolution.
//!
//! Summation order is fixed (bias first, then input channel, kernel row,
//! kernel column), so f32 results are bit-identical wherever IEEE f32 is.

use super::{ConvGeom, FloatWeights, LstmGeom, MaskedGeom, RequantI8, StackGeom};
use crate::format::{f32_at, i32_at};

/// Calls `f(w_index, x_index)` for every tap of output pixel (`o`, `oy`,
/// `ox`) of a convolution that reads inside the input.
#[inline(always)]
fn conv_taps(g: &ConvGeom, o: usize, oy: usize, ox: usize, mut f: impl FnMut(usize, usize)) {
    for i in 0..g.in_c {
        for ky in 0..g.k {
            let iy = (oy * g.stride + ky) as isize - g.pad as isize;
            if iy < 0 || iy >= g.in_h as isize {
                continue;
            }
            for kx in 0..g.k {
                let ix = (ox * g.stride + kx) as isize - g.pad as isize;
                if ix < 0 || ix >= g.in_w as isize {
                    continue;
                }
                let wi = ((o * g.in_c + i) * g.k + ky) * g.k + kx;
                let xi = (i * g.in_h + iy as usize) * g.in_w + ix as usize;
                f(wi, xi);
            }
        }
    }
}

/// First kernel tap and first input index of a transposed convolution that
/// land on output index `o` along one axis: taps `t0, t0 + s, ...` read input
/// `i0, i0 - 1, ...` (while both stay in range).
#[inline(always)]
fn conv_t_first(o: usize, pad: usize, s: usize, k: usize, n: usize) -> (usize, usize) {
    // Output o receives input i through tap t when i * s + t = o + pad.
    let op = o + pad;
    let mut t = op % s;
    let mut i = op / s;
    // Skip taps whose input index is past the end.
    if i >= n {
        let skip = i - (n - 1);
        t += skip * s;
        i = n - 1;
    }
    if t >= k {
        return (k, 0);
    }
    (t, i)
}

/// Calls `f(w_index, x_index)` for every input pixel and tap of a transposed
/// convolution that lands on output pixel (`o`, `y`, `x`): the gather form
/// (no scratch accumulator). Only the taps that hit are visited, stepping by
/// the stride, so no work is spent on the (s^2 - 1) / s^2 that miss.
#[inline(always)]
fn conv_t_taps(g: &ConvGeom, o: usize, y: usize, x: usize, mut f: impl FnMut(usize, usize)) {
    let s = g.stride;
    let (ky0, iy0) = conv_t_first(y, g.pad, s, g.k, g.in_h);
    let (kx0, ix0) = conv_t_first(x, g.pad, s, g.k, g.in_w);
    for i in 0..g.in_c {
        let (mut ky, mut iy) = (ky0, iy0 as isize);
        while ky < g.k && iy >= 0 {
            let (mut kx, mut ix) = (kx0, ix0 as isize);
            let wrow = ((i * g.out_c + o) * g.k + ky) * g.k;
            let xrow = (i * g.in_h + iy as usize) * g.in_w;
            while kx < g.k && ix >= 0 {
                f(wrow + kx, xrow + ix as usize);
                kx += s;
                ix -= 1;
            }
            ky += s;
            iy -= 1;
        }
    }
}

/// Counts the multiply-accumulates the masked convolution really does (unit
/// tests only: the sampler's MAC figures are checked against it).
#[cfg(test)]
pub(crate) mod mac_counter {
    use core::cell::Cell;
    std::thread_local! {
        static MACS: Cell<u64> = const { Cell::new(0) };
    }
    /// Adds `n` taps.
    pub(crate) fn add(n: usize) {
        MACS.with(|m| m.set(m.get() + n as u64));
    }
    /// Taps counted on this thread since the last call (and resets).
    pub(crate) fn take() -> u64 {
        MACS.with(|m| m.replace(0))
    }
}

/// Calls `f(w_index, x_index)` for every unmasked tap of output pixel
/// (`o`, `y`, `x`) of a masked convolution that reads inside the image, in
/// the fixed order input channel, kernel row, kernel column. Input row `iy`
/// is read from buffer row `iy % g.in_rows`.
#[inline(always)]
fn masked_taps(g: &MaskedGeom, o: usize, y: usize, x: usize, mut f: impl FnMut(usize, usize)) {
    let c = g.k / 2;
    // Kernel rows 0..=c (rows below the centre are all masked); on the
    // centre row, columns 0..c (mask A) or 0..=c (mask B).
    let ky0 = c.saturating_sub(y);
    let kx0 = c.saturating_sub(x);
    let kx_end_full = g.k.min(g.w + c - x);
    let kx_end_centre = (c + usize::from(g.mask_b)).min(kx_end_full);
    for i in 0..g.in_c {
        for ky in ky0..=c {
            let iy = y + ky - c;
            let kx_end = if ky == c { kx_end_centre } else { kx_end_full };
            let wrow = ((o * g.in_c + i) * g.k + ky) * g.k;
            // x + kx >= c for every kx visited: no underflow.
            let xrow = (i * g.in_rows + iy % g.in_rows) * g.w + x;
            #[cfg(test)]
            mac_counter::add(kx_end.saturating_sub(kx0));
            for kx in kx0..kx_end {
                f(wrow + kx, xrow + kx - c);
            }
        }
    }
}

/// Masked convolution, f32 activations, at one position: every output
/// channel of pixel (`y`, `x`), written to `out` (buffer row `y % out_rows`).
/// The full-tensor kernel [`masked_conv2d_f32`] and the incremental sampler
/// both compute through this function, so they give the same bits.
#[inline]
#[allow(clippy::too_many_arguments)]
pub fn masked_conv2d_at_f32<W: FloatWeights>(
    x: &[f32],
    g: &MaskedGeom,
    w: W,
    bias: &[u8],
    out: &mut [f32],
    relu: bool,
    y: usize,
    xp: usize,
) {
    debug_assert!(
        y < g.h && xp < g.w && (g.in_rows > g.k / 2 || g.in_rows >= g.h) && g.out_rows > 0
    );
    let orow = y % g.out_rows;
    for o in 0..g.out_c {
        let mut acc = f32_at(bias, o);
        masked_taps(g, o, y, xp, |wi, xi| acc += w.at(wi) * x[xi]);
        out[(o * g.out_rows + orow) * g.w + xp] = relu_if(acc, relu);
    }
}

/// Masked convolution, f32 activations, over the whole image (buffers of
/// `h` rows), position by position through [`masked_conv2d_at_f32`].
pub fn masked_conv2d_f32<W: FloatWeights>(
    x: &[f32],
    g: &MaskedGeom,
    w: W,
    bias: &[u8],
    out: &mut [f32],
    relu: bool,
) {
    debug_assert!(x.len() >= g.in_c * g.in_rows * g.w);
    debug_assert!(out.len() >= g.out_c * g.out_rows * g.w);
    for y in 0..g.h {
        for xp in 0..g.w {
            masked_conv2d_at_f32(x, g, w, bias, out, relu, y, xp);
        }
    }
}

/// Masked convolution, int8, at one position (see [`masked_conv2d_at_f32`]).
#[inline]
#[allow(clippy::too_many_arguments)]
pub fn masked_conv2d_at_i8(
    x: &[i8],
    g: &MaskedGeom,
    w: &[u8],
    bias: &[u8],
    q: &RequantI8<'_>,
    out: &mut [i8],
    y: usize,
    xp: usize,
) {
    debug_assert!(
        y < g.h && xp < g.w && (g.in_rows > g.k / 2 || g.in_rows >= g.h) && g.out_rows > 0
    );
    let orow = y % g.out_rows;
    for o in 0..g.out_c {
        let mut acc = i32_at(bias, o);
        masked_taps(g, o, y, xp, |wi, xi| {
            acc = mac_i8(acc, x[xi], q.in_zp, w[wi])
        });
        out[(o * g.out_rows + orow) * g.w + xp] = q.apply(acc, o);
    }
}

/// Masked convolution, int8, over the whole image.
pub fn masked_conv2d_i8(
    x: &[i8],
    g: &MaskedGeom,
    w: &[u8],
    bias: &[u8],
    q: &RequantI8<'_>,
    out: &mut [i8],
) {
    for y in 0..g.h {
        for xp in 0..g.w {
            masked_conv2d_at_i8(x, g, w, bias, q, out, y, xp);
        }
    }
}

/// Calls `f(w_index, x_index)` for every tap of vertical output `o` at
/// (`y`, `x`) of a two-stack convolution that reads inside the image, in the
/// fixed order input channel, kernel row, kernel column: input rows
/// `y - k/2 ..= y`, whole kernel width.
#[inline(always)]
fn stack_v_taps(g: &StackGeom, o: usize, y: usize, x: usize, mut f: impl FnMut(usize, usize)) {
    let c = g.k / 2;
    let ky0 = c.saturating_sub(y);
    let kx0 = c.saturating_sub(x);
    let kx_end = g.k.min(g.w + c - x);
    let base = o * g.v_row_len();
    for i in 0..g.v_src() {
        for ky in ky0..=c {
            let iy = y + ky - c;
            let wrow = base + (i * (c + 1) + ky) * g.k;
            let xrow = (i * g.in_rows + iy % g.in_rows) * g.w + x;
            #[cfg(test)]
            mac_counter::add(kx_end.saturating_sub(kx0));
            for kx in kx0..kx_end {
                f(wrow + kx, xrow + kx - c);
            }
        }
    }
}

/// Calls `f(w_index, x_index)` for every tap of horizontal output `o`
/// (`o >= out_v`) at (`y`, `x`) that reads inside the image: the
/// horizontal inputs on row `y`, columns `x - k/2 ..` (up to `x - 1`, or
/// `x` with mask B), then the vertical inputs at (`y - 1`, `x`).
#[inline(always)]
fn stack_h_taps(g: &StackGeom, o: usize, y: usize, x: usize, mut f: impl FnMut(usize, usize)) {
    let c = g.k / 2;
    let n_h = g.n_h();
    let t0 = c.saturating_sub(x);
    let base = g.out_v * g.v_row_len() + (o - g.out_v) * g.h_row_len();
    for (j, i) in (g.in_v..g.in_c).enumerate() {
        let wrow = base + j * n_h;
        // t < n_h <= c + 1: never right of x.
        let xrow = (i * g.in_rows + y % g.in_rows) * g.w + x;
        #[cfg(test)]
        mac_counter::add(n_h.saturating_sub(t0));
        for t in t0..n_h {
            f(wrow + t, xrow + t - c);
        }
    }
    if y > 0 {
        let link = base + (g.in_c - g.in_v) * n_h;
        #[cfg(test)]
        mac_counter::add(g.in_v);
        for i in 0..g.in_v {
            f(link + i, (i * g.in_rows + (y - 1) % g.in_rows) * g.w + x);
        }
    }
}

/// Two-stack convolution, f32 activations: the horizontal outputs of
/// pixel (`y`, `x`) (buffer row `y % out_rows`). The full-tensor kernel
/// [`stack_conv2d_f32`] and the incremental sampler both compute through
/// this function and [`stack_conv2d_v_row_f32`], so they give the same bits.
#[inline]
#[allow(clippy::too_many_arguments)]
pub fn stack_conv2d_h_at_f32<W: FloatWeights>(
    x: &[f32],
    g: &StackGeom,
    w: W,
    bias: &[u8],
    out: &mut [f32],
    relu: bool,
    y: usize,
    xp: usize,
) {
    let orow = y % g.out_rows;
    for o in g.out_v..g.out_c {
        let mut acc = f32_at(bias, o);
        stack_h_taps(g, o, y, xp, |wi, xi| acc += w.at(wi) * x[xi]);
        out[(o * g.out_rows + orow) * g.w + xp] = relu_if(acc, relu);
    }
}

/// Two-stack convolution, f32 activations: the vertical outputs of the
/// whole row `y`, once input row `y` is complete.
pub fn stack_conv2d_v_row_f32<W: FloatWeights>(
    x: &[f32],
    g: &StackGeom,
    w: W,
    bias: &[u8],
    out: &mut [f32],
    relu: bool,
    y: usize,
) {
    let orow = y % g.out_rows;
    for o in 0..g.out_v {
        for xp in 0..g.w {
            let mut acc = f32_at(bias, o);
            stack_v_taps(g, o, y, xp, |wi, xi| acc += w.at(wi) * x[xi]);
            out[(o * g.out_rows + orow) * g.w + xp] = relu_if(acc, relu);
        }
    }
}

/// Two-stack convolution, f32 activations, over the whole image (buffers of
/// `h` rows).
pub fn stack_conv2d_f32<W: FloatWeights>(
    x: &[f32],
    g: &StackGeom,
    w: W,
    bias: &[u8],
    out: &mut [f32],
    relu: bool,
) {
    for y in 0..g.h {
        for xp in 0..g.w {
            stack_conv2d_h_at_f32(x, g, w, bias, out, relu, y, xp);
        }
        stack_conv2d_v_row_f32(x, g, w, bias, out, relu, y);
    }
}

/// Two-stack convolution, int8: the horizontal outputs of pixel (`y`, `x`)
/// (see [`stack_conv2d_h_at_f32`]).
#[inline]
#[allow(clippy::too_many_arguments)]
pub fn stack_conv2d_h_at_i8(
    x: &[i8],
    g: &StackGeom,
    w: &[u8],
    bias: &[u8],
    q: &RequantI8<'_>,
    out: &mut [i8],
    y: usize,
    xp: usize,
) {
    let orow = y % g.out_rows;
    for o in g.out_v..g.out_c {
        let mut acc = i32_at(bias, o);
        stack_h_taps(g, o, y, xp, |wi, xi| {
            acc = mac_i8(acc, x[xi], q.in_zp, w[wi])
        });
        out[(o * g.out_rows + orow) * g.w + xp] = q.apply(acc, o);
    }
}

/// Two-stack convolution, int8: the vertical outputs of row `y`.
pub fn stack_conv2d_v_row_i8(
    x: &[i8],
    g: &StackGeom,
    w: &[u8],
    bias: &[u8],
    q: &RequantI8<'_>,
    out: &mut [i8],
    y: usize,
) {
    let orow = y % g.out_rows;
    for o in 0..g.out_v {
        for xp in 0..g.w {
            let mut acc = i32_at(bias, o);
            stack_v_taps(g, o, y, xp, |wi, xi| {
                acc = mac_i8(acc, x[xi], q.in_zp, w[wi])
            });
            out[(o * g.out_rows + orow) * g.w + xp] = q.apply(acc, o);
        }
    }
}

/// Two-stack convolution, int8, over the whole image.
pub fn stack_conv2d_i8(
    x: &[i8],
    g: &StackGeom,
    w: &[u8],
    bias: &[u8],
    q: &RequantI8<'_>,
    out: &mut [i8],
) {
    for y in 0..g.h {
        for xp in 0..g.w {
            stack_conv2d_h_at_i8(x, g, w, bias, q, out, y, xp);
        }
        stack_conv2d_v_row_i8(x, g, w, bias, q, out, y);
    }
}

/// Taps of a Row LSTM at column `x`: `(t0, t1)` for the input-to-state
/// kernel (the unmasked taps reading inside the row) and `(s0, s1)` for the
/// state-to-state kernel (the taps reading inside the previous row). Tap
/// `t` reads column `x + t - k / 2`.
#[inline(always)]
fn lstm_taps(g: &LstmGeom, x: usize) -> ((usize, usize), (usize, usize)) {
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
fn lstm_gate_taps<A>(
    g: &LstmGeom,
    r: usize,
    y: usize,
    x: usize,
    acc: &mut A,
    f: impl Fn(&mut A, usize, usize),
    s: impl Fn(&mut A, usize, usize),
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
        for t in t0..t1 {
            f(acc, wrow + t, xrow + t - ci);
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
        for t in s0..s1 {
            s(acc, wrow + t, hrow + t - cs);
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
/// `i, f, o` = [`super::sigmoid_precise_f32`], `g` = [`super::tanh_f32`],
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
        let i = super::sigmoid_precise_f32(pre[0]);
        let f = super::sigmoid_precise_f32(pre[1]);
        let o = super::sigmoid_precise_f32(pre[2]);
        let gg = super::tanh_f32(pre[3]);
        let ci = j * g.w + xp;
        let c_prev = if y > 0 { cell[ci] } else { 0.0 };
        let c = f * c_prev + i * gg;
        cell[ci] = c;
        h[(j * g.out_rows + orow) * g.w + xp] = o * super::tanh_f32(c);
    }
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
    (acc as i64 * m as i64 + (1i64 << (shift - 1))) >> shift
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
    let luts = g.w_is_len() + g.w_ss_len();
    let (sigmoid, tanh, cell_tanh) = (
        &w[luts..luts + 256],
        &w[luts + 256..luts + 512],
        &w[luts + 512..luts + 1024],
    );
    let lut = |t: &[u8], i: i64| t[i as usize] as i8 as i32;
    let orow = y % g.out_rows;
    for j in 0..hid {
        let mut p = [0i64; 4];
        for (qi, pq) in p.iter_mut().enumerate() {
            let r = qi * hid + j;
            // (input-to-state with the bias, state-to-state)
            let mut acc = (i32_at(bias, r), 0i32);
            lstm_gate_taps(
                g,
                r,
                y,
                xp,
                &mut acc,
                |a, wi, xi| a.0 = mac_i8(a.0, x[xi], q.in_zp, w[wi]),
                |a, wi, hi| a.1 = mac_i8(a.1, h[hi], 0, w[wi]),
            );
            let (acc_is, acc_ss) = acc;
            let m_is = i32_at(q.multiplier, r);
            let m_ss = i32_at(q.multiplier, 4 * hid + r);
            let v = rq_i64(acc_is, m_is, q.shift[r]) + rq_i64(acc_ss, m_ss, q.shift[4 * hid + r]);
            *pq = v.clamp(-128, 127) + 128;
        }
        let i = lut(sigmoid, p[0]);
        let f = lut(sigmoid, p[1]);
        let o = lut(sigmoid, p[2]);
        let gg = lut(tanh, p[3]);
        let ci = j * g.w + xp;
        let c_prev = if y > 0 { cell[ci] } else { 0 };
        let c = (((f * c_prev + 64) >> 7) + i * gg).clamp(-(1 << 20), 1 << 20);
        cell[ci] = c;
        let t = lut(cell_tanh, (((c + 128) >> 8).clamp(-256, 255) + 256) as i64);
        h[(j * g.out_rows + orow) * g.w + xp] = ((o * t + 64) >> 7).clamp(-128, 127) as i8;
    }
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

#[inline(always)]
fn relu_if(v: f32, relu: bool) -> f32 {
    if relu && v < 0.0 {
        0.0
    } else {
        v
    }
}

/// Dense layer, f32 activations: `out[o] = bias[o] + sum_i w[o][i] * x[i]`.
pub fn dense_f32<W: FloatWeights>(x: &[f32], w: W, bias: &[u8], out: &mut [f32], relu: bool) {
    let n = x.len();
    for (o, y) in out.iter_mut().enumerate() {
        let mut acc = f32_at(bias, o);
        for (i, &xi) in x.iter().enumerate() {
            acc += w.at(o * n + i) * xi;
        }
        *y = relu_if(acc, relu);
    }
}

/// 2-D convolution, f32 activations.
pub fn conv2d_f32<W: FloatWeights>(
    x: &[f32],
    g: &ConvGeom,
    w: W,
    bias: &[u8],
    out: &mut [f32],
    relu: bool,
) {
    debug_assert!(x.len() >= g.in_c * g.in_h * g.in_w);
    debug_assert!(out.len() >= g.out_c * g.out_h * g.out_w);
    for o in 0..g.out_c {
        let b = f32_at(bias, o);
        for oy in 0..g.out_h {
            for ox in 0..g.out_w {
                let mut acc = b;
                conv_taps(g, o, oy, ox, |wi, xi| acc += w.at(wi) * x[xi]);
                out[(o * g.out_h + oy) * g.out_w + ox] = relu_if(acc, relu);
            }
        }
    }
}

/// 2-D transposed convolution, f32 activations.
pub fn conv_transpose2d_f32<W: FloatWeights>(
    x: &[f32],
    g: &ConvGeom,
    w: W,
    bias: &[u8],
    out: &mut [f32],
    relu: bool,
) {
    debug_assert!(x.len() >= g.in_c * g.in_h * g.in_w);
    debug_assert!(out.len() >= g.out_c * g.out_h * g.out_w);
    for o in 0..g.out_c {
        let b = f32_at(bias, o);
        for y in 0..g.out_h {
            for xo in 0..g.out_w {
                let mut acc = b;
                conv_t_taps(g, o, y, xo, |wi, xi| acc += w.at(wi) * x[xi]);
                out[(o * g.out_h + y) * g.out_w + xo] = relu_if(acc, relu);
            }
        }
    }
}

#[inline(always)]
fn mac_i8(acc: i32, x: i8, zp: i32, w: u8) -> i32 {
    acc.wrapping_add((x as i32 - zp) * (w as i8) as i32)
}

/// Dense layer, int8: `out[o] = requant(bias[o] + sum_i (x[i] - zp) * w[o][i])`.
pub fn dense_i8(x: &[i8], w: &[u8], bias: &[u8], q: &RequantI8<'_>, out: &mut [i8]) {
    let n = x.len();
    for (o, y) in out.iter_mut().enumerate() {
        let row = &w[o * n..o * n + n];
        let mut acc = i32_at(bias, o);
        for (&xi, &wi) in x.iter().zip(row) {
            acc = mac_i8(acc, xi, q.in_zp, wi);
        }
        *y = q.apply(acc, o);
    }
}

/// 2-D convolution, int8.
pub fn conv2d_i8(x: &[i8], g: &ConvGeom, w: &[u8], bias: &[u8], q: &RequantI8<'_>, out: &mut [i8]) {
    for o in 0..g.out_c {
        let b = i32_at(bias, o);
        for oy in 0..g.out_h {
            for ox in 0..g.out_w {
                let mut acc = b;
                conv_taps(g, o, oy, ox, |wi, xi| {
                    acc = mac_i8(acc, x[xi], q.in_zp, w[wi])
                });
                out[(o * g.out_h + oy) * g.out_w + ox] = q.apply(acc, o);
            }
        }
    }
}

/// 2-D transposed convolution, int8.
pub fn conv_transpose2d_i8(
    x: &[i8],
    g: &ConvGeom,
    w: &[u8],
    bias: &[u8],
    q: &RequantI8<'_>,
    out: &mut [i8],
) {
    for o in 0..g.out_c {
        let b = i32_at(bias, o);
        for y in 0..g.out_h {
            for xo in 0..g.out_w {
                let mut acc = b;
                conv_t_taps(g, o, y, xo, |wi, xi| {
                    acc = mac_i8(acc, x[xi], q.in_zp, w[wi])
                });
                out[(o * g.out_h + y) * g.out_w + xo] = q.apply(acc, o);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{requantize_i32_i8, F32Le};

    fn le(v: &[f32]) -> [u8; 64] {
        let mut b = [0u8; 64];
        for (i, x) in v.iter().enumerate() {
            b[4 * i..4 * i + 4].copy_from_slice(&x.to_le_bytes());
        }
        b
    }

    #[test]
    fn dense_f32_small() {
        let w = le(&[1.0, 2.0, 3.0, -1.0, 0.5, 0.0]);
        let b = le(&[0.5, -10.0]);
        let mut out = [0.0f32; 2];
        dense_f32(&[1.0, 1.0, 2.0], F32Le(&w), &b, &mut out, false);
        assert_eq!(out, [9.5, -10.5]);
        dense_f32(&[1.0, 1.0, 2.0], F32Le(&w), &b, &mut out, true);
        assert_eq!(out, [9.5, 0.0]);
    }

    #[test]
    fn conv_transpose_one_pixel() {
        // One input pixel, stride 2, 2x2 kernel, no padding: output is the
        // kernel scaled by the pixel.
        let g = ConvGeom {
            in_c: 1,
            in_h: 1,
            in_w: 1,
            out_c: 1,
            out_h: 2,
            out_w: 2,
            k: 2,
            stride: 2,
            pad: 0,
        };
        let w = le(&[1.0, 2.0, 3.0, 4.0]);
        let b = le(&[0.0]);
        let mut out = [0.0f32; 4];
        conv_transpose2d_f32(&[2.0], &g, F32Le(&w), &b, &mut out, false);
        assert_eq!(out, [2.0, 4.0, 6.0, 8.0]);
    }

    #[test]
    fn requantize_rounds_and_clamps() {
        // m = 2^30, shift 31: multiply by 0.5.
        assert_eq!(requantize_i32_i8(5, 1 << 30, 31, 0, -128, 127), 3);
        assert_eq!(requantize_i32_i8(-5, 1 << 30, 31, 0, -128, 127), -2);
        assert_eq!(requantize_i32_i8(1000, 1 << 30, 31, 0, -128, 127), 127);
        assert_eq!(requantize_i32_i8(-1000, 1 << 30, 31, 3, 3, 127), 3);
    }

    /// The obvious scatter form of a transposed convolution, the spec the
    /// gather kernel must match. Small integer values keep f32 sums exact,
    /// so any summation order gives the same result.
    fn conv_t_scatter(x: &[f32], g: &ConvGeom, w: &[f32], out: &mut [f32]) {
        out.iter_mut().for_each(|v| *v = 0.0);
        for i in 0..g.in_c {
            for iy in 0..g.in_h {
                for ix in 0..g.in_w {
                    for o in 0..g.out_c {
                        for ky in 0..g.k {
                            for kx in 0..g.k {
                                let y = (iy * g.stride + ky) as isize - g.pad as isize;
                                let xx = (ix * g.stride + kx) as isize - g.pad as isize;
                                if y < 0
                                    || xx < 0
                                    || y >= g.out_h as isize
                                    || xx >= g.out_w as isize
                                {
                                    continue;
                                }
                                out[(o * g.out_h + y as usize) * g.out_w + xx as usize] += w
                                    [((i * g.out_c + o) * g.k + ky) * g.k + kx]
                                    * x[(i * g.in_h + iy) * g.in_w + ix];
                            }
                        }
                    }
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn conv_transpose_gather_equals_scatter(
            in_c in 1usize..4, out_c in 1usize..4, h in 1usize..7, w in 1usize..7,
            k in 1usize..6, stride in 1usize..4, pad in 0usize..3, out_pad in 0usize..3,
            seed in 0u64..1000,
        ) {
            let out_pad = out_pad % stride;
            let oh = (h as isize - 1) * stride as isize + k as isize + out_pad as isize - 2 * pad as isize;
            let ow = (w as isize - 1) * stride as isize + k as isize + out_pad as isize - 2 * pad as isize;
            proptest::prop_assume!(oh > 0 && ow > 0);
            let g = ConvGeom { in_c, in_h: h, in_w: w, out_c, out_h: oh as usize, out_w: ow as usize, k, stride, pad };
            let mut r = crate::Rng::new(seed);
            let mut small = || (r.next_u32() % 7) as f32 - 3.0;
            let x: std::vec::Vec<f32> = (0..in_c * h * w).map(|_| small()).collect();
            let wt: std::vec::Vec<f32> = (0..in_c * out_c * k * k).map(|_| small()).collect();
            let wb: std::vec::Vec<u8> = wt.iter().flat_map(|v| v.to_le_bytes()).collect();
            let bias = std::vec![0u8; 4 * out_c];
            let n = out_c * g.out_h * g.out_w;
            let mut want = std::vec![0f32; n];
            let mut got = std::vec![0f32; n];
            conv_t_scatter(&x, &g, &wt, &mut want);
            conv_transpose2d_f32(&x, &g, F32Le(&wb), &bias, &mut got, false);
            proptest::prop_assert_eq!(got, want);
        }
    }
}
