//! The `.tgm` bytes, locked.
//!
//! - `one_dense_layer_bytes_by_hand`: a one-layer file against bytes written
//!   out by hand from postcard's wire format (postcard `loopback.rs` style),
//!   so a change of field order, integer encoding or enum tagging shows up
//!   as a named byte, not just "the golden file changed".
//! - `tiny_f32_golden` / `tiny_i8_golden`: a hand-built four-layer model
//!   (dense, reshape, transposed conv, conv; fixed weights) against
//!   `tests/fixtures/tiny_{f32,i8}.tgm`, then decoded back field by field and
//!   loaded and run.
//! - `tiny_pixelcnn_golden`: a two-layer PixelCNN (masked convolutions)
//!   against `tests/fixtures/tiny_pixelcnn_f32.tgm`, its row-cache arena and
//!   MACs by hand, and its logits against candle.
//!
//! Regenerate the golden files (after a deliberate format change, which also
//! bumps `FORMAT_VERSION` and docs/format.md) with
//! `UPDATE_GOLDEN=1 cargo test -p tinygen-tests --test format_golden`, then
//! review the diff.

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use tinygen_runtime::format::{
    self, Act, DType, Figure, Head, Layer, LayerQuant, Mask, Meta, ModelFile, ModelKind, Net, Op,
    QParams, Shape, FORMAT_VERSION, MAGIC,
};
use tinygen_runtime::{Decoder, Model};
use tinygen_tests::{
    add_channel_bias, assert_close, chw, conv_t_weight, conv_weight, dense_weight, f32_le, i32_le,
    i8_bytes, AlignedBuf, Approximation,
};

const fn shape(c: u16, h: u16, w: u16) -> Shape {
    Shape { c, h, w }
}

#[test]
fn one_dense_layer_bytes_by_hand() {
    let (w, b) = (f32_le(&[1.0]), f32_le(&[0.5]));
    let mut layers = heapless::Vec::new();
    layers
        .push(Layer {
            op: Op::Dense { inp: 1, out: 1 },
            act: Act::None,
            weight: &w,
            bias: &b,
            quant: None,
        })
        .unwrap();
    let mut figures = heapless::Vec::new();
    figures
        .push(Figure {
            name: "q",
            value: 2.0,
        })
        .unwrap();
    let file = ModelFile {
        magic: MAGIC,
        version: FORMAT_VERSION,
        kind: ModelKind::Vae,
        dtype: DType::F32,
        meta: Meta {
            image: shape(1, 1, 1),
            latent: 1,
            data: "ab",
            figures,
            prior_mean: &[],
            prior_std: &[],
        },
        decoder: Net {
            input: shape(1, 1, 1),
            input_q: None,
            layers,
            head: Head::Sigmoid,
        },
        encoder: None,
    };
    #[rustfmt::skip]
    let want: &[u8] = &[
        b'T', b'G', b'M', 0,     // magic
        0x01,                    // version 1 (varint)
        0x01,                    // kind: ModelKind::Vae (variant 1, varint)
        0x00,                    // dtype: DType::F32 (variant 0)
        0x01, 0x01, 0x01,        // meta.image c, h, w (varint u16)
        0x01,                    // meta.latent
        0x02, b'a', b'b',        // meta.data: length, UTF-8
        0x01,                    // meta.figures: 1
        0x01, b'q',              //   name
        0x00, 0x00, 0x00, 0x40,  //   value 2.0 (f32 LE)
        0x00,                    // meta.prior_mean: empty (N(0, I))
        0x00,                    // meta.prior_std: empty
        0x01, 0x01, 0x01,        // decoder.input
        0x00,                    // decoder.input_q: None
        0x01,                    // decoder.layers: 1
        0x00, 0x01, 0x01,        //   op: Dense (variant 0) { inp 1, out 1 }
        0x00,                    //   act: None
        0x04, 0x00, 0x00, 0x80, 0x3f, // weight: 4 bytes, 1.0 LE
        0x04, 0x00, 0x00, 0x00, 0x3f, // bias: 4 bytes, 0.5 LE
        0x00,                    //   quant: None
        0x00,                    // decoder.head: Sigmoid (variant 0)
        0x00,                    // encoder: None
        0x06, 0xcd, 0x44, 0x34,  // CRC-32 (zlib's) of everything above, LE
    ];
    let mut buf = [0u8; 128];
    let got = format::encode(&file, &mut buf).unwrap();
    assert_eq!(got, want);
    assert_eq!(tinygen_runtime::crc32(&want[..want.len() - 4]), 0x3444_cd06);
    assert_eq!(format::decode(want).unwrap(), file);
    let model = Model::load(want).unwrap();
    let mut arena = AlignedBuf::new(model.arena_bytes() as usize);
    let mut dec = Decoder::new(&model, arena.bytes()).unwrap();
    let mut logits = [0f32; 1];
    dec.decode_logits(&[3.0], &mut logits).unwrap();
    assert_eq!(logits, [3.5]);
}

