//! Optimized == reference, bit for bit, on random shapes and values, for
//! both engines (the DSP engine's arithmetic emulated on the host), full
//! tensors and the incremental sampler's per-pixel and per-row paths over
//! ring buffers.

use super::engine::{Dsp, Portable};
use super::*;
use crate::kernels::reference as r;
use crate::Rng;
use proptest::prelude::*;
use std::vec::Vec;

/// Owned requantization data.
struct Q {
    in_zp: i32,
    out_zp: i32,
    mult: Vec<u8>,
    shift: Vec<u8>,
    relu: bool,
}

impl Q {
    fn new(rng: &mut Rng, channels: usize, sum_scale: u32) -> Q {
        let in_zp = (rng.next_u32() % 256) as i32 - 128;
        let out_zp = (rng.next_u32() % 256) as i32 - 128;
        let mut mult = Vec::new();
        let mut shift = Vec::new();
        for _ in 0..channels {
            // Scales around 1 / sum_scale: outputs spread over the range.
            let m = (1u32 << 30) + rng.next_u32() % (1 << 30);
            mult.extend_from_slice(&(m as i32).to_le_bytes());
            shift.push((31 + sum_scale.max(1).ilog2() + rng.next_u32() % 3) as u8);
        }
        Q {
            in_zp,
            out_zp,
            mult,
            shift,
            relu: rng.next_u32().is_multiple_of(2),
        }
    }
    fn rq(&self) -> RequantI8<'_> {
        RequantI8 {
            in_zp: self.in_zp,
            out_zp: self.out_zp,
            multiplier: &self.mult,
            shift: &self.shift,
            min: if self.relu { self.out_zp } else { -128 },
            max: 127,
        }
    }
}

fn bytes(rng: &mut Rng, n: usize) -> Vec<u8> {
    (0..n).map(|_| rng.next_u32() as u8).collect()
}
fn acts(rng: &mut Rng, n: usize) -> Vec<i8> {
    (0..n).map(|_| rng.next_u32() as i8).collect()
}
fn bias(rng: &mut Rng, n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|_| ((rng.next_u32() % 20001) as i32 - 10000).to_le_bytes())
        .collect()
}
/// Scratch words, dirty (a board's arena need not be zeroed).
fn scratch(words: usize) -> Vec<u32> {
    std::vec![0xa5a5_5a5au32; words]
}

/// Runs `f` with each engine; each result must equal `want`.
fn both<T: PartialEq + core::fmt::Debug>(want: &T, mut f: impl FnMut(bool) -> T) {
    assert_eq!(&f(true), want, "DSP engine (emulated)");
    assert_eq!(&f(false), want, "portable engine");
}

/// A convolution (`transposed`: a transposed one) with both engines equals
/// the reference on random values.
fn check_conv_kind(g: &ConvGeom, seed: u64, transposed: bool) {
    let mut rng = Rng::new(seed);
    let x = acts(&mut rng, g.in_c * g.in_h * g.in_w);
    let wt = bytes(&mut rng, g.out_c * g.in_c * g.k * g.k);
    let b = bias(&mut rng, g.out_c);
    // Taps per output: all k x k, or about (k / s)^2 of them transposed.
    let taps = if transposed { 4 } else { g.k * g.k };
    let q = Q::new(&mut rng, g.out_c, (g.in_c * taps * 64) as u32);
    let n = g.out_c * g.out_h * g.out_w;
    let mut want = std::vec![0i8; n];
    if transposed {
        r::conv_transpose2d_i8(&x, g, &wt, &b, &q.rq(), &mut want);
    } else {
        r::conv2d_i8(&x, g, &wt, &b, &q.rq(), &mut want);
    }
    both(&want, |dsp| {
        let mut got = std::vec![0i8; n];
        let words = if transposed {
            conv_transpose2d_scratch_words(g)
        } else {
            conv2d_scratch_words(g)
        };
        let mut s = scratch(words as usize);
        let (x, wt, q, out) = (&x[..], &wt[..], &q.rq(), &mut got[..]);
        match (transposed, dsp) {
            (false, true) => conv2d_i8_with::<Dsp>(x, g, wt, &b, q, out, &mut s),
            (false, false) => conv2d_i8_with::<Portable>(x, g, wt, &b, q, out, &mut s),
            (true, true) => conv_transpose2d_i8_with::<Dsp>(x, g, wt, &b, q, out, &mut s),
            (true, false) => conv_transpose2d_i8_with::<Portable>(x, g, wt, &b, q, out, &mut s),
        }
        got
    });
}

