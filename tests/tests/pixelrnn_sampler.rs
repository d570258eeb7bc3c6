//! Random tiny PixelRNN files (masked convolutions and Row LSTMs, built by
//! `tinygen_tests::pixelrnn::random_pixelrnn`) in f32, f16 and int8:
//!
//! - the incremental sampler gives exactly the bytes of the naive one (a
//!   whole forward pass per pixel, through the same per-position kernels)
//!   for the same random stream, from arenas that start dirty, over several
//!   samples drawn from one stream (so the Row LSTM state of one sample
//!   must not leak into the next);
//! - its MACs per sample equal one forward pass, and the arena is the row
//!   caches plus one cell row per Row LSTM, exactly;
//! - the teacher-forced logits (`AutoregressiveSampler::logits`, what the
//!   exact NLL is computed from) of an f32 file match an f64 oracle built
//!   from `LstmParams::forward` and `masked_conv_f64`.
//!
//! (The MACs the kernels really execute, counted, are unit tests of
//! `tinygen_runtime::sample::autoregressive`.)

use tinygen_runtime::format::{self, Act, DType, Op};
use tinygen_runtime::{AutoregressiveSampler, Model, Rng};
use tinygen_tests::pixelrnn::{masked_conv_f64, random_pixelrnn, LstmParams, RnnShape};
use tinygen_tests::{assert_close, AlignedBuf, Approximation};

const SHAPES: [RnnShape; 4] = [
    // The trainer's network: 7x7 mask A, one Row LSTM, 1x1, 1x1.
    RnnShape {
        chans: 4,
        hidden: 3,
        k0: 7,
        lstm_first: false,
        lstms: 1,
        k_out: 1,
    },
    // Two Row LSTMs.
    RnnShape {
        chans: 3,
        hidden: 4,
        k0: 5,
        lstm_first: false,
        lstms: 2,
        k_out: 1,
    },
    // A Row LSTM first (mask A), then one more, then a 3x3 reading two rows
    // of the LSTM's output.
    RnnShape {
        chans: 3,
        hidden: 3,
        k0: 3,
        lstm_first: true,
        lstms: 1,
        k_out: 3,
    },
    // A 5x5 after the LSTM: its output keeps three rows.
    RnnShape {
        chans: 2,
        hidden: 5,
        k0: 3,
        lstm_first: false,
        lstms: 1,
        k_out: 5,
    },
];

fn incremental_equals_naive(file: &[u8], seed: u64, samples: usize, what: &str) {
    let model = Model::load(file).unwrap_or_else(|e| panic!("{what}: {e}"));
    let (inc, fwd) = (model.macs_per_sample(), model.forward_macs());
    assert_eq!(inc, fwd, "{what}: MACs per sample vs one forward pass");
    let mut arena = AlignedBuf::new(model.arena_bytes() as usize);
    let mut scratch = AlignedBuf::new(model.forward_arena_bytes() as usize);
    arena.bytes().fill(0xa5);
    scratch.bytes().fill(0x5a);
    let mut s = AutoregressiveSampler::new(&model, arena.bytes()).unwrap();
    let n = s.image_len();
    let (mut r1, mut r2) = (Rng::new(seed), Rng::new(seed));
    let mut ink = 0;
    for i in 0..samples {
        let (mut a, mut b) = (vec![1u8; n], vec![2u8; n]);
        s.sample(&mut r1, &mut a).unwrap();
        s.naive(&mut r2, &mut b, scratch.bytes()).unwrap();
        assert_eq!(a, b, "{what}: sample {i}: incremental and naive differ");
        assert!(a.iter().all(|&p| p == 0 || p == 255));
        ink += a.iter().filter(|&&p| p == 255).count();
    }
    // Both streams consumed one uniform per pixel.
    assert_eq!(r1.next_u32(), r2.next_u32(), "{what}: streams");
    // Both pixel values occur, or the comparison would be vacuous.
    assert!(
        (1..samples * n).contains(&ink),
        "{what}: {ink} ink pixels of {}",
        samples * n
    );
}

fn all_shapes(dtype: DType, seed: u64) {
    for (i, &shape) in SHAPES.iter().enumerate() {
        let seed = seed + i as u64;
        let f = random_pixelrnn(seed, dtype, 9, 8, shape);
        incremental_equals_naive(&f, seed, 3, &format!("{dtype:?} {shape:?}"));
    }
}

#[test]
fn f32_incremental_equals_naive() {
    all_shapes(DType::F32, 100);
    let big = RnnShape {
        chans: 8,
        hidden: 8,
        k0: 7,
        lstm_first: false,
        lstms: 2,
        k_out: 1,
    };
    incremental_equals_naive(
        &random_pixelrnn(7, DType::F32, 28, 28, big),
        7,
        1,
        "f32 28x28",
    );
}

#[test]
fn f16_incremental_equals_naive() {
    all_shapes(DType::F16, 200);
}

#[test]
fn int8_incremental_equals_naive() {
    all_shapes(DType::I8, 300);
    let big = RnnShape {
        chans: 8,
        hidden: 8,
        k0: 7,
        lstm_first: false,
        lstms: 2,
        k_out: 1,
    };
    incremental_equals_naive(
        &random_pixelrnn(8, DType::I8, 28, 28, big),
        8,
        1,
        "int8 28x28",
    );
}

