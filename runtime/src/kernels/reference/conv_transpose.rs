//! 2-D transposed convolution: CHW activations, `[in_c][out_c][k][k]`
//! weights, computed in the gather form.

use super::{mac_i8, relu_if};
use crate::format::{f32_at, i32_at};
use crate::kernels::{ConvGeom, FloatWeights, RequantI8};

/// First kernel tap and first input index of a transposed convolution that
/// land on output index `o` along one axis: taps `t0, t0 + s, ...` read input
/// `i0, i0 - 1, ...` (while both stay in range).
#[inline(always)]
pub(crate) fn conv_t_first(o: usize, pad: usize, s: usize, k: usize, n: usize) -> (usize, usize) {
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
pub(crate) fn conv_t_taps(
    g: &ConvGeom,
    o: usize,
    y: usize,
    x: usize,
    mut f: impl FnMut(usize, usize),
) {
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
