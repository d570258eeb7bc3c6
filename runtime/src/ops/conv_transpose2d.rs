//! [`Op::ConvTranspose2d`](crate::format::Op::ConvTranspose2d): 2-D
//! transposed convolution, square kernel. Weight `[in_c][out_c][k][k]`.

use crate::format::Shape;
use crate::kernels::{fast, ConvGeom};

/// Output length of a transposed convolution along one axis, if positive.
pub fn out_len(n: u16, k: u8, s: u8, p: u8, op: u8) -> Option<u16> {
    if s == 0 || k == 0 || n == 0 || op >= s {
        return None;
    }
    let full = (n as i64 - 1) * s as i64 + k as i64 + op as i64;
    let out = full - 2 * p as i64;
    if out <= 0 {
        return None;
    }
    u16::try_from(out).ok()
}

/// Number of (input index, kernel tap) pairs that land inside the output,
/// along one axis: the MACs it really does.
pub fn taps(n: u16, k: u8, s: u8, p: u8, out: u16) -> u64 {
    let mut taps = 0u64;
    for i in 0..n as i64 {
        for kk in 0..k as i64 {
            let o = i * s as i64 - p as i64 + kk;
            if o >= 0 && o < out as i64 {
                taps += 1;
            }
        }
    }
    taps
}

/// Output shape on `inp`, if the geometry fits.
pub fn out_shape(
    in_c: u16,
    out_c: u16,
    k: u8,
    stride: u8,
    pad: u8,
    out_pad: u8,
    inp: Shape,
) -> Option<Shape> {
    if inp.c != in_c || out_c == 0 {
        return None;
    }
    Some(Shape {
        c: out_c,
        h: out_len(inp.h, k, stride, pad, out_pad)?,
        w: out_len(inp.w, k, stride, pad, out_pad)?,
    })
}

/// Weight elements.
pub fn weights(in_c: u16, out_c: u16, k: u8) -> u64 {
    out_c as u64 * in_c as u64 * k as u64 * k as u64
}

/// The weight blob as `(outer, channels, inner)`:
/// `in_c` blocks (`[in_c][out_c][k][k]`) of one
/// row of `inner` weights per output channel.
pub fn weight_blocks(in_c: u16, out_c: u16, k: u8) -> (usize, usize, usize) {
    (in_c as usize, out_c as usize, k as usize * k as usize)
}

/// Bias elements (and requantization channels).
pub fn channels(out_c: u16) -> u64 {
    out_c as u64
}

/// Multiply-accumulates of one pass on `inp`: only taps inside the output.
pub fn macs(in_c: u16, out_c: u16, k: u8, stride: u8, pad: u8, out_pad: u8, inp: Shape) -> u64 {
    let oh = out_len(inp.h, k, stride, pad, out_pad).unwrap_or(0);
    let ow = out_len(inp.w, k, stride, pad, out_pad).unwrap_or(0);
    out_c as u64 * in_c as u64 * taps(inp.h, k, stride, pad, oh) * taps(inp.w, k, stride, pad, ow)
}

/// Kernel geometry on `inp`, if the geometry fits.
pub fn geom(
    in_c: u16,
    out_c: u16,
    k: u8,
    stride: u8,
    pad: u8,
    out_pad: u8,
    inp: Shape,
) -> Option<ConvGeom> {
    let out = out_shape(in_c, out_c, k, stride, pad, out_pad, inp)?;
    Some(super::conv2d::conv_geom(inp, out, k, stride, pad))
}

/// Scratch words of the optimized int8 kernel on `inp` in `profile`.
#[allow(clippy::too_many_arguments)]
pub fn scratch_words(
    in_c: u16,
    out_c: u16,
    k: u8,
    stride: u8,
    pad: u8,
    out_pad: u8,
    inp: Shape,
    profile: fast::Profile,
) -> u64 {
    geom(in_c, out_c, k, stride, pad, out_pad, inp)
        .map_or(0, |g| fast::conv_transpose2d_scratch_words_for(&g, profile))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_and_taps() {
        assert_eq!(out_len(7, 4, 2, 1, 0), Some(14));
        assert_eq!(out_len(14, 4, 2, 1, 0), Some(28));
        assert_eq!(out_len(1, 1, 1, 1, 0), None);
        assert_eq!(out_len(3, 3, 1, 0, 1), None);
        // Transposed 4x4/2/1 from 7 to 14: 7*4 taps minus 2 cut by padding.
        assert_eq!(taps(7, 4, 2, 1, 14), 26);
    }
}
