//! Optimized kernels. [`float`]: f32 activations (f32 or f16 weights),
//! blocked over output channels in the reference's order of operations.
//! This module: int8, the same results as [`super::reference`], bit
//! for bit, computed as blocked dot products over columns (see
//! [`engine`]): each kernel writes the (zero-point-shifted, widened)
//! activations an output reads into a column in scratch memory once, then
//! runs every output channel over it, two or four at a time.
//!
//! Each kernel takes `scratch`, u32 words of the arena the plan sized with
//! the matching `*_scratch_words` function, and is generic over the
//! [`Engine`] (the `*_with` forms; the plain names use
//! [`engine::Native`]). Geometries are the reference kernels'; layouts are
//! unchanged (CHW activations, the file's weight order).

pub mod engine;
pub mod float;
#[cfg(test)]
mod tests;

use super::{ConvGeom, LstmGeom, MaskedGeom, RequantI8, StackGeom};
use crate::format::i32_at;
use engine::{col_words, inside, ColWriter, Engine, Native};

/// Runs `n_rows` output rows over one column, three at a time: the dot
/// product of weight row `o` (`w[base + o * stride ..][..n]`) with `col`,
/// started from bias `bias0 + o`, handed to `put(o, acc)`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn rows1<E: Engine>(
    n_rows: usize,
    w: &[u8],
    base: usize,
    stride: usize,
    n: usize,
    bias: &[u8],
    bias0: usize,
    col: &[u32],
    mut put: impl FnMut(usize, i32),
) {
    let row = |o: usize| &w[base + o * stride..base + o * stride + n];
    let b = |o: usize| i32_at(bias, bias0 + o);
    let mut o = 0;
    while o + 3 <= n_rows {
        let mut acc = [b(o), b(o + 1), b(o + 2)];
        E::rows(&mut acc, [row(o), row(o + 1), row(o + 2)], col, n);
        for (j, a) in acc.into_iter().enumerate() {
            put(o + j, a);
        }
        o += 3;
    }
    while o < n_rows {
        let mut acc = [b(o)];
        E::rows(&mut acc, [row(o)], col, n);
        put(o, acc[0]);
        o += 1;
    }
}

/// Runs output rows `0..n_rows` (weight row `o`: `w[o * n..][..n]`, bias
/// `o`) over `C` columns: one weight load serves every column.
/// `put(o, out)` gets the `C` requantized outputs of row `o`.
#[inline(always)]
fn rows_cols<E: Engine, const C: usize>(
    n_rows: usize,
    w: &[u8],
    n: usize,
    bias: &[u8],
    q: &RequantI8<'_>,
    col: [&[u32]; C],
    mut put: impl FnMut(usize, [i8; C]),
) {
    for o in 0..n_rows {
        let b = i32_at(bias, o);
        let mut acc = [b; C];
        E::cols(&mut acc, &w[o * n..][..n], col, n);
        put(o, q.apply_n(acc, o));
    }
}

/// Scratch words of [`pixels`]: three columns of `n` values.
const fn pixels_scratch_words(n: u64) -> u64 {
    3 * cw64(n)
}

/// Runs output rows `0..n_rows` (as in [`rows_cols`]) over the columns of
/// pixels `0..npix`, three pixels at a time (then two, then one):
/// `build(p, writer)` writes (and finishes) pixel `p`'s column of `n`
/// values, and `put(o, p, v)` gets output row `o`'s requantized output at
/// pixel `p`. `scratch`: [`pixels_scratch_words`]`(n)` words.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn pixels<E: Engine>(
    npix: usize,
    n_rows: usize,
    w: &[u8],
    n: usize,
    bias: &[u8],
    q: &RequantI8<'_>,
    scratch: &mut [u32],
    mut build: impl FnMut(usize, ColWriter<'_>),
    mut put: impl FnMut(usize, usize, i8),
) {
    let cw = col_words(n);
    let (c0, rest) = scratch.split_at_mut(cw);
    let (c1, rest) = rest.split_at_mut(cw);
    let c2 = &mut rest[..cw];
    let mut p = 0;
    while p + 3 <= npix {
        build(p, ColWriter::new(c0));
        build(p + 1, ColWriter::new(c1));
        build(p + 2, ColWriter::new(c2));
        rows_cols::<E, 3>(n_rows, w, n, bias, q, [c0, c1, c2], |o, a| {
            put(o, p, a[0]);
            put(o, p + 1, a[1]);
            put(o, p + 2, a[2]);
        });
        p += 3;
    }
    if p + 2 == npix {
        build(p, ColWriter::new(c0));
        build(p + 1, ColWriter::new(c1));
        rows_cols::<E, 2>(n_rows, w, n, bias, q, [c0, c1], |o, a| {
            put(o, p, a[0]);
            put(o, p + 1, a[1]);
        });
    } else if p < npix {
        build(p, ColWriter::new(c0));
        rows1::<E>(n_rows, w, 0, n, n, bias, 0, c0, |o, a| {
            put(o, p, q.apply(a, o))
        });
    }
}

