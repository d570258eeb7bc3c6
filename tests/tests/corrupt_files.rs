//! Damaged and hostile model files: `Model::load` returns the right typed
//! error and never panics; whatever it accepts, the samplers run without
//! panicking.
//!
//! Files under test: a freshly initialized VAE (latent 4) exported by the
//! trainer in f32 and int8, and the hand-built golden files of
//! `format_golden.rs` (VAE decoders, PixelCNN, PixelRNN in f32 and int8,
//! the two-stack PixelCNN of format version 2).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

use candle_core::Device;
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng};
use tinygen_runtime::format::{
    self, Act, DType, Head, Layer, Mask, Meta, ModelFile, ModelKind, Net, Op, Shape,
    FORMAT_VERSION, MAGIC, MAX_LATENT, MIN_FORMAT_VERSION,
};
use tinygen_runtime::{Decoder, Error, Model, PixelCnnSampler, Rng};
use tinygen_tests::{f32_le, i32_le, AlignedBuf};
use tinygen_trainer::export::{export, vae_decoder_net, ExportMeta, Quant};
use tinygen_trainer::models::standard_normal;
use tinygen_trainer::models::vae::{Vae, VaeConfig};

const TINY_F32: &[u8] = include_bytes!("../fixtures/tiny_f32.tgm");
const TINY_I8: &[u8] = include_bytes!("../fixtures/tiny_i8.tgm");
const TINY_PIXELCNN: &[u8] = include_bytes!("../fixtures/tiny_pixelcnn_f32.tgm");
const TINY_PIXELRNN_F32: &[u8] = include_bytes!("../fixtures/tiny_pixelrnn_f32.tgm");
const TINY_PIXELRNN_I8: &[u8] = include_bytes!("../fixtures/tiny_pixelrnn_i8.tgm");
const TINY_STACKS: &[u8] = include_bytes!("../fixtures/tiny_stacks_f32.tgm");

/// A freshly initialized VAE's decoder exported as `quant`, built once.
fn vae_file(quant: Quant) -> &'static [u8] {
    static F32: OnceLock<Vec<u8>> = OnceLock::new();
    static I8: OnceLock<Vec<u8>> = OnceLock::new();
    let cell = match quant {
        Quant::F32 => &F32,
        Quant::Int8 => &I8,
        Quant::F16 => unreachable!("not used here"),
    };
    cell.get_or_init(|| {
        let vae = Vae::new(VaeConfig { latent: 4 }, 11, &Device::Cpu).unwrap();
        let net = vae_decoder_net(&vae).unwrap();
        let mut rng = StdRng::seed_from_u64(5);
        let calib = standard_normal(&mut rng, (64, 4), &Device::Cpu)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let meta = ExportMeta {
            kind: ModelKind::Vae,
            image: Shape { c: 1, h: 28, w: 28 },
            latent: 4,
            data: "untrained".into(),
            figures: vec![("x".into(), 1.0)],
            prior: None,
        };
        export(&net, &meta, quant, &calib).unwrap()
    })
}

fn files() -> [(&'static str, &'static [u8]); 7] {
    [
        ("tiny_stacks_f32", TINY_STACKS),
        ("tiny_f32", TINY_F32),
        ("tiny_i8", TINY_I8),
        ("tiny_pixelrnn_f32", TINY_PIXELRNN_F32),
        ("tiny_pixelrnn_i8", TINY_PIXELRNN_I8),
        ("vae_i8", vae_file(Quant::Int8)),
        ("vae_f32", vae_file(Quant::F32)),
    ]
}

/// `Model::load`, with any panic turned into a test failure naming `what`.
fn load(bytes: &[u8], what: &str) -> Result<(), Error> {
    match catch_unwind(|| Model::load(bytes).map(|_| ())) {
        Ok(r) => r,
        Err(_) => panic!("{what}: Model::load panicked"),
    }
}

fn load_err(bytes: &[u8], what: &str) -> Error {
    match load(bytes, what) {
        Ok(()) => panic!("{what}: a damaged file loaded"),
        Err(e) => e,
    }
}

/// The CRC error a file with this (wrong) trailer must give.
fn crc_error(bytes: &[u8]) -> Error {
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    Error::FormatCrc {
        stored: u32::from_le_bytes(crc.try_into().unwrap()),
        computed: tinygen_runtime::crc32(body),
    }
}

/// `body` followed by its correct CRC.
fn with_crc(body: &[u8]) -> Vec<u8> {
    let mut v = body.to_vec();
    v.extend_from_slice(&tinygen_runtime::crc32(body).to_le_bytes());
    v
}

fn encode(f: &ModelFile<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; 1 << 20];
    format::encode(f, &mut buf).unwrap().to_vec()
}

/// Decodes `base`, lets `change` edit the file, and encodes it again with a
/// correct CRC.
fn mutated<'a>(base: &'a [u8], change: impl FnOnce(&mut ModelFile<'a>)) -> Vec<u8> {
    let mut f = format::decode(base).unwrap();
    change(&mut f);
    encode(&f)
}

// ---------------------------------------------------------------------------
// Truncation, bit flips, byte overwrites.

/// Prefix lengths to try: every one, except for the 90 kB f32 VAE (every
/// CRC costs a pass over the prefix), where every one of the first and last
/// 2 kB and every 61st in between (the int8 VAE covers every length of the
/// same structure).
fn cut_points(name: &str, len: usize) -> Vec<usize> {
    if name != "vae_f32" {
        return (0..len).collect();
    }
    (0..len)
        .filter(|&n| n < 2048 || n + 2048 > len || n % 61 == 0)
        .collect()
}

#[test]
fn every_truncation_is_an_error() {
    for (name, file) in files() {
        assert!(load(file, name).is_ok(), "{name} must load whole");
        for len in cut_points(name, file.len()) {
            let cut = &file[..len];
            let what = format!("{name} cut to {len} bytes");
            let e = load_err(cut, &what);
            if len < format::MIN_FILE_BYTES {
                assert_eq!(e, Error::FormatTruncated { len: len as u32 }, "{what}");
            } else {
                // Its last four bytes are read as the CRC, and do not match.
                assert_eq!(e, crc_error(cut), "{what}");
            }
        }
    }
}

