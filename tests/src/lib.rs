//! Shared oracles and tolerances for tinygen's cross-crate tests.
//!
//! - [`Approximation`]: the one tolerance table (tract's `Approximation`),
//!   checked by [`assert_close`]; [`assert_within`] takes a bound derived per
//!   element instead, for the comparisons whose error the test can bound
//!   exactly (f16 weights against f32 ones, int8 against a float oracle).
//! - Layout helpers between candle's NCHW tensors and the runtime's flat
//!   slices, written once here.
//! - Blob helpers: f32 / f16 / i32 / i8 slices as the little-endian byte
//!   blobs a `.tgm` file and the kernels read.
//! - [`pixelrnn`] (feature `oracles`): the f64 Row LSTM oracle, the int8
//!   Row LSTM tables and random tiny PixelRNN files.
//!
//! # Layouts
//!
//! The runtime keeps one sample at a time, so an activation is CHW, and a
//! candle tensor of shape `(1, C, H, W)` has exactly the runtime's element
//! order: [`chw`] and [`nchw`] only drop or add the batch dimension. The
//! weight layouts are candle's (and PyTorch's) too: dense `[out][in]`
//! (`candle_nn::Linear`'s weight, applied as `x · Wᵀ`), convolution
//! `[out_c][in_c][k][k]`, transposed convolution `[in_c][out_c][k][k]`. So
//! the helpers below never permute anything; they exist so that each test
//! says which layout it means, and so that a future layout change is made in
//! one place.

/// How close an actual result must be to an expected one.
///
/// | variant | compares | rule (per element i) |
/// | --- | --- | --- |
/// | `Exact` | int8 vs the int8 reference; anything bit-exact | `a_i == e_i` |
/// | `Close` | f32 kernels vs candle in f32 | `abs(a_i - e_i) <= 1e-5 + 1e-5 * max_j abs(e_j)` |
/// | `F16` | f16-weight kernels vs candle on the same (f16-rounded) weights | `abs(a_i - e_i) <= 1e-3 + 1e-3 * max_j abs(e_j)` |
/// | `QuantStep(n)` | int8 codes vs a float oracle expressed in output steps | `abs(a_i - e_i) <= n` |
///
/// **Why the relative part uses the largest expected magnitude.** Every
/// output of these kernels is a sum of products. Two f32 summations of the
/// same terms in different orders (the runtime's fixed order, candle's gemm)
/// differ by up to about `n · 2⁻²⁴ · Σ|terms|`: the error scales with the
/// magnitude of the *terms*, not of the *result*, so an element whose terms
/// cancel to nearly 0 has a large error relative to itself. Scaling `rtol` by
/// `max_j |e_j|` (a normwise relative error, as in backward-error analysis)
/// uses the tensor's typical term magnitude instead, which stays meaningful
/// when some outputs cancel. For the shapes the tests draw (at most 8 · 5 · 5
/// = 200 terms, random signs) the observed differences are below 1e-6 of
/// that scale, so `Close` keeps a margin of ten while any real indexing or
/// layout bug (an error of the order of a whole term) fails it.
///
/// `QuantStep(n)` takes both sides in units of the output's quantization step:
/// the actual int8 code `q`, and the float oracle mapped to code space,
/// `y / scale + zero_point` (clamped to the code range if the kernel clamps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Approximation {
    /// Bit-exact.
    Exact,
    /// f32 against candle: atol = rtol = 1e-5, normwise (see the type docs).
    Close,
    /// f16 storage: atol = rtol = 1e-3, normwise.
    F16,
    /// Within `n` output quantization steps.
    QuantStep(u32),
}

impl Approximation {
    /// Absolute and (normwise) relative tolerance.
    pub fn atol_rtol(self) -> (f64, f64) {
        match self {
            Approximation::Exact => (0.0, 0.0),
            Approximation::Close => (1e-5, 1e-5),
            Approximation::F16 => (1e-3, 1e-3),
            Approximation::QuantStep(n) => (n as f64, 0.0),
        }
    }

    /// The tolerance of every element of `expected`.
    pub fn tolerance<E: Copy + Into<f64>>(self, expected: &[E]) -> f64 {
        let (atol, rtol) = self.atol_rtol();
        let scale = expected.iter().map(|&e| e.into().abs()).fold(0.0, f64::max);
        atol + rtol * scale
    }
}

