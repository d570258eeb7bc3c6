//! Optimized f32 kernels (f32 or f16 weights): the reference kernels'
//! taps, in the reference order, for four output channels at once.
//!
//! Each output's accumulator sees exactly the reference's sequence of
//! operations (bias, then every tap in order, one multiply and one add
//! each, never fused), so the results are the reference's bit for bit; the
//! speed comes from reading each activation once per four outputs and from
//! the index arithmetic being shared. On the Cortex-M4F the multiply-add
//! compiles to VMLA.F32, which rounds like a separate multiply and add.
//!
//! The four rows of a block sit at a fixed stride in the weight blob for
//! every op (dense, convolution, transposed convolution, masked and
//! two-stack convolutions, the Row LSTM's four gates of one channel), so a
//! block is the reference's tap iterator for its first row plus that
//! stride.
//!
//! On hard-float Cortex-M targets (`cfg(tinygen_vfp)`) the Row LSTM's tap
//! loop, which the 1x1 masked convolution shares, is `asm!` (module
//! `vfp`): the same taps in the same order, fewer instructions per weight.

#[cfg(test)]
use super::super::reference::lstm_gate_runs;
use super::super::reference::{
    conv_t_first, conv_taps, lstm_taps, lstm_unit_f32, masked_runs, relu_if, stack_h_runs,
    stack_v_runs,
};
use super::super::{ConvGeom, FloatWeights, LstmGeom, MaskedGeom, StackGeom};
use crate::format::f32_at;

/// Output channels per block (eight accumulators and their weights fit the
/// M4F's 32 single-precision registers).
const B: usize = 8;

/// Unit tests count the MACs the kernels do through the reference's tap
/// iterators, which see one channel of a block: [`macs_before`] takes the
/// count so far, [`macs_times`] puts it back with the block's taps times
/// its channels. Nothing outside tests.
#[cfg(test)]
fn macs_before() -> u64 {
    super::super::reference::mac_counter::take()
}
#[cfg(test)]
fn macs_times(before: u64, channels: usize) {
    let taps = super::super::reference::mac_counter::take();
    super::super::reference::mac_counter::add((before + taps * channels as u64) as usize);
}
#[cfg(not(test))]
#[inline(always)]
fn macs_before() -> u64 {
    0
}
#[cfg(not(test))]
#[inline(always)]
fn macs_times(_: u64, _: usize) {}

/// The taps of one output channel at one position, in the reference order,
/// as runs: `each(o, f)` calls `f(w_index, x_index, n, x_stride)` for `n`
/// consecutive weights and inputs `x_stride` apart (the reference kernels'
/// iterators).
trait Runs {
    fn each(&self, o: usize, f: impl FnMut(usize, usize, usize, usize));
}

struct Dense(usize);
impl Runs for Dense {
    #[inline(always)]
    fn each(&self, o: usize, mut f: impl FnMut(usize, usize, usize, usize)) {
        if self.0 > 0 {
            f(o * self.0, 0, self.0, 1)
        }
    }
}

struct Conv<'g>(&'g ConvGeom, usize, usize);
impl Runs for Conv<'_> {
    #[inline(always)]
    fn each(&self, o: usize, mut f: impl FnMut(usize, usize, usize, usize)) {
        conv_taps(self.0, o, self.1, self.2, |wi, xi| f(wi, xi, 1, 1))
    }
}

struct Masked<'g>(&'g MaskedGeom, usize, usize);
impl Runs for Masked<'_> {
    #[inline(always)]
    fn each(&self, o: usize, f: impl FnMut(usize, usize, usize, usize)) {
        masked_runs(self.0, o, self.1, self.2, f)
    }
}

struct StackV<'g>(&'g StackGeom, usize, usize);
impl Runs for StackV<'_> {
    #[inline(always)]
    fn each(&self, o: usize, f: impl FnMut(usize, usize, usize, usize)) {
        stack_v_runs(self.0, o, self.1, self.2, f)
    }
}

struct StackH<'g>(&'g StackGeom, usize, usize);
impl Runs for StackH<'_> {
    #[inline(always)]
    fn each(&self, o: usize, f: impl FnMut(usize, usize, usize, usize)) {
        stack_h_runs(self.0, o, self.1, self.2, f)
    }
}

