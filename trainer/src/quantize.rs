//! Post-training quantization to the runtime's full-integer int8 scheme
//! (TFLite-Micro style; see `docs/format.md`).
//!
//! - Weights: int8, symmetric, one scale per output channel
//!   (`s_w[c] = max|w_c| / 127`).
//! - Activations: int8 per tensor with a zero point, from the range seen on
//!   calibration inputs (always widened to contain 0, so that zero padding
//!   and ReLU are exact).
//! - Bias: i32 in units of `s_in * s_w[c]`.
//! - Requantization: the real factor `s_in * s_w[c] / s_out` as an integer
//!   multiplier in `[2^30, 2^31)` and a right shift, computed here so the
//!   board does only integer arithmetic.

/// Scale and zero point of an int8 tensor: `real = scale * (q - zero_point)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuantParams {
    /// Scale.
    pub scale: f32,
    /// Zero point.
    pub zero_point: i8,
}

/// Asymmetric int8 parameters covering `[lo, hi]` (widened to contain 0).
///
/// A range narrower than 1e-6 (a tensor that was always 0 on the calibration
/// set, e.g. a dead ReLU layer) gets the range [lo, lo + 1]: its values are
/// still exact, and the next layer's bias and multiplier stay representable.
pub fn range_params(lo: f32, hi: f32) -> QuantParams {
    let lo = lo.min(0.0) as f64;
    let hi = hi.max(0.0) as f64;
    let span = if hi - lo < 1e-6 { 1.0 } else { hi - lo };
    let scale = span / 255.0;
    let zp = (-128.0 - lo / scale).round().clamp(-128.0, 127.0);
    QuantParams {
        scale: scale as f32,
        zero_point: zp as i8,
    }
}

/// Quantizes `x` with `p` (round half away from zero, saturating), exactly as
/// the runtime quantizes its input.
pub fn quantize(x: f32, p: QuantParams) -> i8 {
    let v = x / p.scale;
    let r = if v >= 0.0 { v + 0.5 } else { v - 0.5 };
    (r as i32)
        .saturating_add(p.zero_point as i32)
        .clamp(-128, 127) as i8
}

/// A real multiplier `m` as `(q, shift)` with `m ≈ q * 2^-shift`, `q` in
/// `[2^30, 2^31)` and `shift` in `1..=62` (gemmlowp's
/// QuantizeMultiplier). Multipliers too small to represent become `(0, 62)`;
/// too large ones saturate.
pub fn quantize_multiplier(m: f64) -> (i32, u8) {
    if m <= 0.0 || !m.is_finite() {
        return (0, 62);
    }
    // m = f * 2^e with f in [0.5, 1).
    let mut e = m.log2().floor() as i32 + 1;
    let mut f = m / 2f64.powi(e);
    if f >= 1.0 {
        f /= 2.0;
        e += 1;
    } else if f < 0.5 {
        f *= 2.0;
        e -= 1;
    }
    let mut q = (f * (1u64 << 31) as f64).round() as i64;
    if q == 1i64 << 31 {
        q /= 2;
        e += 1;
    }
    let shift = 31 - e;
    if shift > 62 {
        // Below 2^-31: shift the multiplier itself down.
        let extra = shift - 62;
        if extra >= 31 {
            return (0, 62);
        }
        return ((q >> extra) as i32, 62);
    }
    if shift < 1 {
        return (i32::MAX, 1);
    }
    (q as i32, shift as u8)
}

/// Per-output-channel symmetric int8 weights.
///
/// `w` is laid out with `outer` blocks of `channels` blocks of `inner`
/// weights (dense and conv: outer = 1, channel first; transposed conv:
/// outer = in_c). Returns the int8 weights (as bytes) and each channel's
/// scale.
pub fn quantize_weights(
    w: &[f32],
    outer: usize,
    channels: usize,
    inner: usize,
) -> (Vec<u8>, Vec<f32>) {
    assert_eq!(w.len(), outer * channels * inner, "weight layout");
    let idx = |o: usize, c: usize, i: usize| (o * channels + c) * inner + i;
    let mut scales = vec![0f32; channels];
    for (c, s) in scales.iter_mut().enumerate() {
        let mut m = 0f32;
        for o in 0..outer {
            for i in 0..inner {
                m = m.max(w[idx(o, c, i)].abs());
            }
        }
        *s = if m > 0.0 { m / 127.0 } else { 1.0 };
    }
    let mut q = vec![0u8; w.len()];
    for o in 0..outer {
        for (c, &scale) in scales.iter().enumerate() {
            for i in 0..inner {
                let k = idx(o, c, i);
                q[k] = (w[k] / scale).round().clamp(-127.0, 127.0) as i8 as u8;
            }
        }
    }
    (q, scales)
}

