//! Kernels: dense, convolution and transposed convolution, masked
//! convolution and Row LSTM, in f32, f16-weight and int8, plus the
//! activations.
//!
//! The seam, as in TFLite Micro: [`mod@reference`] holds plain, obviously
//! correct loops, one file per op: the specification. [`fast`] holds the
//! optimized int8 kernels (blocked, SMLAD on cores with the DSP
//! extension), which equal the reference bit for bit (int8 arithmetic is
//! exact; property tests check every kernel). The names re-exported here
//! are the ones the samplers run, on the host and on the board alike,
//! which is what makes their output bytes identical: the optimized int8
//! kernels, and the blocked f32/f16 ones. The reference stays
//! callable everywhere as the test oracle. Kernels take slices and a
//! geometry that [`crate::Plan`] has already checked; they cannot fail.

pub mod fast;
pub mod reference;

pub use fast::float::{
    conv2d_f32, conv_transpose2d_f32, dense_f32, masked_conv2d_at_f32, masked_conv2d_f32,
    row_lstm_at_f32, row_lstm_f32, stack_conv2d_f32, stack_conv2d_h_at_f32, stack_conv2d_v_row_f32,
};
pub use fast::{
    conv2d_i8, conv2d_i8_for, conv_transpose2d_i8, conv_transpose2d_i8_for, dense_i8,
    masked_conv2d_at_i8, masked_conv2d_i8, row_lstm_at_i8, row_lstm_i8, stack_conv2d_h_at_i8,
    stack_conv2d_i8, stack_conv2d_v_row_i8, Profile,
};

/// Geometry of a convolution or transposed convolution (square kernel).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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

/// Geometry of a two-stack masked convolution
/// ([`crate::format::Op::StackConv2d`]): stride 1, output as large as the
/// input. Buffers may hold only some rows, as for [`MaskedGeom`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StackGeom {
    /// Input channels.
    pub in_c: usize,
    /// Of which vertical (the first `in_v`; 0: every input is horizontal).
    pub in_v: usize,
    /// Output channels.
    pub out_c: usize,
    /// Of which vertical (the first `out_v`).
    pub out_v: usize,
    /// Image height.
    pub h: usize,
    /// Image width.
    pub w: usize,
    /// Kernel size (odd).
    pub k: usize,
    /// Mask B (centre tap of the horizontal kernel used) rather than A.
    pub mask_b: bool,
    /// Rows held by the input buffer (at least `max(k / 2 + 1, 2)`, or `h`).
    pub in_rows: usize,
    /// Rows held by the output buffer (at least 1).
    pub out_rows: usize,
}

impl StackGeom {
    /// Input channels the vertical outputs read: the vertical ones, or all
    /// when there are none.
    pub const fn v_src(&self) -> usize {
        if self.in_v == 0 {
            self.in_c
        } else {
            self.in_v
        }
    }
    /// Horizontal taps per horizontal input channel (`k / 2`, `+ 1` with mask B).
    pub const fn n_h(&self) -> usize {
        self.k / 2 + self.mask_b as usize
    }
    /// Weights of one vertical output row: `[v_src][k / 2 + 1][k]`.
    pub const fn v_row_len(&self) -> usize {
        self.v_src() * (self.k / 2 + 1) * self.k
    }
    /// Weights of one horizontal output row: `[in_c - in_v][n_h]` then `[in_v]`.
    pub const fn h_row_len(&self) -> usize {
        (self.in_c - self.in_v) * self.n_h() + self.in_v
    }
    /// Elements of the whole weight blob.
    pub const fn weight_len(&self) -> usize {
        self.out_v * self.v_row_len() + (self.out_c - self.out_v) * self.h_row_len()
    }
}

/// Geometry of a Row LSTM ([`crate::format::Op::RowLstm`]) over an image
/// `h` x `w`.
///
/// As for [`MaskedGeom`], the input and output buffers may hold only some
/// rows (row caches): image row `y` is buffer row `y % rows`, laid out
/// `[c][rows][w]`. The output (the hidden states) also serves as the
/// previous row's state, so it keeps at least two rows (or the whole
/// image). The cell state is one row, `[hidden][w]`, updated in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LstmGeom {
    /// Input channels.
    pub in_c: usize,
    /// Hidden (and cell) channels.
    pub hidden: usize,
    /// Image height.
    pub h: usize,
    /// Image width.
    pub w: usize,
    /// Input-to-state kernel width (odd).
    pub k_in: usize,
    /// Mask B (centre tap of the input-to-state kernel used) rather than A.
    pub mask_b: bool,
    /// State-to-state kernel width (odd).
    pub k_state: usize,
    /// Rows held by the input buffer (at least 1).
    pub in_rows: usize,
    /// Rows held by the output buffer (at least 2, or `h`).
    pub out_rows: usize,
}