/// Adds run (`w`'s first `n` weights, inputs `x[0], x[xs], ...`) to the
/// `R` accumulators of rows `stride` apart, tap by tap.
#[inline(always)]
fn run<W: FloatWeights, const R: usize>(
    acc: &mut [f32; R],
    w: W,
    stride: usize,
    (w0, x, n, xs): (usize, &[f32], usize, usize),
) {
    let x = &x[..(n - 1) * xs + 1];
    if R <= 4 {
        // Up to four rows: a base register per row and one shared offset.
        let rows: [W; R] = core::array::from_fn(|r| w.sub(w0 + r * stride, n));
        for t in 0..n {
            // SAFETY: t * xs <= (n - 1) * xs < x.len().
            let xv = unsafe { *x.get_unchecked(t * xs) };
            for (row, a) in rows.iter().zip(acc.iter_mut()) {
                // SAFETY: t < n, each row's length.
                *a += unsafe { row.at_unchecked(t) } * xv;
            }
        }
        return;
    }
    // More rows than registers for their bases: one bounds check for the
    // last row's last weight (rows lie at increasing offsets).
    let end = w0 + (R - 1) * stride + n;
    assert!(end <= w.len(), "weights out of bounds");
    for t in 0..n {
        // SAFETY: t * xs <= (n - 1) * xs < x.len().
        let xv = unsafe { *x.get_unchecked(t * xs) };
        for (r, a) in acc.iter_mut().enumerate() {
            // SAFETY: w0 + r * stride + t < end <= w.len() (checked above).
            *a += unsafe { w.at_unchecked(w0 + r * stride + t) } * xv;
        }
    }
}

/// Runs output channels `o0..o1` in blocks of four (then one by one): for
/// each block, the runs of its first channel `o` in the reference order;
/// channel `o + r` reads weight `w_index + r * stride`. Accumulators start
/// at the bias; `put(o, acc)`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn blocks<W: FloatWeights>(
    o01: (usize, usize),
    w: W,
    stride: usize,
    bias: &[u8],
    x: &[f32],
    runs: &impl Runs,
    put: impl FnMut(usize, f32),
) {
    blocks_of::<W, B>(o01, w, stride, bias, x, runs, put)
}

/// [`blocks`] in blocks of `R` channels.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn blocks_of<W: FloatWeights, const R: usize>(
    (o0, o1): (usize, usize),
    w: W,
    stride: usize,
    bias: &[u8],
    x: &[f32],
    runs: &impl Runs,
    mut put: impl FnMut(usize, f32),
) {
    let mut o = o0;
    while o + R <= o1 {
        // One bounds check for the block's biases.
        let b = &bias[4 * o..4 * (o + R)];
        let mut acc: [f32; R] = core::array::from_fn(|r| f32_at(b, r));
        let counted = macs_before();
        runs.each(o, |w0, x0, n, xs| {
            run(&mut acc, w, stride, (w0, &x[x0..], n, xs))
        });
        macs_times(counted, R);
        for (r, a) in acc.into_iter().enumerate() {
            put(o + r, a);
        }
        o += R;
    }
    while o < o1 {
        let mut acc = [f32_at(bias, o)];
        runs.each(o, |w0, x0, n, xs| {
            run(&mut acc, w, 0, (w0, &x[x0..], n, xs))
        });
        put(o, acc[0]);
        o += 1;
    }
}

/// Dense layer, f32 activations (see [`super::super::reference::dense_f32`]).
pub fn dense_f32<W: FloatWeights>(x: &[f32], w: W, bias: &[u8], out: &mut [f32], relu: bool) {
    let n = x.len();
    // Four rows at a time: eight rows' weight offsets do not fit the
    // core registers beside the loop's own.
    blocks_of::<W, 4>((0, out.len()), w, n, bias, x, &Dense(n), |o, a| {
        out[o] = relu_if(a, relu)
    });
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
    let plane = g.out_h * g.out_w;
    for oy in 0..g.out_h {
        for ox in 0..g.out_w {
            let p = oy * g.out_w + ox;
            blocks(
                (0, g.out_c),
                w,
                g.in_c * g.k * g.k,
                bias,
                x,
                &Conv(g, oy, ox),
                |o, a| out[o * plane + p] = relu_if(a, relu),
            );
        }
    }
}

/// 2-D transposed convolution, f32 activations (weights
/// `[in_c][out_c][k][k]`: channel `o + 1`'s taps are `k * k` further).
///
/// The pixels of one output row that are `stride` apart (one column
/// phase) read the same kernel taps from consecutive input columns, except
/// near the edges where taps are clipped. Such *uniform* runs go eight,
/// six, four or two pixels at a time, each block over two, four or eight
/// output channels (twelve or sixteen accumulators): each weight is loaded once for all the
/// block's pixels and each input once for all its channels. Every
/// accumulator still sees the reference's taps in the reference's order.
pub fn conv_transpose2d_f32<W: FloatWeights>(
    x: &[f32],
    g: &ConvGeom,
    w: W,
    bias: &[u8],
    out: &mut [f32],
    relu: bool,
) {
    let s = g.stride;
    for y in 0..g.out_h {
        for r in 0..s.min(g.out_w) {
            // The pixels xo = r + j s of this row and column phase.
            let npix = (g.out_w - r).div_ceil(s);
            let mut j = 0;
            while j < npix {
                let xo = r + j * s;
                let fits = |n: usize| j + n <= npix && conv_t_uniform(g, xo, n);
                let o = (x, g, w, bias, relu, y, xo);
                j += if fits(8) {
                    conv_t_pixels_f32::<W, 8, 2>(o, out)
                } else if fits(6) {
                    conv_t_pixels_f32::<W, 6, 2>(o, out)
                } else if fits(4) {
                    conv_t_pixels_f32::<W, 4, 4>(o, out)
                } else if fits(2) {
                    conv_t_pixels_f32::<W, 2, 8>(o, out)
                } else {
                    conv_t_pixels_f32::<W, 1, 8>(o, out)
                };
            }
        }
    }
}