/// Owned blobs of the tiny model (the file borrows them).
struct Tiny {
    dtype: DType,
    weights: Vec<Vec<u8>>,
    biases: Vec<Vec<u8>>,
    mults: Vec<Vec<u8>>,
    shifts: Vec<Vec<u8>>,
    lut: Vec<u8>,
}

/// The tiny model's layers: z (2) -> dense 8, ReLU -> reshape (2, 2, 2) ->
/// transposed conv 2->1, k2 s2 -> (1, 4, 4) -> conv 1->1, k3 s1 p1, the logits.
const OPS: [(Op, Act); 4] = [
    (Op::Dense { inp: 2, out: 8 }, Act::Relu),
    (Op::Reshape(shape(2, 2, 2)), Act::None),
    (
        Op::ConvTranspose2d {
            in_c: 2,
            out_c: 1,
            k: 2,
            stride: 2,
            pad: 0,
            out_pad: 0,
        },
        Act::Relu,
    ),
    (
        Op::Conv2d {
            in_c: 1,
            out_c: 1,
            k: 3,
            stride: 1,
            pad: 1,
        },
        Act::None,
    ),
];
const N_WEIGHTS: [usize; 4] = [16, 0, 8, 9];
const N_BIAS: [usize; 4] = [8, 0, 1, 1];

/// Weight j of layer l in the f32 model: small dyadic numbers of both signs
/// (exact in f32, so the candle cross-check is exact too).
fn f32_weight(l: usize, j: usize) -> f32 {
    ((l * 7 + j * 5) % 17) as f32 / 8.0 - 1.0
}

impl Tiny {
    fn new(dtype: DType) -> Tiny {
        let mut t = Tiny {
            dtype,
            weights: Vec::new(),
            biases: Vec::new(),
            mults: Vec::new(),
            shifts: Vec::new(),
            // Identity table: pixel = code + 128, so `decode` shows the codes.
            lut: (0..=255u8).collect(),
        };
        for l in 0..4 {
            let (nw, nb) = (N_WEIGHTS[l], N_BIAS[l]);
            match dtype {
                DType::F32 => {
                    let w: Vec<f32> = (0..nw).map(|j| f32_weight(l, j)).collect();
                    let b: Vec<f32> = (0..nb).map(|j| 0.25 * j as f32 - 0.5).collect();
                    t.weights.push(f32_le(&w));
                    t.biases.push(f32_le(&b));
                    t.mults.push(Vec::new());
                    t.shifts.push(Vec::new());
                }
                DType::I8 => {
                    let w: Vec<i8> = (0..nw).map(|j| (j as i32 * 37 % 255 - 127) as i8).collect();
                    let b: Vec<i32> = (0..nb)
                        .map(|j| [-400, 0, 100, 50][l] + 200 * j as i32)
                        .collect();
                    t.weights.push(i8_bytes(&w));
                    t.biases.push(i32_le(&b));
                    // m = 2^30 (one half) and shifts that keep the codes
                    // inside [-128, 127] for most pixels.
                    t.mults.push(i32_le(&vec![1 << 30; nb]));
                    let shift = |j: usize| [34 + (j % 3) as u8, 0, 38, 40][l];
                    t.shifts.push((0..nb).map(shift).collect());
                }
                DType::F16 => unreachable!("no f16 golden"),
            }
        }
        t
    }

