//! The memory plan: checks that a network's shapes chain, and computes the
//! exact arena it needs and what one pass costs.
//!
//! Activations live in two buffers, A and B, inside the caller's arena: the
//! input is written to A, and each layer reads one and writes the other
//! (`Reshape` only renames). Each buffer is as large as the largest tensor
//! that lands in it, so the arena is exact, not a worst case:
//! `arena_bytes = align4(A) + B`. A network with [`Op::RowLstm`] layers also
//! needs one row of cell state (`hidden * w` f32 or i32) as scratch, the
//! largest of its layers', after B: `align4(A) + align4(B) + cell`. An int8
//! network also needs the optimized kernels' scratch (their columns and
//! gathered weights, [`crate::kernels::fast`]), the largest of its
//! layers', after that: `align4(A) + align4(B) + cell + scratch`.

use crate::error::{Error, Result};
use crate::format::{
    DType, Head, Layer, Mask, Net, Op, Shape, MAX_LAYERS, MAX_TENSOR_ELEMS, ROW_LSTM_LUT_BYTES,
    ROW_LSTM_OUT_SCALE,
};

/// What a network needs and costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Plan {
    /// Bytes of activation buffer A.
    pub buf_a: u32,
    /// Bytes of activation buffer B (starts at `align4(buf_a)`).
    pub buf_b: u32,
    /// Bytes of the Row LSTM cell-state scratch (one row of the widest
    /// layer's `hidden * w`, 4 bytes each), at `align4(buf_a) +
    /// align4(buf_b)`; 0 without a Row LSTM.
    pub cell: u32,
    /// Bytes of the int8 kernels' scratch (columns, gathered weights), the
    /// largest any layer needs, at [`Plan::scratch_offset`]; 0 for f32 and
    /// f16 networks.
    pub scratch: u32,
    /// Multiply-accumulates of one forward pass.
    pub macs: u64,
    /// Weights and biases.
    pub params: u32,
    /// Shape of the output tensor.
    pub output: Shape,
}

impl Plan {
    /// Exact arena bytes for this network.
    pub const fn arena_bytes(&self) -> u32 {
        if self.cell == 0 && self.scratch == 0 {
            align4(self.buf_a) + self.buf_b
        } else {
            self.scratch_offset() + self.scratch
        }
    }
    /// Offset of the kernels' scratch in the arena (after the cell row).
    pub const fn scratch_offset(&self) -> u32 {
        self.cell_offset() + self.cell
    }
    /// Offset of the cell-state scratch in the arena.
    pub const fn cell_offset(&self) -> u32 {
        align4(self.buf_a) + align4(self.buf_b)
    }
    /// Offset of buffer B in the arena.
    pub const fn b_offset(&self) -> u32 {
        align4(self.buf_a)
    }
}

const fn align4(n: u32) -> u32 {
    (n + 3) & !3
}

/// Output length of a convolution along one axis, if positive.
pub(crate) fn conv_out(n: u16, k: u8, s: u8, p: u8) -> Option<u16> {
    let span = n as u32 + 2 * p as u32;
    if s == 0 || k == 0 || span < k as u32 {
        return None;
    }
    u16::try_from((span - k as u32) / s as u32 + 1).ok()
}