/// Kernel columns of output column `xo` of a transposed convolution: the
/// first tap and its input column, and the number of taps (see
/// `conv_t_first`).
#[inline(always)]
fn conv_t_cols(g: &ConvGeom, xo: usize) -> (usize, usize, usize) {
    let (kx0, ix0) = conv_t_first(xo, g.pad, g.stride, g.k, g.in_w);
    let nx = if kx0 >= g.k {
        0
    } else {
        (g.k - kx0).div_ceil(g.stride).min(ix0 + 1)
    };
    (kx0, ix0, nx)
}

/// Whether the `n` output columns `xo, xo + s, ...` of a transposed
/// convolution read the same kernel columns from consecutive input
/// columns: the first and the last agree (clipping, at either edge, only
/// grows toward the edge).
#[inline(always)]
fn conv_t_uniform(g: &ConvGeom, xo: usize, n: usize) -> bool {
    let (kx0, ix0, nx) = conv_t_cols(g, xo);
    let (kx1, ix1, nx1) = conv_t_cols(g, xo + (n - 1) * g.stride);
    kx0 == kx1 && nx == nx1 && ix1 == ix0 + n - 1
}

/// `P` output pixels `xo, xo + s, ...` of row `y`, uniform (see
/// [`conv_t_uniform`]), every output channel, `C` channels at a time (then
/// one by one). Returns `P`.
#[allow(clippy::type_complexity)]
#[inline(always)]
fn conv_t_pixels_f32<W: FloatWeights, const P: usize, const C: usize>(
    (x, g, w, bias, relu, y, xo): (&[f32], &ConvGeom, W, &[u8], bool, usize, usize),
    out: &mut [f32],
) -> usize {
    let (s, k) = (g.stride, g.k);
    let (kx0, ix0, nx) = conv_t_cols(g, xo);
    let (ky0, iy0) = conv_t_first(y, g.pad, s, k, g.in_h);
    let ny = if ky0 >= k || nx == 0 {
        0
    } else {
        (k - ky0).div_ceil(s).min(iy0 + 1)
    };
    let (plane, in_plane, kk) = (g.out_h * g.out_w, g.in_h * g.in_w, k * k);
    // Weight index of (input channel 0, output channel o, ky0, kx0).
    let w_at = |o: usize| (o * k + ky0) * k + kx0;
    if ny > 0 {
        // Bounds once: the highest weight (last channels, last tap), the
        // highest input (last channel, row iy0, column ix0 + P - 1); the
        // lowest input is row iy0 + 1 - ny >= 0, column ix0 + 1 - nx >= 0.
        let w_last =
            w_at(g.out_c - 1) + (g.in_c - 1) * g.out_c * kk + (ny - 1) * s * k + (nx - 1) * s;
        let x_last = (g.in_c - 1) * in_plane + iy0 * g.in_w + ix0 + P - 1;
        assert!(
            w_last < w.len() && x_last < x.len(),
            "transposed convolution out of bounds"
        );
    }
    let at = y * g.out_w + xo;
    let mut put = |o: usize, acc: [f32; P]| store_strided(out, o * plane + at, s, acc, relu);
    // The common 4x4 kernel at stride 2 has 2 x 2 taps: unrolled.
    let block = |o: usize| {
        if (ny, nx) == (2, 2) {
            conv_t_block::<W, P, C>(x, g, w, bias, o, w_at(o), (iy0, ix0), (2, 2))
        } else {
            conv_t_block::<W, P, C>(x, g, w, bias, o, w_at(o), (iy0, ix0), (ny, nx))
        }
    };
    let mut o = 0;
    while o + C <= g.out_c {
        let acc = block(o);
        for (c, a) in acc.into_iter().enumerate() {
            put(o + c, a);
        }
        o += C;
    }
    while o < g.out_c {
        let [a] = conv_t_block::<W, P, 1>(x, g, w, bias, o, w_at(o), (iy0, ix0), (ny, nx));
        put(o, a);
        o += 1;
    }
    // The MACs the unit tests count (no tap iterator ran).
    #[cfg(test)]
    super::super::reference::mac_counter::add(g.out_c * P * g.in_c * ny * nx);
    P
}

/// Stores `acc[j]` (after the ReLU if `relu`) at `out[at + j * stride]`,
/// with one bounds check.
#[inline(always)]
fn store_strided<const P: usize>(
    out: &mut [f32],
    at: usize,
    stride: usize,
    acc: [f32; P],
    relu: bool,
) {
    let out = &mut out[at..=at + (P - 1) * stride];
    for (j, a) in acc.into_iter().enumerate() {
        // SAFETY: j * stride <= (P - 1) * stride < out.len().
        unsafe { *out.get_unchecked_mut(j * stride) = relu_if(a, relu) };
    }
}