/// Fills `window` with a channels-last *window* of the CHW tensor `x`
/// (`in_c` channels of `in_h` x `in_w`): `[column][row][channel]`, `cols`
/// columns of `rows` rows, value `(c, a, i)` = `x[i][iy(a)][ix(c)] - zp`,
/// zero where `ix(c)` or `iy(a)` is outside the image. With `in_c` a
/// multiple of four, every column starts a group: the taps of a pixel that
/// reads columns `c..c + n` are one contiguous run of the window, from word
/// `c * rows * in_c / 2`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn fill_window(
    x: &[i8],
    (in_c, in_h, in_w): (usize, usize, usize),
    window: &mut [u32],
    (cols, rows): (usize, usize),
    ix: impl Fn(usize) -> isize,
    iy: impl Fn(usize) -> isize,
    zp: i32,
) {
    // Every pixel's `in_c` values are whole groups of four, written
    // straight in the column packing (see [`engine`]): channels `4g`, `4g
    // + 2` in word `2g`, channels `4g + 1`, `4g + 3` in word `2g + 1`.
    assert!(in_c.is_multiple_of(4), "window of {in_c} channels");
    let plane = in_h * in_w;
    let px_words = in_c / 2;
    let window = &mut window[..cols * rows * px_words];
    let mut px = window.chunks_exact_mut(px_words.max(1));
    for c in 0..cols {
        let ix = ix(c);
        for a in 0..rows {
            let iy = iy(a);
            let Some(dst) = px.next() else { return };
            if ix >= 0 && ix < in_w as isize && iy >= 0 && iy < in_h as isize {
                let at = iy as usize * in_w + ix as usize;
                window_pixel(&x[at..], in_c, plane, zp, dst);
            } else {
                dst.iter_mut().for_each(|d| *d = 0);
            }
        }
    }
}

/// One pixel of a window: `x[i * stride] - zp` for `i < n` (`n` a
/// multiple of four, at least four), in the column packing, into the
/// `n / 2` words of `dst`.
#[inline(always)]
fn window_pixel(x: &[i8], n: usize, stride: usize, zp: i32, dst: &mut [u32]) {
    if n == 0 {
        return;
    }
    // One bounds check for the pixel's channels.
    let src = &x[..(n - 1) * stride + 1];
    let pack = |lo: i32, hi: i32| (lo as u32 & 0xffff) | ((hi as u32) << 16);
    let mut k = 0;
    for pair in dst[..n / 2].chunks_exact_mut(2) {
        // SAFETY: k + 3 * stride <= (n - 1) * stride < src.len(): the
        // channels of this group are below n.
        let v = |j: usize| unsafe { *src.get_unchecked(k + j * stride) } as i32 - zp;
        let (v0, v1, v2, v3) = (v(0), v(1), v(2), v(3));
        pair[0] = pack(v0, v2);
        pair[1] = pack(v1, v3);
        k += 4 * stride;
    }
}

/// Runs output rows `0..n_rows` (as in [`rows_cols`]) over pixels
/// `0..npix` whose columns are runs of `win` from word `at(j)`, three
/// pixels at a time: `put(o, j, v)` gets the requantized outputs.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn window_pixels<E: Engine>(
    npix: usize,
    n_rows: usize,
    w: &[u8],
    n: usize,
    bias: &[u8],
    q: &RequantI8<'_>,
    win: &[u32],
    at: impl Fn(usize) -> usize,
    mut put: impl FnMut(usize, usize, i8),
) {
    let mut j = 0;
    while j + 3 <= npix {
        let cols = [&win[at(j)..], &win[at(j + 1)..], &win[at(j + 2)..]];
        rows_cols::<E, 3>(n_rows, w, n, bias, q, cols, |o, a| {
            put(o, j, a[0]);
            put(o, j + 1, a[1]);
            put(o, j + 2, a[2]);
        });
        j += 3;
    }
    if j + 2 == npix {
        let cols = [&win[at(j)..], &win[at(j + 1)..]];
        rows_cols::<E, 2>(n_rows, w, n, bias, q, cols, |o, a| {
            put(o, j, a[0]);
            put(o, j + 1, a[1]);
        });
    } else if j < npix {
        rows1::<E>(n_rows, w, 0, n, n, bias, 0, &win[at(j)..], |o, a| {
            put(o, j, q.apply(a, o))
        });
    }
}

/// Scratch words of [`dense_i8`] for `n` inputs.
pub const fn dense_scratch_words(n: u64) -> u64 {
    cw64(n)
}

/// [`col_words`] in u64: scratch sizes are computed from a file's (possibly
/// hostile) geometry, and must not wrap on a 32-bit target before the plan
/// compares them with what fits.
const fn cw64(n: u64) -> u64 {
    n.div_ceil(4) * 2
}

/// Dense layer, int8 (see [`super::reference::dense_i8`]).
pub fn dense_i8(
    x: &[i8],
    w: &[u8],
    bias: &[u8],
    q: &RequantI8<'_>,
    out: &mut [i8],
    scratch: &mut [u32],
) {
    dense_i8_with::<Native>(x, w, bias, q, out, scratch)
}

/// [`dense_i8`] with engine `E`.
pub fn dense_i8_with<E: Engine>(
    x: &[i8],
    w: &[u8],
    bias: &[u8],
    q: &RequantI8<'_>,
    out: &mut [i8],
    scratch: &mut [u32],
) {
    let n = x.len();
    // Fewer inputs than the engines' smallest block (a 2-D latent): one
    // plain loop per output, unrolled for the input count.
    if (1..8).contains(&n) {
        return dense_short(x, w, bias, q, out);
    }
    let col = &mut scratch[..col_words(n)];
    let mut wr = ColWriter::new(col);
    wr.run(x, q.in_zp);
    wr.finish();
    rows1::<E>(out.len(), w, 0, n, n, bias, 0, col, |o, a| {
        out[o] = q.apply(a, o)
    });
}

/// [`dense_i8`] with 1 to 7 inputs: [`dense_short_n`] for the count.
#[inline(never)]
fn dense_short(x: &[i8], w: &[u8], bias: &[u8], q: &RequantI8<'_>, out: &mut [i8]) {
    match x.len() {
        1 => dense_short_n::<1>(x, w, bias, q, out),
        2 => dense_short_n::<2>(x, w, bias, q, out),
        3 => dense_short_n::<3>(x, w, bias, q, out),
        4 => dense_short_n::<4>(x, w, bias, q, out),
        5 => dense_short_n::<5>(x, w, bias, q, out),
        6 => dense_short_n::<6>(x, w, bias, q, out),
        _ => dense_short_n::<7>(x, w, bias, q, out),
    }
}

