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
//! - `tiny_stacks_golden`: a two-layer two-stack PixelCNN (`StackConv2d`,
//!   format version 2) against `tests/fixtures/tiny_stacks_f32.tgm`, its
//!   arena and MACs by hand, its logits against candle and some by hand.
//!
//! Regenerate the golden files (after a deliberate format change, which also
//! bumps `FORMAT_VERSION` and docs/format.md) with
//! `UPDATE_GOLDEN=1 cargo test -p tinygen-tests --test format_golden`, then
//! review the diff.

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use tinygen_runtime::format::{
    self, Act, DType, Figure, Head, Layer, LayerQuant, Mask, Meta, ModelFile, ModelKind, Net, Op,
    QParams, Shape, MAGIC,
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
        version: 1,
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
            version: 1,
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
    // Version 1: these files use nothing version 2 added (written as the
    // oldest version that holds them, `ModelFile::min_version`).
    assert_eq!(file.min_version(), 1);
    assert_eq!(&want[..5], &[b'T', b'G', b'M', 0, 1]);
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
    // One byte per activation: A = max(2, 16), B = max(8, 16); then the
    // int8 kernels' scratch, the largest layer's: the 3x3 convolution's
    // three columns of 9 values, 18 words of two values (groups of four).
    assert_eq!((model.plan.buf_a, model.plan.buf_b), (16, 16));
    assert_eq!(model.plan.scratch, 72);
    assert_eq!(model.arena_bytes(), 32 + 72);
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
        version: 1,
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

// ---------------------------------------------------------------------------
// A tiny PixelRNN: image 1x4x4, masked conv 1->2 k3 mask A + ReLU, Row LSTM
// 2->2 (k_in 3 mask B, k_state 3), masked conv 2->1 k1 mask B (the logits);
// in f32 and in int8.

const PIXELRNN_OPS: [(Op, Act); 3] = [
    PIXELCNN_OPS[0],
    (
        Op::RowLstm {
            in_c: 2,
            hidden: 2,
            k_in: 3,
            mask: Mask::B,
            k_state: 3,
        },
        Act::None,
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

/// Gate rows (4 x hidden) of the Row LSTM, and its blob lengths.
const LSTM_ROWS: usize = 8;
const LSTM_W_IS: usize = LSTM_ROWS * 2 * 3;
const LSTM_W_SS: usize = LSTM_ROWS * 2 * 3;

/// Whether weight j of PixelRNN layer l is a used tap (masked taps are
/// stored as zeros).
fn pixelrnn_tap_used(l: usize, j: usize) -> bool {
    match PIXELRNN_OPS[l].0 {
        Op::MaskedConv2d { k, mask, .. } => {
            let k = k as usize;
            mask.allows(k, (j / k) % k, j % k)
        }
        // w_is taps: mask B of width 3 uses t = 0, 1; w_ss: every tap.
        Op::RowLstm { .. } => j >= LSTM_W_IS || Mask::B.allows_1d(3, j % 3),
        _ => unreachable!(),
    }
}

fn pixelrnn_n(l: usize) -> (usize, usize) {
    [(18, 2), (LSTM_W_IS + LSTM_W_SS, LSTM_ROWS), (2, 1)][l]
}

/// f32 weights of PixelRNN layer l: dyadic, of both signs, halved for the
/// Row LSTM (twelve terms per gate).
fn pixelrnn_weights(l: usize) -> Vec<f32> {
    let scale = if l == 1 { 0.5 } else { 1.0 };
    (0..pixelrnn_n(l).0)
        .map(|j| {
            if pixelrnn_tap_used(l, j) {
                scale * f32_weight(l + 4, j)
            } else {
                0.0
            }
        })
        .collect()
}

fn pixelrnn_bias(l: usize) -> Vec<f32> {
    (0..pixelrnn_n(l).1)
        .map(|j| 0.125 * ((j * 3 + l) % 5) as f32 - 0.25)
        .collect()
}

/// The owned blobs of the tiny PixelRNN in `dtype`.
struct TinyRnn {
    dtype: DType,
    weights: Vec<Vec<u8>>,
    biases: Vec<Vec<u8>>,
    mults: Vec<Vec<u8>>,
    shifts: Vec<Vec<u8>>,
    lut: Vec<u8>,
}

/// int8 zero points (input, output) and output scales of the tiny PixelRNN.
const RNN_ZP: [(i8, i8); 3] = [(-128, -128), (-128, 0), (0, 5)];
const RNN_OUT_SCALE: [f32; 3] = [0.05, 1.0 / 128.0, 0.125];

impl TinyRnn {
    fn new(dtype: DType) -> TinyRnn {
        let mut t = TinyRnn {
            dtype,
            weights: Vec::new(),
            biases: Vec::new(),
            mults: Vec::new(),
            shifts: Vec::new(),
            // Pixel probability of each logit code: 255 * sigmoid(0.125 * (q - 5)).
            lut: (-128..128)
                .map(|q: i32| (255.0 / (1.0 + (-0.125 * (q - 5) as f64).exp())).round() as u8)
                .collect(),
        };
        for l in 0..3 {
            let (nw, nb) = pixelrnn_n(l);
            match dtype {
                DType::F32 => {
                    t.weights.push(f32_le(&pixelrnn_weights(l)));
                    t.biases.push(f32_le(&pixelrnn_bias(l)));
                    t.mults.push(Vec::new());
                    t.shifts.push(Vec::new());
                }
                DType::I8 => {
                    let w: Vec<i8> = (0..nw)
                        .map(|j| {
                            if pixelrnn_tap_used(l, j) {
                                (j as i32 * 37 % 255 - 127) as i8
                            } else {
                                0
                            }
                        })
                        .collect();
                    let mut wb = i8_bytes(&w);
                    if l == 1 {
                        wb.extend(tinygen_tests::pixelrnn::lstm_luts(1.0 / 16.0));
                    }
                    t.weights.push(wb);
                    let b: Vec<i32> = (0..nb)
                        .map(|j| [-300, 400, 50][l] * (j as i32 % 3 - 1))
                        .collect();
                    t.biases.push(i32_le(&b));
                    // m = 2^30 (one half); the Row LSTM's 8 * hidden:
                    // input-to-state rows, then state-to-state rows.
                    let nq = if l == 1 { 2 * nb } else { nb };
                    t.mults.push(i32_le(&vec![1 << 30; nq]));
                    let shift = |j: usize| match l {
                        0 => 39 + (j % 2) as u8,
                        1 if j < nb => 39,
                        1 => 40,
                        _ => 36,
                    };
                    t.shifts.push((0..nq).map(shift).collect());
                }
                DType::F16 => unreachable!("no f16 golden"),
            }
        }
        t
    }

    fn file(&self) -> ModelFile<'_> {
        let mut layers = heapless::Vec::new();
        for (l, &(op, act)) in PIXELRNN_OPS.iter().enumerate() {
            let quant = (self.dtype == DType::I8).then(|| LayerQuant {
                in_zp: RNN_ZP[l].0,
                out_zp: RNN_ZP[l].1,
                out_scale: RNN_OUT_SCALE[l],
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
        ModelFile {
            magic: MAGIC,
            version: 1,
            kind: ModelKind::PixelRnn,
            dtype: self.dtype,
            meta: Meta {
                image: shape(1, 4, 4),
                latent: 0,
                data: "hand-built golden PixelRNN (tests/tests/format_golden.rs)",
                figures: heapless::Vec::new(),
                prior_mean: &[],
                prior_std: &[],
            },
            decoder: Net {
                input: shape(1, 4, 4),
                input_q: (self.dtype == DType::I8).then_some(QParams {
                    scale: 1.0 / 255.0,
                    zero_point: -128,
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

/// The golden bytes of the tiny PixelRNN in `dtype`, checked, and its
/// model's figures worked out by hand.
fn check_pixelrnn_golden(dtype: DType, name: &str) -> Vec<u8> {
    let tiny = TinyRnn::new(dtype);
    let file = tiny.file();
    let bytes = encode(&file);
    let want = golden(name, &bytes);
    assert_same_bytes(&bytes, &want, name);
    assert_eq!(format::decode(&want).unwrap(), file);
    // The Row LSTM's op, act and weight length, byte by byte: RowLstm
    // (variant 5) { in_c 2, hidden 2, k_in 3, mask B (1), k_state 3 },
    // None (0), then the weight blob's varint length: 96 f32 = 384 bytes
    // (0x80 0x03), or 96 i8 + 1024 table bytes = 1120 (0xe0 0x08).
    let len: &[u8] = if dtype == DType::F32 {
        &[0x80, 0x03]
    } else {
        &[0xe0, 0x08]
    };
    let op = [&[0x05, 0x02, 0x02, 0x03, 0x01, 0x03, 0x00][..], len].concat();
    assert_eq!(want.windows(op.len()).filter(|w| *w == op).count(), 1);

    let model = Model::load(&want).unwrap();
    // Row caches: input 2 rows x 1 (read by the 3x3), conv output 1 row x 2
    // (the LSTM reads row y), LSTM output 2 rows x 2 (its state), logits 1
    // row; 4 wide, each cache 4-byte aligned; then the LSTM's cell row,
    // 2 x 4 f32 or i32.
    // int8: then the kernels' scratch, the LSTM's input and state columns
    // (2 x 3 values each: 4 words each).
    let eb = dtype.act_bytes() as u32;
    let scratch = if dtype == DType::I8 { 8 * 4 } else { 0 };
    assert_eq!(
        model.arena_bytes(),
        (2 + 2 + 4 + 1) * 4 * eb + 2 * 4 * 4 + scratch
    );
    // Full forward: A and B hold 2 x 4 x 4 at most, plus the cell row.
    assert_eq!(model.forward_arena_bytes(), 2 * 32 * eb + 32 + scratch);
    // MACs: the 3x3 mask A as in the PixelCNN: 84. The Row LSTM, per gate
    // row (8): input taps (mask B k 3: 1 at column 0, 2 elsewhere: 7 a
    // row, 4 rows) x 2 channels = 56; state taps (k 3: 2 at the borders, 3
    // inside: 10 a row, rows 1..3) x 2 channels = 60. The 1x1: 2 x 16.
    assert_eq!(model.forward_macs(), 84 + 8 * (56 + 60) + 32);
    assert_eq!(model.macs_per_sample(), model.forward_macs());
    // Every sample of the incremental sampler is the naive one's.
    let mut arena = AlignedBuf::new(model.arena_bytes() as usize);
    let mut scratch = AlignedBuf::new(model.forward_arena_bytes() as usize);
    let mut s = tinygen_runtime::AutoregressiveSampler::new(&model, arena.bytes()).unwrap();
    let (mut r1, mut r2) = (tinygen_runtime::Rng::new(3), tinygen_runtime::Rng::new(3));
    for _ in 0..8 {
        let (mut a, mut b) = ([0u8; 16], [1u8; 16]);
        s.sample(&mut r1, &mut a).unwrap();
        s.naive(&mut r2, &mut b, scratch.bytes()).unwrap();
        assert_eq!(a, b, "{name}: incremental vs naive");
    }
    want.clone()
}

/// The teacher-forced logits of the tiny PixelRNN in `dtype`.
fn pixelrnn_logits(bytes: &[u8], image: &[u8]) -> Vec<f32> {
    let model = Model::load(bytes).unwrap();
    let mut arena = AlignedBuf::new(model.arena_bytes() as usize);
    let mut scratch = AlignedBuf::new(model.forward_arena_bytes() as usize);
    let s = tinygen_runtime::AutoregressiveSampler::new(&model, arena.bytes()).unwrap();
    let mut got = vec![0f32; 16];
    s.logits(image, scratch.bytes(), &mut got).unwrap();
    got
}

/// The f64 oracle of the tiny f32 PixelRNN.
fn pixelrnn_oracle(image: &[u8]) -> Vec<f64> {
    use tinygen_tests::pixelrnn::{masked_conv_f64, LstmParams};
    let f64s = |v: Vec<f32>| v.into_iter().map(f64::from).collect::<Vec<_>>();
    let x: Vec<f64> = image
        .iter()
        .map(|&p| f64::from(u8::from(p >= 128)))
        .collect();
    let (w0, b0) = (f64s(pixelrnn_weights(0)), f64s(pixelrnn_bias(0)));
    let h = masked_conv_f64(&x, 1, 4, 4, &w0, &b0, 3, Mask::A, true);
    let w1 = f64s(pixelrnn_weights(1));
    let lstm = LstmParams {
        in_c: 2,
        hidden: 2,
        k_in: 3,
        mask: Mask::B,
        k_state: 3,
        w_is: w1[..LSTM_W_IS].to_vec(),
        w_ss: w1[LSTM_W_IS..].to_vec(),
        bias: f64s(pixelrnn_bias(1)),
    };
    let h = lstm.forward(&h, 4, 4);
    let (w2, b2) = (f64s(pixelrnn_weights(2)), f64s(pixelrnn_bias(2)));
    masked_conv_f64(&h, 2, 4, 4, &w2, &b2, 1, Mask::B, false)
}

#[test]
fn tiny_pixelrnn_f32_golden() {
    let bytes = check_pixelrnn_golden(DType::F32, "tiny_pixelrnn_f32.tgm");
    let image: Vec<u8> = (0..16).map(|i| if i % 3 == 0 { 255 } else { 0 }).collect();
    let got = pixelrnn_logits(&bytes, &image);
    let want = pixelrnn_oracle(&image);
    assert_close(
        &got,
        &want,
        Approximation::Close,
        "tiny PixelRNN vs f64 oracle",
    );
}

#[test]
fn tiny_pixelrnn_i8_golden() {
    let bytes = check_pixelrnn_golden(DType::I8, "tiny_pixelrnn_i8.tgm");
    let f = format::decode(&bytes).unwrap();
    let q = f.decoder.layers[1].quant.unwrap();
    assert_eq!(
        (q.out_scale, q.out_zp, q.multiplier.len(), q.shift.len()),
        (1.0 / 128.0, 0, 64, 16)
    );
    // The logits are codes of the last layer (scale 0.125, zero point 5),
    // and they depend on the pixels before them.
    let image: Vec<u8> = (0..16).map(|i| if i % 3 == 0 { 255 } else { 0 }).collect();
    let got = pixelrnn_logits(&bytes, &image);
    for &l in &got {
        let code = l / 0.125 + 5.0;
        assert!(
            code.fract() == 0.0 && (-128.0..=127.0).contains(&code),
            "{l}"
        );
    }
    assert!(got.iter().any(|&l| l != got[0]), "{got:?}");
    let blank = pixelrnn_logits(&bytes, &[0u8; 16]);
    assert_ne!(got, blank, "the logits ignore the image");
}

// ---------------------------------------------------------------------------
// A tiny two-stack PixelCNN (format version 2): image 1x4x4, StackConv2d
// 1 -> 2 (channel 0 vertical, channel 1 horizontal) k3 mask A + ReLU, then
// StackConv2d 2 (in_v 1) -> 1 (out_v 0) k1 mask B: the logits, from the
// horizontal channel at the pixel itself and the vertical one a row up.

const STACKS_OPS: [(Op, Act); 2] = [
    (
        Op::StackConv2d {
            in_c: 1,
            in_v: 0,
            out_c: 2,
            out_v: 1,
            k: 3,
            mask: Mask::A,
        },
        Act::Relu,
    ),
    (
        Op::StackConv2d {
            in_c: 2,
            in_v: 1,
            out_c: 1,
            out_v: 0,
            k: 1,
            mask: Mask::B,
        },
        Act::None,
    ),
];

/// The compact blobs (only the taps used, one row per output channel):
/// layer 0's vertical row `[1 input][2 kernel rows][3]` (the row above,
/// then the pixel's own row), then its horizontal row: mask A with `k = 3`
/// has one tap, the pixel on the left, and no link (`in_v = 0`). Layer 1's
/// one horizontal row: the horizontal input at the pixel (mask B, `k = 1`),
/// then the link to the vertical input at `(y - 1, x)`.
fn stacks_weights(l: usize) -> Vec<f32> {
    [
        vec![0.5, -0.25, 0.75, 1.0, 0.125, -0.5, 2.0],
        vec![1.5, -0.75],
    ][l]
        .clone()
}

fn stacks_bias(l: usize) -> Vec<f32> {
    [vec![0.25, -0.125], vec![-0.5]][l].clone()
}

#[test]
fn tiny_stacks_golden() {
    let weights: Vec<Vec<u8>> = (0..2).map(|l| f32_le(&stacks_weights(l))).collect();
    let biases: Vec<Vec<u8>> = (0..2).map(|l| f32_le(&stacks_bias(l))).collect();
    let mut layers = heapless::Vec::new();
    for (l, &(op, act)) in STACKS_OPS.iter().enumerate() {
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
    let mut file = ModelFile {
        magic: MAGIC,
        version: 0,
        kind: ModelKind::PixelCnn,
        dtype: DType::F32,
        meta: Meta {
            image: shape(1, 4, 4),
            latent: 0,
            data: "hand-built golden two-stack PixelCNN (tests/tests/format_golden.rs)",
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
    // A two-stack layer needs version 2, and writers write the oldest
    // version that holds the file.
    assert_eq!(file.min_version(), 2);
    file.version = file.min_version();
    let bytes = encode(&file);
    let want = golden("tiny_stacks_f32.tgm", &bytes);
    assert_same_bytes(&bytes, &want, "tiny_stacks_f32.tgm");
    assert_eq!(format::decode(&want).unwrap(), file);
    assert_eq!(&want[..5], &[b'T', b'G', b'M', 0, 2]);
    let stored = u32::from_le_bytes(want[want.len() - 4..].try_into().unwrap());
    assert_eq!(stored, tinygen_runtime::crc32(&want[..want.len() - 4]));
    // The first layer's op, act and weight length, byte by byte:
    // StackConv2d (variant 6) { in_c 1, in_v 0, out_c 2, out_v 1, k 3,
    // mask A (0) }, Relu (1), weight blob of 7 f32 = 28 bytes (varint 0x1c).
    let op = [0x06, 0x01, 0x00, 0x02, 0x01, 0x03, 0x00, 0x01, 0x1c];
    assert_eq!(want.windows(op.len()).filter(|w| *w == op).count(), 1);
    // The second: { 2, 1, 1, 0, k 1, mask B (1) }, None (0), 8 bytes.
    let op = [0x06, 0x02, 0x01, 0x01, 0x00, 0x01, 0x01, 0x00, 0x08];
    assert_eq!(want.windows(op.len()).filter(|w| *w == op).count(), 1);

    let model = Model::load(&want).unwrap();
    // Row caches: the input 2 rows (read by a 3x3 stack: rows y-1..=y), layer
    // 0's output 2 rows x 2 channels (a stack reads the vertical channel at
    // y - 1 even with k = 1), the logits 1 row; 4 pixels wide, f32.
    assert_eq!(model.arena_bytes(), (2 + 2 * 2 + 1) * 4 * 4);
    // MACs. Layer 0, vertical output: rows y-1..=y inside the image (1 at
    // row 0, else 2: 7 over the 4 rows) times columns x-1..=x+1 inside it
    // (2, 3, 3, 2: 10 over the 4 columns) = 70; horizontal output: the one
    // tap left of x, inside the row for x >= 1: 3 x 4 rows = 12. Layer 1:
    // the centre tap at all 16 pixels, the link from row 1 on: 12.
    assert_eq!(model.forward_macs(), 70 + 12 + 16 + 12);
    assert_eq!(model.macs_per_sample(), model.forward_macs());

    // Teacher-forced logits through the runtime, against candle (dense
    // kernels spread from the compact blobs) and, for row 0 and (1, 1), by
    // hand.
    let image: Vec<u8> = (0..16).map(|i| if i % 3 == 0 { 255 } else { 0 }).collect();
    let mut arena = AlignedBuf::new(model.arena_bytes() as usize);
    let mut scratch = AlignedBuf::new(model.forward_arena_bytes() as usize);
    let mut sampler = tinygen_runtime::PixelCnnSampler::new(&model, arena.bytes()).unwrap();
    let mut got = [0f32; 16];
    sampler.logits(&image, scratch.bytes(), &mut got).unwrap();
    let want = candle_stacks(&image).unwrap();
    assert_close(&got, &want, Approximation::Close, "tiny stacks vs candle");
    // Row 0 (pixels 0 and 3 on): no row above, so no link; the horizontal
    // channel at x is relu(-0.125 + 2 * pixel(x - 1)), the logit
    // -0.5 + 1.5 * that: -0.5 where the left pixel is off (or absent),
    // -0.5 + 1.5 * 1.875 = 2.3125 where it is on (x = 1).
    assert_eq!(&got[..4], &[-0.5, 2.3125, -0.5, -0.5]);
    // (1, 1): left pixel (1, 0) is off: horizontal 0. The link reads the
    // vertical channel at (0, 1): 0.25 + row -1 (outside, 0) + own row
    // 1.0 * p(0,0) + 0.125 * p(0,1) - 0.5 * p(0,2) = 0.25 + 1.0 = 1.25,
    // so -0.5 - 0.75 * 1.25 = -1.4375.
    assert_eq!(got[5], -1.4375);

    // The incremental sampler draws what the naive one (a full forward pass
    // per pixel) draws.
    let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
    sampler
        .sample(&mut tinygen_runtime::Rng::new(5), &mut a)
        .unwrap();
    sampler
        .naive(&mut tinygen_runtime::Rng::new(5), &mut b, scratch.bytes())
        .unwrap();
    assert_eq!(a, b);
}

fn candle_stacks(image: &[u8]) -> candle_core::Result<Vec<f64>> {
    use tinygen_tests::{stack_conv2d, stack_weights};
    let dev = Device::Cpu;
    let x: Vec<f32> = image
        .iter()
        .map(|&p| f32::from(u8::from(p >= 128)))
        .collect();
    let mut h = Tensor::from_vec(x, (1, 1, 4, 4), &dev)?;
    for (l, &(op, act)) in STACKS_OPS.iter().enumerate() {
        let Op::StackConv2d {
            in_c,
            in_v,
            out_c,
            out_v,
            k,
            mask,
        } = op
        else {
            unreachable!()
        };
        let (i, o, k) = (in_c as usize, out_c as usize, k as usize);
        let (dense, link) = stack_weights(
            &stacks_weights(l),
            i,
            in_v.into(),
            o,
            out_v.into(),
            k,
            mask == Mask::B,
        );
        let y = stack_conv2d(
            &h,
            &conv_weight(&dense, o, i, k, &dev)?,
            &conv_weight(&link, o, i, 1, &dev)?,
        )?;
        let bias = Tensor::from_vec(stacks_bias(l), o, &dev)?;
        h = add_channel_bias(&y, &bias)?;
        if act == Act::Relu {
            h = h.relu()?;
        }
    }
    chw(&h)
}
