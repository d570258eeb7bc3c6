//! Reference kernels: the specification. Layouts are CHW for activations,
//! `[out][in]` for dense weights, `[out_c][in_c][k][k]` for convolution and
//! `[in_c][out_c][k][k]` for transposed convolution.
//!
//! Summation order is fixed (bias first, then input channel, kernel row,
//! kernel column), so f32 results are bit-identical wherever IEEE f32 is.

use super::{ConvGeom, FloatWeights, MaskedGeom, RequantI8};
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
