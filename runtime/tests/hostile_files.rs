//! Hostile files on any target width: `cargo xtask test` runs this (and the
//! runtime's unit tests) on the host and again on `i686-unknown-linux-gnu`,
//! with a 32-bit `usize` and overflow checks on, as the boards have.
//!
//! Every malformed file must give a typed [`Error`] from [`Model::load`],
//! never a panic, and whatever loads must sample without panicking. The
//! files: the hand-built fixtures of `tests/fixtures/` (VAE decoders in f32
//! and int8, PixelCNN, PixelRNN in f32 and int8, a two-stack PixelCNN)
//! truncated, mutated with their CRC repaired, and crafted for the classes
//! of defect that only a 32-bit `usize` shows: sizes that wrap it, and
//! geometries whose counting once took time proportional to the image.

// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::panic::{catch_unwind, AssertUnwindSafe};

use proptest::prelude::*;
use tinygen_runtime::format::{self, Act, Layer, Mask, ModelFile, Op, Shape};
use tinygen_runtime::{AutoregressiveSampler, Decoder, Encoder, Error, Model, Rng};

const FIXTURES: [(&str, &[u8]); 6] = [
    (
        "tiny_f32",
        include_bytes!("../../tests/fixtures/tiny_f32.tgm"),
    ),
    (
        "tiny_i8",
        include_bytes!("../../tests/fixtures/tiny_i8.tgm"),
    ),
    (
        "tiny_pixelcnn_f32",
        include_bytes!("../../tests/fixtures/tiny_pixelcnn_f32.tgm"),
    ),
    (
        "tiny_pixelrnn_f32",
        include_bytes!("../../tests/fixtures/tiny_pixelrnn_f32.tgm"),
    ),
    (
        "tiny_pixelrnn_i8",
        include_bytes!("../../tests/fixtures/tiny_pixelrnn_i8.tgm"),
    ),
    (
        "tiny_stacks_f32",
        include_bytes!("../../tests/fixtures/tiny_stacks_f32.tgm"),
    ),
];

/// A 4-byte aligned arena of at least `n` bytes.
fn arena(n: u32) -> Vec<u32> {
    vec![0x5a5a_5a5a; (n as usize).div_ceil(4)]
}

fn bytes(v: &mut [u32]) -> &mut [u8] {
    // SAFETY: u32 -> u8 reinterpretation of an owned, initialized buffer.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<u8>(), v.len() * 4) }
}

/// Loads `file` and, if it loads, runs every sampler its kind allows on an
/// exact arena (and the autoregressive full pass). Panics (with `what`)
/// if anything panics; returns the load's result.
fn load_and_run(file: &[u8], what: &str) -> Result<(), Error> {
    let run = catch_unwind(AssertUnwindSafe(|| {
        let model = Model::load(file)?;
        let mut a = arena(model.arena_bytes());
        if let Ok(mut dec) = Decoder::new(&model, bytes(&mut a)) {
            let mut px = vec![0u8; dec.image_len()];
            dec.sample(&mut Rng::new(3), &mut px).unwrap();
            let z = vec![0.5f32; dec.latent_len()];
            let mut logits = vec![0f32; dec.image_len()];
            dec.decode_logits(&z, &mut logits).unwrap();
        }
        if let Ok(mut enc) = Encoder::new(&model, bytes(&mut a)) {
            let px = vec![200u8; model.file.meta.image.numel() as usize];
            let mut z = vec![0f32; enc.output_len()];
            enc.encode(&px, &mut z).unwrap();
        }
        if let Ok(mut s) = AutoregressiveSampler::new(&model, bytes(&mut a)) {
            let mut px = vec![0u8; s.image_len()];
            s.sample(&mut Rng::new(3), &mut px).unwrap();
            let mut scratch = arena(model.forward_arena_bytes());
            let mut logits = vec![0f32; s.image_len()];
            s.logits(&px, bytes(&mut scratch), &mut logits).unwrap();
        }
        Ok(())
    }));
    run.unwrap_or_else(|_| panic!("{what}: panicked"))
}

/// `body` followed by its correct CRC.
fn with_crc(body: &[u8]) -> Vec<u8> {
    let mut v = body.to_vec();
    v.extend_from_slice(&tinygen_runtime::crc32(body).to_le_bytes());
    v
}

/// Decodes `base`, lets `change` edit it and encodes it again (with its
/// CRC).
fn mutated<'a>(base: &'a [u8], change: impl FnOnce(&mut ModelFile<'a>)) -> Vec<u8> {
    let mut f = format::decode(base).unwrap();
    change(&mut f);
    let mut buf = vec![0u8; 1 << 22];
    format::encode(&f, &mut buf).unwrap().to_vec()
}

#[test]
fn fixtures_load_and_sample() {
    for (name, file) in FIXTURES {
        assert_eq!(load_and_run(file, name), Ok(()), "{name}");
    }
}

#[test]
fn every_truncation_is_an_error() {
    for (name, file) in FIXTURES {
        for len in 0..file.len() {
            let what = format!("{name} cut to {len} bytes");
            assert!(load_and_run(&file[..len], &what).is_err(), "{what} loaded");
            // The same prefix with a CRC that matches it: the decoder, not
            // the checksum, must find what is missing.
            if len >= 4 {
                let body = &file[..len - 4];
                assert!(
                    load_and_run(&with_crc(body), &what).is_err(),
                    "{what} (CRC fixed) loaded"
                );
            }
        }
    }
}