#[test]
fn every_truncated_body_with_a_valid_crc_is_an_error() {
    // The CRC is recomputed, so postcard itself meets the cut.
    for (name, file) in files() {
        let body = &file[..file.len() - 4];
        for len in cut_points(name, body.len()) {
            let cut = with_crc(&body[..len]);
            let what = format!("{name} body cut to {len} bytes, CRC fixed");
            let e = load_err(&cut, &what);
            match len {
                0..=4 => assert!(
                    matches!(e, Error::FormatTruncated { .. } | Error::FormatBadMagic),
                    "{what}: {e:?}"
                ),
                _ => assert_eq!(e, Error::FormatDecode, "{what}"),
            }
        }
    }
}

/// The error a single changed byte at `pos` (new value `v`) must give: the
/// magic is checked first, then the version (a varint read before the CRC,
/// so that a newer file says so), then the CRC, which catches every error
/// burst of up to 32 bits, so every single byte (a version byte changed to
/// another version this runtime reads, 1 <-> 2, meets the CRC).
fn expected_after_change(orig: &[u8], changed: &[u8], pos: usize) -> Error {
    match pos {
        0..=3 => Error::FormatBadMagic,
        4 => {
            let v = changed[4] as u16;
            // Version 1 is one varint byte; with the continuation bit set the
            // next byte (the model kind, < 0x80) completes it.
            assert!(orig[5] < 0x80);
            let found = if v < 0x80 {
                v
            } else {
                (v & 0x7f) | (orig[5] as u16) << 7
            };
            if (MIN_FORMAT_VERSION..=FORMAT_VERSION).contains(&found) {
                crc_error(changed)
            } else {
                Error::FormatVersion { found }
            }
        }
        _ => crc_error(changed),
    }
}

#[test]
fn bit_flips_are_caught() {
    let mut rng = StdRng::seed_from_u64(1);
    let mut count = 0;
    for (name, file) in files() {
        // Every bit of the header and the CRC, then random bits elsewhere.
        let n = file.len();
        let mut positions: Vec<usize> = (0..9).chain(n - 4..n).collect();
        positions.extend((0..1500).map(|_| rng.random_range(0..n)));
        for pos in positions {
            for bit in 0..8 {
                if pos >= 9 && pos < n - 4 && rng.random_range(0..8) != 0 {
                    continue; // about one random bit per random position
                }
                let mut b = file.to_vec();
                b[pos] ^= 1 << bit;
                let what = format!("{name}: bit {bit} of byte {pos} flipped");
                assert_eq!(
                    load_err(&b, &what),
                    expected_after_change(file, &b, pos),
                    "{what}"
                );
                count += 1;
            }
        }
    }
    assert!(count > 4000, "{count} flips");
}

#[test]
fn byte_overwrites_are_caught() {
    let mut rng = StdRng::seed_from_u64(2);
    for (name, file) in files() {
        for _ in 0..1500 {
            let pos = rng.random_range(0..file.len());
            let v = loop {
                let v: u8 = rng.random();
                if v != file[pos] {
                    break v;
                }
            };
            let mut b = file.to_vec();
            b[pos] = v;
            let what = format!("{name}: byte {pos} set to {v:#04x}");
            assert_eq!(
                load_err(&b, &what),
                expected_after_change(file, &b, pos),
                "{what}"
            );
        }
    }
}

#[test]
fn wrong_version_and_magic() {
    for (name, file) in files() {
        for version in [0, FORMAT_VERSION + 1, 300, u16::MAX] {
            let b = mutated(file, |f| f.version = version);
            let what = format!("{name} version {version}");
            assert_eq!(
                load_err(&b, &what),
                Error::FormatVersion { found: version },
                "{what}"
            );
        }
        for magic in [*b"TGM\x01", *b"GGUF", [0; 4], *b"tgm\0"] {
            let b = mutated(file, |f| f.magic = magic);
            assert_eq!(
                load_err(&b, name),
                Error::FormatBadMagic,
                "{name} {magic:?}"
            );
        }
    }
    assert_eq!(load_err(&[0; 9], "zeros"), Error::FormatBadMagic);
    assert_eq!(
        load_err(b"TGM\0\x01\0\0\0", "8 bytes"),
        Error::FormatTruncated { len: 8 }
    );
    // A version varint that never ends is malformed, not short.
    assert_eq!(
        load_err(b"TGM\0\xff\xff\xff\xff\xff", "endless varint"),
        Error::FormatDecode
    );
}

#[test]
fn trailing_bytes() {
    for (name, file) in files() {
        let mut body = file[..file.len() - 4].to_vec();
        body.push(0);
        assert_eq!(
            load_err(&with_crc(&body), name),
            Error::FormatTrailingBytes,
            "{name}"
        );
    }
}

// ---------------------------------------------------------------------------
// Files that pass the CRC but hold wrong values.

fn expect(bytes: &[u8], want: Error, what: &str) {
    assert_eq!(load_err(bytes, what), want, "{what}");
}

