//! Reference kernels: the specification, one file per op. Layouts are CHW
//! for activations, `[out][in]` for dense weights, `[out_c][in_c][k][k]`
//! for convolution and `[in_c][out_c][k][k]` for transposed convolution.
//!
//! Summation order is fixed (bias first, then input channel, kernel row,
//! kernel column), so f32 results are bit-identical wherever IEEE f32 is.
//! The int8 kernels accumulate in wrapping i32 arithmetic, where every
//! order gives the same result: the optimized kernels
//! ([`super::fast`]) must equal these bit for bit, and the tests check it.

mod conv;
mod conv_transpose;
mod dense;
mod lstm;
mod masked;
mod stack;

pub(crate) use conv::conv_taps;
pub use conv::*;
pub(crate) use conv_transpose::conv_t_first;
pub use conv_transpose::*;
pub use dense::*;
#[cfg(test)]
pub(crate) use lstm::lstm_gate_runs;
pub use lstm::*;
pub(crate) use lstm::{lstm_taps, lstm_unit_f32, lstm_unit_i8};
pub(crate) use masked::masked_runs;
pub use masked::*;
pub use stack::*;
pub(crate) use stack::{stack_h_runs, stack_v_runs};

/// Counts the multiply-accumulates the masked convolution really does (unit
/// tests only: the sampler's MAC figures are checked against it).
#[cfg(test)]
pub(crate) mod mac_counter {
    use core::cell::Cell;
    std::thread_local! {
        static MACS: Cell<u64> = const { Cell::new(0) };
    }
    /// Adds `n` taps.
    pub(crate) fn add(n: usize) {
        MACS.with(|m| m.set(m.get() + n as u64));
    }
    /// Taps counted on this thread since the last call (and resets).
    pub(crate) fn take() -> u64 {
        MACS.with(|m| m.replace(0))
    }
}

#[inline(always)]
pub(crate) fn relu_if(v: f32, relu: bool) -> f32 {
    if relu && v < 0.0 {
        0.0
    } else {
        v
    }
}

#[inline(always)]
fn mac_i8(acc: i32, x: i8, zp: i32, w: u8) -> i32 {
    acc.wrapping_add((x as i32 - zp) * (w as i8) as i32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{requantize_i32_i8, ConvGeom, F32Le};

    fn le(v: &[f32]) -> [u8; 64] {
        let mut b = [0u8; 64];
        for (i, x) in v.iter().enumerate() {
            b[4 * i..4 * i + 4].copy_from_slice(&x.to_le_bytes());
        }
        b
    }

    #[test]
    fn dense_f32_small() {
        let w = le(&[1.0, 2.0, 3.0, -1.0, 0.5, 0.0]);
        let b = le(&[0.5, -10.0]);
        let mut out = [0.0f32; 2];
        dense_f32(&[1.0, 1.0, 2.0], F32Le(&w), &b, &mut out, false);
        assert_eq!(out, [9.5, -10.5]);
        dense_f32(&[1.0, 1.0, 2.0], F32Le(&w), &b, &mut out, true);
        assert_eq!(out, [9.5, 0.0]);
    }

    #[test]
    fn conv_transpose_one_pixel() {
        // One input pixel, stride 2, 2x2 kernel, no padding: output is the
        // kernel scaled by the pixel.
        let g = ConvGeom {
            in_c: 1,
            in_h: 1,
            in_w: 1,
            out_c: 1,
            out_h: 2,
            out_w: 2,
            k: 2,
            stride: 2,
            pad: 0,
        };
        let w = le(&[1.0, 2.0, 3.0, 4.0]);
        let b = le(&[0.0]);
        let mut out = [0.0f32; 4];
        conv_transpose2d_f32(&[2.0], &g, F32Le(&w), &b, &mut out, false);
        assert_eq!(out, [2.0, 4.0, 6.0, 8.0]);
    }

    #[test]
    fn requantize_rounds_and_clamps() {
        // m = 2^30, shift 31: multiply by 0.5.
        assert_eq!(requantize_i32_i8(5, 1 << 30, 31, 0, -128, 127), 3);
        assert_eq!(requantize_i32_i8(-5, 1 << 30, 31, 0, -128, 127), -2);
        assert_eq!(requantize_i32_i8(1000, 1 << 30, 31, 0, -128, 127), 127);
        assert_eq!(requantize_i32_i8(-1000, 1 << 30, 31, 3, 3, 127), 3);
    }

    /// The obvious scatter form of a transposed convolution, the spec the
    /// gather kernel must match. Small integer values keep f32 sums exact,
    /// so any summation order gives the same result.
    fn conv_t_scatter(x: &[f32], g: &ConvGeom, w: &[f32], out: &mut [f32]) {
        out.iter_mut().for_each(|v| *v = 0.0);
        for i in 0..g.in_c {
            for iy in 0..g.in_h {
                for ix in 0..g.in_w {
                    for o in 0..g.out_c {
                        for ky in 0..g.k {
                            for kx in 0..g.k {
                                let y = (iy * g.stride + ky) as isize - g.pad as isize;
                                let xx = (ix * g.stride + kx) as isize - g.pad as isize;
                                if y < 0
                                    || xx < 0
                                    || y >= g.out_h as isize
                                    || xx >= g.out_w as isize
                                {
                                    continue;
                                }
                                out[(o * g.out_h + y as usize) * g.out_w + xx as usize] += w
                                    [((i * g.out_c + o) * g.k + ky) * g.k + kx]
                                    * x[(i * g.in_h + iy) * g.in_w + ix];
                            }
                        }
                    }
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn conv_transpose_gather_equals_scatter(
            in_c in 1usize..4, out_c in 1usize..4, h in 1usize..7, w in 1usize..7,
            k in 1usize..6, stride in 1usize..4, pad in 0usize..3, out_pad in 0usize..3,
            seed in 0u64..1000,
        ) {
            let out_pad = out_pad % stride;
            let oh = (h as isize - 1) * stride as isize + k as isize + out_pad as isize - 2 * pad as isize;
            let ow = (w as isize - 1) * stride as isize + k as isize + out_pad as isize - 2 * pad as isize;
            proptest::prop_assume!(oh > 0 && ow > 0);
            let g = ConvGeom { in_c, in_h: h, in_w: w, out_c, out_h: oh as usize, out_w: ow as usize, k, stride, pad };
            let mut r = crate::Rng::new(seed);
            let mut small = || (r.next_u32() % 7) as f32 - 3.0;
            let x: std::vec::Vec<f32> = (0..in_c * h * w).map(|_| small()).collect();
            let wt: std::vec::Vec<f32> = (0..in_c * out_c * k * k).map(|_| small()).collect();
            let wb: std::vec::Vec<u8> = wt.iter().flat_map(|v| v.to_le_bytes()).collect();
            let bias = std::vec![0u8; 4 * out_c];
            let n = out_c * g.out_h * g.out_w;
            let mut want = std::vec![0f32; n];
            let mut got = std::vec![0f32; n];
            conv_t_scatter(&x, &g, &wt, &mut want);
            conv_transpose2d_f32(&x, &g, F32Le(&wb), &bias, &mut got, false);
            proptest::prop_assert_eq!(got, want);
        }
    }
}
