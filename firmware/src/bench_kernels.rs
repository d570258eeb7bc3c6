//! Kernel benchmark (feature `bench-kernels`, QEMU board only): runs every
//! int8 kernel shape in [`CASES`] once through the reference kernel
//! (`tinygen_runtime::kernels::reference`) and once through the optimized
//! one (`tinygen_runtime::kernels::*_i8`), counts the instructions of each
//! call with the SysTick counter (`-icount shift=0`: 1 tick = 40
//! instructions) and checks that the two outputs are equal byte for byte.
//!
//! Each case's inputs, int8 weights, i32 biases and per-channel
//! requantization are pseudo-random from `Rng::new(case number)`, carved
//! from one static pool. One log line per case:
//!
//! ```text
//! bench-kernel conv 14x14x16->16 3x3 p1: macs 451584 reference N optimized N scratch_bytes N equal true
//! ```
//!
//! `cargo xtask bench-kernels` builds this, runs it and tabulates the lines.
//! MACs are nominal: every tap, padding and masked taps included.

use tinygen_runtime::kernels::{
    self, fast, reference, ConvGeom, LstmGeom, MaskedGeom, RequantI8, StackGeom,
};
use tinygen_runtime::Rng;

use crate::{board, ticks};

/// One kernel call's shape.
enum Shape {
    /// Dense, `inp` -> `out`.
    Dense { inp: usize, out: usize },
    /// Convolution.
    Conv(ConvGeom),
    /// Transposed convolution.
    ConvT(ConvGeom),
    /// Masked convolution, whole image.
    Masked(MaskedGeom),
    /// Two-stack masked convolution, whole image.
    Stack(StackGeom),
    /// Row LSTM, whole image.
    Lstm(LstmGeom),
}

/// Convolution, stride 1, on a square `hw` x `hw` input.
const fn conv(in_c: usize, hw: usize, out_c: usize, k: usize, pad: usize) -> Shape {
    let o = hw + 2 * pad - k + 1;
    Shape::Conv(ConvGeom {
        in_c,
        in_h: hw,
        in_w: hw,
        out_c,
        out_h: o,
        out_w: o,
        k,
        stride: 1,
        pad,
    })
}

/// Transposed convolution on a square `hw` x `hw` input.
const fn conv_t(
    in_c: usize,
    hw: usize,
    out_c: usize,
    k: usize,
    stride: usize,
    pad: usize,
) -> Shape {
    let o = (hw - 1) * stride + k - 2 * pad;
    Shape::ConvT(ConvGeom {
        in_c,
        in_h: hw,
        in_w: hw,
        out_c,
        out_h: o,
        out_w: o,
        k,
        stride,
        pad,
    })
}

/// The autoregressive models' image side.
const HW: usize = 28;

/// Masked convolution over a whole 28x28 image.
const fn masked(in_c: usize, out_c: usize, k: usize, mask_b: bool) -> Shape {
    Shape::Masked(MaskedGeom {
        in_c,
        out_c,
        h: HW,
        w: HW,
        k,
        mask_b,
        in_rows: HW,
        out_rows: HW,
    })
}

/// Two-stack convolution over a whole 28x28 image.
const fn stack(
    in_c: usize,
    in_v: usize,
    out_c: usize,
    out_v: usize,
    k: usize,
    mask_b: bool,
) -> Shape {
    Shape::Stack(StackGeom {
        in_c,
        in_v,
        out_c,
        out_v,
        h: HW,
        w: HW,
        k,
        mask_b,
        in_rows: HW,
        out_rows: HW,
    })
}

/// Row LSTM over a whole 28x28 image, input kernel 3 (mask B), state kernel 3.
const fn lstm(in_c: usize, hidden: usize) -> Shape {
    Shape::Lstm(LstmGeom {
        in_c,
        hidden,
        h: HW,
        w: HW,
        k_in: 3,
        mask_b: true,
        k_state: 3,
        in_rows: HW,
        out_rows: HW,
    })
}