impl LstmGeom {
    /// Elements of the input-to-state weights `w_is`; `w_ss` follows them.
    pub const fn w_is_len(&self) -> usize {
        4 * self.hidden * self.in_c * self.k_in
    }
    /// Elements of the state-to-state weights `w_ss`.
    pub const fn w_ss_len(&self) -> usize {
        4 * self.hidden * self.hidden * self.k_state
    }
}

/// Weights that widen to f32: stored as f32 or as f16, little-endian.
pub trait FloatWeights: Copy {
    /// Weight number `i`.
    fn at(&self, i: usize) -> f32;
    /// The `n` weights from number `i` (bounds checked here, once).
    fn sub(self, i: usize, n: usize) -> Self;
    /// Number of weights.
    fn len(&self) -> usize;
    /// Whether there are no weights.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Weight number `i`, not bounds checked.
    ///
    /// # Safety
    ///
    /// `i` is less than the number of weights (the `n` of a [`sub`]).
    ///
    /// [`sub`]: FloatWeights::sub
    unsafe fn at_unchecked(&self, i: usize) -> f32;
    /// The weights' bytes when they are stored as f32 little-endian (which
    /// the board's FPU reads as they are), `None` otherwise.
    fn f32_le_bytes(&self) -> Option<&[u8]> {
        None
    }
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
    #[inline(always)]
    fn sub(self, i: usize, n: usize) -> Self {
        F32Le(&self.0[4 * i..4 * (i + n)])
    }
    #[inline(always)]
    fn len(&self) -> usize {
        self.0.len() / 4
    }
    #[inline(always)]
    unsafe fn at_unchecked(&self, i: usize) -> f32 {
        // SAFETY: the caller keeps i below the weights' count, so bytes
        // 4i..4i + 4 are in the blob.
        f32::from_bits(unsafe { crate::format::u32_at_unchecked(self.0, i) })
    }
    #[inline(always)]
    fn f32_le_bytes(&self) -> Option<&[u8]> {
        Some(self.0)
    }
}

impl FloatWeights for F16Le<'_> {
    #[inline(always)]
    fn at(&self, i: usize) -> f32 {
        let b = &self.0[2 * i..2 * i + 2];
        f16_bits_to_f32(u16::from_le_bytes([b[0], b[1]]))
    }
    #[inline(always)]
    fn sub(self, i: usize, n: usize) -> Self {
        F16Le(&self.0[2 * i..2 * (i + n)])
    }
    #[inline(always)]
    fn len(&self) -> usize {
        self.0.len() / 2
    }
    #[inline(always)]
    unsafe fn at_unchecked(&self, i: usize) -> f32 {
        // SAFETY: the caller keeps i below the weights' count, so bytes
        // 2i and 2i + 1 are in the blob.
        let (lo, hi) = unsafe {
            (
                *self.0.get_unchecked(2 * i),
                *self.0.get_unchecked(2 * i + 1),
            )
        };
        f16_bits_to_f32(u16::from_le_bytes([lo, hi]))
    }
}

/// Widens IEEE binary16 bits to the f32 of the same value (exact for every
/// finite value and infinity; NaN stays NaN).
///
/// The same value `half::f16::to_f32` gives, written out so that it inlines
/// into the kernels' inner loops: on x86 hosts `half` checks for the F16C
/// instructions at every call, which made f16 files about 5x slower than f32
/// ones there. Normal numbers are pure bit moves; subnormals go through one
/// exact multiplication of normal f32 numbers (so a flush-to-zero FPU mode
/// cannot change them).
#[inline(always)]
pub fn f16_bits_to_f32(h: u16) -> f32 {
    let sign = ((h & 0x8000) as u32) << 16;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x03ff) as u32;
    match exp {
        0 => {
            // Zero or subnormal: man x 2^-24, exact in f32.
            let v = man as f32 * (1.0 / 16_777_216.0);
            f32::from_bits(v.to_bits() | sign)
        }
        0x1f => f32::from_bits(sign | 0x7f80_0000 | (man << 13)),
        _ => f32::from_bits(sign | ((exp + 112) << 23) | (man << 13)),
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

impl<'a> RequantI8<'a> {
    /// The parameters of output channels `c..` (channel `c` becomes 0).
    #[inline(always)]
    pub fn from_channel(&self, c: usize) -> RequantI8<'a> {
        RequantI8 {
            multiplier: &self.multiplier[4 * c..],
            shift: &self.shift[c..],
            ..*self
        }
    }

    /// Requantizes accumulator `acc` of output channel `c`.
    #[inline(always)]
    pub fn apply(&self, acc: i32, c: usize) -> i8 {
        let m = crate::format::i32_at(self.multiplier, c);
        requantize_i32_i8(acc, m, self.shift[c], self.out_zp, self.min, self.max)
    }

    /// Requantizes accumulators `acc` of output channel `c`, loading its
    /// multiplier and shift once.
    #[inline(always)]
    pub fn apply_n<const C: usize>(&self, acc: [i32; C], c: usize) -> [i8; C] {
        let m = crate::format::i32_at(self.multiplier, c);
        let shift = self.shift[c];
        acc.map(|a| requantize_i32_i8(a, m, shift, self.out_zp, self.min, self.max))
    }
}