#[test]
fn shapes_that_do_not_chain() {
    for q in [Quant::F32, Quant::Int8] {
        let file = vae_file(q);
        // Layers: 0 dense 4->1568 ReLU, 1 reshape (32,7,7), 2 up1 32->16, 3 up2 16->1.
        let m = mutated(file, |f| {
            f.decoder.layers[1].op = Op::Reshape(Shape { c: 32, h: 7, w: 8 })
        });
        expect(&m, Error::PlanShapeMismatch { layer: 1 }, "reshape count");
        let m = mutated(file, |f| {
            if let Op::ConvTranspose2d { in_c, .. } = &mut f.decoder.layers[2].op {
                *in_c = 31;
            }
        });
        expect(&m, Error::PlanShapeMismatch { layer: 2 }, "up1 in_c");
        let m = mutated(file, |f| {
            f.decoder.layers[0].op = Op::Dense { inp: 5, out: 1568 }
        });
        expect(&m, Error::PlanShapeMismatch { layer: 0 }, "dense inp");
        let m = mutated(file, |f| {
            f.decoder.layers[0].op = Op::Dense { inp: 4, out: 0 }
        });
        expect(&m, Error::PlanShapeMismatch { layer: 0 }, "dense out 0");
        let m = mutated(file, |f| {
            if let Op::ConvTranspose2d { stride, .. } = &mut f.decoder.layers[3].op {
                *stride = 0;
            }
        });
        expect(&m, Error::PlanShapeMismatch { layer: 3 }, "stride 0");
        let m = mutated(file, |f| {
            if let Op::ConvTranspose2d { out_pad, .. } = &mut f.decoder.layers[3].op {
                *out_pad = 2; // must be below the stride (2)
            }
        });
        expect(
            &m,
            Error::PlanShapeMismatch { layer: 3 },
            "out_pad >= stride",
        );
        let m = mutated(file, |f| {
            if let Op::ConvTranspose2d { k, .. } = &mut f.decoder.layers[3].op {
                *k = 0;
            }
        });
        expect(&m, Error::PlanShapeMismatch { layer: 3 }, "kernel 0");
        // Layers that chain but end elsewhere than the image.
        let m = mutated(file, |f| f.meta.image = Shape { c: 1, h: 28, w: 27 });
        expect(&m, Error::PlanOutputShape, "image shape");
        let m = mutated(file, |f| f.decoder.head = Head::Raw);
        expect(&m, Error::PlanOutputShape, "raw head on a VAE");
        let m = mutated(file, |f| f.meta.latent = 5);
        expect(&m, Error::PlanInput, "latent != input");
        let m = mutated(file, |f| f.meta.latent = 0);
        expect(&m, Error::PlanInput, "latent 0");
        let m = mutated(file, |f| f.meta.latent = MAX_LATENT as u16 + 1);
        expect(&m, Error::PlanInput, "latent > MAX_LATENT");
        let m = mutated(file, |f| f.decoder.input = Shape { c: 0, h: 1, w: 1 });
        expect(&m, Error::PlanInput, "empty input");
    }
}

#[test]
fn blobs_of_the_wrong_size() {
    for (q, wbytes) in [(Quant::F32, 4), (Quant::Int8, 1)] {
        let file = vae_file(q);
        let f = format::decode(file).unwrap();
        for l in [0usize, 2, 3] {
            let w = f.decoder.layers[l].weight;
            let b = f.decoder.layers[l].bias;
            let what = format!("{q:?} layer {l}");
            let m = mutated(file, |f| f.decoder.layers[l].weight = &w[..w.len() - 1]);
            expect(
                &m,
                Error::FormatBlobSize { layer: l as u16 },
                &format!("{what} weight -1 byte"),
            );
            let m = mutated(file, |f| {
                f.decoder.layers[l].weight = &w[..w.len() - wbytes]
            });
            expect(
                &m,
                Error::FormatBlobSize { layer: l as u16 },
                &format!("{what} weight -1 value"),
            );
            let m = mutated(file, |f| f.decoder.layers[l].bias = &b[..b.len() - 1]);
            expect(
                &m,
                Error::FormatBlobSize { layer: l as u16 },
                &format!("{what} bias -1 byte"),
            );
        }
        let w = f.decoder.layers[0].weight;
        let m = mutated(file, |f| f.decoder.layers[1].weight = &w[..4]);
        expect(
            &m,
            Error::FormatBlobSize { layer: 1 },
            "weights on a reshape",
        );
    }
}

#[test]
fn int8_values_out_of_range() {
    let file = vae_file(Quant::Int8);
    let f = format::decode(file).unwrap();
    let channels = [1568usize, 0, 16, 1];
    for l in [0usize, 2, 3] {
        let q = f.decoder.layers[l].quant.unwrap();
        let n = channels[l];
        let bad = Error::FormatBadValue { layer: l as u16 };
        for s in [0u8, 63, 255] {
            let mut shift = q.shift.to_vec();
            shift[n - 1] = s;
            let m = mutated(file, |f| {
                f.decoder.layers[l].quant.as_mut().unwrap().shift = &shift
            });
            expect(&m, bad, &format!("layer {l} shift {s}"));
        }
        for s in [1u8, 62] {
            // The ends of the allowed range load.
            let shift = vec![s; n];
            let m = mutated(file, |f| {
                f.decoder.layers[l].quant.as_mut().unwrap().shift = &shift
            });
            assert_eq!(load(&m, "shift bounds"), Ok(()), "layer {l} shift {s}");
        }
        let mut mult = q.multiplier.to_vec();
        mult[..4].copy_from_slice(&(-1i32).to_le_bytes());
        let m = mutated(file, |f| {
            f.decoder.layers[l].quant.as_mut().unwrap().multiplier = &mult
        });
        expect(&m, bad, &format!("layer {l} negative multiplier"));
        let short = &q.shift[..n - 1];
        let m = mutated(file, |f| {
            f.decoder.layers[l].quant.as_mut().unwrap().shift = short
        });
        expect(
            &m,
            Error::FormatBlobSize { layer: l as u16 },
            "short shifts",
        );
        for s in [0.0, -1.0, f32::NAN, f32::INFINITY] {
            let m = mutated(file, |f| {
                f.decoder.layers[l].quant.as_mut().unwrap().out_scale = s
            });
            expect(&m, bad, &format!("layer {l} out_scale {s}"));
        }
        let m = mutated(file, |f| f.decoder.layers[l].quant = None);
        expect(&m, bad, &format!("layer {l} without quantization"));
    }
    let mut q = f.decoder.input_q.unwrap();
    q.scale = 0.0;
    let m = mutated(file, |f| f.decoder.input_q = Some(q));
    expect(
        &m,
        Error::FormatBadValue { layer: u16::MAX },
        "input scale 0",
    );
    let m = mutated(file, |f| f.decoder.input_q = None);
    expect(
        &m,
        Error::FormatBadValue { layer: u16::MAX },
        "no input quantization",
    );
    let lut = [0u8; 255];
    let m = mutated(file, |f| f.decoder.head = Head::SigmoidLut(&lut));
    expect(
        &m,
        Error::FormatBadValue { layer: u16::MAX },
        "255-entry table",
    );
    let m = mutated(file, |f| f.decoder.head = Head::Sigmoid);
    expect(
        &m,
        Error::FormatBadValue { layer: u16::MAX },
        "float head on int8",
    );
    // An int8 file relabelled f32: its blobs are a quarter of the size.
    let m = mutated(file, |f| f.dtype = DType::F32);
    assert!(load(&m, "relabelled").is_err());

    // Quantization on a float file.
    let f32file = vae_file(Quant::F32);
    let quant = f.decoder.layers[3].quant;
    let m = mutated(f32file, |f| f.decoder.layers[3].quant = quant);
    expect(
        &m,
        Error::FormatBadValue { layer: 3 },
        "quantization in an f32 file",
    );
}