/// [`dense_i8`] with `N` (1 to 7) inputs: each output's `N` products
/// summed from its bias in plain code, the bounds checked once per layer
/// (a small-latent decoder's first layer is mostly per-output overhead).
#[inline(always)]
fn dense_short_n<const N: usize>(
    x: &[i8],
    w: &[u8],
    bias: &[u8],
    q: &RequantI8<'_>,
    out: &mut [i8],
) {
    let m = out.len();
    let mut xs = [0i32; N];
    for (d, &v) in xs.iter_mut().zip(x) {
        *d = v as i32 - q.in_zp;
    }
    let (w, bias) = (&w[..m * N], &bias[..4 * m]);
    let (mult, shift) = (&q.multiplier[..4 * m], &q.shift[..m]);
    for (o, (y, row)) in out.iter_mut().zip(w.chunks_exact(N)).enumerate() {
        // SAFETY: o < m, and bias and mult hold 4 * m bytes, shift m.
        let (b, mo, sh) = unsafe {
            (
                crate::format::u32_at_unchecked(bias, o) as i32,
                crate::format::u32_at_unchecked(mult, o) as i32,
                *shift.get_unchecked(o),
            )
        };
        let mut acc = b;
        for (&xv, &wv) in xs.iter().zip(row) {
            acc = acc.wrapping_add(wv as i8 as i32 * xv);
        }
        *y = super::requantize_i32_i8(acc, mo, sh, q.out_zp, q.min, q.max);
    }
}

/// Scratch words of [`conv2d_i8`]'s window path (the weights gathered
/// tap-major and one output row's window), or None where the layer takes
/// the column path: input channels not a multiple of four, or a window
/// path needing more scratch than the layer's activations (input and
/// output) take, which would raise the arena more than the speed is worth.
const fn conv2d_window_words(g: &ConvGeom) -> Option<u64> {
    let n = g.in_c as u64 * g.k as u64 * g.k as u64;
    let cols = (g.in_w + 2 * g.pad) as u64;
    let words = (g.out_c as u64 * n).div_ceil(4) + cw64(cols * g.k as u64 * g.in_c as u64);
    let acts =
        g.in_c as u64 * (g.in_h * g.in_w) as u64 + g.out_c as u64 * (g.out_h * g.out_w) as u64;
    if g.in_c.is_multiple_of(4) && 4 * words <= acts {
        Some(words)
    } else {
        None
    }
}

/// Scratch words of [`conv2d_i8`]: the window path's (see
/// [`conv2d_i8_with`]) or three columns of `in_c * k * k`.
pub const fn conv2d_scratch_words(g: &ConvGeom) -> u64 {
    match conv2d_window_words(g) {
        Some(w) => w,
        None => pixels_scratch_words(g.in_c as u64 * g.k as u64 * g.k as u64),
    }
}

/// Copies `src[start + i * stride]` into `dst[i]` for every `i`: one
/// bounds check, then a strided byte copy (the weight gathers).
#[inline(always)]
fn gather_strided(dst: &mut [u8], src: &[u8], start: usize, stride: usize) {
    let Some(last) = dst.len().checked_sub(1) else {
        return;
    };
    let src = &src[start..=start + last * stride];
    let mut at = 0;
    for d in dst {
        // SAFETY: at = i * stride <= last * stride < src.len().
        *d = unsafe { *src.get_unchecked(at) };
        at += stride;
    }
}

/// Gathers the weights of a convolution (`[o][i][ky][kx]`) into `wg` in
/// the window's order, `[o][kx][ky][i]`.
fn conv_gather(w: &[u8], g: &ConvGeom, wg: &mut [u32]) {
    let kk = g.k * g.k;
    let wg = crate::arena::words_as_bytes_mut(wg);
    let mut t = 0;
    for o in 0..g.out_c {
        for kx in 0..g.k {
            for ky in 0..g.k {
                let dst = &mut wg[t..t + g.in_c];
                gather_strided(dst, w, o * g.in_c * kk + ky * g.k + kx, kk);
                t += g.in_c;
            }
        }
    }
}

/// Column of output pixel `p` (raster index) of a convolution: taps in the
/// weight order (input channel, kernel row, kernel column), zeros outside.
#[inline(always)]
fn conv_col(x: &[i8], g: &ConvGeom, zp: i32, p: usize, mut wr: ColWriter<'_>) {
    let (oy, ox) = (p / g.out_w, p % g.out_w);
    let y0 = (oy * g.stride) as isize - g.pad as isize;
    let x0 = (ox * g.stride) as isize - g.pad as isize;
    let row = |ky: usize| {
        let iy = y0 + ky as isize;
        (iy >= 0 && iy < g.in_h as isize).then(|| iy as usize * g.in_w)
    };
    let js = inside(x0, g.k, g.in_w, g.k);
    wr.patch(x, g.in_c, g.in_h * g.in_w, g.k, row, g.k, x0, js, zp);
    wr.finish();
}

/// 2-D convolution, int8 (see [`super::reference::conv2d_i8`]).
pub fn conv2d_i8(
    x: &[i8],
    g: &ConvGeom,
    w: &[u8],
    bias: &[u8],
    q: &RequantI8<'_>,
    out: &mut [i8],
    scratch: &mut [u32],
) {
    conv2d_i8_with::<Native>(x, g, w, bias, q, out, scratch)
}

