//! The memory plan: checks that a network's shapes chain, and computes the
//! exact arena it needs and what one pass costs.
//!
//! Activations live in two buffers, A and B, inside the caller's arena: the
//! input is written to A, and each layer reads one and writes the other
//! (`Reshape` only renames). Each buffer is as large as the largest tensor
//! that lands in it, so the arena is exact, not a worst case:
//! `arena_bytes = align4(A) + B`. A network with [`Op::RowLstm`](crate::format::Op::RowLstm) layers also
//! needs one row of cell state (`hidden * w` f32 or i32) as scratch, the
//! largest of its layers', after B: `align4(A) + align4(B) + cell`. An int8
//! network also needs the optimized kernels' scratch (their columns and
//! gathered weights, [`crate::kernels::fast`]), the largest of its
//! layers', after that: `align4(A) + align4(B) + cell + scratch`. How much
//! scratch depends on the [`Profile`] the plan is made for (an explicit
//! parameter, never the target it runs on): [`Profile::Fast`] by default,
//! [`Profile::Small`] for the least RAM.

use crate::arena::{as_f32, as_i32, as_i8, as_u32};
use crate::error::{Error, Result};
use crate::format::{DType, Head, Layer, Net, Shape, MAX_LAYERS, MAX_TENSOR_ELEMS};
pub use crate::kernels::Profile;
use crate::ops;

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
    /// What the int8 kernels' scratch was planned for; they follow it.
    pub profile: Profile,
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

// The arena of a plan, split into typed buffers (checked by
// `arena::check_bytes` against `Plan::arena_bytes`).

/// Buffers A and B as bytes.
fn split<'x>(plan: &Plan, arena: &'x mut [u8]) -> (&'x mut [u8], &'x mut [u8]) {
    let (a, rest) = arena.split_at_mut(plan.b_offset() as usize);
    (
        &mut a[..plan.buf_a as usize],
        &mut rest[..plan.buf_b as usize],
    )
}

/// Buffers A and B as f32 (arena checked by `arena::check_bytes`).
pub(crate) fn split_f32<'x>(plan: &Plan, arena: &'x mut [u8]) -> (&'x mut [f32], &'x mut [f32]) {
    let (a, b) = split(plan, arena);
    (as_f32(a), as_f32(b))
}

/// The arena of a plan as buffers A and B and the cell-state scratch
/// (empty without a Row LSTM), as bytes.
fn split_cell<'x>(plan: &Plan, arena: &'x mut [u8]) -> (&'x mut [u8], &'x mut [u8], &'x mut [u8]) {
    let (a, rest) = arena.split_at_mut(plan.b_offset() as usize);
    let (b, rest) = rest.split_at_mut(plan.buf_b as usize);
    // Without a cell, the arena may end right after B (no padding).
    let pad = if plan.cell == 0 {
        0
    } else {
        (plan.cell_offset() - plan.b_offset() - plan.buf_b) as usize
    };
    (
        &mut a[..plan.buf_a as usize],
        b,
        &mut rest[pad..pad + plan.cell as usize],
    )
}

/// Buffers A and B as f32 and the cell scratch as f32.
pub(crate) fn split_f32_cell<'x>(
    plan: &Plan,
    arena: &'x mut [u8],
) -> (&'x mut [f32], &'x mut [f32], &'x mut [f32]) {
    let (a, b, c) = split_cell(plan, arena);
    (as_f32(a), as_f32(b), as_f32(c))
}

/// Buffers A and B as i8, the cell scratch as i32 and the kernels'
/// scratch as u32 words.
pub(crate) fn split_i8_cell<'x>(
    plan: &Plan,
    arena: &'x mut [u8],
) -> (&'x mut [i8], &'x mut [i8], &'x mut [i32], &'x mut [u32]) {
    let (ab, rest) = arena.split_at_mut(plan.scratch_offset() as usize);
    let (a, b, c) = split_cell(plan, ab);
    (
        as_i8(a),
        as_i8(b),
        as_i32(c),
        as_u32(&mut rest[..plan.scratch as usize]),
    )
}