    fn file(&self) -> ModelFile<'_> {
        let mut layers = heapless::Vec::new();
        for (l, &(op, act)) in OPS.iter().enumerate() {
            let quant = (self.dtype == DType::I8 && N_BIAS[l] > 0).then(|| LayerQuant {
                // Each layer's input zero point is the previous output's.
                in_zp: [-1, 0, -128, -128][l],
                out_zp: if act == Act::Relu { -128 } else { 5 },
                out_scale: 0.125 * (l + 1) as f32,
                multiplier: &self.mults[l],
                shift: &self.shifts[l],
            });
            layers
                .push(Layer {
                    op,
                    act,
                    weight: &self.weights[l],
                    bias: &self.biases[l],
                    quant,
                })
                .unwrap();
        }
        let mut figures = heapless::Vec::new();
        for (name, value) in [("test_neg_elbo_nats", 123.5f32), ("params", 43.0)] {
            figures.push(Figure { name, value }).unwrap();
        }
        ModelFile {
            magic: MAGIC,
            version: FORMAT_VERSION,
            kind: ModelKind::Vae,
            dtype: self.dtype,
            meta: Meta {
                image: shape(1, 4, 4),
                latent: 2,
                data: "hand-built golden model (tests/tests/format_golden.rs)",
                figures,
                prior_mean: &[],
                prior_std: &[],
            },
            decoder: Net {
                input: shape(2, 1, 1),
                input_q: (self.dtype == DType::I8).then_some(QParams {
                    scale: 0.0625,
                    zero_point: -1,
                }),
                layers,
                head: match self.dtype {
                    DType::I8 => Head::SigmoidLut(&self.lut),
                    _ => Head::Sigmoid,
                },
            },
            encoder: None,
        }
    }
}

fn encode(file: &ModelFile<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    format::encode(file, &mut buf).unwrap().to_vec()
}

/// The golden bytes at `tests/fixtures/<name>`, or (re)written from `bytes`
/// when `UPDATE_GOLDEN` is set.
fn golden(name: &str, bytes: &[u8]) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, bytes).unwrap();
    }
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; regenerate with UPDATE_GOLDEN=1 cargo test -p tinygen-tests --test format_golden",
            path.display()
        )
    })
}

/// Byte-exact comparison with the first differing offset in the message.
fn assert_same_bytes(got: &[u8], want: &[u8], name: &str) {
    if got != want {
        let at = got
            .iter()
            .zip(want)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(want.len()));
        panic!(
            "{name}: encoding differs from the golden file at byte {at} (lengths {} vs {}); \
             if the format changed on purpose, bump FORMAT_VERSION and regenerate with UPDATE_GOLDEN=1",
            got.len(),
            want.len()
        );
    }
}

fn check_golden(dtype: DType, name: &str) -> Vec<u8> {
    let tiny = Tiny::new(dtype);
    let file = tiny.file();
    let bytes = encode(&file);
    let want = golden(name, &bytes);
    assert_same_bytes(&bytes, &want, name);

    // The golden bytes decode to the very fields they were built from.
    let back = format::decode(&want).unwrap();
    assert_eq!(back, file);
    assert_eq!(&want[..5], &[b'T', b'G', b'M', 0, FORMAT_VERSION as u8]);
    let stored = u32::from_le_bytes(want[want.len() - 4..].try_into().unwrap());
    assert_eq!(stored, tinygen_runtime::crc32(&want[..want.len() - 4]));
    assert_eq!(back.decoder.layers.len(), 4);
    for (l, layer) in back.decoder.layers.iter().enumerate() {
        assert_eq!((layer.op, layer.act), OPS[l]);
        assert_eq!(layer.weight, &tiny.weights[l][..]);
        assert_eq!(layer.bias, &tiny.biases[l][..]);
        // Blobs are borrowed from the file, not copied.
        if !layer.weight.is_empty() {
            let range = want.as_ptr_range();
            assert!(
                range.contains(&layer.weight.as_ptr()),
                "layer {l} weight copied"
            );
        }
    }
    assert_eq!(back.meta.figures[0].name, "test_neg_elbo_nats");
    assert_eq!(back.meta.figures[1].value, 43.0);
    drop(back);
    want
}

#[test]
fn tiny_f32_golden() {
    let bytes = check_golden(DType::F32, "tiny_f32.tgm");
    let model = Model::load(&bytes).unwrap();
    // Plan, by hand: A holds the input (2 f32) and the transposed conv's
    // output (16 f32); B the dense output (8) and the conv output (16).
    assert_eq!((model.plan.buf_a, model.plan.buf_b), (64, 64));
    assert_eq!(model.arena_bytes(), 128);
    assert_eq!(model.plan.output, shape(1, 4, 4));
    // MACs: dense 2*8; transposed conv 1*2 * (2*2 taps)^2 (all inside);
    // conv 3x3 pad 1 over 4: 10 taps per axis, 1*1*10*10.
    assert_eq!(model.macs_per_sample(), 16 + 32 + 100);
    assert_eq!(model.params(), 16 + 8 + 8 + 1 + 9 + 1);

    // The runtime's decoder against candle's ops on the same weights.
    let z = [0.75f32, -1.5];
    let mut arena = AlignedBuf::new(model.arena_bytes() as usize);
    let mut dec = Decoder::new(&model, arena.bytes()).unwrap();
    let mut got = [0f32; 16];
    dec.decode_logits(&z, &mut got).unwrap();
    let want = candle_tiny(&z).unwrap();
    assert_close(
        &got,
        &want,
        Approximation::Close,
        "tiny f32 decoder vs candle",
    );
}