/// [`conv2d_i8`] with engine `E`.
///
/// Two paths. The window path (a multiple of four input channels, and
/// scratch to spare, see [`conv2d_scratch_words`]): the weights are
/// gathered once into the order `[o][kx][ky][i]`, and for each output row
/// the `k` input rows it reads become one channels-last window (as in
/// [`conv_transpose2d_i8_with`]) in which every output pixel's taps are one
/// contiguous run: no column is built per pixel. The column path: one
/// column per output pixel, three pixels per pass over the weights.
pub fn conv2d_i8_with<E: Engine>(
    x: &[i8],
    g: &ConvGeom,
    w: &[u8],
    bias: &[u8],
    q: &RequantI8<'_>,
    out: &mut [i8],
    scratch: &mut [u32],
) {
    let n = g.in_c * g.k * g.k;
    let npix = g.out_h * g.out_w;
    if conv2d_window_words(g).is_some() {
        // One window per output row: column c is input column c - pad,
        // row a input row oy * stride - pad + a; output column ox reads
        // window columns ox * stride ..= ox * stride + k - 1.
        let (wg, window) = scratch.split_at_mut((g.out_c * n).div_ceil(4));
        conv_gather(w, g, wg);
        let wb = crate::arena::words_as_bytes(wg);
        let cols = g.in_w + 2 * g.pad;
        let window = &mut window[..col_words(cols * g.k * g.in_c)];
        for oy in 0..g.out_h {
            let y0 = (oy * g.stride) as isize - g.pad as isize;
            fill_window(
                x,
                (g.in_c, g.in_h, g.in_w),
                window,
                (cols, g.k),
                |c| c as isize - g.pad as isize,
                |a| y0 + a as isize,
                q.in_zp,
            );
            let at = |ox: usize| ox * g.stride * g.k * g.in_c / 2;
            let row = oy * g.out_w;
            window_pixels::<E>(g.out_w, g.out_c, wb, n, bias, q, window, at, |o, ox, v| {
                out[o * npix + row + ox] = v
            });
        }
        return;
    }
    pixels::<E>(
        npix,
        g.out_c,
        w,
        n,
        bias,
        q,
        scratch,
        |p, wr| conv_col(x, g, q.in_zp, p, wr),
        |o, p, v| out[o * npix + p] = v,
    );
}

/// Kernel taps along one axis of a transposed convolution's phase `r`
/// (outputs `o` with `(o + pad) % s == r` read taps `r, r + s, ...`).
const fn phase_taps(r: usize, s: usize, k: usize) -> usize {
    if r >= k {
        0
    } else {
        (k - r).div_ceil(s)
    }
}

/// Values of the largest phase column of a transposed convolution.
const fn conv_t_col_len(g: &ConvGeom) -> usize {
    let t = phase_taps(0, g.stride, g.k);
    g.in_c * t * t
}

/// Scratch words of [`conv_transpose2d_i8`]: the weights of one phase for
/// every output channel, gathered contiguous, then the row strips (input
/// channels a multiple of four) or two columns.
pub const fn conv_transpose2d_scratch_words(g: &ConvGeom) -> u64 {
    let t = phase_taps(0, g.stride, g.k) as u64;
    let n = g.in_c as u64 * t * t;
    let weights = (g.out_c as u64 * n).div_ceil(4);
    if g.in_c.is_multiple_of(4) {
        let (phases, window) = conv_t_window_words(g);
        phases * weights + window
    } else {
        weights + pixels_scratch_words(n)
    }
}

/// The window path of a transposed convolution (input channels a
/// multiple of four): how many phases' weights it holds at once (all `s`
/// of a phase row, so that one window serves them all, where that fits in
/// the layer's activations; else one), and the window's words.
const fn conv_t_window_words(g: &ConvGeom) -> (u64, u64) {
    let t = phase_taps(0, g.stride, g.k) as u64;
    let weights = (g.out_c as u64 * g.in_c as u64 * t * t).div_ceil(4);
    let reach = ((g.out_w + g.pad) as u64 - 1) / g.stride as u64 + 1;
    let w = if reach > g.in_w as u64 {
        reach
    } else {
        g.in_w as u64
    } + t
        - 1;
    let window = cw64(w * t * g.in_c as u64);
    let acts =
        g.in_c as u64 * (g.in_h * g.in_w) as u64 + g.out_c as u64 * (g.out_h * g.out_w) as u64;
    if 4 * (g.stride as u64 * weights + window) <= acts {
        (g.stride as u64, window)
    } else {
        (1, window)
    }
}

/// 2-D transposed convolution, int8 (see
/// [`super::reference::conv_transpose2d_i8`]).
pub fn conv_transpose2d_i8(
    x: &[i8],
    g: &ConvGeom,
    w: &[u8],
    bias: &[u8],
    q: &RequantI8<'_>,
    out: &mut [i8],
    scratch: &mut [u32],
) {
    conv_transpose2d_i8_with::<Native>(x, g, w, bias, q, out, scratch)
}

/// Column of output pixel (`y`, `x`) of a transposed convolution in phase
/// (`ry`, `rx`) with `ny` x `nx` taps: (tap row, tap column from the last,
/// input channel), zeros outside the input.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn conv_t_col(
    xs: &[i8],
    g: &ConvGeom,
    zp: i32,
    (y, x): (usize, usize),
    (ry, rx): (usize, usize),
    (ny, nx): (usize, usize),
    mut wr: ColWriter<'_>,
) {
    let s = g.stride;
    // Tap a reads input row (y + pad - ry) / s - a; taps b = nx - 1 ..= 0
    // read columns ix0 - b, left to right.
    let iy0 = ((y + g.pad - ry) / s) as isize;
    let x0 = ((x + g.pad - rx) / s) as isize - (nx as isize - 1);
    let row = |a: usize| {
        let iy = iy0 - a as isize;
        (iy >= 0 && iy < g.in_h as isize).then(|| iy as usize * g.in_w)
    };
    let js = inside(x0, nx, g.in_w, nx);
    wr.patch_tap_major(xs, g.in_c, g.in_h * g.in_w, ny, row, nx, x0, js, zp);
    wr.finish();
}