/// The figures of the typical trainer network (C = 32, H = 32, one or two
/// Row LSTMs), worked out by hand: arena (row caches + cell rows) and MACs.
#[test]
fn typical_network_figures() {
    for lstms in [1usize, 2] {
        for dtype in [DType::F32, DType::I8] {
            let shape = RnnShape {
                chans: 32,
                hidden: 32,
                k0: 7,
                lstm_first: false,
                lstms,
                k_out: 1,
            };
            let bytes = random_pixelrnn(1, dtype, 28, 28, shape);
            let m = Model::load(&bytes).unwrap();
            let eb = dtype.act_bytes() as u32;
            // Row caches: input 4 rows (7x7), conv output 1 row x 32 (an
            // LSTM reads one row), each LSTM output 2 rows x 32, the 1x1's
            // output 1 row x 32, logits 1 row; cells: 32 x 28 x 4 bytes each.
            let rows = 4 + 32 + lstms as u32 * 2 * 32 + 32 + 1;
            let cells = lstms as u32 * 32 * 28 * 4;
            // int8: then the kernels' scratch, the largest layer's: an
            // LSTM's input and state columns, 32 x 3 values each, two per
            // word in groups of four.
            let scratch = if dtype == DType::I8 {
                2 * (32 * 3 / 2) * 4
            } else {
                0
            };
            assert_eq!(m.scratch_bytes(), scratch);
            assert_eq!(
                m.arena_bytes(),
                rows * 28 * eb + cells + scratch,
                "{lstms} {dtype:?}"
            );
            // Full forward: two whole 32x28x28 buffers and one cell row.
            assert_eq!(
                m.forward_arena_bytes(),
                2 * 32 * 28 * 28 * eb + 32 * 28 * 4 + scratch
            );
            // Per LSTM: 128 gate rows x (32 inputs x taps in the row (2 with
            // mask B k 3, 1 at column 0) + 32 states x taps in the previous
            // row (3, 2 at the borders; none on row 0)).
            let lstm = 128 * 32 * (28 * (2 * 27 + 1) + 27 * (3 * 26 + 2 * 2));
            // 7x7 mask A: taps (ky < 3, any kx) and (3, kx < 3), each read
            // at (28 - |ky - 3|) x (28 - |kx - 3|) positions:
            // (25 + 26 + 27) x 184 + 28 x (25 + 26 + 27) = 16536.
            let conv7 = 32 * 16_536;
            let conv1 = (32 * 32 + 32) * 784;
            assert_eq!(m.forward_macs(), lstms as u64 * lstm + conv7 + conv1);
            assert_eq!(m.macs_per_sample(), m.forward_macs());
            println!(
                "C=32 H=32, {lstms} Row LSTM(s), {}: arena {} B (forward pass {} B), {} MACs/sample, {} params",
                dtype.name(),
                m.arena_bytes(),
                m.forward_arena_bytes(),
                m.macs_per_sample(),
                m.params()
            );
        }
    }
}

/// f32 weights of a layer of a decoded file, widened to f64.
fn f64_blob(b: &[u8]) -> Vec<f64> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
        .collect()
}

/// Teacher-forced logits of an f32 PixelRNN against the f64 oracle.
#[test]
fn f32_logits_match_the_f64_oracle() {
    for (i, &shape) in SHAPES.iter().enumerate() {
        let bytes = random_pixelrnn(500 + i as u64, DType::F32, 9, 8, shape);
        let model = Model::load(&bytes).unwrap();
        let f = format::decode(&bytes).unwrap();
        let (h, w) = (9usize, 8usize);
        let image: Vec<u8> = (0..h * w)
            .map(|p| if (p * 7 + p / 5) % 3 == 0 { 255 } else { 0 })
            .collect();
        let mut x: Vec<f64> = image
            .iter()
            .map(|&p| f64::from(u8::from(p >= 128)))
            .collect();
        let mut c = 1;
        for l in &f.decoder.layers {
            let (wt, b) = (f64_blob(l.weight), f64_blob(l.bias));
            x = match l.op {
                Op::MaskedConv2d { in_c, k, mask, .. } => masked_conv_f64(
                    &x,
                    in_c as usize,
                    h,
                    w,
                    &wt,
                    &b,
                    k as usize,
                    mask,
                    l.act == Act::Relu,
                ),
                Op::RowLstm {
                    in_c,
                    hidden,
                    k_in,
                    mask,
                    k_state,
                } => {
                    let n_is = 4 * hidden as usize * in_c as usize * k_in as usize;
                    LstmParams {
                        in_c: in_c as usize,
                        hidden: hidden as usize,
                        k_in: k_in as usize,
                        mask,
                        k_state: k_state as usize,
                        w_is: wt[..n_is].to_vec(),
                        w_ss: wt[n_is..].to_vec(),
                        bias: b,
                    }
                    .forward(&x, h, w)
                }
                _ => unreachable!(),
            };
            c = x.len() / (h * w);
        }
        assert_eq!(c, 1);
        let mut arena = AlignedBuf::new(model.arena_bytes() as usize);
        let mut scratch = AlignedBuf::new(model.forward_arena_bytes() as usize);
        let s = AutoregressiveSampler::new(&model, arena.bytes()).unwrap();
        let mut got = vec![0f32; h * w];
        s.logits(&image, scratch.bytes(), &mut got).unwrap();
        // Close: the gates' sigmoid and tanh are within 1e-6 of exact (see
        // `kernels::tanh_f32`), far inside the f32 summation tolerance.
        assert_close(&got, &x, Approximation::Close, &format!("{shape:?}"));
    }
}