/// `clamp(round(acc * m / 2^shift) + zp, min, max)`, rounding half up, in
/// exact integer arithmetic (identical on every target). `m` is in
/// `[0, 2^31)` and `shift` in `1..=62`, so nothing overflows.
#[inline(always)]
pub fn requantize_i32_i8(acc: i32, m: i32, shift: u8, zp: i32, min: i32, max: i32) -> i8 {
    debug_assert!((1..=62).contains(&shift) && m >= 0);
    debug_assert!((-128..=127).contains(&zp) && -128 <= min && max <= 127);
    rounding_shift(acc, m, shift)
        .saturating_add(zp)
        .clamp(min, max) as i8
}

/// `(acc * m + 2^(shift - 1)) >> shift` (`m` in `[0, 2^31)`, `shift` in
/// `1..=62`), exactly, and in i32: `|acc * m| < 2^62`, so the result's
/// magnitude is below 2^31 for every shift >= 31, and requantization
/// shifts are (an accumulator times a multiplier of about 2^30 scaled by
/// far less than 1). Smaller shifts go through i64 and saturate.
///
/// With `acc * m = hi * 2^32 + lo` and `shift > 32`, adding `2^(shift-1)`
/// only adds `2^(shift-33)` to `hi`, and `lo / 2^32 < 1` cannot change the
/// floor of the quotient: the result is `(hi + 2^(shift-33)) >> (shift-32)`,
/// one multiply and three 32-bit operations (SMULL, ADD, ASR on the M4).
#[inline(always)]
pub fn rounding_shift(acc: i32, m: i32, shift: u8) -> i32 {
    let prod = acc as i64 * m as i64;
    if shift > 32 {
        // |hi| < 2^30 and 2^(shift - 33) <= 2^29: no overflow.
        let hi = (prod >> 32) as i32;
        (hi + (1i32 << (shift - 33))) >> (shift - 32)
    } else {
        let r = (prod + (1i64 << (shift - 1))) >> shift;
        r.clamp(i32::MIN as i64, i32::MAX as i64) as i32
    }
}

/// Logistic function in f32 through micromath's `exp` ([`crate::math`]);
/// deterministic (pure f32 arithmetic); absolute error below 1e-3.
#[inline]
pub fn sigmoid_f32(x: f32) -> f32 {
    let x = x.clamp(-30.0, 30.0);
    1.0 / (1.0 + crate::math::exp(-x))
}

/// Logistic function in f32 through [`crate::math::exp_precise`]: absolute
/// error below 1e-6 (measured in the tests below); deterministic. The Row
/// LSTM's gates use it (the heads keep [`sigmoid_f32`], whose bytes the
/// shipped files' samples are made of).
#[inline]
pub fn sigmoid_precise_f32(x: f32) -> f32 {
    let x = x.clamp(-40.0, 40.0);
    1.0 / (1.0 + crate::math::exp_precise(-x))
}

/// Hyperbolic tangent in f32: `(1 - e) / (1 + e)` with
/// `e = exp_precise(-2|x|)`, sign restored. Absolute error below 1e-6
/// (measured in the tests below; the cancellation in `1 - e` near 0 costs
/// an f32 ulp of 1, so the *relative* error of tiny results is larger);
/// odd, deterministic, exactly 0 at 0, never beyond 1 in magnitude.
#[inline]
pub fn tanh_f32(x: f32) -> f32 {
    let a = if x < 0.0 { -x } else { x };
    // tanh(10) = 1 - 4e-9: 1.0 in f32.
    let e = crate::math::exp_precise(-2.0 * a.min(10.0));
    let t = (1.0 - e) / (1.0 + e);
    if x < 0.0 {
        -t
    } else if x > 0.0 {
        t
    } else {
        // 0, -0 and NaN as they came.
        x
    }
}