#[test]
fn every_byte_changed_with_its_crc_fixed_never_panics() {
    for (name, file) in FIXTURES {
        let body = &file[..file.len() - 4];
        for i in 0..body.len() {
            for v in [0u8, 0xff, body[i] ^ 0x80, body[i].wrapping_add(1)] {
                let mut b = body.to_vec();
                b[i] = v;
                let _ = load_and_run(&with_crc(&b), &format!("{name} byte {i} = {v}"));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Several bytes changed at once, CRC fixed.
    #[test]
    fn random_mutations_with_their_crc_fixed_never_panic(
        which in 0usize..6,
        edits in proptest::collection::vec((any::<u16>(), any::<u8>()), 1..8),
    ) {
        let (name, file) = FIXTURES[which];
        let mut b = file[..file.len() - 4].to_vec();
        for (at, v) in edits {
            let n = b.len();
            b[at as usize % n] = v;
        }
        let _ = load_and_run(&with_crc(&b), name);
    }
}

/// A two-stack layer whose weight count wraps a 32-bit `usize` (65535 x 4
/// x 128 x 255 is about 2^33: it once wrapped to a count a near-empty blob
/// matched, and the sampler then indexed past the blob), after a dense
/// layer from a VAE's latent to 4 and a reshape to 4 x 1 x 1.
#[test]
fn a_weight_count_past_32_bits_is_a_blob_size_error() {
    let (_, base) = FIXTURES[0];
    let latent = format::decode(base).unwrap().meta.latent;
    let (w, b) = (vec![0u8; 4 * 4 * latent as usize], [0u8; 4 * 4]);
    let m = mutated(base, |f| {
        // Two-stack layers need format version 2.
        f.version = format::FORMAT_VERSION;
        let layers = &mut f.decoder.layers;
        layers.clear();
        let layer = |op, weight, bias| Layer {
            op,
            act: Act::None,
            weight,
            bias,
            quant: None,
        };
        let shape = Shape { c: 4, h: 1, w: 1 };
        let stack = Op::StackConv2d {
            in_c: 4,
            in_v: 0,
            out_c: u16::MAX,
            out_v: u16::MAX,
            k: 255,
            mask: Mask::A,
        };
        let dense = Op::Dense {
            inp: latent,
            out: 4,
        };
        layers.push(layer(dense, &w, &b)).unwrap();
        layers.push(layer(Op::Reshape(shape), &[], &[])).unwrap();
        layers.push(layer(stack, &[], &[])).unwrap();
    });
    assert_eq!(
        load_and_run(&m, "wrapping stack"),
        Err(Error::FormatBlobSize { layer: 2 })
    );
}

/// A Row LSTM of 65535 hidden channels (its 4 x hidden gate rows once
/// overflowed a u16): a typed error, not an overflow.
#[test]
fn a_huge_row_lstm_is_a_blob_size_error() {
    let (_, base) = FIXTURES[3];
    for hidden in [16384, u16::MAX] {
        let m = mutated(base, |f| {
            let l = &mut f.decoder.layers[0];
            l.op = Op::RowLstm {
                in_c: 1,
                hidden,
                k_in: 255,
                mask: Mask::A,
                k_state: 255,
            };
            l.act = Act::None;
        });
        assert_eq!(
            load_and_run(&m, "huge lstm"),
            Err(Error::FormatBlobSize { layer: 0 })
        );
    }
}

/// Autoregressive layers with the widest kernel on the largest image
/// (2048 x 2048, 2^22 pixels) whose blobs are right: loading counts their
/// MACs without visiting every position (it once looped over all of them,
/// times the kernel: minutes on a host, far more on a board). Loaded only
/// (sampling 2^22 pixels is another matter).
#[test]
fn the_largest_geometries_load_without_visiting_every_position() {
    let (_, base) = FIXTURES[5];
    let big = Shape {
        c: 1,
        h: 2048,
        w: 2048,
    };
    // A mask A stack 1 -> 1 (horizontal only: 127 taps), then a 1x1 head.
    let w0 = vec![0u8; 4 * 127];
    let (w1, b) = ([0u8; 4], [0u8; 4]);
    let m = mutated(base, |f| {
        f.meta.image = big;
        f.decoder.input = big;
        let layers = &mut f.decoder.layers;
        layers.clear();
        let stack = Layer {
            op: Op::StackConv2d {
                in_c: 1,
                in_v: 0,
                out_c: 1,
                out_v: 0,
                k: 255,
                mask: Mask::A,
            },
            act: Act::Relu,
            weight: &w0,
            bias: &b,
            quant: None,
        };
        let head = Layer {
            op: Op::MaskedConv2d {
                in_c: 1,
                out_c: 1,
                k: 1,
                mask: Mask::B,
            },
            act: Act::None,
            weight: &w1,
            bias: &b,
            quant: None,
        };
        layers.push(stack).unwrap();
        layers.push(head).unwrap();
    });
    let model = Model::load(&m).unwrap();
    // 127 taps at every position the kernel's left half fits.
    assert!(model.macs_per_sample() > 2048 * 1900 * 120);
}