fn check_conv(g: &ConvGeom, seed: u64) {
    check_conv_kind(g, seed, false)
}

fn check_conv_transpose(g: &ConvGeom, seed: u64) {
    check_conv_kind(g, seed, true)
}

/// A square geometry.
const fn square(
    in_c: usize,
    hw: usize,
    out_c: usize,
    out_hw: usize,
    k: usize,
    stride: usize,
    pad: usize,
) -> ConvGeom {
    ConvGeom {
        in_c,
        in_h: hw,
        in_w: hw,
        out_c,
        out_h: out_hw,
        out_w: out_hw,
        k,
        stride,
        pad,
    }
}

/// Each path of the convolutions on the shapes that take it: conv2d's
/// window (a multiple of four channels, room to spare) and columns (one
/// channel, or weights bigger than the activations), the transposed
/// convolution's window shared by the phases of a row (the VAE's last
/// layer), one phase per window (the GAN's 64 -> 32), and columns.
#[test]
fn convolution_paths() {
    let window = square(16, 14, 16, 14, 3, 1, 1);
    assert!(conv2d_window_words(&window).is_some());
    check_conv(&window, 1);
    let big_weights = square(32, 14, 64, 7, 4, 2, 1);
    assert!(conv2d_window_words(&big_weights).is_none());
    check_conv(&big_weights, 2);
    check_conv(&square(1, 28, 8, 28, 7, 1, 3), 3);

    let shared = square(16, 14, 1, 28, 4, 2, 1);
    assert_eq!(conv_t_window_words(&shared).0, 2);
    check_conv_transpose(&shared, 4);
    let single = square(64, 7, 32, 14, 4, 2, 1);
    assert_eq!(conv_t_window_words(&single).0, 1);
    check_conv_transpose(&single, 5);
    check_conv_transpose(&square(3, 7, 5, 14, 4, 2, 1), 6);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn dense(n in 1usize..70, out in 1usize..11, seed in 0u64..10_000) {
        let mut g = Rng::new(seed);
        let (x, w, b) = (acts(&mut g, n), bytes(&mut g, n * out), bias(&mut g, out));
        let q = Q::new(&mut g, out, (n * 64) as u32);
        let mut want = std::vec![0i8; out];
        r::dense_i8(&x, &w, &b, &q.rq(), &mut want);
        both(&want, |dsp| {
            let mut got = std::vec![0i8; out];
            let mut s = scratch(dense_scratch_words(n as u64) as usize);
            if dsp {
                dense_i8_with::<Dsp>(&x, &w, &b, &q.rq(), &mut got, &mut s);
            } else {
                dense_i8_with::<Portable>(&x, &w, &b, &q.rq(), &mut got, &mut s);
            }
            got
        });
    }

    /// Fewer than eight inputs (a 2-D latent's first layer): the short
    /// path, many outputs.
    #[test]
    fn dense_short(n in 1usize..8, out in 1usize..80, seed in 0u64..10_000) {
        let mut g = Rng::new(seed);
        let (x, w, b) = (acts(&mut g, n), bytes(&mut g, n * out), bias(&mut g, out));
        let q = Q::new(&mut g, out, (n * 64) as u32);
        let mut want = std::vec![0i8; out];
        r::dense_i8(&x, &w, &b, &q.rq(), &mut want);
        both(&want, |dsp| {
            let mut got = std::vec![0i8; out];
            let mut s = scratch(dense_scratch_words(n as u64) as usize);
            if dsp {
                dense_i8_with::<Dsp>(&x, &w, &b, &q.rq(), &mut got, &mut s);
            } else {
                dense_i8_with::<Portable>(&x, &w, &b, &q.rq(), &mut got, &mut s);
            }
            got
        });
    }

    #[test]
    fn conv(
        in_c in 1usize..10, out_c in 1usize..7, h in 1usize..9, w in 1usize..9,
        k in 1usize..6, stride in 1usize..4, pad in 0usize..3, seed in 0u64..10_000,
    ) {
        prop_assume!(h + 2 * pad >= k && w + 2 * pad >= k);
        let g = ConvGeom {
            in_c, in_h: h, in_w: w, out_c,
            out_h: (h + 2 * pad - k) / stride + 1, out_w: (w + 2 * pad - k) / stride + 1,
            k, stride, pad,
        };
        check_conv(&g, seed);
    }

    #[test]
    fn conv_transpose(
        in_c in 1usize..10, out_c in 1usize..6, h in 1usize..7, w in 1usize..7,
        k in 1usize..6, stride in 1usize..4, pad in 0usize..3, out_pad in 0usize..3,
        seed in 0u64..10_000,
    ) {
        let out_pad = out_pad % stride;
        let oh = (h as isize - 1) * stride as isize + k as isize + out_pad as isize - 2 * pad as isize;
        let ow = (w as isize - 1) * stride as isize + k as isize + out_pad as isize - 2 * pad as isize;
        prop_assume!(oh > 0 && ow > 0);
        let g = ConvGeom {
            in_c, in_h: h, in_w: w, out_c, out_h: oh as usize, out_w: ow as usize, k, stride, pad,
        };
        check_conv_transpose(&g, seed);
    }

    /// Every position of a masked convolution over ring buffers of
    /// `in_rows` and `out_rows` rows (whole tensors when they equal `h`).
    #[test]
    fn masked(
        in_c in 1usize..5, out_c in 1usize..8, h in 1usize..8, w in 1usize..8,
        kh in 0usize..4, mask_b: bool, ring: bool, seed in 0u64..10_000,
    ) {
        let k = 2 * kh + 1;
        let (in_rows, out_rows) = if ring { ((k / 2 + 1).min(h), 1) } else { (h, h) };
        let g = MaskedGeom { in_c, out_c, h, w, k, mask_b, in_rows, out_rows };
        let mut rng = Rng::new(seed);
        let x = acts(&mut rng, in_c * in_rows * w);
        let wt = bytes(&mut rng, out_c * in_c * k * k);
        let b = bias(&mut rng, out_c);
        let q = Q::new(&mut rng, out_c, (in_c * k * k * 32) as u32);
        let n = out_c * out_rows * w;
        let (y, xp) = ((seed as usize / 7) % h, (seed as usize / 3) % w);
        // The ring buffers hold rows y - in_rows + 1 ..= y.
        let mut want = std::vec![0i8; n];
        r::masked_conv2d_at_i8(&x, &g, &wt, &b, &q.rq(), &mut want, y, xp);
        both(&want, |dsp| {
            let mut got = std::vec![0i8; n];
            let mut s = scratch(masked_scratch_words(&g) as usize);
            if dsp {
                masked_conv2d_at_i8_with::<Dsp>(&x, &g, &wt, &b, &q.rq(), &mut got, y, xp, &mut s);
            } else {
                masked_conv2d_at_i8_with::<Portable>(&x, &g, &wt, &b, &q.rq(), &mut got, y, xp, &mut s);
            }
            got
        });
        if !ring {
            let mut want = std::vec![0i8; n];
            r::masked_conv2d_i8(&x, &g, &wt, &b, &q.rq(), &mut want);
            let mut got = std::vec![0i8; n];
            let mut s = scratch(masked_scratch_words(&g) as usize);
            masked_conv2d_i8(&x, &g, &wt, &b, &q.rq(), &mut got, &mut s);
            prop_assert_eq!(got, want);
        }
    }

    /// The two-stack convolution: whole tensors, and the horizontal
    /// outputs of one pixel and the vertical outputs of one row over ring
    /// buffers.
    #[test]
    fn stack(
        in_c in 1usize..6, in_v in 0usize..4, out_c in 1usize..8, out_v in 0usize..8,
        h in 1usize..8, w in 1usize..8, kh in 0usize..4, mask_b: bool, ring: bool,
        seed in 0u64..10_000,
    ) {
        let in_v = in_v.min(in_c - 1);
        let out_v = out_v.min(out_c);
        let k = 2 * kh + 1;
        let (in_rows, out_rows) = if ring { ((k / 2 + 1).max(2).min(h), 1) } else { (h, h) };
        let g = StackGeom { in_c, in_v, out_c, out_v, h, w, k, mask_b, in_rows, out_rows };
        let mut rng = Rng::new(seed);
        let x = acts(&mut rng, in_c * in_rows * w);
        let wt = bytes(&mut rng, g.weight_len());
        let b = bias(&mut rng, out_c);
        let q = Q::new(&mut rng, out_c, (g.v_row_len().max(g.h_row_len()) * 32) as u32);
        let n = out_c * out_rows * w;
        let (y, xp) = ((seed as usize / 7) % h, (seed as usize / 3) % w);
        let mut want = std::vec![0i8; n];
        r::stack_conv2d_h_at_i8(&x, &g, &wt, &b, &q.rq(), &mut want, y, xp);
        r::stack_conv2d_v_row_i8(&x, &g, &wt, &b, &q.rq(), &mut want, y);
        both(&want, |dsp| {
            let mut got = std::vec![0i8; n];
            let mut s = scratch(stack_scratch_words(&g) as usize);
            if dsp {
                stack_conv2d_h_at_i8_with::<Dsp>(&x, &g, &wt, &b, &q.rq(), &mut got, y, xp, &mut s);
                stack_conv2d_v_row_i8_with::<Dsp>(&x, &g, &wt, &b, &q.rq(), &mut got, y, &mut s);
            } else {
                stack_conv2d_h_at_i8_with::<Portable>(&x, &g, &wt, &b, &q.rq(), &mut got, y, xp, &mut s);
                stack_conv2d_v_row_i8_with::<Portable>(&x, &g, &wt, &b, &q.rq(), &mut got, y, &mut s);
            }
            got
        });
        if !ring {
            let mut want = std::vec![0i8; n];
            r::stack_conv2d_i8(&x, &g, &wt, &b, &q.rq(), &mut want);
            let mut got = std::vec![0i8; n];
            let mut s = scratch(stack_scratch_words(&g) as usize);
            stack_conv2d_i8(&x, &g, &wt, &b, &q.rq(), &mut got, &mut s);
            prop_assert_eq!(got, want);
        }
    }

    /// The Row LSTM over a whole image (hidden states and cell row), with
    /// random tables.
    #[test]
    fn row_lstm(
        in_c in 1usize..5, hidden in 1usize..6, h in 1usize..6, w in 1usize..8,
        ki in 0usize..3, ks in 0usize..3, mask_b: bool, dsp: bool, seed in 0u64..10_000,
    ) {
        let g = LstmGeom {
            in_c, hidden, h, w, k_in: 2 * ki + 1, mask_b, k_state: 2 * ks + 1,
            in_rows: h, out_rows: h,
        };
        let mut rng = Rng::new(seed);
        let x = acts(&mut rng, in_c * h * w);
        let wt = bytes(&mut rng, g.w_is_len() + g.w_ss_len() + 1024);
        let b = bias(&mut rng, 4 * hidden);
        let q = Q::new(&mut rng, 8 * hidden, (in_c * 3 * 32) as u32);
        let n = hidden * h * w;
        let mut want = (std::vec![0i8; n], std::vec![0i32; hidden * w]);
        r::row_lstm_i8(&x, &g, &wt, &b, &q.rq(), &mut want.0, &mut want.1);
        let mut got = (std::vec![0i8; n], std::vec![0i32; hidden * w]);
        let mut s = scratch(lstm_scratch_words(&g) as usize);
        for y in 0..h {
            for xp in 0..w {
                if dsp {
                    row_lstm_at_i8_with::<Dsp>(&x, &g, &wt, &b, &q.rq(), &mut got.0, &mut got.1, y, xp, &mut s);
                } else {
                    row_lstm_at_i8_with::<Portable>(&x, &g, &wt, &b, &q.rq(), &mut got.0, &mut got.1, y, xp, &mut s);
                }
            }
        }
        prop_assert_eq!(got, want);
    }
}