/// The cases, in the order of the table: CMSIS-NN's five shapes, then the
/// shipped models' layers (duplicates left out).
const CASES: [(&str, Shape); 18] = [
    // The shapes ../shared/perf/cmsis-nn-m4.md measured CMSIS-NN on.
    ("conv 14x14x16->16 3x3 p1", conv(16, 14, 16, 3, 1)),
    ("conv 28x28x1->32 7x7 p3", conv(1, 28, 32, 7, 3)),
    ("conv 28x28x32->32 3x3 p1", conv(32, 28, 32, 3, 1)),
    ("fc 784->400", Shape::Dense { inp: 784, out: 400 }),
    // Also the GAN generator's second layer.
    (
        "convT 7x7x64->14x14x32 k4 s2 p1",
        conv_t(64, 7, 32, 4, 2, 1),
    ),
    // VAE and autoencoder decoder.
    ("dense 16->1568", Shape::Dense { inp: 16, out: 1568 }),
    (
        "convT 7x7x32->14x14x16 k4 s2 p1",
        conv_t(32, 7, 16, 4, 2, 1),
    ),
    (
        "convT 14x14x16->28x28x1 k4 s2 p1",
        conv_t(16, 14, 1, 4, 2, 1),
    ),
    // GAN generator.
    ("dense 32->3136", Shape::Dense { inp: 32, out: 3136 }),
    (
        "convT 14x14x32->28x28x1 k4 s2 p1",
        conv_t(32, 14, 1, 4, 2, 1),
    ),
    // PixelCNN.
    ("stack 7x7 A 1->32v+32h", stack(1, 0, 64, 32, 7, false)),
    (
        "stack 5x5 B 64(32v)->32v+32h",
        stack(64, 32, 64, 32, 5, true),
    ),
    ("stack 5x5 B 64(32v)->32h", stack(64, 32, 32, 0, 5, true)),
    // Also PixelRNN's output layer.
    ("masked 1x1 B 32->1", masked(32, 1, 1, true)),
    // PixelRNN.
    ("masked 7x7 A 1->32", masked(1, 32, 7, false)),
    ("row lstm 32->48 k_in 3 B k_state 3", lstm(32, 48)),
    ("row lstm 48->48", lstm(48, 48)),
    ("masked 1x1 B 48->32", masked(48, 32, 1, true)),
];

impl Shape {
    /// Nominal multiply-accumulates: every tap, padding and masked taps
    /// included.
    fn macs(&self) -> u64 {
        let n = match self {
            Shape::Dense { inp, out } => inp * out,
            Shape::Conv(g) => g.out_h * g.out_w * g.out_c * g.in_c * g.k * g.k,
            Shape::ConvT(g) => g.in_h * g.in_w * g.in_c * g.out_c * g.k * g.k,
            Shape::Masked(g) => g.h * g.w * g.out_c * g.in_c * g.k * g.k,
            Shape::Stack(g) => g.h * g.w * g.weight_len(),
            Shape::Lstm(g) => g.h * g.w * 4 * g.hidden * (g.in_c * g.k_in + g.hidden * g.k_state),
        };
        n as u64
    }

    /// Input elements.
    fn in_len(&self) -> usize {
        match self {
            Shape::Dense { inp, .. } => *inp,
            Shape::Conv(g) | Shape::ConvT(g) => g.in_c * g.in_h * g.in_w,
            Shape::Masked(g) => g.in_c * g.h * g.w,
            Shape::Stack(g) => g.in_c * g.h * g.w,
            Shape::Lstm(g) => g.in_c * g.h * g.w,
        }
    }

    /// Output elements.
    fn out_len(&self) -> usize {
        match self {
            Shape::Dense { out, .. } => *out,
            Shape::Conv(g) | Shape::ConvT(g) => g.out_c * g.out_h * g.out_w,
            Shape::Masked(g) => g.out_c * g.h * g.w,
            Shape::Stack(g) => g.out_c * g.h * g.w,
            Shape::Lstm(g) => g.hidden * g.h * g.w,
        }
    }

    /// Weight bytes (the Row LSTM's end with its 1024 bytes of tables).
    fn w_len(&self) -> usize {
        match self {
            Shape::Dense { inp, out } => inp * out,
            Shape::Conv(g) | Shape::ConvT(g) => g.in_c * g.out_c * g.k * g.k,
            Shape::Masked(g) => g.out_c * g.in_c * g.k * g.k,
            Shape::Stack(g) => g.weight_len(),
            Shape::Lstm(g) => g.w_is_len() + g.w_ss_len() + 1024,
        }
    }

    /// Biases (i32 each).
    fn biases(&self) -> usize {
        match self {
            Shape::Dense { out, .. } => *out,
            Shape::Conv(g) | Shape::ConvT(g) => g.out_c,
            Shape::Masked(g) => g.out_c,
            Shape::Stack(g) => g.out_c,
            Shape::Lstm(g) => 4 * g.hidden,
        }
    }

    /// Per-channel multipliers and shifts: the Row LSTM has two sets
    /// (input-to-state, then state-to-state).
    fn requant_channels(&self) -> usize {
        match self {
            Shape::Lstm(g) => 8 * g.hidden,
            _ => self.biases(),
        }
    }

    /// Taps summed into requantization channel `c` (at most; the shift
    /// scales by it).
    fn fan_in(&self, c: usize) -> usize {
        match self {
            Shape::Dense { inp, .. } => *inp,
            Shape::Conv(g) => g.in_c * g.k * g.k,
            Shape::ConvT(g) => g.in_c * (g.k / g.stride).max(1).pow(2),
            Shape::Masked(g) => g.in_c * g.k * g.k,
            Shape::Stack(g) if c < g.out_v => g.v_row_len(),
            Shape::Stack(g) => g.h_row_len(),
            Shape::Lstm(g) if c < 4 * g.hidden => g.in_c * g.k_in,
            Shape::Lstm(g) => g.hidden * g.k_state,
        }
    }

