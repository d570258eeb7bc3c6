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