/// A minimal VAE decoder with a latent of `latent`: dense latent -> 16,
/// reshaped to the 1x4x4 image.
fn dense_vae(latent: u16, w: &[u8], b: &[u8]) -> Vec<u8> {
    let mut layers = heapless::Vec::new();
    layers
        .push(Layer {
            op: Op::Dense {
                inp: latent,
                out: 16,
            },
            act: Act::None,
            weight: w,
            bias: b,
            quant: None,
        })
        .unwrap();
    layers
        .push(Layer {
            op: Op::Reshape(Shape { c: 1, h: 4, w: 4 }),
            act: Act::None,
            weight: &[],
            bias: &[],
            quant: None,
        })
        .unwrap();
    encode(&ModelFile {
        magic: MAGIC,
        version: 1,
        kind: ModelKind::Vae,
        dtype: DType::F32,
        meta: Meta {
            image: Shape { c: 1, h: 4, w: 4 },
            latent,
            data: "",
            figures: heapless::Vec::new(),
            prior_mean: &[],
            prior_std: &[],
        },
        decoder: Net {
            input: Shape {
                c: latent,
                h: 1,
                w: 1,
            },
            input_q: None,
            layers,
            head: Head::Sigmoid,
        },
        encoder: None,
    })
}

#[test]
fn latent_limit() {
    let max = MAX_LATENT as u16;
    for (latent, ok) in [(max, true), (max + 1, false)] {
        let w = f32_le(&vec![0.01; latent as usize * 16]);
        let b = f32_le(&[0.0; 16]);
        let bytes = dense_vae(latent, &w, &b);
        if ok {
            let model = Model::load(&bytes).unwrap();
            let mut arena = AlignedBuf::new(model.arena_bytes() as usize);
            let mut dec = Decoder::new(&model, arena.bytes()).unwrap();
            let mut px = [0u8; 16];
            dec.sample(&mut Rng::new(1), &mut px).unwrap();
        } else {
            expect(&bytes, Error::PlanInput, "latent above MAX_LATENT");
        }
    }
}

#[test]
fn arenas() {
    // Plans by hand. f32: A holds the input (4) and up1's output (16x14x14),
    // B dense's output (1568) and up2's (784), 4 bytes each. int8: 1 byte,
    // then the optimized kernels' scratch, the largest layer's (up1's
    // gathered weights and row strips).
    use tinygen_runtime::kernels::{fast, ConvGeom};
    let up = |in_c, in_hw, out_c| ConvGeom {
        in_c,
        in_h: in_hw,
        in_w: in_hw,
        out_c,
        out_h: 2 * in_hw,
        out_w: 2 * in_hw,
        k: 4,
        stride: 2,
        pad: 1,
    };
    let scratch = fast::dense_scratch_words(4)
        .max(fast::conv_transpose2d_scratch_words(&up(32, 7, 16)))
        .max(fast::conv_transpose2d_scratch_words(&up(16, 14, 1)));
    for (q, need) in [
        (Quant::F32, 4 * (16 * 14 * 14) + 4 * 1568),
        (Quant::Int8, 16 * 14 * 14 + 1568 + 4 * scratch as usize),
    ] {
        let model = Model::load(vae_file(q)).unwrap();
        assert_eq!(model.arena_bytes(), need as u32, "{q:?}");
        let mut buf = AlignedBuf::new(need);
        let small = &mut buf.bytes()[..need - 1];
        assert_eq!(
            Decoder::new(&model, small).err(),
            Some(Error::PlanArenaTooSmall {
                need: need as u32,
                have: need as u32 - 1
            })
        );
        assert_eq!(
            Decoder::new(&model, &mut []).err(),
            Some(Error::PlanArenaTooSmall {
                need: need as u32,
                have: 0
            })
        );
        let mut buf = AlignedBuf::new(need + 4);
        assert_eq!(
            Decoder::new(&model, buf.misaligned()).err(),
            Some(Error::PlanArenaMisaligned)
        );
        let mut buf = AlignedBuf::new(need);
        let mut dec = Decoder::new(&model, buf.bytes()).unwrap();
        let mut px = vec![0u8; 784];
        assert_eq!(
            dec.decode(&[0.0; 3], &mut px),
            Err(Error::CallBufferLen {
                expected: 4,
                found: 3
            })
        );
        assert_eq!(
            dec.decode(&[0.0; 4], &mut px[..783]),
            Err(Error::CallBufferLen {
                expected: 784,
                found: 783
            })
        );
        let mut logits = vec![0f32; 785];
        assert_eq!(
            dec.decode_logits(&[0.0; 4], &mut logits),
            Err(Error::CallBufferLen {
                expected: 784,
                found: 785
            })
        );
        dec.decode(&[0.0; 4], &mut px).unwrap();
    }
    // A decoder network labelled PixelCNN is rejected at load (a PixelCNN
    // takes the image, not a latent).
    let m = mutated(vae_file(Quant::F32), |f| f.kind = ModelKind::PixelCnn);
    expect(&m, Error::PlanInput, "VAE labelled PixelCNN");
    let m = mutated(vae_file(Quant::F32), |f| f.kind = ModelKind::PixelRnn);
    expect(&m, Error::PlanInput, "VAE labelled PixelRNN");
    // Not a decoder model.
    let m = mutated(vae_file(Quant::F32), |f| f.kind = ModelKind::Classifier);
    let model = Model::load(&m).unwrap();
    let mut buf = AlignedBuf::new(model.arena_bytes() as usize);
    assert_eq!(
        Decoder::new(&model, buf.bytes()).err(),
        Some(Error::CallUnsupported)
    );
}

