//! [`Op::MaskedConv2d`](crate::format::Op::MaskedConv2d): masked
//! convolution (PixelCNN), stride 1, padding `k / 2`, output as large as
//! the input. Weight `[out_c][in_c][k][k]`, masked taps stored as zeros.

use crate::format::{Mask, Shape};
use crate::kernels::{fast, MaskedGeom};

/// Output shape on `inp`, if the geometry fits (odd `k`).
pub fn out_shape(in_c: u16, out_c: u16, k: u8, inp: Shape) -> Option<Shape> {
    if inp.c != in_c || out_c == 0 || k.is_multiple_of(2) {
        return None;
    }
    Some(Shape { c: out_c, ..inp })
}

/// Weight elements.
pub fn weights(in_c: u16, out_c: u16, k: u8) -> u64 {
    out_c as u64 * in_c as u64 * k as u64 * k as u64
}

/// The weight blob as `(outer, channels, inner)`: `outer` blocks of one
/// row of `inner` weights per output channel.
pub fn weight_blocks(in_c: u16, out_c: u16, k: u8) -> (usize, usize, usize) {
    (1, out_c as usize, in_c as usize * k as usize * k as usize)
}

/// Bias elements (and requantization channels).
pub fn channels(out_c: u16) -> u64 {
    out_c as u64
}

/// MACs of a masked convolution over a whole `h` x `w` image, per (output,
/// input) channel pair: the unmasked taps that read inside the image.
pub fn taps(h: u16, w: u16, k: u8, mask: Mask) -> u64 {
    let (h, w, k) = (h as i64, w as i64, k as i64);
    let c = k / 2;
    let mut taps = 0u64;
    for ky in 0..k {
        for kx in 0..k {
            if !mask.allows(k as usize, ky as usize, kx as usize) {
                continue;
            }
            // Positions whose tap (ky, kx) reads inside: 0 <= y + ky - c < h.
            let rows = (h - (ky - c).abs()).max(0);
            let cols = (w - (kx - c).abs()).max(0);
            taps += (rows * cols) as u64;
        }
    }
    taps
}

/// MACs of a masked convolution at one output position (`y`, `x`), per
/// (output, input) channel pair.
pub fn taps_at(h: u16, w: u16, k: u8, mask: Mask, y: u16, x: u16) -> u64 {
    let (h, w, k) = (h as i64, w as i64, k as i64);
    let (y, x) = (y as i64, x as i64);
    let c = k / 2;
    let mut taps = 0u64;
    for ky in 0..k {
        for kx in 0..k {
            let (iy, ix) = (y + ky - c, x + kx - c);
            if mask.allows(k as usize, ky as usize, kx as usize)
                && (0..h).contains(&iy)
                && (0..w).contains(&ix)
            {
                taps += 1;
            }
        }
    }
    taps
}

/// Multiply-accumulates of one pass on `inp`.
pub fn macs(in_c: u16, out_c: u16, k: u8, mask: Mask, inp: Shape) -> u64 {
    out_c as u64 * in_c as u64 * taps(inp.h, inp.w, k, mask)
}

/// Multiply-accumulates at output position (`y`, `x`) of an image of
/// `inp`'s size.
pub fn macs_at(in_c: u16, out_c: u16, k: u8, mask: Mask, inp: Shape, y: u16, x: u16) -> u64 {
    out_c as u64 * in_c as u64 * taps_at(inp.h, inp.w, k, mask, y, x)
}

/// Rows of its input the layer reads at row `y`: `y - k/2 ..= y`.
pub fn rows_read(k: u8) -> u16 {
    k as u16 / 2 + 1
}

/// The geometry on an input of `inp`'s height and width (its channels are
/// the op's `in_c`) over buffers of `in_rows` and `out_rows` rows.
pub fn geom(
    in_c: u16,
    out_c: u16,
    k: u8,
    mask: Mask,
    inp: Shape,
    in_rows: u16,
    out_rows: u16,
) -> MaskedGeom {
    MaskedGeom {
        in_c: in_c as usize,
        out_c: out_c as usize,
        h: inp.h as usize,
        w: inp.w as usize,
        k: k as usize,
        mask_b: mask == Mask::B,
        in_rows: in_rows as usize,
        out_rows: out_rows as usize,
    }
}

/// Scratch words of the optimized int8 kernel on `inp`.
pub fn scratch_words(in_c: u16, out_c: u16, k: u8, mask: Mask, inp: Shape) -> u64 {
    fast::masked_scratch_words(&geom(in_c, out_c, k, mask, inp, 1, 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_image_equals_sum_of_positions() {
        for (h, w, k, mask) in [
            (28, 28, 7, Mask::A),
            (28, 28, 3, Mask::B),
            (5, 3, 5, Mask::B),
            (2, 9, 1, Mask::B),
        ] {
            let mut sum = 0;
            for y in 0..h {
                for x in 0..w {
                    sum += taps_at(h, w, k, mask, y, x);
                }
            }
            assert_eq!(taps(h, w, k, mask), sum);
        }
        // 3x3 mask B at an interior position: 5 taps; at the top-left corner: 1.
        assert_eq!(taps_at(28, 28, 3, Mask::B, 5, 5), 5);
        assert_eq!(taps_at(28, 28, 3, Mask::B, 0, 0), 1);
        assert_eq!(taps_at(28, 28, 7, Mask::A, 0, 0), 0);
    }
}