/// Per-output-channel symmetric int8 weights for a blob of contiguous rows,
/// one per output channel, of the lengths `rows` (which may differ, as a
/// two-stack convolution's vertical and horizontal rows do). Rows of equal
/// length give exactly [`quantize_weights`]`(w, 1, rows.len(), len)`.
/// Returns the int8 weights (as bytes) and each row's scale.
pub fn quantize_weight_rows(w: &[f32], rows: &[usize]) -> (Vec<u8>, Vec<f32>) {
    assert_eq!(w.len(), rows.iter().sum::<usize>(), "weight layout");
    let mut q = Vec::with_capacity(w.len());
    let mut scales = Vec::with_capacity(rows.len());
    let mut rest = w;
    for &len in rows {
        let (row, tail) = rest.split_at(len);
        rest = tail;
        let (rq, s) = quantize_weights(row, 1, 1, len);
        q.extend_from_slice(&rq);
        scales.push(s[0]);
    }
    (q, scales)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiplier_round_trips() {
        for &m in &[1e-6, 0.0123, 0.25, 0.5, 0.75, 0.999_999_9, 1.0, 3.7, 1000.0] {
            let (q, s) = quantize_multiplier(m);
            assert!((1 << 30..=i32::MAX).contains(&q), "{m}: q {q}");
            assert!((1..=62).contains(&s), "{m}: shift {s}");
            let back = q as f64 / 2f64.powi(s as i32);
            assert!((back / m - 1.0).abs() < 1e-9, "{m} -> {back}");
        }
        assert_eq!(quantize_multiplier(0.0), (0, 62));
        assert_eq!(quantize_multiplier(1e-30), (0, 62));
    }

    #[test]
    fn multiplier_agrees_with_the_runtime_requantizer() {
        let (q, s) = quantize_multiplier(0.3);
        for acc in [-1000, -7, 0, 5, 333, 100_000] {
            let got = tinygen_runtime::kernels::requantize_i32_i8(acc, q, s, 0, -128, 127);
            let want = (acc as f64 * 0.3).round().clamp(-128.0, 127.0) as i8;
            assert!(
                (got as i32 - want as i32).abs() <= 1,
                "{acc}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn range_contains_zero_exactly() {
        let p = range_params(0.0, 6.0);
        assert_eq!(p.zero_point, -128);
        assert_eq!(quantize(0.0, p), -128);
        let p = range_params(-3.0, 5.0);
        let q0 = quantize(0.0, p);
        assert_eq!(q0, p.zero_point);
        assert!((p.scale * (quantize(5.0, p) as i32 - q0 as i32) as f32 - 5.0).abs() <= p.scale);
    }

    #[test]
    fn per_channel_weights() {
        // Transposed conv layout: 2 input channels x 2 output channels x 1.
        let w = [1.0, -0.5, -2.0, 0.25];
        let (q, s) = quantize_weights(&w, 2, 2, 1);
        assert_eq!(s, vec![2.0 / 127.0, 0.5 / 127.0]);
        let q: Vec<i8> = q.iter().map(|&b| b as i8).collect();
        assert_eq!(q, vec![64, -127, -127, 64]);
    }

    #[test]
    fn rows_of_two_lengths() {
        // A 3-weight row then two 2-weight rows.
        let w = [1.0, -0.5, 0.25, -2.0, 1.0, 0.0, 0.0];
        let (q, s) = quantize_weight_rows(&w, &[3, 2, 2]);
        assert_eq!(s, vec![1.0 / 127.0, 2.0 / 127.0, 1.0]);
        let q: Vec<i8> = q.iter().map(|&b| b as i8).collect();
        assert_eq!(q, vec![127, -64, 32, -127, 64, 0, 0]);
        // Equal rows: exactly the per-channel blocks.
        let w: Vec<f32> = (0..24)
            .map(|i| ((i * 37 % 11) as f32 - 5.0) / 3.0)
            .collect();
        assert_eq!(
            quantize_weight_rows(&w, &[6; 4]),
            quantize_weights(&w, 1, 4, 6)
        );
    }
}