/// The outputs are not all clamped (or the comparisons above would be
/// weak): a dense layer of typical size spreads over the int8 range.
#[test]
fn random_requantization_spreads_outputs() {
    let mut g = Rng::new(5);
    let (n, out) = (64, 64);
    let (x, w, b) = (acts(&mut g, n), bytes(&mut g, n * out), bias(&mut g, out));
    let mut q = Q::new(&mut g, out, (n * 64) as u32);
    q.relu = false;
    let mut y = std::vec![0i8; out];
    r::dense_i8(&x, &w, &b, &q.rq(), &mut y);
    let distinct = y.iter().collect::<std::collections::BTreeSet<_>>().len();
    let clamped = y.iter().filter(|&&v| v == 127 || v == -128).count();
    assert!(distinct > 20 && clamped < out / 4, "{y:?}");
}

/// Random f32 values in [-2, 2) (and a few exact zeros), little-endian.
fn f32s(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let u = rng.next_u32();
            if u.is_multiple_of(17) {
                0.0
            } else {
                (u >> 8) as f32 / (1u32 << 22) as f32 - 2.0
            }
        })
        .collect()
}
fn le32(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
/// The same values as f16 bits (weights of an f16 file).
fn le16(v: &[f32]) -> Vec<u8> {
    v.iter()
        .flat_map(|&x| half::f16::from_f32(x).to_bits().to_le_bytes())
        .collect()
}
fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Runs a kernel with the weights `$wv` as f32 and as f16 into `$n`
/// outputs: the blocked kernel (`$fast`) must give the reference's bits.
macro_rules! f32_case {
    ($wv:expr, $n:expr, |$w:ident, $out:ident| $reference:expr, $fast:expr) => {{
        let b32 = le32(&$wv);
        let b16 = le16(&$wv);
        {
            let $w = crate::kernels::F32Le(&b32);
            let mut want = std::vec![0.5f32; $n];
            let mut got = std::vec![0.5f32; $n];
            {
                let $out = &mut want[..];
                $reference;
            }
            {
                let $out = &mut got[..];
                $fast;
            }
            prop_assert_eq!(bits(&got), bits(&want), "f32 weights");
        }
        {
            let $w = crate::kernels::F16Le(&b16);
            let mut want = std::vec![0.5f32; $n];
            let mut got = std::vec![0.5f32; $n];
            {
                let $out = &mut want[..];
                $reference;
            }
            {
                let $out = &mut got[..];
                $fast;
            }
            prop_assert_eq!(bits(&got), bits(&want), "f16 weights");
        }
    }};
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn float_dense_conv_conv_t(
        in_c in 1usize..5, out_c in 1usize..10, h in 1usize..7, w in 1usize..14,
        k in 1usize..5, stride in 1usize..3, pad in 0usize..2, relu: bool, seed in 0u64..10_000,
    ) {
        use super::float as f;
        let mut rng = Rng::new(seed);
        let x = f32s(&mut rng, in_c * h * w);
        let b = le32(&f32s(&mut rng, out_c));
        let n = in_c * h * w;
        let wd = f32s(&mut rng, n * out_c);
        f32_case!(wd, out_c, |wt, out| r::dense_f32(&x, wt, &b, out, relu), f::dense_f32(&x, wt, &b, out, relu));
        if h + 2 * pad >= k && w + 2 * pad >= k {
            let g = ConvGeom {
                in_c, in_h: h, in_w: w, out_c,
                out_h: (h + 2 * pad - k) / stride + 1, out_w: (w + 2 * pad - k) / stride + 1,
                k, stride, pad,
            };
            let wc = f32s(&mut rng, out_c * in_c * k * k);
            let m = out_c * g.out_h * g.out_w;
            f32_case!(wc, m, |wt, out| r::conv2d_f32(&x, &g, wt, &b, out, relu), f::conv2d_f32(&x, &g, wt, &b, out, relu));
        }
        let (oh, ow) = ((h - 1) * stride + k, (w - 1) * stride + k);
        if oh > 2 * pad && ow > 2 * pad {
            let g = ConvGeom {
                in_c, in_h: h, in_w: w, out_c, out_h: oh - 2 * pad, out_w: ow - 2 * pad,
                k, stride, pad,
            };
            {
                let wc = f32s(&mut rng, out_c * in_c * k * k);
                let m = out_c * g.out_h * g.out_w;
                f32_case!(wc, m, |wt, out| r::conv_transpose2d_f32(&x, &g, wt, &b, out, relu), f::conv_transpose2d_f32(&x, &g, wt, &b, out, relu));
            }
        }
    }

    #[test]
    fn float_masked_stack_lstm(
        in_c in 1usize..5, in_v in 0usize..3, out_c in 1usize..10, out_v in 0usize..10,
        h in 1usize..6, w in 1usize..14, kh in 0usize..3, mask_b: bool, relu: bool,
        hidden in 1usize..6, ring: bool, seed in 0u64..10_000,
    ) {
        use super::float as f;
        let k = 2 * kh + 1;
        let mut rng = Rng::new(seed);
        let (y, xp) = ((seed as usize / 7) % h, (seed as usize / 3) % w);
        // Masked, one position over ring buffers or whole tensors.
        let (in_rows, out_rows) = if ring { ((k / 2 + 1).min(h), 1) } else { (h, h) };
        let g = MaskedGeom { in_c, out_c, h, w, k, mask_b, in_rows, out_rows };
        let x = f32s(&mut rng, in_c * h * w);
        let b = le32(&f32s(&mut rng, 4 * hidden.max(out_c)));
        let wm = f32s(&mut rng, out_c * in_c * k * k);
        let m = out_c * h * w;
        f32_case!(wm, m, |wt, out| r::masked_conv2d_at_f32(&x, &g, wt, &b, out, relu, y, xp), f::masked_conv2d_at_f32(&x, &g, wt, &b, out, relu, y, xp));
        // Two stacks, one pixel's horizontal and one row's vertical outputs.
        let in_v = in_v.min(in_c - 1);
        let out_v = out_v.min(out_c);
        let (in_rows, out_rows) = if ring { ((k / 2 + 1).max(2).min(h), 1) } else { (h, h) };
        let g = StackGeom { in_c, in_v, out_c, out_v, h, w, k, mask_b, in_rows, out_rows };
        let ws = f32s(&mut rng, g.weight_len());
        f32_case!(ws, m, |wt, out| {
            r::stack_conv2d_h_at_f32(&x, &g, wt, &b, out, relu, y, xp);
            r::stack_conv2d_v_row_f32(&x, &g, wt, &b, out, relu, y)
        }, {
            f::stack_conv2d_h_at_f32(&x, &g, wt, &b, out, relu, y, xp);
            f::stack_conv2d_v_row_f32(&x, &g, wt, &b, out, relu, y)
        });
        // Row LSTM over the whole image (hidden states; cell rows compared
        // through the states they produce).
        let g = LstmGeom { in_c, hidden, h, w, k_in: k, mask_b, k_state: 2 * (kh % 2) + 1, in_rows: h, out_rows: h };
        let wl = f32s(&mut rng, g.w_is_len() + g.w_ss_len());
        let n = hidden * h * w;
        f32_case!(wl, n, |wt, out| {
            let mut cell = std::vec![0f32; hidden * w];
            r::row_lstm_f32(&x, &g, wt, &b, out, &mut cell)
        }, {
            let mut cell = std::vec![0f32; hidden * w];
            f::row_lstm_f32(&x, &g, wt, &b, out, &mut cell)
        });
    }
}

/// The f32 transposed convolution on the shipped models' shapes (where
/// its pixel blocks of eight, six, four and two and its edge pixels all
/// run), f32 and f16 weights, with and without the ReLU.
#[test]
fn float_conv_transpose_shipped_shapes() {
    use super::float as f;
    let shapes = [
        square(64, 7, 32, 14, 4, 2, 1),
        square(32, 7, 16, 14, 4, 2, 1),
        square(16, 14, 1, 28, 4, 2, 1),
    ];
    let check = || -> Result<(), TestCaseError> {
        for (i, g) in shapes.iter().enumerate() {
            let mut rng = Rng::new(i as u64);
            let x = f32s(&mut rng, g.in_c * g.in_h * g.in_w);
            let b = le32(&f32s(&mut rng, g.out_c));
            let wc = f32s(&mut rng, g.out_c * g.in_c * g.k * g.k);
            let m = g.out_c * g.out_h * g.out_w;
            for relu in [false, true] {
                f32_case!(
                    wc,
                    m,
                    |wt, out| r::conv_transpose2d_f32(&x, g, wt, &b, out, relu),
                    f::conv_transpose2d_f32(&x, g, wt, &b, out, relu)
                );
            }
        }
        Ok(())
    };
    check().unwrap();
}

/// The f32 1x1 masked convolution (four rows at a time through the Row
/// LSTM's tap loop, then one by one) on the shipped output layers' shapes
/// and a remainder of three, over ring buffers, at edge and interior
/// pixels; mask A (no taps: the bias) too.
#[test]
fn float_masked_1x1_shipped_shapes() {
    use super::float as f;
    let check = || -> Result<(), TestCaseError> {
        for (i, (in_c, out_c)) in [(48, 32), (32, 1), (5, 7)].into_iter().enumerate() {
            for mask_b in [true, false] {
                let (h, w) = (28, 28);
                let g = MaskedGeom {
                    in_c,
                    out_c,
                    h,
                    w,
                    k: 1,
                    mask_b,
                    in_rows: 1,
                    out_rows: 1,
                };
                let mut rng = Rng::new(i as u64);
                let x = f32s(&mut rng, in_c * w);
                let b = le32(&f32s(&mut rng, out_c));
                let wm = f32s(&mut rng, out_c * in_c);
                for (y, xp) in [(0, 0), (5, 27), (27, 13)] {
                    for relu in [false, true] {
                        f32_case!(
                            wm,
                            out_c * w,
                            |wt, out| r::masked_conv2d_at_f32(&x, &g, wt, &b, out, relu, y, xp),
                            f::masked_conv2d_at_f32(&x, &g, wt, &b, out, relu, y, xp)
                        );
                    }
                }
            }
        }
        Ok(())
    };
    check().unwrap();
}
