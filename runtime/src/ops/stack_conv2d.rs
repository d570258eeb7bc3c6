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

/// Weight elements: `out_v` vertical rows of `v_src * (k / 2 + 1) * k`,
/// then `out_c - out_v` horizontal rows of `(in_c - in_v) * n_h + in_v`
/// ([`StackGeom`]'s layout), in u64 (a file's geometry must not wrap a
/// 32-bit `usize` before the plan compares it with the blob).
pub fn weights(in_c: u16, in_v: u16, out_c: u16, out_v: u16, k: u8, mask: Mask) -> u64 {
    let (in_c, in_v, k) = (in_c as u64, in_v as u64, k as u64);
    let v_src = if in_v == 0 { in_c } else { in_v };
    let n_h = k / 2 + (mask == Mask::B) as u64;
    let (v_row, h_row) = (
        v_src * (k / 2 + 1) * k,
        in_c.saturating_sub(in_v) * n_h + in_v,
    );
    out_v as u64 * v_row + out_c.saturating_sub(out_v) as u64 * h_row
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
    let (a, b, link) = mac_terms(in_c, in_v, out_c, out_v);
    let (cols, h_taps) = cols_at(k, mask, w, x);
    a * v_rows(k, y) * cols + b * h_taps + if y > 0 { link } else { 0 }
}

/// The terms of the MACs at (`y`, `x`), in u64: `a * rows(y) * cols(x) +
/// b * h_taps(x) + link` (the link from row `y > 0` only): `a` =
/// `out_v * v_src`, `b` = `(out_c - out_v) * (in_c - in_v)`, `link` =
/// `(out_c - out_v) * in_v`.
fn mac_terms(in_c: u16, in_v: u16, out_c: u16, out_v: u16) -> (u64, u64, u64) {
    let v_src = if in_v == 0 { in_c } else { in_v } as u64;
    let h_out = out_c.saturating_sub(out_v) as u64;
    (
        out_v as u64 * v_src,
        h_out * in_c.saturating_sub(in_v) as u64,
        h_out * in_v as u64,
    )
}

/// Kernel rows inside the image at row `y` (the rows above and the
/// centre row).
fn v_rows(k: u8, y: u16) -> u64 {
    (k as u64 / 2).min(y as u64) + 1
}

/// At column `x` of a row `w` wide: the vertical taps per kernel row that
/// read inside the row, and the horizontal taps (left of `x`, and `x`
/// with mask B) inside it.
fn cols_at(k: u8, mask: Mask, w: u16, x: u16) -> (u64, u64) {
    let (k, w, x) = (k as u64, w as u64, x as u64);
    let c = k / 2;
    let cols = k.min(w + c - x) - c.saturating_sub(x);
    let n_h = c + (mask == Mask::B) as u64;
    (cols, n_h - c.saturating_sub(x).min(n_h))
}

/// Multiply-accumulates of one pass on `inp`: the sum of [`macs_at`] over
/// every position, computed in `O(h + w)` (the terms separate into a row
/// part and a column part), so that a file's image size cannot make
/// loading slow.
pub fn macs(in_c: u16, in_v: u16, out_c: u16, out_v: u16, k: u8, mask: Mask, inp: Shape) -> u64 {
    let (a, b, link) = mac_terms(in_c, in_v, out_c, out_v);
    let (h, w) = (inp.h as u64, inp.w as u64);
    let rows: u64 = (0..inp.h).map(|y| v_rows(k, y)).sum();
    let (cols, h_taps) = (0..inp.w)
        .map(|x| cols_at(k, mask, inp.w, x))
        .fold((0u64, 0u64), |(c, t), (dc, dt)| (c + dc, t + dt));
    a * rows * cols + b * h_taps * h + link * h.saturating_sub(1) * w
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_image_equals_sum_of_positions_and_weights_match_the_geometry() {
        for (in_c, in_v, out_c, out_v, k, mask, h, w) in [
            (1, 0, 32, 16, 7, Mask::A, 28, 28),
            (64, 32, 64, 32, 5, Mask::B, 28, 28),
            (64, 32, 32, 0, 5, Mask::B, 9, 7),
            (3, 1, 5, 2, 3, Mask::A, 2, 1),
            (2, 0, 4, 4, 1, Mask::B, 1, 5),
        ] {
            let inp = Shape { c: in_c, h, w };
            let mut sum = 0;
            for y in 0..h {
                for x in 0..w {
                    sum += macs_at(in_c, in_v, out_c, out_v, k, mask, w, y, x);
                }
            }
            assert_eq!(macs(in_c, in_v, out_c, out_v, k, mask, inp), sum);
            let g = geom(in_c, in_v, out_c, out_v, k, mask, inp, h, h);
            assert_eq!(
                weights(in_c, in_v, out_c, out_v, k, mask),
                g.weight_len() as u64
            );
        }
    }

    #[test]
    fn sizes_do_not_wrap_in_u64() {
        // 2^16 - 1 channels and a 255 kernel: about 2^16 * 2^16 * 2^14
        // weights, far past a 32-bit usize, exact in u64.
        let n = weights(u16::MAX, 0, u16::MAX, u16::MAX, 255, Mask::B);
        assert_eq!(n, u16::MAX as u64 * u16::MAX as u64 * 128 * 255);
        // A layer whose blob fits a file (at most 2^32 weights) on the
        // largest image: the MAC count passes 2^32 and stays exact.
        let inp = Shape {
            c: 4096,
            h: 2048,
            w: 2048,
        };
        let m = macs(4096, 0, 4096, 4096, 15, Mask::B, inp);
        assert!(weights(4096, 0, 4096, 4096, 15, Mask::B) < 1 << 32 && m > u32::MAX as u64);
    }
}