/// Buffers A and B as i8.
pub(crate) fn split_i8<'x>(plan: &Plan, arena: &'x mut [u8]) -> (&'x mut [i8], &'x mut [i8]) {
    let (a, b) = split(plan, arena);
    (as_i8(a), as_i8(b))
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
    let op = &layer.op;
    let out = ops::out_shape(op, inp).ok_or(mismatch)?;
    if ops::is_view(op) {
        if !layer.weight.is_empty() || !layer.bias.is_empty() || layer.quant.is_some() {
            return Err(Error::FormatBlobSize { layer: idx });
        }
        return Ok((out, 0, 0));
    }
    if !ops::layer_ok(op, layer.act, layer.quant.as_ref(), dtype) {
        return Err(Error::FormatBadValue { layer: idx });
    }
    if out.numel() > MAX_TENSOR_ELEMS as u64 {
        return Err(mismatch);
    }
    let weights = ops::weight_elems(op);
    let channels = ops::bias_elems(op);
    let size = Error::FormatBlobSize { layer: idx };
    if layer.weight.len() as u64
        != weights * dtype.weight_bytes() as u64 + ops::extra_weight_bytes(op, dtype)
        || layer.bias.len() as u64 != channels * 4
    {
        return Err(size);
    }
    let qc = ops::quant_channels(op, dtype);
    match (dtype, &layer.quant) {
        (DType::I8, Some(q)) => {
            if q.multiplier.len() as u64 != qc * 4 || q.shift.len() as u64 != qc {
                return Err(size);
            }
            // qc = shift.len(), a usize.
            let qc = q.shift.len();
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
    // After the blob sizes: the weights are now bounded by the file's
    // length, so the MAC count (weights times positions, at most about
    // 2^32 * 2^22) cannot overflow.
    Ok((out, ops::macs(op, inp), weights + channels))
}

impl Plan {
    /// Nothing planned: a placeholder that [`crate::Model::load_into`]
    /// overwrites.
    pub const EMPTY: Plan = Plan {
        buf_a: 0,
        buf_b: 0,
        cell: 0,
        scratch: 0,
        macs: 0,
        params: 0,
        output: Shape { c: 0, h: 0, w: 0 },
        profile: Profile::Fast,
    };

    /// Checks every layer of `net` and plans its memory, for
    /// [`Profile::Fast`].
    ///
    /// # Errors
    ///
    /// `PlanShapeMismatch` where shapes do not chain, `FormatBlobSize` or
    /// `FormatBadValue` where a layer's data do not fit its geometry or
    /// dtype, `PlanInput` for an empty input.
    pub fn new(net: &Net<'_>, dtype: DType) -> Result<Plan> {
        Self::new_for(net, dtype, Profile::Fast)
    }

    /// [`Plan::new`] for the int8 kernels' `profile`.
    ///
    /// # Errors
    ///
    /// As [`Plan::new`].
    pub fn new_for(net: &Net<'_>, dtype: DType, profile: Profile) -> Result<Plan> {
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
            // One row of cell state, f32 or i32.
            cell = cell.max(ops::cell_elems(&layer.op, shape) * 4);
            let (out, m, p) = layer_shape(i as u16, layer, shape, dtype)?;
            if dtype == DType::I8 {
                scratch = scratch.max(4 * ops::scratch_words(&layer.op, shape, profile));
            }
            shape = out;
            macs += m;
            params += p;
            if !ops::is_view(&layer.op) {
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
            profile,
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
/// output, and one row of cell state per [`Op::RowLstm`](crate::format::Op::RowLstm).
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
        // The shape of tensor i (the input, then layer i - 1's output).
        let mut shape = net.input;
        for (i, slot) in caches.iter_mut().enumerate().take(n + 1) {
            // Rows the consumer of tensor i reads: layer i's, or one row
            // for the logits.
            let mut rows = match net.layers.get(i) {
                Some(l) => {
                    ops::rows_read(&l.op).ok_or(Error::PlanShapeMismatch { layer: i as u16 })?
                }
                None => 1,
            };
            // Its producer, and what the wavefront pays for it: each
            // position once, in raster order, which is one whole pass (the
            // sum of `macs_at` over the positions, computed without
            // visiting them: a file's image size cannot slow the load).
            if let Some(p) = i.checked_sub(1) {
                let op = &net.layers[p].op;
                // (rows_read, above, admitted the op when it was the consumer.)
                let mismatch = Error::PlanShapeMismatch { layer: p as u16 };
                macs += ops::macs(op, shape);
                // A recurrent layer's row y - 1 is its state while row y
                // is written.
                rows = rows.max(ops::rows_kept(op));
                shape = ops::out_shape(op, shape).ok_or(mismatch)?;
            }
            let cache = RowCache {
                offset: (offset_bytes / eb) as u32,
                c: shape.c,
                rows,
            };
            *slot = cache;
            offset_bytes = (offset_bytes + cache.elems(w) as u64 * eb + 3) & !3;
        }
        let caches_bytes = offset_bytes;
        let mut scratch = 0u64;
        let mut shape = net.input;
        for (l, layer) in net.layers.iter().enumerate() {
            if ops::recurrent(&layer.op) {
                cells[l] = u32::try_from(offset_bytes).map_err(|_| Error::PlanInput)?;
                offset_bytes += ops::cell_elems(&layer.op, shape) * 4;
            }
            if dtype == DType::I8 {
                // Masked and two-stack convolutions and Row LSTMs plan the
                // same scratch in every profile.
                scratch = scratch.max(4 * ops::scratch_words(&layer.op, shape, Profile::Fast));
            }
            shape = Shape {
                c: caches[l + 1].c,
                ..shape
            };
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