fn candle_tiny(z: &[f32]) -> candle_core::Result<Vec<f64>> {
    let dev = Device::Cpu;
    let w = |l: usize| {
        (0..N_WEIGHTS[l])
            .map(|j| f32_weight(l, j))
            .collect::<Vec<_>>()
    };
    let b = |l: usize| {
        let v: Vec<f32> = (0..N_BIAS[l]).map(|j| 0.25 * j as f32 - 0.5).collect();
        Tensor::from_vec(v, N_BIAS[l], &dev)
    };
    let x = Tensor::from_slice(z, (1, 2), &dev)?;
    let h = x
        .matmul(&dense_weight(&w(0), 8, 2, &dev)?.t()?)?
        .broadcast_add(&b(0)?.unsqueeze(0)?)?
        .relu()?;
    let h = h.reshape((1, 2, 2, 2))?;
    let h = h.conv_transpose2d(&conv_t_weight(&w(2), 2, 1, 2, &dev)?, 0, 0, 2, 1)?;
    let h = add_channel_bias(&h, &b(2)?)?.relu()?;
    let h = h.conv2d(&conv_weight(&w(3), 1, 1, 3, &dev)?, 1, 1, 1, 1)?;
    chw(&add_channel_bias(&h, &b(3)?)?)
}

#[test]
fn tiny_i8_golden() {
    let bytes = check_golden(DType::I8, "tiny_i8.tgm");
    let model = Model::load(&bytes).unwrap();
    // One byte per activation: A = max(2, 16), B = max(8, 16).
    assert_eq!((model.plan.buf_a, model.plan.buf_b), (16, 16));
    assert_eq!(model.arena_bytes(), 32);
    let q = model.file.decoder.layers[3].quant.unwrap();
    assert_eq!((q.in_zp, q.out_zp, q.out_scale), (-128, 5, 0.5));
    assert_eq!(q.shift, &[40]);
    assert_eq!(model.file.decoder.input_q.unwrap().zero_point, -1);
    match model.file.decoder.head {
        Head::SigmoidLut(lut) => assert_eq!(lut[200], 200),
        h => panic!("head {h:?}"),
    }

    // `decode` (through the identity table) and `decode_logits` (dequantized
    // with the last layer's scale 0.5 and zero point 5) see the same codes.
    let mut arena = AlignedBuf::new(model.arena_bytes() as usize);
    let mut dec = Decoder::new(&model, arena.bytes()).unwrap();
    let z = [0.5, -0.25];
    let (mut pixels, mut again, mut logits) = ([0u8; 16], [0u8; 16], [0f32; 16]);
    dec.decode(&z, &mut pixels).unwrap();
    dec.decode(&z, &mut again).unwrap();
    dec.decode_logits(&z, &mut logits).unwrap();
    assert_eq!(pixels, again);
    let codes: Vec<f32> = logits.iter().map(|l| l / 0.5 + 5.0 + 128.0).collect();
    assert_close(
        &pixels.map(f32::from),
        &codes,
        Approximation::Exact,
        "codes",
    );
    assert!(pixels.iter().any(|&p| p != pixels[0]), "{pixels:?}");
}

// ---------------------------------------------------------------------------
// A tiny PixelCNN: image 1x4x4, masked conv 1->2 k3 mask A + ReLU, masked
// conv 2->1 k1 mask B (the logits).

const PIXELCNN_OPS: [(Op, Act); 2] = [
    (
        Op::MaskedConv2d {
            in_c: 1,
            out_c: 2,
            k: 3,
            mask: Mask::A,
        },
        Act::Relu,
    ),
    (
        Op::MaskedConv2d {
            in_c: 2,
            out_c: 1,
            k: 1,
            mask: Mask::B,
        },
        Act::None,
    ),
];

/// Layer l's weights with the masked taps zero, as the exporter writes them.
fn pixelcnn_weights(l: usize) -> Vec<f32> {
    let Op::MaskedConv2d {
        in_c,
        out_c,
        k,
        mask,
    } = PIXELCNN_OPS[l].0
    else {
        unreachable!()
    };
    let k = k as usize;
    (0..out_c as usize * in_c as usize * k * k)
        .map(|j| {
            if mask.allows(k, (j / k) % k, j % k) {
                f32_weight(l, j)
            } else {
                0.0
            }
        })
        .collect()
}

