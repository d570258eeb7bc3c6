//! Masked convolution (PixelCNN, mask A or B): `[out_c][in_c][k][k]`
//! weights, of which only the taps the mask allows are read.

#[cfg(test)]
use super::mac_counter;
use super::{mac_i8, relu_if};
use crate::format::{f32_at, i32_at};
use crate::kernels::{FloatWeights, MaskedGeom, RequantI8};

/// Calls `f(w_index, x_index, n, 1)` for every run of `n` consecutive
/// unmasked taps of output pixel (`o`, `y`, `x`) of a masked convolution
/// that read inside the image (weights `w_index..`, inputs `x_index..`), in
/// the fixed order input channel, kernel row, kernel column. Input row `iy`
/// is read from buffer row `iy % g.in_rows`.
#[inline(always)]
pub(crate) fn masked_runs(
    g: &MaskedGeom,
    o: usize,
    y: usize,
    x: usize,
    mut f: impl FnMut(usize, usize, usize, usize),
) {
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
            if kx_end > kx0 {
                f(wrow + kx0, xrow + kx0 - c, kx_end - kx0, 1);
            }
        }
    }
}

/// Calls `f(w_index, x_index)` for every tap of [`masked_runs`], in order.
#[inline(always)]
pub(crate) fn masked_taps(
    g: &MaskedGeom,
    o: usize,
    y: usize,
    x: usize,
    mut f: impl FnMut(usize, usize),
) {
    masked_runs(g, o, y, x, |w0, x0, n, xs| {
        for t in 0..n {
            f(w0 + t, x0 + t * xs)
        }
    })
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