/// Gathers the weights of phase (`ry`, `rx`) (`ny` x `nx` taps) for every
/// output channel into `wg`: row `o` = `[a][b][i]` (or `[b][a][i]` with
/// `columns_first`) of `w[i][o][ry + a s][rx + b s]`, `b` from `nx - 1`
/// down to 0 (so that columns read the input left to right).
#[allow(clippy::too_many_arguments)]
fn gather_phase(
    w: &[u8],
    g: &ConvGeom,
    (ry, rx): (usize, usize),
    (ny, nx): (usize, usize),
    columns_first: bool,
    wg: &mut [u32],
) {
    let s = g.stride;
    let kk = g.k * g.k;
    let wg = crate::arena::words_as_bytes_mut(wg);
    let mut t = 0;
    for o in 0..g.out_c {
        for u in 0..ny * nx {
            // Tap (a, b), b from nx - 1 down: rows outer, or columns outer.
            let (a, j) = if columns_first {
                (u % ny, u / ny)
            } else {
                (u / nx, u % nx)
            };
            let b = nx - 1 - j;
            let tap = (ry + a * s) * g.k + rx + b * s;
            let dst = &mut wg[t..t + g.in_c];
            gather_strided(dst, w, o * kk + tap, g.out_c * kk);
            t += g.in_c;
        }
    }
}

/// Width of a transposed convolution's input window (see
/// [`conv_transpose2d_i8_with`]), in pixels, and its words.
const fn conv_t_window(g: &ConvGeom) -> (usize, usize) {
    let nt = phase_taps(0, g.stride, g.k);
    let reach = (g.out_w - 1 + g.pad) / g.stride + 1;
    let w = if reach > g.in_w { reach } else { g.in_w } + nt - 1;
    (w, col_words(w * nt * g.in_c))
}

/// [`conv_transpose2d_i8`] with engine `E`, phase by phase (the s x s
/// classes of output pixels that read the same kernel taps), the phase's
/// weights gathered once into scratch in tap-major order.
///
/// With a multiple of four input channels, no column is built per output
/// pixel: for each output row of a phase, the `ny` input rows it reads are
/// converted once into a channels-last *window*, `[column][row][channel]`
/// (zero columns beyond the edges, zero rows outside the image), in which
/// the taps of every output pixel of the row are one contiguous piece
/// (`nx` columns from its first): the weights are gathered in that order,
/// and each pixel pair is one pass over them.
pub fn conv_transpose2d_i8_with<E: Engine>(
    x: &[i8],
    g: &ConvGeom,
    w: &[u8],
    bias: &[u8],
    q: &RequantI8<'_>,
    out: &mut [i8],
    scratch: &mut [u32],
) {
    if !g.in_c.is_multiple_of(4) {
        return conv_t_per_pixel::<E>(x, g, w, bias, q, out, scratch);
    }
    let s = g.stride;
    let nt = phase_taps(0, s, g.k);
    let (sw, window_words) = conv_t_window(g);
    let (phases, _) = conv_t_window_words(g);
    let pw = (g.out_c * g.in_c * nt * nt).div_ceil(4);
    let (wg, window) = scratch.split_at_mut(phases as usize * pw);
    let window = &mut window[..window_words];
    let plane = g.out_h * g.out_w;
    for ry in 0..s {
        let ny = phase_taps(ry, s, g.k);
        let y_first = (ry + s - g.pad % s) % s;
        if y_first >= g.out_h {
            continue;
        }
        // The column phases of this row phase, in groups of `phases`
        // whose weights are gathered together and share each window.
        let mut rx0 = 0;
        while rx0 < s {
            let rxs = rx0..(rx0 + phases as usize).min(s);
            for rx in rxs.clone() {
                let nx = phase_taps(rx, s, g.k);
                let wr = &mut wg[(rx - rx0) * pw..][..pw];
                gather_phase(w, g, (ry, rx), (ny, nx), true, wr);
            }
            let mut y = y_first;
            while y < g.out_h {
                // Window column c is input column c - (nt - 1); row a is
                // input row iy0 - a.
                let iy0 = ((y + g.pad - ry) / s) as isize;
                if ny > 0 {
                    fill_window(
                        x,
                        (g.in_c, g.in_h, g.in_w),
                        window,
                        (sw, ny),
                        |c| c as isize - (nt as isize - 1),
                        |a| iy0 - a as isize,
                        q.in_zp,
                    );
                }
                for rx in rxs.clone() {
                    let nx = phase_taps(rx, s, g.k);
                    let x_first = (rx + s - g.pad % s) % s;
                    if x_first >= g.out_w {
                        continue;
                    }
                    let n = nx * ny * g.in_c;
                    let wb = crate::arena::words_as_bytes(&wg[(rx - rx0) * pw..][..pw]);
                    // Output column x reads input columns ix0 ..= ix0 + nx
                    // - 1, ix0 = (x + pad - rx) / s - (nx - 1): window
                    // columns from ix0 + nt - 1, words from there times
                    // ny * in_c / 2.
                    let xo = |j: usize| x_first + j * s;
                    let at = |j: usize| ((xo(j) + g.pad - rx) / s + nt - nx) * ny * g.in_c / 2;
                    let orow = y * g.out_w;
                    let npix = (g.out_w - x_first).div_ceil(s);
                    window_pixels::<E>(npix, g.out_c, wb, n, bias, q, window, at, |o, j, v| {
                        out[o * plane + orow + xo(j)] = v
                    });
                }
                y += s;
            }
            rx0 = rxs.end;
        }
    }
}