/// The accumulators of output channels `o..o + C` at `P` uniform pixels:
/// bias, then for each input channel, kernel row and kernel column in the
/// reference's order, weight times input. `w0`: the weight index of
/// (input 0, channel `o`, first tap); the first pixel's first tap reads
/// input (`iy0`, `ix0`).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn conv_t_block<W: FloatWeights, const P: usize, const C: usize>(
    x: &[f32],
    g: &ConvGeom,
    w: W,
    bias: &[u8],
    o: usize,
    w0: usize,
    (iy0, ix0): (usize, usize),
    (ny, nx): (usize, usize),
) -> [[f32; P]; C] {
    let (s, k, kk) = (g.stride, g.k, g.k * g.k);
    let b = &bias[4 * o..4 * (o + C)];
    let mut acc: [[f32; P]; C] = core::array::from_fn(|c| [f32_at(b, c); P]);
    let (mut wi, mut xi) = (w0, iy0 * g.in_w + ix0);
    for _ in 0..g.in_c {
        for a in 0..ny {
            let (wa, xa) = (wi + a * s * k, xi - a * g.in_w);
            for b in 0..nx {
                // SAFETY: the caller checked the highest weight and input
                // reads and that the lowest input is not below zero.
                unsafe {
                    let xs = x.as_ptr().add(xa - b);
                    let mut xv = [0f32; P];
                    for (j, v) in xv.iter_mut().enumerate() {
                        *v = *xs.add(j);
                    }
                    for (c, acc) in acc.iter_mut().enumerate() {
                        let wv = w.at_unchecked(wa + b * s + c * kk);
                        for (a, &xv) in acc.iter_mut().zip(&xv) {
                            *a += wv * xv;
                        }
                    }
                }
            }
        }
        wi += g.out_c * kk;
        xi += g.in_h * g.in_w;
    }
    acc
}

/// Masked convolution, f32 activations, at one position.
///
/// A 1x1 mask B convolution (the PixelCNN's and PixelRNN's output layers)
/// has one tap per input channel: each output channel's weights are one
/// contiguous row over the input channels, walked four rows at a time by
/// the Row LSTM's tap loop (`taps_2d`), then one at a time.
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
    let orow = y % g.out_rows;
    if g.k == 1 && g.mask_b {
        let plane = g.in_rows * g.w;
        let xs = &x[(y % g.in_rows) * g.w + xp..];
        let mut put = |o: usize, a: f32| out[(o * g.out_rows + orow) * g.w + xp] = relu_if(a, relu);
        let mut o = 0;
        while o < g.out_c {
            if o + 4 <= g.out_c {
                let mut acc: [f32; 4] = core::array::from_fn(|r| f32_at(bias, o + r));
                let rows: [W; 4] = core::array::from_fn(|r| w.sub((o + r) * g.in_c, g.in_c));
                #[cfg(test)]
                {
                    let counted = macs_before();
                    masked_runs(g, o, y, xp, |_, _, _, _| {});
                    macs_times(counted, 4);
                }
                taps_2d(&mut acc, &rows, xs, (g.in_c, plane), (1, 0, 1));
                for (r, a) in acc.into_iter().enumerate() {
                    put(o + r, a);
                }
                o += 4;
            } else {
                let mut acc = [f32_at(bias, o)];
                #[cfg(test)]
                masked_runs(g, o, y, xp, |_, _, _, _| {});
                taps_2d(
                    &mut acc,
                    &[w.sub(o * g.in_c, g.in_c)],
                    xs,
                    (g.in_c, plane),
                    (1, 0, 1),
                );
                put(o, acc[0]);
                o += 1;
            }
        }
        return;
    }
    blocks(
        (0, g.out_c),
        w,
        g.in_c * g.k * g.k,
        bias,
        x,
        &Masked(g, y, xp),
        |o, a| out[(o * g.out_rows + orow) * g.w + xp] = relu_if(a, relu),
    );
}

/// Masked convolution, f32 activations, over the whole image.
pub fn masked_conv2d_f32<W: FloatWeights>(
    x: &[f32],
    g: &MaskedGeom,
    w: W,
    bias: &[u8],
    out: &mut [f32],
    relu: bool,
) {
    for y in 0..g.h {
        for xp in 0..g.w {
            masked_conv2d_at_f32(x, g, w, bias, out, relu, y, xp);
        }
    }
}

