//! Two-stack masked convolution (vertical and horizontal stacks): only the
//! taps used are stored (see [`crate::format::Op::StackConv2d`]).

#[cfg(test)]
use super::mac_counter;
use super::{mac_i8, relu_if};
use crate::format::{f32_at, i32_at};
use crate::kernels::{FloatWeights, RequantI8, StackGeom};

/// Calls `f(w_index, x_index, n, 1)` for every run of `n` taps of vertical
/// output `o` at (`y`, `x`) of a two-stack convolution that read inside the
/// image, in the fixed order input channel, kernel row, kernel column:
/// input rows `y - k/2 ..= y`, whole kernel width.
#[inline(always)]
pub(crate) fn stack_v_runs(
    g: &StackGeom,
    o: usize,
    y: usize,
    x: usize,
    mut f: impl FnMut(usize, usize, usize, usize),
) {
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
            if kx_end > kx0 {
                f(wrow + kx0, xrow + kx0 - c, kx_end - kx0, 1);
            }
        }
    }
}

/// Calls `f(w_index, x_index)` for every tap of [`stack_v_runs`], in order.
#[inline(always)]
pub(crate) fn stack_v_taps(
    g: &StackGeom,
    o: usize,
    y: usize,
    x: usize,
    mut f: impl FnMut(usize, usize),
) {
    stack_v_runs(g, o, y, x, |w0, x0, n, xs| {
        for t in 0..n {
            f(w0 + t, x0 + t * xs)
        }
    })
}

/// Calls `f(w_index, x_index, n, x_stride)` for every run of `n` taps of
/// horizontal output `o` (`o >= out_v`) at (`y`, `x`) that read inside the
/// image: per horizontal input, its taps on row `y`, columns `x - k/2 ..`
/// (up to `x - 1`, or `x` with mask B); then one run over the vertical
/// inputs at (`y - 1`, `x`) (inputs `x_stride` apart).
#[inline(always)]
pub(crate) fn stack_h_runs(
    g: &StackGeom,
    o: usize,
    y: usize,
    x: usize,
    mut f: impl FnMut(usize, usize, usize, usize),
) {
    let c = g.k / 2;
    let n_h = g.n_h();
    let t0 = c.saturating_sub(x);
    let base = g.out_v * g.v_row_len() + (o - g.out_v) * g.h_row_len();
    let n_hor = g.in_c - g.in_v;
    let link = usize::from(y > 0 && g.in_v > 0);
    // One call site for `f` (the horizontal runs, then the link), so that
    // callers' closures inline.
    for j in 0..n_hor + link {
        let run = if j < n_hor {
            let i = g.in_v + j;
            // t < n_h <= c + 1: never right of x.
            let xrow = (i * g.in_rows + y % g.in_rows) * g.w + x;
            (
                base + j * n_h + t0,
                xrow + t0 - c,
                n_h.saturating_sub(t0),
                1,
            )
        } else {
            let w0 = base + n_hor * n_h;
            (w0, ((y - 1) % g.in_rows) * g.w + x, g.in_v, g.in_rows * g.w)
        };
        #[cfg(test)]
        mac_counter::add(run.2);
        if run.2 > 0 {
            f(run.0, run.1, run.2, run.3);
        }
    }
}

/// Calls `f(w_index, x_index)` for every tap of [`stack_h_runs`], in order.
#[inline(always)]
pub(crate) fn stack_h_taps(
    g: &StackGeom,
    o: usize,
    y: usize,
    x: usize,
    mut f: impl FnMut(usize, usize),
) {
    stack_h_runs(g, o, y, x, |w0, x0, n, xs| {
        for t in 0..n {
            f(w0 + t, x0 + t * xs)
        }
    })
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