/// [`conv_transpose2d_i8_with`] when the input channels are not a
/// multiple of four: one column per output pixel.
fn conv_t_per_pixel<E: Engine>(
    x: &[i8],
    g: &ConvGeom,
    w: &[u8],
    bias: &[u8],
    q: &RequantI8<'_>,
    out: &mut [i8],
    scratch: &mut [u32],
) {
    let s = g.stride;
    let nmax = conv_t_col_len(g);
    let (wg, cols) = scratch.split_at_mut((g.out_c * nmax).div_ceil(4));
    let plane = g.out_h * g.out_w;
    for ry in 0..s {
        let ny = phase_taps(ry, s, g.k);
        // Output rows of this phase: (y + pad) % s == ry.
        let y_first = (ry + s - g.pad % s) % s;
        for rx in 0..s {
            let nx = phase_taps(rx, s, g.k);
            let n = g.in_c * ny * nx;
            let x_first = (rx + s - g.pad % s) % s;
            if y_first >= g.out_h || x_first >= g.out_w {
                continue;
            }
            gather_phase(w, g, (ry, rx), (ny, nx), false, wg);
            let wb = super::super::arena::words_as_bytes(wg);
            // Pixels of the phase in raster order.
            let nx_pix = (g.out_w - x_first).div_ceil(s);
            let ny_pix = (g.out_h - y_first).div_ceil(s);
            let at = |p: usize| (y_first + (p / nx_pix) * s, x_first + (p % nx_pix) * s);
            pixels::<E>(
                nx_pix * ny_pix,
                g.out_c,
                wb,
                n,
                bias,
                q,
                cols,
                |p, wr| conv_t_col(x, g, q.in_zp, at(p), (ry, rx), (ny, nx), wr),
                |o, p, v| {
                    let (y, x) = at(p);
                    out[o * plane + y * g.out_w + x] = v;
                },
            );
        }
    }
}

/// Masked convolution segments: `(segments, values per segment, weight
/// stride between segments)`. Each input channel's taps on kernel rows
/// `0..=k/2` are contiguous in the weights; a 1x1 kernel's are contiguous
/// across channels, so it is one segment.
const fn masked_segs(g: &MaskedGeom) -> (usize, usize, usize) {
    if g.k == 1 {
        (1, g.in_c, 0)
    } else {
        (g.in_c, (g.k / 2 + 1) * g.k, g.k * g.k)
    }
}

/// Scratch words of [`masked_conv2d_at_i8`] and [`masked_conv2d_i8`].
pub const fn masked_scratch_words(g: &MaskedGeom) -> u64 {
    // Segments and their lengths are u16 and u8 products: no wrap.
    let (n_seg, len, _) = masked_segs(g);
    n_seg as u64 * cw64(len as u64)
}

/// Masked convolution, int8, at one position (see
/// [`super::reference::masked_conv2d_at_i8`]).
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
    scratch: &mut [u32],
) {
    masked_conv2d_at_i8_with::<Native>(x, g, w, bias, q, out, y, xp, scratch)
}

/// [`masked_conv2d_at_i8`] with engine `E`.
#[allow(clippy::too_many_arguments)]
pub fn masked_conv2d_at_i8_with<E: Engine>(
    x: &[i8],
    g: &MaskedGeom,
    w: &[u8],
    bias: &[u8],
    q: &RequantI8<'_>,
    out: &mut [i8],
    y: usize,
    xp: usize,
    scratch: &mut [u32],
) {
    let c = g.k / 2;
    let (n_seg, len, _) = masked_segs(g);
    let sw = col_words(len);
    let col = &mut scratch[..n_seg * sw];
    {
        let mut wr = ColWriter::new(col);
        if g.k == 1 {
            // One segment: every input channel at (y, x), or none (mask A).
            if g.mask_b {
                let at = (y % g.in_rows) * g.w + xp;
                wr.strided(&x[at..], g.in_c, g.in_rows * g.w, q.in_zp);
            } else {
                wr.zeros(g.in_c);
            }
            wr.finish();
            return masked_rows::<E>(g, w, bias, q, out, (y, xp), col);
        }
        let x0 = xp as isize - c as isize;
        let full = inside(x0, g.k, g.w, g.k);
        // Centre row: columns < c (mask A) or <= c (mask B).
        let centre = inside(x0, g.k, g.w, c + g.mask_b as usize);
        let row = |ky: usize| (y + ky >= c).then(|| ((y + ky - c) % g.in_rows) * g.w);
        let plane = g.in_rows * g.w;
        for i in 0..g.in_c {
            let xi = &x[i * plane..];
            wr.patch(xi, 1, 0, c, row, g.k, x0, full, q.in_zp);
            wr.patch(xi, 1, 0, 1, |_| row(c), g.k, x0, centre, q.in_zp);
            if n_seg > 1 {
                wr.end_segment();
            }
        }
        wr.finish();
    }
    masked_rows::<E>(g, w, bias, q, out, (y, xp), col)
}