/// Two-stack convolution, f32 activations: the horizontal outputs of pixel
/// (`y`, `x`).
///
/// Away from the left edge (`x >= k / 2`) every horizontal input has all
/// its taps, so a channel's weights are one contiguous row: each block
/// checks its rows once and walks the inputs directly, in the reference's
/// order (horizontal inputs and taps, then the link to the vertical stack).
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
    let c = g.k / 2;
    if xp < c {
        return blocks(
            (g.out_v, g.out_c),
            w,
            g.h_row_len(),
            bias,
            x,
            &StackH(g, y, xp),
            |o, a| out[(o * g.out_rows + orow) * g.w + xp] = relu_if(a, relu),
        );
    }
    let (n_h, n_hor) = (g.n_h(), g.in_c - g.in_v);
    let plane = g.in_rows * g.w;
    let hrow = (y % g.in_rows) * g.w + xp - c;
    let link_row = (y.wrapping_sub(1) % g.in_rows) * g.w + xp;
    let n_link = if y > 0 { g.in_v } else { 0 };
    let row_len = g.h_row_len();
    let base = g.out_v * g.v_row_len();
    let mut o = g.out_v;
    while o + B <= g.out_c {
        let mut acc: [f32; B] = core::array::from_fn(|r| f32_at(bias, o + r));
        let rows: [W; B] = core::array::from_fn(|r| {
            w.sub(base + (o + r - g.out_v) * row_len, n_hor * n_h + n_link)
        });
        #[cfg(test)]
        {
            let counted = macs_before();
            stack_h_runs(g, o, y, xp, |_, _, _, _| {});
            macs_times(counted, B);
        }
        let mut k = 0;
        for j in 0..n_hor {
            let xs = &x[(g.in_v + j) * plane + hrow..][..n_h];
            for &xv in xs {
                for (a, row) in acc.iter_mut().zip(&rows) {
                    // SAFETY: k < n_hor * n_h, within every row of the block.
                    *a += unsafe { row.at_unchecked(k) } * xv;
                }
                k += 1;
            }
        }
        for i in 0..n_link {
            let xv = x[i * plane + link_row];
            for (a, row) in acc.iter_mut().zip(&rows) {
                // SAFETY: k < n_hor * n_h + n_link, every row's length.
                *a += unsafe { row.at_unchecked(k) } * xv;
            }
            k += 1;
        }
        for (r, a) in acc.into_iter().enumerate() {
            out[((o + r) * g.out_rows + orow) * g.w + xp] = relu_if(a, relu);
        }
        o += B;
    }
    // The last channels (fewer than a block) tap by tap.
    blocks(
        (o, g.out_c),
        w,
        row_len,
        bias,
        x,
        &StackH(g, y, xp),
        |o, a| out[(o * g.out_rows + orow) * g.w + xp] = relu_if(a, relu),
    );
}

/// The vertical accumulators of output channels `o..o + C` at the `P`
/// pixels `xp..xp + P` of row `y`, which read the same kernel columns
/// `kx0..kx1` from consecutive inputs (pixels away from the edges read all
/// `k`): bias, then the reference's taps in its order. Each weight is
/// loaded once for the `P` pixels, each input once for the `C` channels.
#[inline(always)]
fn v_block<W: FloatWeights, const P: usize, const C: usize>(
    x: &[f32],
    g: &StackGeom,
    w: W,
    bias: &[u8],
    (y, xp, kx0, kx1): (usize, usize, usize, usize),
    o: usize,
) -> [[f32; P]; C] {
    let c = g.k / 2;
    let ky0 = c.saturating_sub(y);
    let plane = g.in_rows * g.w;
    let row_len = g.v_row_len();
    let b = &bias[4 * o..4 * (o + C)];
    let mut acc: [[f32; P]; C] = core::array::from_fn(|r| [f32_at(b, r); P]);
    let rows: [W; C] = core::array::from_fn(|r| w.sub((o + r) * row_len, row_len));
    #[cfg(test)]
    {
        let counted = macs_before();
        stack_v_runs(g, o, y, xp, |_, _, _, _| {});
        macs_times(counted, C * P);
    }
    // The ring-buffer row of input row y + ky0 - c (the first read).
    let r0 = (y + ky0 - c) % g.in_rows;
    for i in 0..g.v_src() {
        let mut r = r0;
        for ky in ky0..=c {
            // Input column xp - c + kx of the first pixel, kx >= kx0.
            let xs = &x[i * plane + r * g.w + xp + kx0 - c..][..kx1 - kx0 + P - 1];
            r = if r + 1 == g.in_rows { 0 } else { r + 1 };
            let k0 = (i * (c + 1) + ky) * g.k;
            for kx in kx0..kx1 {
                let mut xv = [0f32; P];
                for (j, v) in xv.iter_mut().enumerate() {
                    // SAFETY: kx - kx0 + j <= kx1 - 1 - kx0 + P - 1 <
                    // xs.len().
                    *v = unsafe { *xs.get_unchecked(kx - kx0 + j) };
                }
                for (a, row) in acc.iter_mut().zip(&rows) {
                    // SAFETY: k0 + kx < v_row_len, every row's length.
                    let wv = unsafe { row.at_unchecked(k0 + kx) };
                    for (a, &xv) in a.iter_mut().zip(&xv) {
                        *a += wv * xv;
                    }
                }
            }
        }
    }
    acc
}