/// Asserts that `actual` matches `expected` within `approx`; `what` names the
/// comparison in the failure message. Non-finite values never match (except
/// for `Exact`, which compares bits of equal values).
///
/// # Panics
///
/// On a length mismatch or any element outside the tolerance.
#[track_caller]
pub fn assert_close<A, E>(actual: &[A], expected: &[E], approx: Approximation, what: &str)
where
    A: Copy + Into<f64>,
    E: Copy + Into<f64>,
{
    let tol = approx.tolerance(expected);
    let bound = vec![tol; expected.len()];
    check(
        actual,
        expected,
        &bound,
        &format!("{what} [{approx:?}, tol {tol:e}]"),
    );
}

/// Asserts `|actual[i] - expected[i]| <= bound[i]` for every i: for
/// comparisons whose error the test derives element by element.
///
/// # Panics
///
/// On a length mismatch or any element outside its bound.
#[track_caller]
pub fn assert_within<A, E>(actual: &[A], expected: &[E], bound: &[f64], what: &str)
where
    A: Copy + Into<f64>,
    E: Copy + Into<f64>,
{
    assert_eq!(bound.len(), expected.len(), "{what}: bound length");
    check(actual, expected, bound, &format!("{what} [derived bound]"));
}

#[track_caller]
fn check<A, E>(actual: &[A], expected: &[E], bound: &[f64], what: &str)
where
    A: Copy + Into<f64>,
    E: Copy + Into<f64>,
{
    assert_eq!(
        actual.len(),
        expected.len(),
        "{what}: actual has {} elements, expected {}",
        actual.len(),
        expected.len()
    );
    let mut bad = Vec::new();
    let mut worst = (0usize, 0.0f64);
    for (i, ((&a, &e), &b)) in actual.iter().zip(expected).zip(bound).enumerate() {
        let (a, e) = (a.into(), e.into());
        let d = (a - e).abs();
        // `!(d <= b)` is true for NaN too.
        let ok = a == e || d <= b;
        if !ok {
            bad.push((i, a, e, b));
        }
        if d.is_nan() || d > worst.1 {
            worst = (i, d);
        }
    }
    if !bad.is_empty() {
        let first: Vec<String> = bad
            .iter()
            .take(8)
            .map(|(i, a, e, b)| {
                format!(
                    "[{i}] actual {a:e} expected {e:e} (|diff| {:e} > {b:e})",
                    (a - e).abs()
                )
            })
            .collect();
        panic!(
            "{what}: {} of {} elements out of tolerance; worst at [{}] |diff| {:e}\n  {}",
            bad.len(),
            actual.len(),
            worst.0,
            worst.1,
            first.join("\n  ")
        );
    }
}

/// Largest `|actual[i] - expected[i] | / bound[i]`: how much of a derived
/// bound a comparison used (for reports and for checking a bound is tight).
pub fn bound_used<A, E>(actual: &[A], expected: &[E], bound: &[f64]) -> f64
where
    A: Copy + Into<f64>,
    E: Copy + Into<f64>,
{
    actual
        .iter()
        .zip(expected)
        .zip(bound)
        .map(|((&a, &e), &b)| (a.into() - e.into()).abs() / b)
        .fold(0.0, f64::max)
}

#[cfg(feature = "oracles")]
pub mod pixelrnn;

#[cfg(feature = "oracles")]
mod layout;
#[cfg(feature = "oracles")]
pub use layout::{
    add_channel_bias, chw, conv_t_weight, conv_weight, dense_weight, nchw, stack_conv2d,
    stack_row_lens, stack_weight_len, stack_weights,
};

// ---------------------------------------------------------------------------
// Blobs.