/// The output channels of a masked convolution at (`y`, `x`) over its
/// column (segments of [`masked_segs`]).
fn masked_rows<E: Engine>(
    g: &MaskedGeom,
    w: &[u8],
    bias: &[u8],
    q: &RequantI8<'_>,
    out: &mut [i8],
    (y, xp): (usize, usize),
    col: &[u32],
) {
    let (n_seg, len, seg_stride) = masked_segs(g);
    let sw = col_words(len);
    let orow = y % g.out_rows;
    let row_stride = g.in_c * g.k * g.k;
    let put = |out: &mut [i8], o: usize, a: i32| {
        out[(o * g.out_rows + orow) * g.w + xp] = q.apply(a, o);
    };
    let wrow = |o: usize, s: usize| &w[o * row_stride + s * seg_stride..][..len];
    let mut o = 0;
    while o + 3 <= g.out_c {
        let mut acc = [i32_at(bias, o), i32_at(bias, o + 1), i32_at(bias, o + 2)];
        for s in 0..n_seg {
            let rows = [wrow(o, s), wrow(o + 1, s), wrow(o + 2, s)];
            E::rows(&mut acc, rows, &col[s * sw..(s + 1) * sw], len);
        }
        for (j, a) in acc.into_iter().enumerate() {
            put(out, o + j, a);
        }
        o += 3;
    }
    while o < g.out_c {
        let mut acc = [i32_at(bias, o)];
        for s in 0..n_seg {
            E::rows(&mut acc, [wrow(o, s)], &col[s * sw..(s + 1) * sw], len);
        }
        put(out, o, acc[0]);
        o += 1;
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
    scratch: &mut [u32],
) {
    for y in 0..g.h {
        for xp in 0..g.w {
            masked_conv2d_at_i8(x, g, w, bias, q, out, y, xp, scratch);
        }
    }
}

/// Scratch words of the two-stack kernels: two vertical columns, or one
/// horizontal one (only for the outputs the layer has).
pub const fn stack_scratch_words(g: &StackGeom) -> u64 {
    // StackGeom's row lengths, in u64.
    let (k, v_src) = (g.k as u64, g.v_src() as u64);
    let n_h = (g.k / 2) as u64 + g.mask_b as u64;
    let v = if g.out_v > 0 {
        pixels_scratch_words(v_src * (k / 2 + 1) * k)
    } else {
        0
    };
    let h = if g.out_v < g.out_c {
        cw64((g.in_c - g.in_v) as u64 * n_h + g.in_v as u64)
    } else {
        0
    };
    if v > h {
        v
    } else {
        h
    }
}

/// Two-stack convolution, int8: the horizontal outputs of pixel (`y`,
/// `x`) (see [`super::reference::stack_conv2d_h_at_i8`]).
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
    scratch: &mut [u32],
) {
    stack_conv2d_h_at_i8_with::<Native>(x, g, w, bias, q, out, y, xp, scratch)
}

/// [`stack_conv2d_h_at_i8`] with engine `E`.
#[allow(clippy::too_many_arguments)]
pub fn stack_conv2d_h_at_i8_with<E: Engine>(
    x: &[i8],
    g: &StackGeom,
    w: &[u8],
    bias: &[u8],
    q: &RequantI8<'_>,
    out: &mut [i8],
    y: usize,
    xp: usize,
    scratch: &mut [u32],
) {
    if g.out_v == g.out_c {
        return;
    }
    let c = g.k / 2;
    let n = g.h_row_len();
    let col = &mut scratch[..col_words(n)];
    {
        let mut wr = ColWriter::new(col);
        let n_h = g.n_h();
        let plane = g.in_rows * g.w;
        let r = (y % g.in_rows) * g.w;
        // Taps t < n_h <= c + 1 read columns x - c + t: never right of x.
        let x0 = xp as isize - c as isize;
        let js = inside(x0, n_h, g.w, n_h);
        let xh = &x[g.in_v * plane..];
        wr.patch(
            xh,
            g.in_c - g.in_v,
            plane,
            1,
            |_| Some(r),
            n_h,
            x0,
            js,
            q.in_zp,
        );
        for i in 0..g.in_v {
            if y == 0 {
                wr.push(0);
            } else {
                let v = x[(i * g.in_rows + (y - 1) % g.in_rows) * g.w + xp];
                wr.push(v as i32 - q.in_zp);
            }
        }
        wr.finish();
    }
    let orow = y % g.out_rows;
    let base = g.out_v * g.v_row_len();
    rows1::<E>(
        g.out_c - g.out_v,
        w,
        base,
        n,
        n,
        bias,
        g.out_v,
        col,
        |j, a| {
            let o = g.out_v + j;
            out[(o * g.out_rows + orow) * g.w + xp] = q.apply(a, o);
        },
    );
}

/// Column of vertical taps at (`y`, `x`): (input channel, kernel row
/// `0..=k/2`, kernel column), zeros outside the image.
#[inline(always)]
fn stack_v_col(x: &[i8], g: &StackGeom, zp: i32, y: usize, xp: usize, mut wr: ColWriter<'_>) {
    let c = g.k / 2;
    let x0 = xp as isize - c as isize;
    let row = |ky: usize| (y + ky >= c).then(|| ((y + ky - c) % g.in_rows) * g.w);
    let js = inside(x0, g.k, g.w, g.k);
    wr.patch(x, g.v_src(), g.in_rows * g.w, c + 1, row, g.k, x0, js, zp);
    wr.finish();
}

/// Two-stack convolution, int8: the vertical outputs of row `y` (see
/// [`super::reference::stack_conv2d_v_row_i8`]).
#[allow(clippy::too_many_arguments)]
pub fn stack_conv2d_v_row_i8(
    x: &[i8],
    g: &StackGeom,
    w: &[u8],
    bias: &[u8],
    q: &RequantI8<'_>,
    out: &mut [i8],
    y: usize,
    scratch: &mut [u32],
) {
    stack_conv2d_v_row_i8_with::<Native>(x, g, w, bias, q, out, y, scratch)
}