/// The vertical outputs of the `P` interior pixels from `xp` of row `y`,
/// `C` channels at a time (then one pixel at a time): `put(o, acc)`.
#[inline(always)]
fn v_pixels<W: FloatWeights, const P: usize, const C: usize>(
    x: &[f32],
    g: &StackGeom,
    w: W,
    bias: &[u8],
    (y, xp): (usize, usize),
    mut put: impl FnMut(usize, usize, f32),
) {
    let mut o = 0;
    while o + C <= g.out_v {
        let acc = v_block::<W, P, C>(x, g, w, bias, (y, xp, 0, g.k), o);
        for (r, a) in acc.into_iter().enumerate() {
            for (j, a) in a.into_iter().enumerate() {
                put(o + r, xp + j, a);
            }
        }
        o += C;
    }
    for j in 0..P {
        blocks(
            (o, g.out_v),
            w,
            g.v_row_len(),
            bias,
            x,
            &StackV(g, y, xp + j),
            |o, a| put(o, xp + j, a),
        );
    }
}

/// Two-stack convolution, f32 activations: the vertical outputs of row `y`.
///
/// Pixels away from the edges read the same taps from consecutive inputs:
/// they go eight (two channels at a time) or two (eight channels) per pass
/// over the weights; the others one at a time.
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
    let c = g.k / 2;
    let mut put = |o: usize, xp: usize, a: f32| {
        out[(o * g.out_rows + orow) * g.w + xp] = relu_if(a, relu);
    };
    let mut xp = 0;
    while xp < g.w {
        let interior = |n: usize| xp >= c && xp + n - 1 + c < g.w;
        if interior(8) {
            v_pixels::<W, 8, 2>(x, g, w, bias, (y, xp), &mut put);
            xp += 8;
        } else if interior(2) {
            v_pixels::<W, 2, 8>(x, g, w, bias, (y, xp), &mut put);
            xp += 2;
        } else {
            // Near an edge: the kernel columns inside the row, four
            // channels at a time.
            let (kx0, kx1) = (c.saturating_sub(xp), g.k.min(g.w + c - xp));
            let mut o = 0;
            while o + 4 <= g.out_v && kx1 > kx0 {
                let acc = v_block::<W, 1, 4>(x, g, w, bias, (y, xp, kx0, kx1), o);
                for (r, [a]) in acc.into_iter().enumerate() {
                    put(o + r, xp, a);
                }
                o += 4;
            }
            blocks(
                (o, g.out_v),
                w,
                g.v_row_len(),
                bias,
                x,
                &StackV(g, y, xp),
                |o, a| put(o, xp, a),
            );
            xp += 1;
        }
    }
}

/// Two-stack convolution, f32 activations, over the whole image.
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

/// Row LSTM, f32 activations, at one position: the four gates of each
/// hidden channel as one block.
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
    let hid = g.hidden;
    let orow = y % g.out_rows;
    let ((t0, t1), (s0, s1)) = lstm_taps(g, xp);
    let (ci, cs) = (g.k_in / 2, g.k_state / 2);
    let (n_is, n_ss) = (g.in_c * g.k_in, hid * g.k_state);
    let irow = y % g.in_rows;
    for j in 0..hid {
        let mut pre = [0f32; 4];
        for (q, p) in pre.iter_mut().enumerate() {
            *p = f32_at(bias, q * hid + j);
        }
        #[cfg(test)]
        {
            let counted = macs_before();
            lstm_gate_runs(g, j, y, xp, &mut (), |_, _, _, _| {}, |_, _, _, _| {});
            macs_times(counted, 4);
        }
        // Gate q of channel j is row q * hid + j: each row's input-to-state
        // weights are contiguous ([in_c][k_in]), so are its state-to-state
        // ones ([hidden][k_state]); bounds once per row, then the taps in
        // the reference's order.
        if t1 > t0 {
            let rows: [W; 4] = core::array::from_fn(|q| w.sub((q * hid + j) * n_is, n_is));
            let xs = &x[irow * g.w + xp + t0 - ci..];
            taps_2d(
                &mut pre,
                &rows,
                xs,
                (g.in_c, g.in_rows * g.w),
                (g.k_in, t0, t1 - t0),
            );
        }
        if y > 0 && s1 > s0 {
            let prow = (y - 1) % g.out_rows;
            let base = g.w_is_len();
            let rows: [W; 4] = core::array::from_fn(|q| w.sub(base + (q * hid + j) * n_ss, n_ss));
            let hs = &h[prow * g.w + xp + s0 - cs..];
            taps_2d(
                &mut pre,
                &rows,
                hs,
                (hid, g.out_rows * g.w),
                (g.k_state, s0, s1 - s0),
            );
        }
        let ci = j * g.w + xp;
        let c_prev = if y > 0 { cell[ci] } else { 0.0 };
        let (c, hv) = lstm_unit_f32(pre, c_prev);
        cell[ci] = c;
        h[(j * g.out_rows + orow) * g.w + xp] = hv;
    }
}