    /// Cell-state elements (Row LSTM only).
    fn cell_len(&self) -> usize {
        match self {
            Shape::Lstm(g) => g.hidden * g.w,
            _ => 0,
        }
    }

    /// Scratch words of the optimized kernel.
    fn scratch_words(&self) -> usize {
        let words = match self {
            Shape::Dense { inp, .. } => fast::dense_scratch_words(*inp as u64),
            Shape::Conv(g) => fast::conv2d_scratch_words(g),
            Shape::ConvT(g) => fast::conv_transpose2d_scratch_words(g),
            Shape::Masked(g) => fast::masked_scratch_words(g),
            Shape::Stack(g) => fast::stack_scratch_words(g),
            Shape::Lstm(g) => fast::lstm_scratch_words(g),
        };
        // The benchmark's own shapes: a few kilobytes.
        words as usize
    }

    /// Runs the reference kernel.
    fn reference(&self, l: &Layer<'_>, out: &mut [i8], cell: &mut [i32]) {
        let (x, w, b, q) = (l.x, l.w, l.bias, &l.q);
        match self {
            Shape::Dense { .. } => reference::dense_i8(x, w, b, q, out),
            Shape::Conv(g) => reference::conv2d_i8(x, g, w, b, q, out),
            Shape::ConvT(g) => reference::conv_transpose2d_i8(x, g, w, b, q, out),
            Shape::Masked(g) => reference::masked_conv2d_i8(x, g, w, b, q, out),
            Shape::Stack(g) => reference::stack_conv2d_i8(x, g, w, b, q, out),
            Shape::Lstm(g) => reference::row_lstm_i8(x, g, w, b, q, out, cell),
        }
    }

    /// Runs the optimized kernel (the one the samplers run).
    fn optimized(&self, l: &Layer<'_>, out: &mut [i8], cell: &mut [i32], scratch: &mut [u32]) {
        let (x, w, b, q) = (l.x, l.w, l.bias, &l.q);
        match self {
            Shape::Dense { .. } => kernels::dense_i8(x, w, b, q, out, scratch),
            Shape::Conv(g) => kernels::conv2d_i8(x, g, w, b, q, out, scratch),
            Shape::ConvT(g) => kernels::conv_transpose2d_i8(x, g, w, b, q, out, scratch),
            Shape::Masked(g) => kernels::masked_conv2d_i8(x, g, w, b, q, out, scratch),
            Shape::Stack(g) => kernels::stack_conv2d_i8(x, g, w, b, q, out, scratch),
            Shape::Lstm(g) => kernels::row_lstm_i8(x, g, w, b, q, out, cell, scratch),
        }
    }
}

/// A case's read-only operands.
struct Layer<'a> {
    x: &'a [i8],
    w: &'a [u8],
    bias: &'a [u8],
    q: RequantI8<'a>,
}

/// Words in the pool (1 MiB; the largest case, `row lstm 48->48`, takes
/// about 470 KB).
const POOL_WORDS: usize = 256 * 1024;

/// Every case's buffers, carved anew for each case: u32 words, so that
/// every carved buffer is 4-byte aligned.
static mut POOL: [u32; POOL_WORDS] = [0; POOL_WORDS];

/// Plain integers: every bit pattern is a value, alignment at most 4.
trait Plain: Copy {}
impl Plain for u8 {}
impl Plain for i8 {}
impl Plain for i32 {}
impl Plain for u32 {}

/// A bump allocator over a borrowed slice of the pool.
struct Bump<'a> {
    free: &'a mut [u32],
}

impl<'a> Bump<'a> {
    /// The next `n` elements, 4-byte aligned, as they were left (callers fill
    /// them). Panics (and the run fails) when the pool is too small.
    fn take<T: Plain>(&mut self, n: usize) -> &'a mut [T] {
        let words = (n * core::mem::size_of::<T>()).div_ceil(4);
        let (head, rest) = core::mem::take(&mut self.free).split_at_mut(words);
        self.free = rest;
        // SAFETY: `head` is an exclusive borrow of `words` u32s, at least
        // `n * size_of::<T>()` bytes, aligned to 4 >= align_of::<T>(); `T`
        // is a plain integer for which every bit pattern is valid. The
        // returned slice reborrows `head` for the same lifetime.
        unsafe { core::slice::from_raw_parts_mut(head.as_mut_ptr().cast::<T>(), n) }
    }
}

