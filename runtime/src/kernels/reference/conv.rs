//! 2-D convolution: CHW activations, `[out_c][in_c][k][k]` weights.

use super::{mac_i8, relu_if};
use crate::format::{f32_at, i32_at};
use crate::kernels::{ConvGeom, FloatWeights, RequantI8};

/// Calls `f(w_index, x_index)` for every tap of output pixel (`o`, `oy`,
/// `ox`) of a convolution that reads inside the input.
#[inline(always)]
pub(crate) fn conv_taps(
    g: &ConvGeom,
    o: usize,
    oy: usize,
    ox: usize,
    mut f: impl FnMut(usize, usize),
) {
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