/// A probability in [0, 1] as a pixel byte, rounding to nearest.
#[inline]
pub fn prob_to_u8(p: f32) -> u8 {
    // `as` saturates and maps NaN to 0.
    (p * 255.0 + 0.5) as u8
}

#[cfg(test)]
mod tests {

    /// The definition: round-half-up shift in i64, clamp to i32, saturating
    /// add of the zero point, clamp to the output range.
    fn requantize_spec(acc: i32, m: i32, shift: u8, zp: i32, min: i32, max: i32) -> i8 {
        let r = (acc as i64 * m as i64 + (1i64 << (shift - 1))) >> shift;
        let v = r.clamp(i32::MIN as i64, i32::MAX as i64) as i32;
        v.saturating_add(zp).clamp(min, max) as i8
    }

    #[test]
    fn rounding_shift_is_exact_for_every_shift() {
        let mut rng = crate::Rng::new(12);
        for k in 0..300_000u32 {
            let acc = rng.next_u32() as i32 >> (k % 31);
            let m = (rng.next_u32() >> 1) as i32;
            let shift = 31 + (k % 32) as u8;
            let want = (acc as i64 * m as i64 + (1i64 << (shift - 1))) >> shift;
            assert_eq!(
                super::rounding_shift(acc, m, shift) as i64,
                want,
                "{acc} {m} {shift}"
            );
        }
        // The extremes of the range.
        for (acc, m) in [(i32::MIN, i32::MAX), (i32::MAX, i32::MAX), (-1, 1), (1, 1)] {
            for shift in 31..=62u8 {
                let want = (acc as i64 * m as i64 + (1i64 << (shift - 1))) >> shift;
                assert_eq!(super::rounding_shift(acc, m, shift) as i64, want);
            }
        }
    }

    #[test]
    fn requantize_equals_its_definition() {
        let mut rng = crate::Rng::new(11);
        let edges = [
            i32::MIN,
            i32::MIN + 1,
            -513,
            -512,
            -1,
            0,
            1,
            511,
            512,
            513,
            i32::MAX,
        ];
        for k in 0..200_000u32 {
            let acc = if k % 7 == 0 {
                edges[(k as usize / 7) % edges.len()]
            } else {
                rng.next_u32() as i32 >> (k % 24)
            };
            let m = (rng.next_u32() >> 1) as i32 >> (k % 5);
            let shift = 1 + (rng.next_u32() % 62) as u8;
            let zp = (rng.next_u32() % 256) as i32 - 128;
            let min = if k % 2 == 0 { zp } else { -128 };
            assert_eq!(
                super::requantize_i32_i8(acc, m, shift, zp, min, 127),
                requantize_spec(acc, m, shift, zp, min, 127),
                "acc {acc} m {m} shift {shift} zp {zp}"
            );
        }
    }

    #[test]
    fn f16_widening_equals_half_for_every_bit_pattern() {
        for h in 0..=u16::MAX {
            let ours = super::f16_bits_to_f32(h);
            let theirs = half::f16::from_bits(h).to_f32();
            if theirs.is_nan() {
                assert!(ours.is_nan(), "{h:#06x}");
            } else {
                assert_eq!(ours.to_bits(), theirs.to_bits(), "{h:#06x}");
            }
        }
    }

    /// Largest absolute error against std's f64 on a fine grid.
    fn worst(f: impl Fn(f32) -> f32, exact: impl Fn(f64) -> f64) -> f64 {
        (0..=200_000)
            .map(|i| -30.0 + 60.0 * i as f32 / 200_000.0)
            .chain((0..=20_000).map(|i| -1e-3 + 2e-3 * i as f32 / 20_000.0))
            .map(|x| (f(x) as f64 - exact(x as f64)).abs())
            .fold(0.0, f64::max)
    }

    #[test]
    fn tanh_and_precise_sigmoid_error() {
        let t = worst(super::tanh_f32, f64::tanh);
        let s = worst(super::sigmoid_precise_f32, |x| 1.0 / (1.0 + (-x).exp()));
        assert!(t < 1e-6 && s < 1e-6, "tanh {t:e}, sigmoid {s:e}");
        assert_eq!(super::tanh_f32(0.0), 0.0);
        assert_eq!(super::tanh_f32(50.0), 1.0);
        assert_eq!(super::tanh_f32(-50.0), -1.0);
        assert!(super::tanh_f32(f32::NAN).is_nan());
        for x in [0.1f32, 0.7, 3.0, 9.0] {
            assert_eq!(super::tanh_f32(-x), -super::tanh_f32(x));
        }
    }
}
