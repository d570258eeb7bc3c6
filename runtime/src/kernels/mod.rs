//! Kernels: dense, convolution and transposed convolution, in f32, f16-weight
//! and int8, plus the activations.
//!
//! [`mod@reference`](mod@reference) holds plain, obviously correct loops: they are the spec, and
//! the host and the board run the same ones, which is what makes their output
//! bytes identical. Kernels take slices and a geometry that [`crate::Plan`]
//! has already checked; they cannot fail.

pub mod reference;

pub use reference::*;

/// Geometry of a convolution or transposed convolution (square kernel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeom {
    /// Input channels.
    pub in_c: usize,
    /// Input height.
    pub in_h: usize,
    /// Input width.
    pub in_w: usize,
    /// Output channels.
    pub out_c: usize,
    /// Output height.
    pub out_h: usize,
    /// Output width.
    pub out_w: usize,
    /// Kernel size.
    pub k: usize,
    /// Stride.
    pub stride: usize,
    /// Padding.
    pub pad: usize,
}

/// Geometry of a masked convolution ([`crate::format::Op::MaskedConv2d`]):
/// stride 1, padding `k / 2`, output as large as the input.
///
/// The input and output buffers may hold only some rows of the image (the
/// row caches of the incremental sampler): image row `y` of a buffer with
/// `rows` rows is buffer row `y % rows`, laid out `[c][rows][w]`. A buffer
/// with `rows == h` is a whole CHW tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaskedGeom {
    /// Input channels.
    pub in_c: usize,
    /// Output channels.
    pub out_c: usize,
    /// Image height.
    pub h: usize,
    /// Image width.
    pub w: usize,
    /// Kernel size (odd).
    pub k: usize,
    /// Mask B (centre tap used) rather than mask A.
    pub mask_b: bool,
    /// Rows held by the input buffer (at least `k / 2 + 1`).
    pub in_rows: usize,
    /// Rows held by the output buffer (at least 1).
    pub out_rows: usize,
}

/// Weights that widen to f32: stored as f32 or as f16, little-endian.
pub trait FloatWeights: Copy {
    /// Weight number `i`.
    fn at(&self, i: usize) -> f32;
}

/// f32 little-endian weights.
#[derive(Debug, Clone, Copy)]
pub struct F32Le<'a>(pub &'a [u8]);

/// f16 little-endian weights, widened to f32 (exactly) on read.
#[derive(Debug, Clone, Copy)]
pub struct F16Le<'a>(pub &'a [u8]);

impl FloatWeights for F32Le<'_> {
    #[inline(always)]
    fn at(&self, i: usize) -> f32 {
        crate::format::f32_at(self.0, i)
    }
}

impl FloatWeights for F16Le<'_> {
    #[inline(always)]
    fn at(&self, i: usize) -> f32 {
        let b = &self.0[2 * i..2 * i + 2];
        half::f16::from_le_bytes([b[0], b[1]]).to_f32()
    }
}

/// Requantization parameters of one int8 layer, unpacked from the file.
#[derive(Debug, Clone, Copy)]
pub struct RequantI8<'a> {
    /// Input zero point.
    pub in_zp: i32,
    /// Output zero point.
    pub out_zp: i32,
    /// Per-channel multipliers, i32 LE.
    pub multiplier: &'a [u8],
    /// Per-channel right shifts (1..=62).
    pub shift: &'a [u8],
    /// Lowest output value (the zero point after a ReLU, else -128).
    pub min: i32,
    /// Highest output value.
    pub max: i32,
}

impl RequantI8<'_> {
    /// Requantizes accumulator `acc` of output channel `c`.
    #[inline(always)]
    pub fn apply(&self, acc: i32, c: usize) -> i8 {
        let m = crate::format::i32_at(self.multiplier, c);
        requantize_i32_i8(acc, m, self.shift[c], self.out_zp, self.min, self.max)
    }
}

/// `clamp(round(acc * m / 2^shift) + zp, min, max)`, rounding half up, in
/// exact integer arithmetic (identical on every target). `m` is in
/// `[0, 2^31)` and `shift` in `1..=62`, so nothing overflows.
#[inline(always)]
pub fn requantize_i32_i8(acc: i32, m: i32, shift: u8, zp: i32, min: i32, max: i32) -> i8 {
    debug_assert!((1..=62).contains(&shift) && m >= 0);
    let prod = acc as i64 * m as i64;
    let r = (prod + (1i64 << (shift - 1))) >> shift;
    let v = r.clamp(i32::MIN as i64, i32::MAX as i64) as i32;
    v.saturating_add(zp).clamp(min, max) as i8
}

/// Logistic function in f32 through micromath's `exp` ([`crate::math`]);
/// deterministic (pure f32 arithmetic); absolute error below 1e-3.
#[inline]
pub fn sigmoid_f32(x: f32) -> f32 {
    let x = x.clamp(-30.0, 30.0);
    1.0 / (1.0 + crate::math::exp(-x))
}

/// A probability in [0, 1] as a pixel byte, rounding to nearest.
#[inline]
pub fn prob_to_u8(p: f32) -> u8 {
    // `as` saturates and maps NaN to 0.
    (p * 255.0 + 0.5) as u8
}
