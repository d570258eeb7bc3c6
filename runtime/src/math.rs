//! Transcendental math for every target, deterministic to the bit.
//!
//! micromath is the project's math library, and it is used where its
//! precision is enough: `exp` (relative error about 2.4e-3, measured below)
//! in the sigmoid, `sin`/`cos` (absolute error about 1.1e-3) in Box-Muller.
//! Two of its functions are too coarse for Gaussian noise, measured here:
//! `ln` (absolute error up to 0.12) and `sqrt` (relative error up to 6%) made
//! the variance of Box-Muller noise 1.12 instead of 1. So [`ln`] is computed
//! here from the float's exponent and an atanh series, and [`sqrt`] refines
//! micromath's estimate with two Newton steps. Everything is plain f32
//! arithmetic, so the host and the board get the same bits.
//!
//! micromath is always called through its trait (`F32Ext::exp(x)`), never as
//! `x.exp()`: with `std` linked (unit tests) the inherent `f32` method would
//! silently win.

use micromath::F32Ext;

/// e^x (micromath).
#[inline]
pub fn exp(x: f32) -> f32 {
    F32Ext::exp(x)
}

/// e^x to f32 precision (relative error below 1e-6, measured below), for
/// the Row LSTM's gates, where micromath's 2.4e-3 would compound over the
/// rows of the recurrence: `x = n ln 2 + r` with `|r| <= ln 2 / 2`
/// (Cody-Waite, `ln 2` split in two so that `n * LN2_HI` is exact), `e^r`
/// by its Taylor series to degree 7 (truncation below 6e-9), times `2^n`.
/// Plain f32 arithmetic, so every target gets the same bits. 0 below
/// -87.3 (no subnormals), infinity above 88.7, NaN for NaN.
pub fn exp_precise(x: f32) -> f32 {
    const LOG2_E: f32 = core::f32::consts::LOG2_E;
    const LN2_HI: f32 = 6.931_457_5e-1;
    const LN2_LO: f32 = 1.428_606_8e-6;
    if x.is_nan() {
        return x;
    }
    if x > 88.7 {
        return f32::INFINITY;
    }
    if x < -87.3 {
        return 0.0;
    }
    let v = x * LOG2_E;
    // Round half away from zero; |n| <= 128.
    let n = (if v >= 0.0 { v + 0.5 } else { v - 0.5 }) as i32;
    let nf = n as f32;
    let r = (x - nf * LN2_HI) - nf * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (1.0 / 2.0
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    // 2^n in two factors, each a normal f32 (|n / 2| <= 64).
    let n1 = n / 2;
    let n2 = n - n1;
    let pow2 = |k: i32| f32::from_bits(((k + 127) as u32) << 23);
    p * pow2(n1) * pow2(n2)
}

/// sin(x) (micromath).
#[inline]
pub fn sin(x: f32) -> f32 {
    F32Ext::sin(x)
}

/// cos(x) (micromath).
#[inline]
pub fn cos(x: f32) -> f32 {
    F32Ext::cos(x)
}

/// Square root: micromath's estimate and two Newton steps (relative error
/// below 2e-6 for positive normal inputs). 0 for 0, NaN for negatives.
#[inline]
pub fn sqrt(x: f32) -> f32 {
    if x <= 0.0 || x.is_nan() || x.is_infinite() {
        return if x == 0.0 { 0.0 } else { F32Ext::sqrt(x) };
    }
    let mut y = F32Ext::sqrt(x);
    y = 0.5 * (y + x / y);
    0.5 * (y + x / y)
}

/// Natural logarithm of a positive, finite, normal `x` (absolute error below
/// 1e-6): `x = m * 2^e` with `m` in `[sqrt(1/2), sqrt(2))`, then
/// `ln m = 2 atanh((m - 1) / (m + 1))` by its odd series.
pub fn ln(x: f32) -> f32 {
    if x.is_nan() || x <= 0.0 {
        return f32::NAN;
    }
    if x.is_infinite() {
        return x;
    }
    let bits = x.to_bits();
    let mut e = ((bits >> 23) & 0xff) as i32 - 127;
    let mut m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    if m > core::f32::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let series =
        s * (2.0 + s2 * (2.0 / 3.0 + s2 * (2.0 / 5.0 + s2 * (2.0 / 7.0 + s2 * (2.0 / 9.0)))));
    series + e as f32 * core::f32::consts::LN_2
}

#[cfg(test)]
mod tests {
    // Exact math here is std's f64.

    fn worst(
        f: impl Fn(f32) -> f32,
        exact: impl Fn(f64) -> f64,
        xs: impl Iterator<Item = f32>,
        rel: bool,
    ) -> f64 {
        xs.map(|x| {
            let e = exact(x as f64);
            let d = (f(x) as f64 - e).abs();
            if rel {
                d / e.abs()
            } else {
                d
            }
        })
        .fold(0.0, f64::max)
    }

    fn grid(lo: f32, hi: f32) -> impl Iterator<Item = f32> {
        (0..=100_000).map(move |i| lo + (hi - lo) * i as f32 / 100_000.0)
    }

    #[test]
    fn ln_error() {
        let e = worst(
            super::ln,
            f64::ln,
            grid(1e-7, 1.0).chain(grid(1.0, 1e6)),
            false,
        );
        assert!(e < 2e-6, "ln abs error {e}");
    }

    #[test]
    fn sqrt_error() {
        let e = worst(super::sqrt, f64::sqrt, grid(1e-6, 40.0), true);
        assert!(e < 2e-6, "sqrt rel error {e}");
        assert_eq!(super::sqrt(0.0), 0.0);
    }

    #[test]
    fn exp_precise_error() {
        let e = worst(super::exp_precise, f64::exp, grid(-87.0, 88.0), true);
        assert!(e < 1e-6, "exp_precise rel error {e}");
        let e = worst(super::exp_precise, f64::exp, grid(-1.0, 1.0), true);
        assert!(e < 1e-6, "exp_precise rel error near 0 {e}");
        assert_eq!(super::exp_precise(0.0), 1.0);
        assert_eq!(super::exp_precise(-100.0), 0.0);
        assert_eq!(super::exp_precise(100.0), f32::INFINITY);
        assert!(super::exp_precise(f32::NAN).is_nan());
    }

    #[test]
    fn micromath_exp_sin_cos_error() {
        let e = worst(super::exp, f64::exp, grid(-30.0, 30.0), true);
        assert!(e < 3e-3, "exp rel error {e}");
        let s = worst(super::sin, f64::sin, grid(0.0, 6.3), false);
        let c = worst(super::cos, f64::cos, grid(0.0, 6.3), false);
        assert!(s < 1.5e-3 && c < 1.5e-3, "sin {s} cos {c}");
    }

    #[test]
    fn micromath_ln_and_sqrt_are_too_coarse_for_noise() {
        // The reason this module exists; if micromath improves, simplify.
        use micromath::F32Ext;
        let l = worst(F32Ext::ln, f64::ln, grid(1e-3, 1.0), false);
        let s = worst(F32Ext::sqrt, f64::sqrt, grid(1e-3, 40.0), true);
        assert!(l > 1e-2 && s > 1e-2, "micromath ln {l}, sqrt {s}");
    }
}