/// `pre[q] += rows[q][u * k + k0 + t] * src[u * stride + t]` for `u` in
/// `0..n_u` and `t` in `0..n_t`, in that order (an input channel's taps,
/// channel by channel, as the reference walks them): one bounds check for
/// the inputs and one per row, then the taps, unrolled for runs of one to
/// three.
#[inline(always)]
fn taps_2d<W: FloatWeights, const R: usize>(
    pre: &mut [f32; R],
    rows: &[W; R],
    src: &[f32],
    (n_u, stride): (usize, usize),
    (k, k0, n_t): (usize, usize, usize),
) {
    if n_u == 0 || n_t == 0 {
        return;
    }
    let src = &src[..(n_u - 1) * stride + n_t];
    let w_end = (n_u - 1) * k + k0 + n_t;
    assert!(
        rows.iter().all(|r| w_end <= r.len()),
        "weights out of bounds"
    );
    #[cfg(tinygen_vfp)]
    if let Ok(pre4) = <&mut [f32; 4]>::try_from(&mut pre[..]) {
        // SAFETY: the bounds just checked (as for taps_2d_run).
        if unsafe { vfp::taps_4rows(pre4, rows, src, (n_u, stride), (k, k0, n_t)) } {
            return;
        }
    }
    // SAFETY: the reads are below (n_u - 1) * stride + n_t = src.len()
    // and (n_u - 1) * k + k0 + n_t = w_end <= every row's length.
    unsafe {
        match n_t {
            1 => taps_2d_run(pre, rows, src, (n_u, stride), (k, k0, 1)),
            2 => taps_2d_run(pre, rows, src, (n_u, stride), (k, k0, 2)),
            3 => taps_2d_run(pre, rows, src, (n_u, stride), (k, k0, 3)),
            _ => taps_2d_run(pre, rows, src, (n_u, stride), (k, k0, n_t)),
        }
    }
}

/// The loop of [`taps_2d`].
///
/// # Safety
///
/// `(n_u - 1) * stride + n_t <= src.len()` and `(n_u - 1) * k + k0 + n_t`
/// is at most every row's length.
#[inline(always)]
unsafe fn taps_2d_run<W: FloatWeights, const R: usize>(
    pre: &mut [f32; R],
    rows: &[W; R],
    src: &[f32],
    (n_u, stride): (usize, usize),
    (k, k0, n_t): (usize, usize, usize),
) {
    let mut sp = src.as_ptr();
    let mut wk = k0;
    for u in 0..n_u {
        for t in 0..n_t {
            // SAFETY: the caller's bounds.
            let xv = unsafe { *sp.add(t) };
            for (p, row) in pre.iter_mut().zip(rows) {
                // SAFETY: the caller's bounds.
                *p += unsafe { row.at_unchecked(wk + t) } * xv;
            }
        }
        if u + 1 < n_u {
            // SAFETY: within src (the caller's bound) while u + 1 < n_u.
            sp = unsafe { sp.add(stride) };
        }
        wk += k;
    }
}

/// The Row LSTM's taps (and the 1x1 masked convolution's) in `asm!` on
/// hard-float Cortex-M cores: f32 weights read as they are stored,
/// unaligned, two LDRs and one VMOV per two weights (compiled code moves
/// each word on its own), the inputs of one channel's taps by one VLDM,
/// and the weight pointers advanced by the loads themselves. One input
/// channel of `NT` taps over four rows costs `10 NT + 4` instructions for
/// `4 NT` multiply-accumulates (the compiled loop: about `13 NT + 5`).
/// Each VMLA.F32 rounds the product, then the sum, like the reference's
/// `acc += w * x`, and every accumulator sees the reference's taps in the
/// reference's order, so the bits are the reference's (the QEMU contract
/// test checks the board against the host).
#[cfg(tinygen_vfp)]
mod vfp {
    use crate::kernels::FloatWeights;

    /// Post-increments of the weight pointers: 4 bytes between a channel's
    /// taps, `4 (SKIP + 1)` after its last one (the `SKIP` weights of the
    /// row not read).
    struct Inc<const SKIP: usize>;
    impl<const SKIP: usize> Inc<SKIP> {
        const LAST: usize = 4 * (SKIP + 1);
    }