/// f32 values as a little-endian blob (`F32Le`, f32 biases).
pub fn f32_le(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[cfg(feature = "oracles")]
/// f32 values rounded to f16 (nearest, ties to even), as a little-endian blob
/// (`F16Le`).
pub fn f16_le(v: &[f32]) -> Vec<u8> {
    v.iter()
        .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
        .collect()
}

#[cfg(feature = "oracles")]
/// f32 values rounded to f16 and widened back: what `F16Le` reads from
/// [`f16_le`]'s blob.
pub fn f16_round(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect()
}

/// i32 values as a little-endian blob (int8 biases and multipliers).
pub fn i32_le(v: &[i32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// i8 values as the bytes of an int8 weight blob.
pub fn i8_bytes(v: &[i8]) -> Vec<u8> {
    v.iter().map(|&x| x as u8).collect()
}

/// An int8 weight blob read back as i8.
pub fn bytes_i8(v: &[u8]) -> Vec<i8> {
    v.iter().map(|&x| x as i8).collect()
}

/// A heap buffer of at least `bytes` bytes starting on a 4-byte boundary, as
/// the runtime's arenas must (safe code: a slightly larger `Vec<u8>` and the
/// offset of its first aligned byte).
#[derive(Debug, Clone)]
pub struct AlignedBuf {
    buf: Vec<u8>,
    len: usize,
}

impl AlignedBuf {
    /// Zeroed, exactly `bytes` long.
    pub fn new(bytes: usize) -> Self {
        AlignedBuf {
            buf: vec![0; bytes + 4],
            len: bytes,
        }
    }

    /// The bytes, 4-byte aligned.
    pub fn bytes(&mut self) -> &mut [u8] {
        let off = self.buf.as_ptr().align_offset(4);
        &mut self.buf[off..off + self.len]
    }

    /// The same bytes shifted by one: a misaligned arena.
    pub fn misaligned(&mut self) -> &mut [u8] {
        let off = self.buf.as_ptr().align_offset(4) + 1;
        &mut self.buf[off..off + self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_is_normwise() {
        // 1e-5 of the largest magnitude (100) is allowed on every element.
        assert_close(
            &[100.0f32, 5e-4],
            &[100.0f32, 0.0],
            Approximation::Close,
            "ok",
        );
        let r = std::panic::catch_unwind(|| {
            assert_close(
                &[100.0f32, 2e-3],
                &[100.0f32, 0.0],
                Approximation::Close,
                "bad",
            )
        });
        assert!(r.is_err());
    }

    #[test]
    fn nan_never_matches() {
        let r = std::panic::catch_unwind(|| {
            assert_close(&[f32::NAN], &[0.0f32], Approximation::F16, "nan")
        });
        assert!(r.is_err());
    }

    #[test]
    fn quant_steps_and_exact() {
        assert_close(
            &[3i8, -128],
            &[3.9f64, -127.1],
            Approximation::QuantStep(1),
            "ok",
        );
        let r = std::panic::catch_unwind(|| {
            assert_close(&[3i8], &[4.01f64], Approximation::QuantStep(1), "bad")
        });
        assert!(r.is_err());
        let r =
            std::panic::catch_unwind(|| assert_close(&[3i8], &[4i8], Approximation::Exact, "bad"));
        assert!(r.is_err());
    }

    #[cfg(feature = "oracles")]
    #[test]
    fn layouts_are_candles() {
        use candle_core::{Device, Tensor};
        let dev = Device::Cpu;
        // CHW order is NCHW order for one sample.
        let v: Vec<f32> = (0..24).map(|i| i as f32).collect();
        let t = nchw(&v, 2, 3, 4, &dev).unwrap();
        assert_eq!(
            t.get(0)
                .unwrap()
                .get(1)
                .unwrap()
                .get(2)
                .unwrap()
                .get(3)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap(),
            23.0
        );
        assert_eq!(
            chw(&t).unwrap(),
            v.iter().map(|&x| x as f64).collect::<Vec<_>>()
        );
        // Dense [out][in]: out 0 sees weights 0..3.
        let w = dense_weight(&[1f32, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3, &dev).unwrap();
        let x = Tensor::new(&[[1f32, 0.0, 0.0]], &dev).unwrap();
        assert_eq!(
            x.matmul(&w.t().unwrap()).unwrap().to_vec2::<f32>().unwrap(),
            vec![vec![1.0, 4.0]]
        );
        assert_eq!(i32_le(&[-2]), vec![0xfe, 0xff, 0xff, 0xff]);
        assert_eq!(f16_le(&[1.0]), vec![0x00, 0x3c]);
        let mut a = AlignedBuf::new(5);
        assert_eq!(a.bytes().len(), 5);
        assert_eq!(a.bytes().as_ptr() as usize % 4, 0);
    }
}
pub mod firmware;