// ---------------------------------------------------------------------------
// Fuzz-ish: nothing panics.

/// Loads `bytes`; if the runtime accepts them, samples through them. Neither
/// may panic. Returns whether the file loaded.
fn load_and_run(bytes: &[u8]) -> bool {
    let r = catch_unwind(AssertUnwindSafe(|| {
        let Ok(model) = Model::load(bytes) else {
            return false;
        };
        let mut arena = AlignedBuf::new(model.arena_bytes() as usize);
        if let Ok(mut dec) = Decoder::new(&model, arena.bytes()) {
            let mut px = vec![0u8; dec.image_len()];
            let mut logits = vec![0f32; dec.image_len()];
            let z = vec![0.5f32; dec.latent_len()];
            dec.sample(&mut Rng::new(3), &mut px).unwrap();
            dec.decode_logits(&z, &mut logits).unwrap();
        }
        if let Ok(mut s) = PixelCnnSampler::new(&model, arena.bytes()) {
            let mut px = vec![0u8; s.image_len()];
            let mut logits = vec![0f32; s.image_len()];
            s.sample(&mut Rng::new(3), &mut px).unwrap();
            let mut scratch = AlignedBuf::new(model.forward_arena_bytes() as usize);
            s.logits(&px, scratch.bytes(), &mut logits).unwrap();
            if px.len() <= 256 {
                s.naive(&mut Rng::new(3), &mut px, scratch.bytes()).unwrap();
            }
        }
        true
    }));
    r.unwrap_or_else(|_| panic!("panicked on a {}-byte file", bytes.len()))
}

#[derive(Debug, Clone)]
enum Mutation {
    Set(usize, u8),
    Flip(usize, u8),
    Insert(usize, u8),
    Remove(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(p, v)| Mutation::Set(p, v)),
        (any::<usize>(), 0..8u8).prop_map(|(p, b)| Mutation::Flip(p, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(p, v)| Mutation::Insert(p, v)),
        any::<usize>().prop_map(Mutation::Remove),
    ]
}