    /// Runs [`super::taps_2d_run`] for four rows of f32 weights in `asm!`
    /// when its run length `n_t` and skip `k - n_t` have a loop here
    /// (kernels of one and of three taps); returns whether it did.
    ///
    /// # Safety
    ///
    /// As [`super::taps_2d_run`], and `n_u >= 1`.
    #[inline(always)]
    pub(super) unsafe fn taps_4rows<W: FloatWeights>(
        pre: &mut [f32; 4],
        rows: &[W],
        src: &[f32],
        (n_u, stride): (usize, usize),
        (k, k0, n_t): (usize, usize, usize),
    ) -> bool {
        let ptr = |q: usize| {
            rows[q]
                .f32_le_bytes()
                .map(|b| b.as_ptr().wrapping_add(4 * k0))
        };
        let (Some(w0), Some(w1), Some(w2), Some(w3)) = (ptr(0), ptr(1), ptr(2), ptr(3)) else {
            return false;
        };
        let w = [w0, w1, w2, w3];
        let (x, xs) = (src.as_ptr(), 4 * stride);
        // SAFETY: the caller's bounds; n_u >= 1.
        unsafe {
            match (n_t, k - n_t) {
                // Kernels of one tap, and of three (odd: a run of one
                // tap skips two, a run of two skips one).
                (1, 0) => run1::<0>(pre, w, x, n_u, xs),
                (1, 2) => run1::<2>(pre, w, x, n_u, xs),
                (2, 1) => run2::<1>(pre, w, x, n_u, xs),
                (3, 0) => run3::<0>(pre, w, x, n_u, xs),
                _ => return false,
            }
        }
        true
    }

    /// One tap of four rows: the weights of rows 0..4 into s8..s11 (two
    /// LDRs and a VMOV per pair), input register `$x` times each, added to
    /// s0..s3 (input first, as the compiled loops have it); `$inc`: the
    /// pointers' post-increment.
    #[rustfmt::skip]
    macro_rules! tap {
        ($x:literal, $inc:literal) => {
            concat!(
                "ldr {ta}, [{w0}], ", $inc, "\n",
                "ldr {tb}, [{w1}], ", $inc, "\n",
                "vmov s8, s9, {ta}, {tb}\n",
                "ldr {ta}, [{w2}], ", $inc, "\n",
                "ldr {tb}, [{w3}], ", $inc, "\n",
                "vmov s10, s11, {ta}, {tb}\n",
                "vmla.f32 s0, ", $x, ", s8\n",
                "vmla.f32 s1, ", $x, ", s9\n",
                "vmla.f32 s2, ", $x, ", s10\n",
                "vmla.f32 s3, ", $x, ", s11\n",
            )
        };
    }

    /// The loop over `n_u` input channels of `$nt` taps each: the inputs
    /// (`$load`, into s4..), then the taps (`$taps`). The accumulators
    /// come and go through memory (`pre`), and s0..s11 are saved on the
    /// stack around the loop and restored: stable Rust has no FPU register
    /// operands on these targets (it does not see their `vfp2` feature).
    macro_rules! taps_loop {
        ($name:ident, $load:literal, $($taps:expr),+) => {
            /// # Safety
            ///
            /// `n_u >= 1`; for `u < n_u` and each tap `t`, the four bytes at
            /// `w[q] + 4 (u (NT + SKIP) + t)` and the f32 at
            /// `x + u xs + 4 t` (`xs` in bytes, `x` aligned) are readable.
            #[inline(always)]
            unsafe fn $name<const SKIP: usize>(
                pre: &mut [f32; 4],
                w: [*const u8; 4],
                x: *const f32,
                n_u: usize,
                xs: usize,
            ) {
                // SAFETY: the caller's bounds; the asm writes only `pre`
                // and its stack below sp, and restores s0..s11 and sp.
                unsafe {
                    core::arch::asm!(
                        "vpush {{s0-s11}}",
                        "vldm {pp}, {{s0-s3}}",
                        "2:",
                        $load,
                        "add {xp}, {xp}, {xs}",
                        $($taps,)+
                        "subs {n}, {n}, #1",
                        "bne 2b",
                        "vstm {pp}, {{s0-s3}}",
                        "vpop {{s0-s11}}",
                        pp = in(reg) pre.as_mut_ptr(),
                        w0 = inout(reg) w[0] => _,
                        w1 = inout(reg) w[1] => _,
                        w2 = inout(reg) w[2] => _,
                        w3 = inout(reg) w[3] => _,
                        xp = inout(reg) x => _,
                        xs = in(reg) xs,
                        n = inout(reg) n_u => _,
                        ta = out(reg) _,
                        tb = out(reg) _,
                        last = const Inc::<SKIP>::LAST,
                    );
                }
            }
        };
    }

    taps_loop!(run1, "vldr s4, [{xp}]", tap!("s4", "#{last}"));
    taps_loop!(
        run2,
        "vldm {xp}, {{s4-s5}}",
        tap!("s4", "#4"),
        tap!("s5", "#{last}")
    );
    taps_loop!(
        run3,
        "vldm {xp}, {{s4-s6}}",
        tap!("s4", "#4"),
        tap!("s5", "#4"),
        tap!("s6", "#{last}")
    );
}

/// Row LSTM, f32 activations, over the whole image.
pub fn row_lstm_f32<W: FloatWeights>(
    x: &[f32],
    g: &LstmGeom,
    w: W,
    bias: &[u8],
    out: &mut [f32],
    cell: &mut [f32],
) {
    for y in 0..g.h {
        for xp in 0..g.w {
            row_lstm_at_f32(x, g, w, bias, out, cell, y, xp);
        }
    }
}