/// Output length of a transposed convolution along one axis, if positive.
pub(crate) fn conv_t_out(n: u16, k: u8, s: u8, p: u8, op: u8) -> Option<u16> {
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

/// Number of (input index, kernel tap) pairs of a transposed convolution
/// that land inside the output, along one axis: the MACs it really does.
fn conv_t_taps(n: u16, k: u8, s: u8, p: u8, out: u16) -> u64 {
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

/// Same for a convolution: (output index, kernel tap) pairs reading inside
/// the input.
fn conv_taps(n: u16, k: u8, s: u8, p: u8, out: u16) -> u64 {
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

/// MACs of a masked convolution over a whole `h` x `w` image, per (output,
/// input) channel pair: the unmasked taps that read inside the image.
pub(crate) fn masked_taps(h: u16, w: u16, k: u8, mask: Mask) -> u64 {
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
pub(crate) fn masked_taps_at(h: u16, w: u16, k: u8, mask: Mask, y: u16, x: u16) -> u64 {
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

/// MACs of a Row LSTM at one position (`y`, `x`) of an image `w` wide, per
/// gate row: `(input taps, state taps)`, the taps that read inside the row
/// (input-to-state, unmasked) and inside the previous row
/// (state-to-state, none on row 0, where the state is zero and the kernel
/// skips it). Multiply by `in_c` and `hidden` respectively, then by
/// `4 * hidden` gate rows.
pub(crate) fn lstm_taps_at(
    w: u16,
    k_in: u8,
    mask: Mask,
    k_state: u8,
    y: u16,
    x: u16,
) -> (u64, u64) {
    let inside = |k: u8, t: u8| {
        let col = x as i64 + t as i64 - (k / 2) as i64;
        (0..w as i64).contains(&col)
    };
    let t_in = (0..k_in)
        .filter(|&t| mask.allows_1d(k_in as usize, t as usize) && inside(k_in, t))
        .count() as u64;
    let t_ss = if y == 0 {
        0
    } else {
        (0..k_state).filter(|&t| inside(k_state, t)).count() as u64
    };
    (t_in, t_ss)
}

/// MACs of a Row LSTM at (`y`, `x`): all `4 * hidden` gate rows.
pub(crate) fn lstm_macs_at(op: &Op, w: u16, y: u16, x: u16) -> u64 {
    let Op::RowLstm {
        in_c,
        hidden,
        k_in,
        mask,
        k_state,
    } = *op
    else {
        return 0;
    };
    let (t_in, t_ss) = lstm_taps_at(w, k_in, mask, k_state, y, x);
    4 * hidden as u64 * (in_c as u64 * t_in + hidden as u64 * t_ss)
}

/// MACs of a two-stack convolution (`op`, an [`Op::StackConv2d`]) at
/// (`y`, `x`) of an image `w` wide: every output channel, taps inside the
/// image (the counts [`crate::kernels::stack_conv2d_f32`] performs).
pub(crate) fn stack_macs_at(op: &Op, w: u16, y: u16, x: u16) -> u64 {
    // The image height does not matter for the taps at (y, x).
    let shape = Shape { c: 0, h: 1, w };
    let Some(g) = crate::kernels::StackGeom::of(op, shape, 1, 1) else {
        return 0;
    };
    let (c, y, x) = (g.k / 2, y as usize, x as usize);
    let rows = c.min(y) + 1;
    let cols = g.k.min(g.w + c - x) - c.saturating_sub(x);
    let h_taps = g.n_h() - c.saturating_sub(x).min(g.n_h());
    let link = if y > 0 { g.in_v } else { 0 };
    (g.out_v * g.v_src() * rows * cols + (g.out_c - g.out_v) * ((g.in_c - g.in_v) * h_taps + link))
        as u64
}

/// Scratch words the optimized int8 kernel of `op` needs on `inp` (giving
/// `out`); the plan has checked the layer, so every size is bounded by its
/// weight blob or tensors.
pub(crate) fn scratch_words(op: &Op, inp: Shape, out: Shape) -> usize {
    use crate::kernels::fast;
    let conv = |k: u8, stride: u8, pad: u8| crate::kernels::ConvGeom {
        in_c: inp.c as usize,
        in_h: inp.h as usize,
        in_w: inp.w as usize,
        out_c: out.c as usize,
        out_h: out.h as usize,
        out_w: out.w as usize,
        k: k as usize,
        stride: stride as usize,
        pad: pad as usize,
    };
    match *op {
        Op::Dense { .. } => fast::dense_scratch_words(inp.numel() as usize),
        Op::Conv2d { k, stride, pad, .. } => fast::conv2d_scratch_words(&conv(k, stride, pad)),
        Op::ConvTranspose2d { k, stride, pad, .. } => {
            fast::conv_transpose2d_scratch_words(&conv(k, stride, pad))
        }
        Op::MaskedConv2d { .. } => crate::kernels::MaskedGeom::of(op, inp, 1, 1)
            .map_or(0, |g| fast::masked_scratch_words(&g)),
        Op::StackConv2d { .. } => crate::kernels::StackGeom::of(op, inp, 1, 1)
            .map_or(0, |g| fast::stack_scratch_words(&g)),
        Op::RowLstm { .. } => {
            crate::kernels::LstmGeom::of(op, inp, 1, 1).map_or(0, |g| fast::lstm_scratch_words(&g))
        }
        Op::Reshape(_) => 0,
    }
}

/// The output shape of `layer` applied to `inp`, its MACs and parameter
/// count, after checking that its blobs have the right sizes.
pub(crate) fn layer_shape(
    idx: u16,
    layer: &Layer<'_>,
    inp: Shape,
    dtype: DType,
) -> Result<(Shape, u64, u64)> {
    let mismatch = Error::PlanShapeMismatch { layer: idx };
    // Bytes the weight blob carries besides the weights (the Row LSTM's
    // int8 tables), and requantization channels if not `channels`.
    let mut extra_weight_bytes = 0u64;
    let mut quant_channels = None;
    let (out, weights, channels, macs) = match layer.op {
        Op::Dense { inp: i, out } => {
            if inp.numel() != i as u64 || out == 0 {
                return Err(mismatch);
            }
            let w = i as u64 * out as u64;
            (Shape { c: out, h: 1, w: 1 }, w, out, w)
        }
        Op::Conv2d {
            in_c,
            out_c,
            k,
            stride,
            pad,
        } => {
            if inp.c != in_c || out_c == 0 {
                return Err(mismatch);
            }
            let oh = conv_out(inp.h, k, stride, pad).ok_or(mismatch)?;
            let ow = conv_out(inp.w, k, stride, pad).ok_or(mismatch)?;
            let w = out_c as u64 * in_c as u64 * k as u64 * k as u64;
            let macs = out_c as u64
                * in_c as u64
                * conv_taps(inp.h, k, stride, pad, oh)
                * conv_taps(inp.w, k, stride, pad, ow);
            (
                Shape {
                    c: out_c,
                    h: oh,
                    w: ow,
                },
                w,
                out_c,
                macs,
            )
        }
        Op::ConvTranspose2d {
            in_c,
            out_c,
            k,
            stride,
            pad,
            out_pad,
        } => {
            if inp.c != in_c || out_c == 0 {
                return Err(mismatch);
            }
            let oh = conv_t_out(inp.h, k, stride, pad, out_pad).ok_or(mismatch)?;
            let ow = conv_t_out(inp.w, k, stride, pad, out_pad).ok_or(mismatch)?;
            let w = out_c as u64 * in_c as u64 * k as u64 * k as u64;
            let macs = out_c as u64
                * in_c as u64
                * conv_t_taps(inp.h, k, stride, pad, oh)
                * conv_t_taps(inp.w, k, stride, pad, ow);
            (
                Shape {
                    c: out_c,
                    h: oh,
                    w: ow,
                },
                w,
                out_c,
                macs,
            )
        }
        Op::MaskedConv2d {
            in_c,
            out_c,
            k,
            mask,
        } => {
            if inp.c != in_c || out_c == 0 || k % 2 == 0 {
                return Err(mismatch);
            }
            let w = out_c as u64 * in_c as u64 * k as u64 * k as u64;
            let macs = out_c as u64 * in_c as u64 * masked_taps(inp.h, inp.w, k, mask);
            (Shape { c: out_c, ..inp }, w, out_c, macs)
        }
        Op::RowLstm {
            in_c,
            hidden,
            k_in,
            k_state,
            ..
        } => {
            if inp.c != in_c || hidden == 0 || k_in % 2 == 0 || k_state % 2 == 0 {
                return Err(mismatch);
            }
            if layer.act != crate::format::Act::None {
                return Err(Error::FormatBadValue { layer: idx });
            }
            let gates = 4 * hidden as u64;
            let w = gates * (in_c as u64 * k_in as u64 + hidden as u64 * k_state as u64);
            let mut macs = 0u64;
            for y in 0..inp.h.min(2) {
                for x in 0..inp.w {
                    // Rows 1.. all cost what row 1 costs.
                    let m = lstm_macs_at(&layer.op, inp.w, y, x);
                    macs += if y == 0 { m } else { m * (inp.h as u64 - 1) };
                }
            }
            if dtype == DType::I8 {
                extra_weight_bytes = ROW_LSTM_LUT_BYTES as u64;
                quant_channels = Some(2 * gates);
                if let Some(q) = &layer.quant {
                    if q.out_zp != 0 || q.out_scale != ROW_LSTM_OUT_SCALE {
                        return Err(Error::FormatBadValue { layer: idx });
                    }
                }
            }
            (Shape { c: hidden, ..inp }, w, 4 * hidden, macs)
        }
        Op::StackConv2d {
            in_c,
            in_v,
            out_c,
            out_v,
            k,
            ..
        } => {
            if inp.c != in_c || in_v >= in_c || out_c == 0 || out_v > out_c || k % 2 == 0 {
                return Err(mismatch);
            }
            let g = crate::net::stack_geom(&layer.op, inp, inp.h, inp.h);
            let mut macs = 0u64;
            for y in 0..inp.h {
                for x in 0..inp.w {
                    macs += stack_macs_at(&layer.op, inp.w, y, x);
                }
            }
            (
                Shape { c: out_c, ..inp },
                g.weight_len() as u64,
                out_c,
                macs,
            )
        }
        Op::Reshape(s) => {
            if s.numel() != inp.numel() {
                return Err(mismatch);
            }
            if !layer.weight.is_empty() || !layer.bias.is_empty() || layer.quant.is_some() {
                return Err(Error::FormatBlobSize { layer: idx });
            }
            return Ok((s, 0, 0));
        }
    };
    if out.numel() > MAX_TENSOR_ELEMS as u64 {
        return Err(mismatch);
    }
    let size = Error::FormatBlobSize { layer: idx };
    if layer.weight.len() as u64 != weights * dtype.weight_bytes() as u64 + extra_weight_bytes
        || layer.bias.len() as u64 != channels as u64 * 4
    {
        return Err(size);
    }
    let qc = quant_channels.unwrap_or(channels as u64) as usize;
    match (dtype, &layer.quant) {
        (DType::I8, Some(q)) => {
            if q.multiplier.len() != qc * 4 || q.shift.len() != qc {
                return Err(size);
            }
            let bad = Error::FormatBadValue { layer: idx };
            for c in 0..qc {
                if crate::format::i32_at(q.multiplier, c) < 0 || !(1..=62).contains(&q.shift[c]) {
                    return Err(bad);
                }
            }
            if !q.out_scale.is_finite() || q.out_scale <= 0.0 {
                return Err(bad);
            }
        }
        (DType::F32 | DType::F16, None) => {}
        _ => return Err(Error::FormatBadValue { layer: idx }),
    }
    Ok((out, macs, weights + channels as u64))
}

impl Plan {
    /// Checks every layer of `net` and plans its memory.
    ///
    /// # Errors
    ///
    /// `PlanShapeMismatch` where shapes do not chain, `FormatBlobSize` or
    /// `FormatBadValue` where a layer's data do not fit its geometry or
    /// dtype, `PlanInput` for an empty input.
    pub fn new(net: &Net<'_>, dtype: DType) -> Result<Plan> {
        let n_in = net.input.numel();
        if n_in == 0 || n_in > MAX_TENSOR_ELEMS as u64 {
            return Err(Error::PlanInput);
        }
        let head_ok = match (dtype, net.head) {
            (DType::I8, Head::SigmoidLut(t)) => t.len() == 256,
            (DType::I8, Head::Raw) | (DType::F32 | DType::F16, Head::Sigmoid | Head::Raw) => true,
            _ => false,
        };
        let input_ok = match (dtype, net.input_q) {
            (DType::I8, Some(q)) => q.scale.is_finite() && q.scale > 0.0,
            (DType::F32 | DType::F16, None) => true,
            _ => false,
        };
        if !head_ok || !input_ok {
            return Err(Error::FormatBadValue { layer: u16::MAX });
        }
        let eb = dtype.act_bytes() as u64;
        let mut shape = net.input;
        let mut in_a = true;
        let mut a = n_in * eb;
        let mut b = 0u64;
        let mut macs = 0u64;
        let mut params = 0u64;
        let mut cell = 0u64;
        let mut scratch = 0u64;
        for (i, layer) in net.layers.iter().enumerate() {
            if let Op::RowLstm { hidden, .. } = layer.op {
                // One row of cell state, f32 or i32.
                cell = cell.max(hidden as u64 * shape.w as u64 * 4);
            }
            let (out, m, p) = layer_shape(i as u16, layer, shape, dtype)?;
            if dtype == DType::I8 {
                scratch = scratch.max(4 * scratch_words(&layer.op, shape, out) as u64);
            }
            shape = out;
            macs += m;
            params += p;
            if !matches!(layer.op, Op::Reshape(_)) {
                in_a = !in_a;
                let bytes = out.numel() * eb;
                if in_a {
                    a = a.max(bytes);
                } else {
                    b = b.max(bytes);
                }
            }
        }
        // Each of a, b, cell is at most 4 * MAX_TENSOR_ELEMS (the cell row
        // is part of a layer's checked output): the sum fits a u32.
        Ok(Plan {
            buf_a: a as u32,
            buf_b: b as u32,
            cell: cell as u32,
            scratch: u32::try_from(scratch).map_err(|_| Error::PlanInput)?,
            macs,
            params: u32::try_from(params).map_err(|_| Error::PlanInput)?,
            output: shape,
        })
    }
}

/// One row cache of the incremental autoregressive sampler: the last
/// `rows` rows, all `c` channels, of one tensor, laid out `[c][rows][w]`
/// (image row `y` in cache row `y % rows`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RowCache {
    /// Offset in the arena, in activation elements (f32 or i8).
    pub offset: u32,
    /// Channels.
    pub c: u16,
    /// Rows kept.
    pub rows: u16,
}

impl RowCache {
    /// Elements of the cache for images `w` wide.
    pub const fn elems(&self, w: u16) -> u32 {
        self.c as u32 * self.rows as u32 * w as u32
    }
}

/// The memory plan of the incremental autoregressive sampler (Ramachandran
/// et al. 2017): one [`RowCache`] for the input pixels and one per layer
/// output, and one row of cell state per [`Op::RowLstm`].
///
/// A tensor keeps the rows its consumer reads: a masked convolution with
/// kernel `k` reads rows `y - k/2 ..= y` of its input (`k/2 + 1` rows); a
/// Row LSTM reads only row `y` of its input (1 row); the logits are read
/// once (1 row). A Row LSTM's own output also holds its recurrent state,
/// row `y - 1`, while row `y` is computed, so it keeps at least 2 rows.
/// The caches lie one after the other in the arena, each starting on a
/// 4-byte boundary; after them come the cell rows (`hidden * w` f32 or
/// i32 each). That is exactly the arena: nothing else is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct CachePlan {
    /// Cache 0 holds the input pixels; cache `l + 1` the output of layer `l`.
    pub caches: [RowCache; MAX_LAYERS + 1],
    /// Byte offset in the arena of layer `l`'s cell-state row (`hidden * w`
    /// elements of 4 bytes), for Row LSTM layers; 0 for the others.
    pub cells: [u32; MAX_LAYERS],
    /// Bytes of the caches: the cell rows start here.
    pub caches_bytes: u32,
    /// Offset of the int8 kernels' scratch (after the cell rows).
    pub scratch_offset: u32,
    /// Bytes of the int8 kernels' scratch (0 for f32 and f16).
    pub scratch: u32,
    /// Caches used (layers + 1).
    pub n: u8,
    /// Image height.
    pub h: u16,
    /// Image width.
    pub w: u16,
    /// Exact arena bytes.
    pub arena_bytes: u32,
    /// Multiply-accumulates of one whole sample (the wavefront computes each
    /// layer once at each position).
    pub macs: u64,
}

impl CachePlan {
    /// Plans the caches of a network of masked convolutions and Row LSTMs
    /// (checked by [`Plan::new`] already) over `input`.
    ///
    /// # Errors
    ///
    /// `PlanShapeMismatch` for a layer that is neither; `PlanInput` if the
    /// arena overflows a `u32`.
    pub fn new(net: &Net<'_>, dtype: DType) -> Result<CachePlan> {
        let (h, w) = (net.input.h, net.input.w);
        let eb = dtype.act_bytes() as u64;
        let mut caches = [RowCache::default(); MAX_LAYERS + 1];
        let mut cells = [0u32; MAX_LAYERS];
        let n = net.layers.len();
        let mut offset_bytes = 0u64;
        let mut macs = 0u64;
        for (i, slot) in caches.iter_mut().enumerate().take(n + 1) {
            // Rows the consumer of tensor i reads: layer i's, or one row
            // for the logits.
            let mut rows = match net.layers.get(i).map(|l| l.op) {
                Some(Op::MaskedConv2d { k, .. }) => k as u16 / 2 + 1,
                // Rows y - k/2 ..= y, and y - 1 for the vertical link.
                Some(Op::StackConv2d { k, .. }) => (k as u16 / 2 + 1).max(2),
                Some(Op::RowLstm { .. }) | None => 1,
                Some(_) => return Err(Error::PlanShapeMismatch { layer: i as u16 }),
            };
            // Its producer, and what the wavefront pays for it: each
            // position once, in raster order.
            let channels = match i
                .checked_sub(1)
                .and_then(|p| net.layers.get(p))
                .map(|l| l.op)
            {
                None => net.input.c,
                Some(Op::MaskedConv2d {
                    in_c,
                    out_c,
                    k,
                    mask,
                }) => {
                    for y in 0..h {
                        for x in 0..w {
                            macs +=
                                out_c as u64 * in_c as u64 * masked_taps_at(h, w, k, mask, y, x);
                        }
                    }
                    out_c
                }
                Some(op @ Op::StackConv2d { out_c, .. }) => {
                    for y in 0..h {
                        for x in 0..w {
                            macs += stack_macs_at(&op, w, y, x);
                        }
                    }
                    out_c
                }
                Some(op @ Op::RowLstm { hidden, .. }) => {
                    for y in 0..h {
                        for x in 0..w {
                            macs += lstm_macs_at(&op, w, y, x);
                        }
                    }
                    // Row y - 1 is the state while row y is written.
                    rows = rows.max(2);
                    hidden
                }
                Some(_) => {
                    return Err(Error::PlanShapeMismatch {
                        layer: i as u16 - 1,
                    })
                }
            };
            let cache = RowCache {
                offset: (offset_bytes / eb) as u32,
                c: channels,
                rows,
            };
            *slot = cache;
            offset_bytes = (offset_bytes + cache.elems(w) as u64 * eb + 3) & !3;
        }
        let caches_bytes = offset_bytes;
        let mut scratch = 0u64;
        let mut shape = net.input;
        for (l, layer) in net.layers.iter().enumerate() {
            if let Op::RowLstm { hidden, .. } = layer.op {
                cells[l] = u32::try_from(offset_bytes).map_err(|_| Error::PlanInput)?;
                offset_bytes += hidden as u64 * w as u64 * 4;
            }
            let out = Shape {
                c: caches[l + 1].c,
                ..shape
            };
            if dtype == DType::I8 {
                scratch = scratch.max(4 * scratch_words(&layer.op, shape, out) as u64);
            }
            shape = out;
        }
        let scratch_offset = offset_bytes;
        offset_bytes += scratch;
        Ok(CachePlan {
            caches,
            cells,
            caches_bytes: u32::try_from(caches_bytes).map_err(|_| Error::PlanInput)?,
            scratch_offset: u32::try_from(scratch_offset).map_err(|_| Error::PlanInput)?,
            scratch: u32::try_from(scratch).map_err(|_| Error::PlanInput)?,
            n: (n + 1) as u8,
            h,
            w,
            arena_bytes: u32::try_from(offset_bytes).map_err(|_| Error::PlanInput)?,
            macs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conv_shapes() {
        assert_eq!(conv_out(28, 4, 2, 1), Some(14));
        assert_eq!(conv_out(2, 4, 1, 0), None);
        assert_eq!(conv_t_out(7, 4, 2, 1, 0), Some(14));
        assert_eq!(conv_t_out(14, 4, 2, 1, 0), Some(28));
        assert_eq!(conv_t_out(1, 1, 1, 1, 0), None);
        assert_eq!(conv_t_out(3, 3, 1, 0, 1), None);
    }

    #[test]
    fn masked_taps_whole_image_equals_sum_of_positions() {
        for (h, w, k, mask) in [
            (28, 28, 7, Mask::A),
            (28, 28, 3, Mask::B),
            (5, 3, 5, Mask::B),
            (2, 9, 1, Mask::B),
        ] {
            let mut sum = 0;
            for y in 0..h {
                for x in 0..w {
                    sum += masked_taps_at(h, w, k, mask, y, x);
                }
            }
            assert_eq!(masked_taps(h, w, k, mask), sum);
        }
        // 3x3 mask B at an interior position: 5 taps; at the top-left corner: 1.
        assert_eq!(masked_taps_at(28, 28, 3, Mask::B, 5, 5), 5);
        assert_eq!(masked_taps_at(28, 28, 3, Mask::B, 0, 0), 1);
        assert_eq!(masked_taps_at(28, 28, 7, Mask::A, 0, 0), 0);
    }

    #[test]
    fn taps_count_only_inside() {
        // 3-tap kernel, stride 1, pad 1, over 4 positions: the two borders
        // lose one tap each.
        assert_eq!(conv_taps(4, 3, 1, 1, 4), 10);
        // Transposed 4x4/2/1 from 7 to 14: 7*4 taps minus 2 cut by padding.
        assert_eq!(conv_t_taps(7, 4, 2, 1, 14), 26);
    }
}