/// Fills `buf` with pseudo-random bytes.
fn fill_random(rng: &mut Rng, buf: &mut [u8]) {
    for b in buf {
        *b = rng.next_u32() as u8;
    }
}

/// `i8` as the bytes they are.
fn as_bytes_mut(v: &mut [i8]) -> &mut [u8] {
    // SAFETY: i8 and u8 have the same size and alignment, and every bit
    // pattern is valid for both; the result reborrows `v`.
    unsafe { core::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<u8>(), v.len()) }
}

/// Runs every case; `true` when every optimized output equals the
/// reference's. `_board`: the initialized board, whose tick counter runs.
pub fn run(_board: board::Board) -> bool {
    let pool = &raw mut POOL;
    // SAFETY: `run` is called once, from `main`, and nothing else (no
    // interrupt handler) touches POOL: this is the only reference to it.
    let pool = unsafe { &mut *pool };
    defmt::info!(
        "bench-kernels: {=usize} cases on {=str}; {=u64} {=str} per tick",
        CASES.len(),
        board::NAME,
        board::COUNTS_PER_TICK,
        board::COUNT_UNIT
    );
    let mut all_equal = true;
    // TINYGEN_BENCH_ONLY (at build time): only the cases whose name
    // contains it, for profiling one kernel (tools/qemu-pcprof).
    let only = option_env!("TINYGEN_BENCH_ONLY").unwrap_or("");
    for (i, (name, shape)) in CASES.iter().enumerate() {
        if !name.contains(only) {
            continue;
        }
        all_equal &= run_case(name, shape, i as u64 + 1, pool);
    }
    if all_equal {
        defmt::info!("bench-kernels: every optimized output equals the reference's");
    } else {
        defmt::error!("bench-kernels: an optimized output differs from the reference's");
    }
    all_equal
}

/// Fills one case's buffers from `Rng::new(seed)`, runs the two kernels,
/// logs the counts and returns whether their outputs are equal.
fn run_case(name: &str, shape: &Shape, seed: u64, pool: &mut [u32]) -> bool {
    let mut mem = Bump { free: pool };
    let mut rng = Rng::new(seed);

    let x = mem.take::<i8>(shape.in_len());
    fill_random(&mut rng, as_bytes_mut(x));
    let w = mem.take::<u8>(shape.w_len());
    fill_random(&mut rng, w);
    let bias = mem.take::<u8>(4 * shape.biases());
    for b in bias.chunks_exact_mut(4) {
        let v = (rng.next_u32() % 4000) as i32 - 2000;
        b.copy_from_slice(&v.to_le_bytes());
    }
    let channels = shape.requant_channels();
    let multiplier = mem.take::<u8>(4 * channels);
    for m in multiplier.chunks_exact_mut(4) {
        // Around 2^30: [0.75, 1.25) * 2^30.
        let v = (3 << 28) + (rng.next_u32() % (1 << 29)) as i32;
        m.copy_from_slice(&v.to_le_bytes());
    }
    let shift = mem.take::<u8>(channels);
    for (c, s) in shift.iter_mut().enumerate() {
        // 31 + log2(fan_in * 32): outputs of a few units, rarely clamped.
        let log2 = (shape.fan_in(c) * 32).ilog2();
        *s = (31 + log2).min(62) as u8;
    }
    let zp = |rng: &mut Rng| (rng.next_u32() % 32) as i32 - 16;
    let layer = Layer {
        x,
        w,
        bias,
        q: RequantI8 {
            in_zp: zp(&mut rng),
            out_zp: zp(&mut rng),
            multiplier,
            shift,
            min: -128,
            max: 127,
        },
    };

    // Different fills, so an output the optimized kernel leaves unwritten
    // shows.
    let out_ref = mem.take::<i8>(shape.out_len());
    out_ref.fill(0);
    let out_fast = mem.take::<i8>(shape.out_len());
    out_fast.fill(0x5a);
    let cell_ref = mem.take::<i32>(shape.cell_len());
    cell_ref.fill(0);
    let cell_fast = mem.take::<i32>(shape.cell_len());
    cell_fast.fill(0x5a5a);
    let scratch = mem.take::<u32>(shape.scratch_words());

    let t0 = ticks::now();
    shape.reference(&layer, out_ref, cell_ref);
    let t1 = ticks::now();
    shape.optimized(&layer, out_fast, cell_fast, scratch);
    let t2 = ticks::now();

    let equal = out_ref == out_fast && cell_ref == cell_fast;
    defmt::info!(
        "bench-kernel {=str}: macs {=u64} reference {=u64} optimized {=u64} scratch_bytes {=u32} equal {=bool}",
        name,
        shape.macs(),
        (t1 - t0) * board::COUNTS_PER_TICK,
        (t2 - t1) * board::COUNTS_PER_TICK,
        (4 * scratch.len()) as u32,
        equal
    );
    equal
}
