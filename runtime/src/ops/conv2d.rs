//! [`Op::Conv2d`](crate::format::Op::Conv2d): 2-D convolution, square
//! kernel. Weight `[out_c][in_c][k][k]`.

use crate::format::Shape;
use crate::kernels::{fast, ConvGeom};

/// Output length of a convolution along one axis, if positive.
pub fn out_len(n: u16, k: u8, s: u8, p: u8) -> Option<u16> {
    let span = n as u32 + 2 * p as u32;
    if s == 0 || k == 0 || span < k as u32 {
        return None;
    }
    u16::try_from((span - k as u32) / s as u32 + 1).ok()
}

/// Number of (output index, kernel tap) pairs reading inside the input,
/// along one axis: the MACs it really does.
pub fn taps(n: u16, k: u8, s: u8, p: u8, out: u16) -> u64 {
    let mut taps = 0u64;
    for o in 0..out as i64 {
        for kk in 0..k as i64 {
            let i = o * s as i64 - p as i64 + kk;
            if i >= 0 && i < n as i64 {
                taps += 1;
            }
        }
    }
    taps
}

/// Output shape on `inp`, if the geometry fits.
pub fn out_shape(in_c: u16, out_c: u16, k: u8, stride: u8, pad: u8, inp: Shape) -> Option<Shape> {
    if inp.c != in_c || out_c == 0 {
        return None;
    }
    Some(Shape {
        c: out_c,
        h: out_len(inp.h, k, stride, pad)?,
        w: out_len(inp.w, k, stride, pad)?,
    })
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

/// Multiply-accumulates of one pass on `inp`: only taps inside the input.
pub fn macs(in_c: u16, out_c: u16, k: u8, stride: u8, pad: u8, inp: Shape) -> u64 {
    let oh = out_len(inp.h, k, stride, pad).unwrap_or(0);
    let ow = out_len(inp.w, k, stride, pad).unwrap_or(0);
    out_c as u64 * in_c as u64 * taps(inp.h, k, stride, pad, oh) * taps(inp.w, k, stride, pad, ow)
}

/// Kernel geometry on `inp`, if the geometry fits.
pub fn geom(in_c: u16, out_c: u16, k: u8, stride: u8, pad: u8, inp: Shape) -> Option<ConvGeom> {
    let out = out_shape(in_c, out_c, k, stride, pad, inp)?;
    Some(conv_geom(inp, out, k, stride, pad))
}

/// The [`ConvGeom`] of a convolution or transposed convolution from `inp`
/// to `out`.
pub(crate) fn conv_geom(inp: Shape, out: Shape, k: u8, stride: u8, pad: u8) -> ConvGeom {
    ConvGeom {
        in_c: inp.c as usize,
        in_h: inp.h as usize,
        in_w: inp.w as usize,
        out_c: out.c as usize,
        out_h: out.h as usize,
        out_w: out.w as usize,
        k: k as usize,
        stride: stride as usize,
        pad: pad as usize,
    }
}

/// Scratch words of the optimized int8 kernel on `inp`.
pub fn scratch_words(
    in_c: u16,
    out_c: u16,
    k: u8,
    stride: u8,
    pad: u8,
    inp: Shape,
    profile: fast::Profile,
) -> u64 {
    geom(in_c, out_c, k, stride, pad, inp)
        .map_or(0, |g| fast::conv2d_scratch_words_for(&g, profile))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_and_taps() {
        assert_eq!(out_len(28, 4, 2, 1), Some(14));
        assert_eq!(out_len(2, 4, 1, 0), None);
        // 3-tap kernel, stride 1, pad 1, over 4 positions: the two borders
        // lose one tap each.
        assert_eq!(taps(4, 3, 1, 1, 4), 10);
    }
}
