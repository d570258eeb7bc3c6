//! [`Op::StackConv2d`](crate::format::Op::StackConv2d): two-stack masked
//! convolution (Gated PixelCNN's vertical and horizontal stacks), stride 1,
//! output as large as the input. Weight layout: [`StackGeom`].

use crate::format::{Mask, Shape};
use crate::kernels::{fast, StackGeom};

/// Output shape on `inp`, if the geometry fits (odd `k`).
pub fn out_shape(in_c: u16, in_v: u16, out_c: u16, out_v: u16, k: u8, inp: Shape) -> Option<Shape> {
    if inp.c != in_c || in_v >= in_c || out_c == 0 || out_v > out_c || k.is_multiple_of(2) {
        return None;
    }
    Some(Shape { c: out_c, ..inp })
}

/// The geometry on an input of `inp`'s height and width (its channels are
/// the op's `in_c`, which the plan checks against the input's) over
/// buffers of `in_rows` and `out_rows` rows (`inp.h` both: whole tensors).
#[allow(clippy::too_many_arguments)]
pub fn geom(
    in_c: u16,
    in_v: u16,
    out_c: u16,
    out_v: u16,
    k: u8,
    mask: Mask,
    inp: Shape,
    in_rows: u16,
    out_rows: u16,
) -> StackGeom {
    StackGeom {
        in_c: in_c as usize,
        in_v: in_v as usize,
        out_c: out_c as usize,
        out_v: out_v as usize,
        h: inp.h as usize,
        w: inp.w as usize,
        k: k as usize,
        mask_b: mask == Mask::B,
        in_rows: in_rows as usize,
        out_rows: out_rows as usize,
    }
}

/// Weight elements.
pub fn weights(in_c: u16, in_v: u16, out_c: u16, out_v: u16, k: u8, mask: Mask) -> u64 {
    let s = Shape {
        c: in_c,
        h: 1,
        w: 1,
    };
    geom(in_c, in_v, out_c, out_v, k, mask, s, 1, 1).weight_len() as u64
}

/// Bias elements (and requantization channels).
pub fn channels(out_c: u16) -> u64 {
    out_c as u64
}

/// MACs at (`y`, `x`) of an image `w` wide: every output channel, taps
/// inside the image (the counts [`crate::kernels::stack_conv2d_f32`]
/// performs).
#[allow(clippy::too_many_arguments)]
pub fn macs_at(
    in_c: u16,
    in_v: u16,
    out_c: u16,
    out_v: u16,
    k: u8,
    mask: Mask,
    w: u16,
    y: u16,
    x: u16,
) -> u64 {
    // The image height does not matter for the taps at (y, x).
    let shape = Shape { c: 0, h: 1, w };
    let g = geom(in_c, in_v, out_c, out_v, k, mask, shape, 1, 1);
    let (c, y, x) = (g.k / 2, y as usize, x as usize);
    let rows = c.min(y) + 1;
    let cols = g.k.min(g.w + c - x) - c.saturating_sub(x);
    let h_taps = g.n_h() - c.saturating_sub(x).min(g.n_h());
    let link = if y > 0 { g.in_v } else { 0 };
    (g.out_v * g.v_src() * rows * cols + (g.out_c - g.out_v) * ((g.in_c - g.in_v) * h_taps + link))
        as u64
}

/// Multiply-accumulates of one pass on `inp`.
pub fn macs(in_c: u16, in_v: u16, out_c: u16, out_v: u16, k: u8, mask: Mask, inp: Shape) -> u64 {
    let mut macs = 0u64;
    for y in 0..inp.h {
        for x in 0..inp.w {
            macs += macs_at(in_c, in_v, out_c, out_v, k, mask, inp.w, y, x);
        }
    }
    macs
}

/// Rows of its input the layer reads at row `y`: `y - k/2 ..= y`, and
/// `y - 1` for the vertical link.
pub fn rows_read(k: u8) -> u16 {
    (k as u16 / 2 + 1).max(2)
}

/// Scratch words of the optimized int8 kernel on `inp`.
pub fn scratch_words(
    in_c: u16,
    in_v: u16,
    out_c: u16,
    out_v: u16,
    k: u8,
    mask: Mask,
    inp: Shape,
) -> u64 {
    fast::stack_scratch_words(&geom(in_c, in_v, out_c, out_v, k, mask, inp, 1, 1))
}