fn pixelcnn_bias(l: usize) -> Vec<f32> {
    [vec![0.25, -0.125], vec![-0.5]][l].clone()
}

#[test]
fn tiny_pixelcnn_golden() {
    let weights: Vec<Vec<u8>> = (0..2).map(|l| f32_le(&pixelcnn_weights(l))).collect();
    let biases: Vec<Vec<u8>> = (0..2).map(|l| f32_le(&pixelcnn_bias(l))).collect();
    let mut layers = heapless::Vec::new();
    for (l, &(op, act)) in PIXELCNN_OPS.iter().enumerate() {
        layers
            .push(Layer {
                op,
                act,
                weight: &weights[l],
                bias: &biases[l],
                quant: None,
            })
            .unwrap();
    }
    let file = ModelFile {
        magic: MAGIC,
        version: FORMAT_VERSION,
        kind: ModelKind::PixelCnn,
        dtype: DType::F32,
        meta: Meta {
            image: shape(1, 4, 4),
            latent: 0,
            data: "hand-built golden PixelCNN (tests/tests/format_golden.rs)",
            figures: heapless::Vec::new(),
            prior_mean: &[],
            prior_std: &[],
        },
        decoder: Net {
            input: shape(1, 4, 4),
            input_q: None,
            layers,
            head: Head::Sigmoid,
        },
        encoder: None,
    };
    let bytes = encode(&file);
    let want = golden("tiny_pixelcnn_f32.tgm", &bytes);
    assert_same_bytes(&bytes, &want, "tiny_pixelcnn_f32.tgm");
    assert_eq!(format::decode(&want).unwrap(), file);
    // The first layer's op, act and weight length, byte by byte:
    // MaskedConv2d (variant 4) { in_c 1, out_c 2, k 3, mask A (0) }, Relu (1),
    // weight blob of 2*1*3*3 f32 = 72 bytes (varint 0x48).
    let op = [0x04, 0x01, 0x02, 0x03, 0x00, 0x01, 0x48];
    assert_eq!(want.windows(op.len()).filter(|w| *w == op).count(), 1);

    let model = Model::load(&want).unwrap();
    // Row caches: input 2 rows (read by the 3x3), layer 0 output 1 row x 2
    // channels (read by the 1x1), logits 1 row; 4 pixels wide, f32.
    assert_eq!(model.arena_bytes(), (2 + 2 + 1) * 4 * 4);
    // MACs: mask A 3x3 uses taps (0,0) (0,1) (0,2) (1,0); inside a 4x4
    // image they read 3*3 + 3*4 + 3*3 + 4*3 = 42 times, times 2 output
    // channels; the 1x1: 2 inputs x 16 positions.
    assert_eq!(model.forward_macs(), 84 + 32);
    assert_eq!(model.macs_per_sample(), model.forward_macs());

    // Teacher-forced logits through the runtime against candle's conv2d
    // with the masked weights.
    let image: Vec<u8> = (0..16).map(|i| if i % 3 == 0 { 255 } else { 0 }).collect();
    let mut arena = AlignedBuf::new(model.arena_bytes() as usize);
    let mut scratch = AlignedBuf::new(model.forward_arena_bytes() as usize);
    let sampler = tinygen_runtime::PixelCnnSampler::new(&model, arena.bytes()).unwrap();
    let mut got = [0f32; 16];
    sampler.logits(&image, scratch.bytes(), &mut got).unwrap();
    let want = candle_pixelcnn(&image).unwrap();
    assert_close(&got, &want, Approximation::Close, "tiny PixelCNN vs candle");
}

fn candle_pixelcnn(image: &[u8]) -> candle_core::Result<Vec<f64>> {
    let dev = Device::Cpu;
    let x: Vec<f32> = image
        .iter()
        .map(|&p| f32::from(u8::from(p >= 128)))
        .collect();
    let x = Tensor::from_vec(x, (1, 1, 4, 4), &dev)?;
    let b = |l: usize| Tensor::from_vec(pixelcnn_bias(l), pixelcnn_bias(l).len(), &dev);
    let h = x.conv2d(
        &conv_weight(&pixelcnn_weights(0), 2, 1, 3, &dev)?,
        1,
        1,
        1,
        1,
    )?;
    let h = add_channel_bias(&h, &b(0)?)?.relu()?;
    let h = h.conv2d(
        &conv_weight(&pixelcnn_weights(1), 1, 2, 1, &dev)?,
        0,
        1,
        1,
        1,
    )?;
    chw(&add_channel_bias(&h, &b(1)?)?)
}
