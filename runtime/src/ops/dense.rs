//! [`Op::Dense`](crate::format::Op::Dense): fully connected, flattening its
//! input. Weight `[out][inp]`.

use crate::format::Shape;
use crate::kernels::fast;

/// Output shape on `inp`: `out` x 1 x 1, if `inp` has `inp_n` elements.
pub fn out_shape(inp_n: u16, out: u16, inp: Shape) -> Option<Shape> {
    if inp.numel() != inp_n as u64 || out == 0 {
        return None;
    }
    Some(Shape { c: out, h: 1, w: 1 })
}

/// Weight elements.
pub fn weights(inp_n: u16, out: u16) -> u64 {
    inp_n as u64 * out as u64
}

/// The weight blob as `(outer, channels, inner)`: `outer` blocks of one
/// row of `inner` weights per output channel.
pub fn weight_blocks(inp_n: u16, out: u16) -> (usize, usize, usize) {
    (1, out as usize, inp_n as usize)
}

/// Bias elements (and requantization channels): one per output.
pub fn channels(out: u16) -> u64 {
    out as u64
}

/// Multiply-accumulates of one pass.
pub fn macs(inp_n: u16, out: u16) -> u64 {
    weights(inp_n, out)
}

/// Scratch words of the optimized int8 kernel on `inp`.
pub fn scratch_words(inp: Shape) -> u64 {
    fast::dense_scratch_words(inp.numel())
}