fn apply(body: &mut Vec<u8>, m: &Mutation) {
    if body.is_empty() {
        return;
    }
    let n = body.len();
    match *m {
        Mutation::Set(p, v) => body[p % n] = v,
        Mutation::Flip(p, b) => body[p % n] ^= 1 << b,
        Mutation::Insert(p, v) => body.insert(p % (n + 1), v),
        Mutation::Remove(p) => {
            body.remove(p % n);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        prop_assert!(!load_and_run(&bytes));
    }

    #[test]
    fn random_bodies_with_a_header_and_a_valid_crc_never_panic(
        body in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut b = MAGIC.to_vec();
        b.push(FORMAT_VERSION as u8);
        b.extend_from_slice(&body);
        load_and_run(&with_crc(&b));
    }

    #[test]
    fn mutations_with_a_valid_crc_never_panic(
        which in 0..5usize,
        muts in prop::collection::vec(mutation(), 1..6),
    ) {
        let file = [TINY_F32, TINY_I8, vae_file(Quant::Int8), TINY_PIXELCNN, TINY_STACKS][which];
        let mut body = file[..file.len() - 4].to_vec();
        for m in &muts {
            apply(&mut body, m);
        }
        load_and_run(&with_crc(&body));
    }
}

#[test]
fn many_mutations_with_a_valid_crc() {
    // The same as the property above, counted: both outcomes must occur, so
    // the sampling path really runs on damaged files that pass validation.
    let mut rng = StdRng::seed_from_u64(9);
    let (mut loaded, mut rejected) = (0, 0);
    for i in 0..1500 {
        let file = [
            TINY_F32,
            TINY_I8,
            vae_file(Quant::Int8),
            TINY_PIXELCNN,
            TINY_STACKS,
        ][i % 5];
        let mut body = file[..file.len() - 4].to_vec();
        for _ in 0..rng.random_range(1..4) {
            let p = rng.random::<u32>() as usize;
            let m = match rng.random_range(0..4) {
                0 => Mutation::Set(p, rng.random()),
                1 => Mutation::Flip(p, rng.random_range(0..8)),
                2 => Mutation::Insert(p, rng.random()),
                _ => Mutation::Remove(p),
            };
            apply(&mut body, &m);
        }
        if load_and_run(&with_crc(&body)) {
            loaded += 1;
        } else {
            rejected += 1;
        }
    }
    assert!(
        loaded > 100 && rejected > 100,
        "{loaded} loaded, {rejected} rejected"
    );
}

#[test]
fn mutated_weights_still_sample() {
    // Weight bytes are free-form: any value loads, and NaN/inf weights
    // sample without panicking (pixels saturate, NaN maps to 0).
    let file = vae_file(Quant::F32);
    let nan = f32_le(&vec![f32::NAN; 16 * 16]);
    let big = i32_le(&[i32::MAX]);
    let m = mutated(file, |f| {
        f.decoder.layers[3].weight = &nan;
        f.decoder.layers[3].bias = &big; // bias as bits of a NaN f32
    });
    assert!(load_and_run(&m));
}

#[test]
fn a_trailing_reshape_keeps_its_input_quantization() {
    // A reshape carries no quantization of its own: an int8 network that
    // ends in one dequantizes its logits with the last quantized layer's.
    for file in [TINY_I8, vae_file(Quant::Int8)] {
        let f = format::decode(file).unwrap();
        let image = f.meta.image;
        let plain = Model::load(file).unwrap();
        let m = mutated(file, |f| {
            f.decoder
                .layers
                .push(Layer {
                    op: Op::Reshape(image),
                    act: Act::None,
                    weight: &[],
                    bias: &[],
                    quant: None,
                })
                .unwrap();
        });
        let model = Model::load(&m).unwrap();
        let z = vec![0.25f32; f.meta.latent as usize];
        let n = image.numel() as usize;
        let mut want = vec![0f32; n];
        let mut got = vec![0f32; n];
        let mut arena = AlignedBuf::new(plain.arena_bytes() as usize);
        Decoder::new(&plain, arena.bytes())
            .unwrap()
            .decode_logits(&z, &mut want)
            .unwrap();
        let mut arena = AlignedBuf::new(model.arena_bytes() as usize);
        Decoder::new(&model, arena.bytes())
            .unwrap()
            .decode_logits(&z, &mut got)
            .unwrap();
        assert_eq!(got, want);
    }
}

#[test]
fn an_int8_network_without_layers_dequantizes_with_its_input() {
    // Input = output: the logits are the quantized latent, read back with
    // the input's scale and zero point.
    let f = format::decode(TINY_I8).unwrap();
    let m = mutated(TINY_I8, |f| {
        f.decoder.layers.clear();
        f.decoder.input = Shape { c: 1, h: 1, w: 2 };
        f.meta.image = Shape { c: 1, h: 1, w: 2 };
    });
    let model = Model::load(&m).unwrap();
    let q = f.decoder.input_q.unwrap();
    let mut arena = AlignedBuf::new(model.arena_bytes() as usize);
    let mut dec = Decoder::new(&model, arena.bytes()).unwrap();
    let z = [3.0 * q.scale, -5.0 * q.scale];
    let mut logits = [0f32; 2];
    dec.decode_logits(&z, &mut logits).unwrap();
    assert_eq!(logits, z);
    let mut px = [0u8; 2];
    dec.decode(&z, &mut px).unwrap();
}

#[test]
fn pixelcnn_files_are_checked() {
    let base = TINY_PIXELCNN;
    assert!(load_and_run(base));
    let masked = |k: u8, mask: Mask| Op::MaskedConv2d {
        in_c: 1,
        out_c: 2,
        k,
        mask,
    };
    // The first layer must not see its own pixel: mask A (with mask B its
    // output at p, computed before p is drawn, would read p).
    let m = mutated(base, |f| f.decoder.layers[0].op = masked(3, Mask::B));
    expect(&m, Error::PlanNotCausal { layer: 0 }, "mask B first");
    // Even kernels have no centre.
    let m = mutated(base, |f| f.decoder.layers[0].op = masked(2, Mask::A));
    expect(&m, Error::PlanShapeMismatch { layer: 0 }, "even kernel");
    // A non-masked layer would break the causal order.
    let m = mutated(base, |f| {
        f.decoder.layers[1].op = Op::Conv2d {
            in_c: 2,
            out_c: 1,
            k: 1,
            stride: 1,
            pad: 0,
        }
    });
    expect(&m, Error::PlanShapeMismatch { layer: 1 }, "plain conv");
    // No latent, no prior, no encoder, one channel in and out.
    let m = mutated(base, |f| f.meta.latent = 4);
    expect(&m, Error::PlanInput, "latent");
    let m = mutated(base, |f| {
        f.meta.image = Shape { c: 1, h: 4, w: 5 };
    });
    expect(&m, Error::PlanInput, "image is not the input");
    let m = mutated(base, |f| f.decoder.head = Head::Raw);
    expect(&m, Error::PlanOutputShape, "raw head");
    let m = mutated(base, |f| f.decoder.layers.truncate(1));
    expect(&m, Error::PlanOutputShape, "two output channels");
    let m = mutated(base, |f| f.decoder.layers.clear());
    expect(&m, Error::PlanOutputShape, "no layers");
    // Weight blob of the wrong size.
    let short = [0u8; 8];
    let m = mutated(base, |f| f.decoder.layers[0].weight = &short);
    expect(&m, Error::FormatBlobSize { layer: 0 }, "short weights");
    // A PixelCNN file is not a decoder, and a decoder is not a PixelCNN.
    let model = Model::load(base).unwrap();
    let mut arena = AlignedBuf::new(4096);
    assert_eq!(
        Decoder::new(&model, arena.bytes()).err(),
        Some(Error::CallUnsupported)
    );
    let vae = Model::load(TINY_F32).unwrap();
    assert_eq!(
        PixelCnnSampler::new(&vae, arena.bytes()).err(),
        Some(Error::CallUnsupported)
    );
    // Buffers of the wrong length are errors.
    let mut s = PixelCnnSampler::new(&model, arena.bytes()).unwrap();
    assert_eq!(
        s.sample(&mut Rng::new(1), &mut [0u8; 15]).err(),
        Some(Error::CallBufferLen {
            expected: 16,
            found: 15
        })
    );
    let mut small = AlignedBuf::new(4);
    assert!(matches!(
        s.naive(&mut Rng::new(1), &mut [0u8; 16], small.bytes()),
        Err(Error::PlanArenaTooSmall { .. })
    ));
}

#[test]
fn pixelrnn_files_are_checked() {
    // Layers: 0 masked conv 1->2 k3 A ReLU, 1 Row LSTM 2->2 (k_in 3 B,
    // k_state 3), 2 masked conv 2->1 k1 B.
    for base in [TINY_PIXELRNN_F32, TINY_PIXELRNN_I8] {
        assert!(load_and_run(base));
        let i8 = format::decode(base).unwrap().dtype == DType::I8;
        let what = |s: &str| format!("{} {s}", if i8 { "int8" } else { "f32" });
        let lstm = |in_c: u16, hidden: u16, k_in: u8, mask: Mask, k_state: u8| Op::RowLstm {
            in_c,
            hidden,
            k_in,
            mask,
            k_state,
        };
        let shape = Error::PlanShapeMismatch { layer: 1 };
        let bad = Error::FormatBadValue { layer: 1 };
        let size = Error::FormatBlobSize { layer: 1 };
        // Geometry: kernels without a centre, no hidden state, channels
        // that do not chain.
        for (op, s) in [
            (lstm(2, 2, 2, Mask::B, 3), "even k_in"),
            (lstm(2, 2, 3, Mask::B, 4), "even k_state"),
            (lstm(2, 0, 3, Mask::B, 3), "hidden 0"),
            (lstm(3, 2, 3, Mask::B, 3), "in_c"),
        ] {
            let m = mutated(base, |f| f.decoder.layers[1].op = op);
            expect(&m, shape, &what(s));
        }
        // The same blob sizes fit k_in 1 / k_state 5 only by accident of
        // size: a wider state kernel needs more weights.
        let m = mutated(base, |f| f.decoder.layers[1].op = lstm(2, 2, 3, Mask::B, 5));
        expect(&m, size, &what("k_state 5 with k_state 3 weights"));
        // Its output is the hidden state: no activation.
        let m = mutated(base, |f| f.decoder.layers[1].act = Act::Relu);
        expect(&m, bad, &what("ReLU"));
        // Blob sizes: weights without their last byte (for int8, a table
        // byte), the weights alone without the int8 tables, a short bias.
        let w = format::decode(base).unwrap().decoder.layers[1]
            .weight
            .to_vec();
        let m = mutated(base, |f| f.decoder.layers[1].weight = &w[..w.len() - 1]);
        expect(&m, size, &what("weights short by one byte"));
        let m = mutated(base, |f| f.decoder.layers[1].bias = &[0u8; 28]);
        expect(&m, size, &what("bias of 7 rows"));
        if !i8 {
            // A quantization block in a float file.
            let (mult, shift) = (i32_le(&[1 << 30; 16]), [40u8; 16]);
            let m = mutated(base, |f| {
                f.decoder.layers[1].quant = Some(format::LayerQuant {
                    in_zp: 0,
                    out_zp: 0,
                    out_scale: 1.0 / 128.0,
                    multiplier: &mult,
                    shift: &shift,
                })
            });
            expect(&m, bad, &what("quant in f32"));
            continue;
        }
        let m = mutated(base, |f| f.decoder.layers[1].weight = &w[..96]);
        expect(&m, size, &what("int8 weights without the tables"));
        // 8 * hidden multipliers and shifts: 4 * hidden is too few.
        let q = format::decode(base).unwrap().decoder.layers[1]
            .quant
            .unwrap();
        let (mult, shift) = (q.multiplier.to_vec(), q.shift.to_vec());
        let m = mutated(base, |f| {
            f.decoder.layers[1].quant.as_mut().unwrap().multiplier = &mult[..32]
        });
        expect(&m, size, &what("4 * hidden multipliers"));
        let m = mutated(base, |f| {
            f.decoder.layers[1].quant.as_mut().unwrap().shift = &shift[..8]
        });
        expect(&m, size, &what("4 * hidden shifts"));
        // Values of the state-to-state half are checked too.
        let mut neg = mult.clone();
        neg[60..64].copy_from_slice(&(-1i32).to_le_bytes());
        let m = mutated(base, |f| {
            f.decoder.layers[1].quant.as_mut().unwrap().multiplier = &neg
        });
        expect(&m, bad, &what("negative state multiplier"));
        let mut zero = shift.clone();
        zero[15] = 0;
        let m = mutated(base, |f| {
            f.decoder.layers[1].quant.as_mut().unwrap().shift = &zero
        });
        expect(&m, bad, &what("state shift 0"));
        // The output is at scale 1/128, zero point 0, always.
        let m = mutated(base, |f| {
            f.decoder.layers[1].quant.as_mut().unwrap().out_zp = 3
        });
        expect(&m, bad, &what("out_zp 3"));
        let m = mutated(base, |f| {
            f.decoder.layers[1].quant.as_mut().unwrap().out_scale = 1.0 / 127.0
        });
        expect(&m, bad, &what("out_scale 1/127"));
    }

    let base = TINY_PIXELRNN_F32;
    // A Row LSTM first: mask A loads, mask B would read each pixel before
    // it is drawn.
    let (w0, b0) = (f32_le(&[0.125; 8 * 9]), f32_le(&[0.0; 8]));
    for (mask, want) in [
        (Mask::A, Ok(())),
        (Mask::B, Err(Error::PlanNotCausal { layer: 0 })),
    ] {
        let m = mutated(base, |f| {
            let l = &mut f.decoder.layers[0];
            l.op = Op::RowLstm {
                in_c: 1,
                hidden: 2,
                k_in: 3,
                mask,
                k_state: 3,
            };
            (l.act, l.weight, l.bias) = (Act::None, &w0, &b0);
        });
        assert_eq!(load(&m, "lstm first"), want, "Row LSTM first with {mask:?}");
        if want.is_ok() {
            assert!(load_and_run(&m));
        }
    }
    // A PixelCNN has masked convolutions only.
    let m = mutated(base, |f| f.kind = ModelKind::PixelCnn);
    expect(
        &m,
        Error::PlanShapeMismatch { layer: 1 },
        "Row LSTM in a PixelCNN",
    );
    // Nor is a Row LSTM a decoder layer (the kind check comes later, at
    // the latent: a VAE needs one).
    let m = mutated(base, |f| f.kind = ModelKind::Vae);
    expect(&m, Error::PlanInput, "PixelRNN layers as a VAE");
    // A PixelRNN file samples with the autoregressive sampler, not a decoder.
    let model = Model::load(base).unwrap();
    let mut arena = AlignedBuf::new(4096);
    assert_eq!(
        Decoder::new(&model, arena.bytes()).err(),
        Some(Error::CallUnsupported)
    );
    let mut small = AlignedBuf::new(model.arena_bytes() as usize - 4);
    assert_eq!(
        PixelCnnSampler::new(&model, small.bytes()).err(),
        Some(Error::PlanArenaTooSmall {
            need: model.arena_bytes(),
            have: model.arena_bytes() - 4
        })
    );
    // The naive sampler's scratch must hold the cell row too.
    let mut s = PixelCnnSampler::new(&model, arena.bytes()).unwrap();
    let mut scratch = AlignedBuf::new(model.forward_arena_bytes() as usize - 1);
    assert!(matches!(
        s.naive(&mut Rng::new(1), &mut [0u8; 16], scratch.bytes()),
        Err(Error::PlanArenaTooSmall { .. })
    ));
}

#[test]
fn stack_files_are_checked() {
    // Layers: 0 StackConv2d 1 -> 2 (out_v 1) k3 mask A ReLU (7 weights),
    // 1 StackConv2d 2 (in_v 1) -> 1 (out_v 0) k1 mask B (2 weights).
    let base = TINY_STACKS;
    assert!(load_and_run(base));
    let stack = |in_c: u16, in_v: u16, out_c: u16, out_v: u16, k: u8, mask: Mask| Op::StackConv2d {
        in_c,
        in_v,
        out_c,
        out_v,
        k,
        mask,
    };
    // A version 1 header on a file with a two-stack layer: the layer does
    // not exist in version 1, so the file does not decode as one.
    let m = mutated(base, |f| f.version = 1);
    expect(&m, Error::FormatDecode, "stacks in a version 1 file");
    // Blob sizes: the compact rows only (not a dense masked kernel).
    let w0 = format::decode(base).unwrap().decoder.layers[0]
        .weight
        .to_vec();
    assert_eq!(w0.len(), 7 * 4);
    let size0 = Error::FormatBlobSize { layer: 0 };
    let m = mutated(base, |f| f.decoder.layers[0].weight = &w0[..24]);
    expect(&m, size0, "weights short by one f32");
    let dense = f32_le(&[0.5; 2 * 9]);
    let m = mutated(base, |f| f.decoder.layers[0].weight = &dense);
    expect(&m, size0, "a dense 3x3 kernel");
    let m = mutated(base, |f| f.decoder.layers[0].bias = &[0u8; 4]);
    expect(&m, size0, "bias of 1 channel");
    // Mask B has one more horizontal tap per input: 8 weights.
    let m = mutated(base, |f| {
        f.decoder.layers[0].op = stack(1, 0, 2, 1, 3, Mask::B);
    });
    expect(&m, size0, "mask B with mask A's weights");
    // Geometry: in_v >= in_c, out_v > out_c, even kernels, channels that
    // do not chain.
    for (l, op, what) in [
        (1, stack(2, 2, 1, 0, 1, Mask::B), "in_v = in_c"),
        (1, stack(2, 3, 1, 0, 1, Mask::B), "in_v > in_c"),
        (0, stack(1, 0, 2, 3, 3, Mask::A), "out_v > out_c"),
        (0, stack(1, 0, 2, 1, 2, Mask::A), "even k"),
        (1, stack(2, 1, 1, 0, 2, Mask::B), "even k (2nd)"),
        (1, stack(3, 1, 1, 0, 1, Mask::B), "in_c"),
        (0, stack(1, 0, 0, 0, 3, Mask::A), "out_c 0"),
    ] {
        let m = mutated(base, |f| f.decoder.layers[l].op = op);
        expect(&m, Error::PlanShapeMismatch { layer: l as u16 }, what);
    }
    // Causality. Layer 1 calling the vertical channel horizontal (in_v 0,
    // the same 2 weights): its logit would read the vertical stack at its
    // own row, which depends on the whole row.
    let m = mutated(base, |f| {
        f.decoder.layers[1].op = stack(2, 0, 1, 0, 1, Mask::B);
    });
    expect(
        &m,
        Error::PlanNotCausal { layer: 1 },
        "in_v 0 after out_v 1",
    );
    // Layer 0 without vertical outputs (2 horizontal rows of 1 weight),
    // layer 1 still expecting one: it reads a horizontal channel as
    // vertical, only a row up, which is causal: it loads and samples.
    let w = f32_le(&[0.5, -0.5]);
    let m = mutated(base, |f| {
        f.decoder.layers[0].op = stack(1, 0, 2, 0, 3, Mask::A);
        f.decoder.layers[0].weight = &w;
    });
    assert!(load_and_run(&m), "in_v 1 after out_v 0");
    // The logit vertical (out_v 1: one vertical row of 1 x 1 x 1).
    let w = f32_le(&[0.5]);
    let m = mutated(base, |f| {
        f.decoder.layers[1].op = stack(2, 1, 1, 1, 1, Mask::B);
        f.decoder.layers[1].weight = &w;
    });
    expect(&m, Error::PlanNotCausal { layer: 2 }, "a vertical logit");
    // No mask A anywhere: layer 0 with mask B (8 weights) reads its own
    // pixel.
    let w = f32_le(&[0.25; 8]);
    let m = mutated(base, |f| {
        f.decoder.layers[0].op = stack(1, 0, 2, 1, 3, Mask::B);
        f.decoder.layers[0].weight = &w;
    });
    expect(&m, Error::PlanNotCausal { layer: 0 }, "mask B only");
    // A masked convolution reading the vertical channel (the head as a 1x1
    // MaskedConv2d after a stack that keeps one).
    let (w, b) = (f32_le(&[0.5, 0.5]), f32_le(&[0.0]));
    let m = mutated(base, |f| {
        let l = &mut f.decoder.layers[1];
        l.op = Op::MaskedConv2d {
            in_c: 2,
            out_c: 1,
            k: 1,
            mask: Mask::B,
        };
        (l.weight, l.bias) = (&w, &b);
    });
    expect(
        &m,
        Error::PlanNotCausal { layer: 1 },
        "masked conv after out_v 1",
    );
    // Horizontal stacks only (no vertical channel anywhere) are causal:
    // layer 0 with no vertical outputs and layer 1 with none in loads.
    let (w0, w1) = (f32_le(&[0.5, -0.5]), f32_le(&[1.0, 0.5]));
    let m = mutated(base, |f| {
        f.decoder.layers[0].op = stack(1, 0, 2, 0, 3, Mask::A);
        f.decoder.layers[0].weight = &w0;
        f.decoder.layers[1].op = stack(2, 0, 1, 0, 1, Mask::B);
        f.decoder.layers[1].weight = &w1;
    });
    assert!(load_and_run(&m), "horizontal stacks only");
}
