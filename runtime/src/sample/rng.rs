//! A seeded PRNG and Gaussian noise, identical on every target.
//!
//! xoshiro128** (32-bit state words: cheap on a Cortex-M0+), seeded from a
//! u64 through SplitMix64. Gaussian numbers come from the Box-Muller
//! transform evaluated by [`crate::math`] (pure f32 arithmetic, so the host and
//! the board produce the same bits).

use crate::math;

/// The runtime's random number generator.
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u32; 4],
    spare: Option<f32>,
}

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        let a = next();
        let b = next();
        let mut s = [a as u32, (a >> 32) as u32, b as u32, (b >> 32) as u32];
        if s == [0; 4] {
            s[0] = 1;
        }
        Rng { s, spare: None }
    }

    /// Next 32 random bits.
    pub fn next_u32(&mut self) -> u32 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 9;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(11);
        result
    }

    /// Uniform in `[0, 1)` with 24 random bits.
    pub fn uniform(&mut self) -> f32 {
        (self.next_u32() >> 8) as f32 * (1.0 / 16_777_216.0)
    }

    /// Standard normal N(0, 1) by Box-Muller.
    pub fn gaussian(&mut self) -> f32 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        // u1 in (0, 1]: never ln(0).
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        let r = math::sqrt(-2.0 * math::ln(u1));
        let theta = core::f32::consts::TAU * u2;
        self.spare = Some(r * math::sin(theta));
        r * math::cos(theta)
    }

    /// Bernoulli draw with probability `p`: compares `p` against a uniform
    /// number, so the same stream gives the same pixels everywhere.
    pub fn bernoulli(&mut self, p: f32) -> bool {
        self.uniform() < p
    }

    /// Fills `out` with N(0, 1) numbers.
    pub fn fill_gaussian(&mut self, out: &mut [f32]) {
        for v in out {
            *v = self.gaussian();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_known_first_values() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        for _ in 0..100 {
            assert_eq!(a.next_u32(), b.next_u32());
        }
        assert_ne!(Rng::new(1).next_u32(), Rng::new(2).next_u32());
    }

    #[test]
    fn gaussian_moments() {
        let mut r = Rng::new(42);
        let n = 200_000;
        let (mut s, mut s2, mut s4) = (0f64, 0f64, 0f64);
        for _ in 0..n {
            let z = r.gaussian() as f64;
            assert!(z.is_finite());
            s += z;
            s2 += z * z;
            s4 += z * z * z * z;
        }
        let m = s / n as f64;
        let v = s2 / n as f64 - m * m;
        let k = s4 / n as f64;
        assert!(m.abs() < 0.01, "mean {m}");
        assert!((v - 1.0).abs() < 0.02, "variance {v}");
        assert!((k - 3.0).abs() < 0.1, "fourth moment {k}");
    }
}