/// [`stack_conv2d_v_row_i8`] with engine `E`.
#[allow(clippy::too_many_arguments)]
pub fn stack_conv2d_v_row_i8_with<E: Engine>(
    x: &[i8],
    g: &StackGeom,
    w: &[u8],
    bias: &[u8],
    q: &RequantI8<'_>,
    out: &mut [i8],
    y: usize,
    scratch: &mut [u32],
) {
    if g.out_v == 0 {
        return;
    }
    let n = g.v_row_len();
    let orow = y % g.out_rows;
    pixels::<E>(
        g.w,
        g.out_v,
        w,
        n,
        bias,
        q,
        scratch,
        |xp, wr| stack_v_col(x, g, q.in_zp, y, xp, wr),
        |o, xp, v| out[(o * g.out_rows + orow) * g.w + xp] = v,
    );
}

/// Two-stack convolution, int8, over the whole image.
pub fn stack_conv2d_i8(
    x: &[i8],
    g: &StackGeom,
    w: &[u8],
    bias: &[u8],
    q: &RequantI8<'_>,
    out: &mut [i8],
    scratch: &mut [u32],
) {
    for y in 0..g.h {
        for xp in 0..g.w {
            stack_conv2d_h_at_i8(x, g, w, bias, q, out, y, xp, scratch);
        }
        stack_conv2d_v_row_i8(x, g, w, bias, q, out, y, scratch);
    }
}

/// Scratch words of the Row LSTM kernels: the input column
/// (`in_c * k_in`) and the state column (`hidden * k_state`).
pub const fn lstm_scratch_words(g: &LstmGeom) -> u64 {
    cw64(g.in_c as u64 * g.k_in as u64) + cw64(g.hidden as u64 * g.k_state as u64)
}

/// Row LSTM, int8, at one position (see
/// [`super::reference::row_lstm_at_i8`]).
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
    scratch: &mut [u32],
) {
    row_lstm_at_i8_with::<Native>(x, g, w, bias, q, h, cell, y, xp, scratch)
}

/// [`row_lstm_at_i8`] with engine `E`.
#[allow(clippy::too_many_arguments)]
pub fn row_lstm_at_i8_with<E: Engine>(
    x: &[i8],
    g: &LstmGeom,
    w: &[u8],
    bias: &[u8],
    q: &RequantI8<'_>,
    h: &mut [i8],
    cell: &mut [i32],
    y: usize,
    xp: usize,
    scratch: &mut [u32],
) {
    let hid = g.hidden;
    let (n_is, n_ss) = (g.in_c * g.k_in, hid * g.k_state);
    let (col_is, rest) = scratch.split_at_mut(col_words(n_is));
    let col_ss = &mut rest[..col_words(n_ss)];
    let (ci, cs) = (g.k_in / 2, g.k_state / 2);
    {
        // Input-to-state: taps t < ci (mask A) or <= ci (mask B) inside
        // the row.
        let t1 = ci + g.mask_b as usize;
        let r = (y % g.in_rows) * g.w;
        let x0 = xp as isize - ci as isize;
        let js = inside(x0, g.k_in, g.w, t1);
        let mut wr = ColWriter::new(col_is);
        wr.patch(
            x,
            g.in_c,
            g.in_rows * g.w,
            1,
            |_| Some(r),
            g.k_in,
            x0,
            js,
            q.in_zp,
        );
        wr.finish();
    }
    if y > 0 {
        let r = ((y - 1) % g.out_rows) * g.w;
        let x0 = xp as isize - cs as isize;
        let js = inside(x0, g.k_state, g.w, g.k_state);
        let mut wr = ColWriter::new(col_ss);
        wr.patch(
            h,
            hid,
            g.out_rows * g.w,
            1,
            |_| Some(r),
            g.k_state,
            x0,
            js,
            0,
        );
        wr.finish();
    }
    let orow = y % g.out_rows;
    let w_ss = g.w_is_len();
    for j in 0..hid {
        let r = [j, hid + j, 2 * hid + j, 3 * hid + j];
        let w_is = |k: usize| &w[r[k] * n_is..][..n_is];
        let w_ssr = |k: usize| &w[w_ss + r[k] * n_ss..][..n_ss];
        // The four gates as two pairs of rows.
        let mut a01 = [i32_at(bias, r[0]), i32_at(bias, r[1])];
        let mut a23 = [i32_at(bias, r[2]), i32_at(bias, r[3])];
        E::rows(&mut a01, [w_is(0), w_is(1)], col_is, n_is);
        E::rows(&mut a23, [w_is(2), w_is(3)], col_is, n_is);
        let a_is = [a01[0], a01[1], a23[0], a23[1]];
        let (mut s01, mut s23) = ([0i32; 2], [0i32; 2]);
        if y > 0 {
            E::rows(&mut s01, [w_ssr(0), w_ssr(1)], col_ss, n_ss);
            E::rows(&mut s23, [w_ssr(2), w_ssr(3)], col_ss, n_ss);
        }
        let a_ss = [s01[0], s01[1], s23[0], s23[1]];
        let acc = core::array::from_fn(|k| (a_is[k], a_ss[k]));
        let cix = j * g.w + xp;
        let c_prev = if y > 0 { cell[cix] } else { 0 };
        let (c, hv) = super::reference::lstm_unit_i8(g, w, q, j, acc, c_prev);
        cell[cix] = c;
        h[(j * g.out_rows + orow) * g.w + xp] = hv;
    }
}

/// Row LSTM, int8, over the whole image.
#[allow(clippy::too_many_arguments)]
pub fn row_lstm_i8(
    x: &[i8],
    g: &LstmGeom,
    w: &[u8],
    bias: &[u8],
    q: &RequantI8<'_>,
    out: &mut [i8],
    cell: &mut [i32],
    scratch: &mut [u32],
) {
    for y in 0..g.h {
        for xp in 0..g.w {
            row_lstm_at_i8(x, g, w, bias, q, out, cell, y, xp, scratch);
        }
    }
}
