//! The `.tgm` model file: its types, its reading and its validation.
//!
//! This module is the only definition of the file. The trainer serializes
//! these very structs with postcard; the runtime deserializes them borrowing
//! every weight blob from the file (nothing is copied to RAM). The byte-level
//! description lives in `docs/format.md`.
//!
//! A file is `postcard(ModelFile)` followed by the CRC-32 (IEEE, as zlib and
//! PNG) of those bytes, little-endian. [`ModelFile`] starts with [`MAGIC`] and
//! the format version, so a reader rejects foreign files and unknown versions
//! before it trusts anything else.
//!
//! # For exporters
//!
//! Build a [`ModelFile`] with the blobs in little-endian byte order and call
//! [`encode`]; then check the result with [`crate::Model::load`], which
//! validates exactly what a board will validate.
//!
//! # For firmware
//!
//! Use [`crate::Model::load`]: it checks magic, version, CRC, decoding, every
//! blob size and every shape once, and returns a typed [`Error`].

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

pub use crate::version::{FORMAT_VERSION, MAGIC, MIN_FORMAT_VERSION};
/// Most layers a network may have.
pub const MAX_LAYERS: usize = 16;
/// Most quality figures a file may carry.
pub const MAX_FIGURES: usize = 8;
/// Largest latent vector the samplers accept (they keep it on the stack).
pub const MAX_LATENT: usize = 64;
/// Largest tensor, in elements, that a network may produce.
pub const MAX_TENSOR_ELEMS: u32 = 1 << 22;
/// Bytes of the three lookup tables that end an int8 [`Op::RowLstm`]'s
/// weight blob: `sigmoid[256]`, `tanh[256]`, `cell_tanh[512]`.
pub const ROW_LSTM_LUT_BYTES: usize = 1024;
/// The output scale of every int8 [`Op::RowLstm`] (its hidden states; zero
/// point 0).
pub const ROW_LSTM_OUT_SCALE: f32 = 1.0 / 128.0;

/// What a model is.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ModelKind {
    /// Deterministic autoencoder: decoder z -> image.
    AutoEncoder,
    /// Variational autoencoder: decoder from z ~ N(0, I).
    Vae,
    /// GAN generator from z ~ N(0, I).
    Gan,
    /// Masked-convolution autoregressive model.
    PixelCnn,
    /// Row-LSTM autoregressive model.
    PixelRnn,
    /// Digit classifier.
    Classifier,
}

/// Storage type of the weights (and, for `I8`, of the activations).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum DType {
    /// f32 weights and activations.
    F32,
    /// f16 weights widened to f32; f32 bias and activations.
    F16,
    /// Full-integer: int8 weights (per output channel) and activations (per
    /// tensor, with a zero point), i32 bias and accumulators.
    I8,
}

impl DType {
    /// Bytes per stored weight.
    pub const fn weight_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 => 2,
            DType::I8 => 1,
        }
    }
    /// Bytes per activation element in the arena.
    pub const fn act_bytes(self) -> usize {
        match self {
            DType::F32 | DType::F16 => 4,
            DType::I8 => 1,
        }
    }
    /// Lower-case name as the command line spells it.
    pub const fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::I8 => "int8",
        }
    }
}

/// A CHW tensor shape (one sample, no batch dimension).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Shape {
    /// Channels.
    pub c: u16,
    /// Height.
    pub h: u16,
    /// Width.
    pub w: u16,
}

impl Shape {
    /// Number of elements, as u32 (cannot overflow: 3 x u16 < 2^48 is checked
    /// against [`MAX_TENSOR_ELEMS`] by the plan before use).
    pub const fn numel(self) -> u64 {
        self.c as u64 * self.h as u64 * self.w as u64
    }
}

/// A named quality figure measured at export (e.g. `test_elbo_nats`).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
pub struct Figure<'a> {
    /// Name of the figure.
    pub name: &'a str,
    /// Its value.
    pub value: f32,
}

/// Model-level metadata.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Meta<'a> {
    /// Shape of the images the model produces.
    pub image: Shape,
    /// Latent size (0 for models without a latent).
    pub latent: u16,
    /// Where the training data came from (free text).
    pub data: &'a str,
    /// Quality figures measured at export.
    #[serde(borrow)]
    pub figures: heapless::Vec<Figure<'a>, MAX_FIGURES>,
    /// The distribution `sample` draws z from: per latent dimension, f32 LE
    /// mean and standard deviation (`z = mean + std * eps`, eps ~ N(0, 1)).
    /// Both empty for N(0, I) (VAE, GAN); an AutoEncoder stores the Gaussian
    /// fitted to its training codes.
    pub prior_mean: &'a [u8],
    /// See [`Meta::prior_mean`].
    pub prior_std: &'a [u8],
}

/// A layer's operation, with its geometry.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Fully connected: flattens its input (`inp` elements) to `out` x 1 x 1.
    /// Weight `[out][inp]`.
    Dense {
        /// Input features.
        inp: u16,
        /// Output features.
        out: u16,
    },
    /// 2-D convolution, square kernel. Weight `[out_c][in_c][k][k]`.
    Conv2d {
        /// Input channels.
        in_c: u16,
        /// Output channels.
        out_c: u16,
        /// Kernel size.
        k: u8,
        /// Stride.
        stride: u8,
        /// Zero padding on each side.
        pad: u8,
    },
    /// 2-D transposed convolution, square kernel. Weight `[in_c][out_c][k][k]`
    /// (candle's and PyTorch's layout).
    ConvTranspose2d {
        /// Input channels.
        in_c: u16,
        /// Output channels.
        out_c: u16,
        /// Kernel size.
        k: u8,
        /// Stride.
        stride: u8,
        /// Padding removed from each side of the full output.
        pad: u8,
        /// Extra rows/columns added at the bottom/right.
        out_pad: u8,
    },
    /// Reinterprets the data as another shape with the same element count.
    Reshape(Shape),
    /// Masked 2-D convolution (PixelCNN), square odd kernel, stride 1, 'same'
    /// zero padding `k / 2`: output (o, y, x) reads input rows above `y`
    /// and, on row `y`, columns left of `x` (plus `x` itself with
    /// [`Mask::B`]). Weight `[out_c][in_c][k][k]`, all `k * k` taps stored;
    /// the masked ones are written as zeros and never read.
    MaskedConv2d {
        /// Input channels.
        in_c: u16,
        /// Output channels.
        out_c: u16,
        /// Kernel size (odd).
        k: u8,
        /// Which taps are used.
        mask: Mask,
    },
    /// Row LSTM (van den Oord et al. 2016, "Pixel Recurrent Neural
    /// Networks", section 3.1): one LSTM step per image row, all columns of
    /// a row at once. Input `in_c x h x w`, output `hidden x h x w` (the
    /// hidden states). `act` must be [`Act::None`].
    ///
    /// For row `y` (with `h_prev = c_prev = 0` before row 0), for each
    /// column `x` and gate row `r` in `0..4 * hidden`:
    ///
    /// ```text
    /// pre[r] = bias[r]
    ///        + sum_{i, t: mask.allows_1d(k_in, t)} w_is[r][i][t] * in[i][y][x + t - k_in/2]
    ///        + sum_{j, t}                          w_ss[r][j][t] * h_prev[j][x + t - k_state/2]
    /// ```
    ///
    /// (zero outside the row), with gate rows in the order i, f, o, g
    /// (`hidden` rows each); then `i, f, o = sigmoid(pre)`,
    /// `g = tanh(pre)`, `c = f * c_prev + i * g`, `h = o * tanh(c)`.
    /// The input-to-state convolution is masked along the row exactly as a
    /// 1-row [`Op::MaskedConv2d`] (`Mask::A`: columns left of `x`;
    /// `Mask::B`: also `x`); the state-to-state one reads the whole
    /// previous row of hidden states. So output (y, x) depends on rows
    /// above `y` and on row `y` left of `x` (and at `x` with mask B):
    /// causal in raster order.
    ///
    /// Weight blob: `w_is [4 * hidden][in_c][k_in]` (masked taps stored as
    /// zeros) followed by `w_ss [4 * hidden][hidden][k_state]`, in the
    /// file's dtype. For `I8` three lookup tables follow, as i8:
    /// `sigmoid[256]`, `tanh[256]` (indexed by a gate pre-activation
    /// `q + 128`), and `cell_tanh[512]` (see below). Bias: `4 * hidden`
    /// (f32, or i32 at input scale x `w_is` scale of that row).
    ///
    /// # int8 arithmetic (all integer, identical on every target)
    ///
    /// [`LayerQuant`] holds `8 * hidden` multipliers and shifts: the first
    /// `4 * hidden` requantize the input-to-state accumulator
    /// `acc_is = bias[r] + sum (x - in_zp) * w_is` of row `r`, the next
    /// `4 * hidden` the state-to-state accumulator `acc_ss = sum h * w_ss`,
    /// both to one pre-activation scale chosen at export. With
    /// `rq(acc, m, s) = (acc * m + 2^(s-1)) >> s` (i64, as every int8
    /// kernel), `p = clamp(rq(acc_is) + rq(acc_ss), -128, 127)`. Gates
    /// `i, f, o = sigmoid[p + 128]`, `g = tanh[p + 128]` are at scale
    /// 1/128. The cell state is an i32 at scale 2^-14:
    /// `c = clamp(((f * c_prev + 64) >> 7) + i * g, -2^20, 2^20)`; then
    /// `t = cell_tanh[clamp((c + 128) >> 8, -256, 255) + 256]` (cell index
    /// at scale 1/64, so the table spans c in [-4, 4)), and
    /// `h = clamp((o * t + 64) >> 7, -128, 127)`: the output's scale is
    /// always 1/128 and its zero point 0 (`out_scale` = 1/128,
    /// `out_zp` = 0).
    RowLstm {
        /// Input channels.
        in_c: u16,
        /// Hidden (and cell) channels.
        hidden: u16,
        /// Input-to-state kernel width along the row (odd).
        k_in: u8,
        /// Mask of the input-to-state kernel.
        mask: Mask,
        /// State-to-state kernel width over the previous row (odd).
        k_state: u8,
    },
    /// Masked convolution in two stacks, a vertical and a horizontal one
    /// (van den Oord et al. 2016, "Conditional Image Generation with
    /// PixelCNN Decoders", section 2.2, without the gates): a stack of
    /// these has no blind spot, where a stack of [`Op::MaskedConv2d`]
    /// cannot see the pixels above and to the right of the cone its 3x3
    /// masks grow.
    ///
    /// Input channels `0..in_v` are the vertical stack, `in_v..in_c` the
    /// horizontal one (`in_v = 0`: the input is all horizontal, e.g. the
    /// image); output channels `0..out_v` are vertical, `out_v..out_c`
    /// horizontal. Kernel `k` odd, `c = k / 2`, stride 1, zero outside the
    /// image. At output (y, x):
    ///
    /// ```text
    /// vertical o < out_v:  bias[o] + sum_{i in V, ky <= c, kx < k} w_v[o][i][ky][kx] * in[i][y + ky - c][x + kx - c]
    /// horizontal o >= out_v: bias[o] + sum_{i >= in_v, t < n_h} w_h[o][i][t] * in[i][y][x + t - c]
    ///                                + sum_{i < in_v}           w_link[o][i] * in[i][y - 1][x]
    /// ```
    ///
    /// where `V` is the vertical inputs `0..in_v`, or every input when
    /// `in_v = 0`, and `n_h = c` (mask A: columns left of `x`) or `c + 1`
    /// (mask B: also `x`). So a vertical output at row `y` reads input rows
    /// `y - c ..= y` (whole rows, within the kernel) and may depend on all
    /// of row `y`: it is never read at its own row. A horizontal output
    /// reads the horizontal inputs on its own row, left of `x` (and `x`
    /// with mask B), and the vertical inputs only one row up: causal in
    /// raster order, and through the vertical stack it sees every row
    /// above within reach, left and right. The last stack layer before the
    /// logits has `out_v = 0` ([`crate::Model::load`] checks that no logit
    /// can see its own pixel or anything after it).
    ///
    /// Weight blob, one row per output channel (the int8 per-channel
    /// scales are per row): first the `out_v` vertical rows
    /// `w_v [out_v][|V|][c + 1][k]`, then the `out_c - out_v` horizontal
    /// rows `[w_h [in_c - in_v][n_h], w_link [in_v]]`. Only the taps used
    /// are stored. Bias `out_c`. The incremental sampler computes the
    /// horizontal outputs pixel by pixel and the vertical outputs of row `y`
    /// once row `y` is complete; every output once per sample.
    StackConv2d {
        /// Input channels.
        in_c: u16,
        /// Of which vertical (the first `in_v`).
        in_v: u16,
        /// Output channels.
        out_c: u16,
        /// Of which vertical (the first `out_v`).
        out_v: u16,
        /// Kernel size (odd).
        k: u8,
        /// Mask of the horizontal taps.
        mask: Mask,
    },
}

/// The taps a [`Op::MaskedConv2d`] uses, for kernel centre `c = k / 2`:
/// tap (ky, kx) is used when `ky < c`, or `ky == c` and `kx < c` (mask A) or
/// `kx <= c` (mask B).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Mask {
    /// Excludes the centre tap: the first layer, which must not see the
    /// pixel it predicts.
    A,
    /// Includes the centre tap: every later layer.
    B,
}

impl Mask {
    /// Whether tap (`ky`, `kx`) of a `k` x `k` kernel is used.
    pub const fn allows(self, k: usize, ky: usize, kx: usize) -> bool {
        let c = k / 2;
        ky < c || (ky == c && (kx < c || (kx == c && matches!(self, Mask::B))))
    }

    /// Whether tap `t` of a 1-row kernel of width `k` is used (the centre
    /// row of a `k` x `k` [`Mask::allows`]).
    pub const fn allows_1d(self, k: usize, t: usize) -> bool {
        self.allows(k, k / 2, t)
    }
}

/// Activation applied to a layer's output.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// Identity.
    None,
    /// max(x, 0). On the int8 path, a clamp at the output zero point.
    Relu,
}

/// Requantization of one int8 layer (TFLite-Micro style).
///
/// `out = clamp(((acc * multiplier[c]) + 2^(shift[c]-1)) >> shift[c] + out_zp)`
/// where `acc = bias[c] + sum((x - in_zp) * w)`.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
pub struct LayerQuant<'a> {
    /// Zero point of the layer's input tensor.
    pub in_zp: i8,
    /// Zero point of the layer's output tensor.
    pub out_zp: i8,
    /// Scale of the output tensor (real = scale * (q - zp)); used only to
    /// dequantize network outputs, never inside the kernels.
    pub out_scale: f32,
    /// Per output channel, i32 little-endian, in `[0, 2^31)`.
    pub multiplier: &'a [u8],
    /// Per output channel right shift, in `1..=62`.
    pub shift: &'a [u8],
}

/// One layer.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
pub struct Layer<'a> {
    /// Operation and geometry.
    pub op: Op,
    /// Activation on the output.
    pub act: Act,
    /// Weights: f32 LE, f16 LE or i8, as the file's [`DType`] says.
    pub weight: &'a [u8],
    /// Bias per output channel: f32 LE, or i32 LE for `I8` (scale = input
    /// scale x weight scale).
    pub bias: &'a [u8],
    /// Requantization, present exactly when the file is `I8`.
    #[serde(borrow)]
    pub quant: Option<LayerQuant<'a>>,
}

/// How a network's last tensor becomes pixel bytes.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
pub enum Head<'a> {
    /// f32 logits: pixel = round(255 * sigmoid(logit)).
    Sigmoid,
    /// int8 logits: pixel = table[q + 128] (256 bytes, built at export from
    /// the output scale and zero point).
    SigmoidLut(&'a [u8]),
    /// The network's output is not an image (an encoder).
    Raw,
}

/// Input quantization of an int8 network: q = clamp(round(x / scale) + zp).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
pub struct QParams {
    /// Scale.
    pub scale: f32,
    /// Zero point.
    pub zero_point: i8,
}

/// One feed-forward network: input shape, layers, output head.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Net<'a> {
    /// Shape of the input tensor.
    pub input: Shape,
    /// Input quantization, present exactly when the file is `I8`.
    pub input_q: Option<QParams>,
    /// The layers, in order.
    #[serde(borrow)]
    pub layers: heapless::Vec<Layer<'a>, MAX_LAYERS>,
    /// How the output becomes bytes.
    #[serde(borrow)]
    pub head: Head<'a>,
}

/// A whole model file (everything before the CRC).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ModelFile<'a> {
    /// Always [`MAGIC`].
    pub magic: [u8; 4],
    /// [`ModelFile::min_version`] for files this runtime writes.
    pub version: u16,
    /// What the model is.
    pub kind: ModelKind,
    /// Weight storage type.
    pub dtype: DType,
    /// Metadata.
    #[serde(borrow)]
    pub meta: Meta<'a>,
    /// The network that produces images (decoder / generator).
    #[serde(borrow)]
    pub decoder: Net<'a>,
    /// The network that maps an image to its latent (the AutoEncoder's
    /// encoder, for on-device feature extraction), if the file has one.
    #[serde(borrow)]
    pub encoder: Option<Net<'a>>,
}

/// Bytes of the smallest well-formed prefix a reader needs to look at:
/// magic (4) + version (1 varint byte at least) + CRC (4).
pub const MIN_FILE_BYTES: usize = 9;

/// Serializes `model` into `buf` and appends the CRC-32, returning the used
/// part of `buf`.
///
/// # Errors
///
/// [`Error::FormatDecode`] when `buf` is too small (postcard's
/// `SerializeBufferFull`).
pub fn encode<'b>(model: &ModelFile<'_>, buf: &'b mut [u8]) -> Result<&'b mut [u8]> {
    let n = postcard::to_slice(model, buf)
        .map_err(|_| Error::FormatDecode)?
        .len();
    let crc = crate::crc32::crc32(&buf[..n]).to_le_bytes();
    let total = n + 4;
    if buf.len() < total {
        return Err(Error::FormatDecode);
    }
    buf[n..total].copy_from_slice(&crc);
    Ok(&mut buf[..total])
}

/// Reads a model file without checking shapes (see [`crate::Model::load`]
/// for the full validation). Checks, in order: length, magic, version, CRC,
/// postcard decoding, trailing bytes.
///
/// # Errors
///
/// `FormatTruncated`, `FormatBadMagic`, `FormatVersion`, `FormatCrc`,
/// `FormatDecode` or `FormatTrailingBytes`.
pub fn decode(bytes: &[u8]) -> Result<ModelFile<'_>> {
    let mut file = ModelFile::EMPTY;
    decode_into(bytes, &mut file)?;
    Ok(file)
}

/// [`decode`] into `out`, in place: the networks' layers are decoded one at
/// a time straight into `out`'s, so that no copy of a whole [`Net`] or
/// [`ModelFile`] is ever made on the stack (a `ModelFile` is about 1.9 KB on
/// a 32-bit target; the 16 KB micro:bit cannot afford several). Decodes
/// exactly what postcard decodes for [`ModelFile`]'s derived
/// `Deserialize` (the same encoding, its pieces read by their derived
/// impls). On error, `out` holds an unspecified part of the file.
///
/// # Errors
///
/// As [`decode`].
#[inline(never)]
pub fn decode_into<'a>(bytes: &'a [u8], out: &mut ModelFile<'a>) -> Result<()> {
    if bytes.len() < MIN_FILE_BYTES {
        return Err(Error::FormatTruncated {
            len: bytes.len() as u32,
        });
    }
    if bytes[..4] != MAGIC {
        return Err(Error::FormatBadMagic);
    }
    // The version is a postcard varint right after the magic; read it before
    // the CRC so that a file from a newer tinygen says so, rather than
    // "corrupted".
    // At least 5 bytes follow the magic, more than a u16 varint needs: a
    // failure here is a malformed varint, not a short file.
    let (version, _) =
        postcard::take_from_bytes::<u16>(&bytes[4..]).map_err(|_| Error::FormatDecode)?;
    if !(MIN_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
        return Err(Error::FormatVersion { found: version });
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    let computed = crate::crc32::crc32(body);
    if stored != computed {
        return Err(Error::FormatCrc { stored, computed });
    }
    let mut de = postcard::Deserializer::from_bytes(body);
    read_file(&mut de, out).map_err(|_| Error::FormatDecode)?;
    let rest = de.finalize().map_err(|_| Error::FormatDecode)?;
    if !rest.is_empty() {
        return Err(Error::FormatTrailingBytes);
    }
    // A version 1 file cannot hold what version 2 added.
    if out.version < out.min_version() {
        return Err(Error::FormatDecode);
    }
    Ok(())
}

/// postcard's reader over a byte slice.
type De<'a> = postcard::Deserializer<'a, postcard::de_flavors::Slice<'a>>;

/// [`ModelFile`]'s fields in order, as its derived `Deserialize` reads
/// them, the networks in place.
fn read_file<'a>(de: &mut De<'a>, out: &mut ModelFile<'a>) -> postcard::Result<()> {
    out.magic = Deserialize::deserialize(&mut *de)?;
    out.version = Deserialize::deserialize(&mut *de)?;
    out.kind = Deserialize::deserialize(&mut *de)?;
    out.dtype = Deserialize::deserialize(&mut *de)?;
    out.meta = Deserialize::deserialize(&mut *de)?;
    read_net(de, &mut out.decoder)?;
    // An Option: one byte, 0 (None) or 1 (Some), as postcard reads it.
    let tag: u8 = Deserialize::deserialize(&mut *de)?;
    match tag {
        0 => out.encoder = None,
        1 => {
            out.encoder = Some(Net::EMPTY);
            if let Some(enc) = &mut out.encoder {
                read_net(de, enc)?;
            }
        }
        _ => return Err(postcard::Error::DeserializeBadOption),
    }
    Ok(())
}

/// [`Net`]'s fields in order, each layer pushed as it is read. Not
/// inlined: its frame is gone before the next network is read.
#[inline(never)]
fn read_net<'a>(de: &mut De<'a>, net: &mut Net<'a>) -> postcard::Result<()> {
    net.input = Deserialize::deserialize(&mut *de)?;
    net.input_q = Deserialize::deserialize(&mut *de)?;
    net.layers.clear();
    // A sequence's length: postcard's varint usize (u32 on 32-bit targets,
    // u64 on 64-bit ones, as postcard reads it there).
    #[cfg(target_pointer_width = "64")]
    let n: u64 = Deserialize::deserialize(&mut *de)?;
    #[cfg(not(target_pointer_width = "64"))]
    let n: u32 = Deserialize::deserialize(&mut *de)?;
    for _ in 0..n {
        let layer = read_layer(de)?;
        net.layers
            .push(layer)
            .map_err(|_| postcard::Error::DeserializeBadEncoding)?;
    }
    net.head = Deserialize::deserialize(&mut *de)?;
    Ok(())
}

/// One [`Layer`] (its derived `Deserialize`), in a frame of its own.
#[inline(never)]
fn read_layer<'a>(de: &mut De<'a>) -> postcard::Result<Layer<'a>> {
    Deserialize::deserialize(de)
}

impl Net<'_> {
    /// No layers, an empty input: a placeholder that [`decode_into`]
    /// overwrites.
    pub const EMPTY: Net<'static> = Net {
        input: Shape { c: 0, h: 0, w: 0 },
        input_q: None,
        layers: heapless::Vec::new(),
        head: Head::Raw,
    };
}

impl ModelFile<'_> {
    /// A placeholder that [`decode_into`] overwrites (no layers, no
    /// encoder; not a valid model).
    pub const EMPTY: ModelFile<'static> = ModelFile {
        magic: [0; 4],
        version: 0,
        kind: ModelKind::Vae,
        dtype: DType::F32,
        meta: Meta {
            image: Shape { c: 0, h: 0, w: 0 },
            latent: 0,
            data: "",
            figures: heapless::Vec::new(),
            prior_mean: &[],
            prior_std: &[],
        },
        decoder: Net::EMPTY,
        encoder: None,
    };
}

impl ModelFile<'_> {
    /// The oldest format version that can hold this file: 2 if a network
    /// has an [`Op::StackConv2d`], else 1. Writers set `version` to it.
    pub fn min_version(&self) -> u16 {
        let stacks = |n: &Net<'_>| {
            n.layers
                .iter()
                .any(|l| matches!(l.op, Op::StackConv2d { .. }))
        };
        if stacks(&self.decoder) || self.encoder.as_ref().is_some_and(stacks) {
            2
        } else {
            1
        }
    }
}

/// Reads f32 number `i` of a little-endian blob.
#[inline(always)]
pub(crate) fn f32_at(blob: &[u8], i: usize) -> f32 {
    f32::from_bits(u32_at(blob, i))
}

/// Reads i32 number `i` of a little-endian blob.
#[inline(always)]
pub(crate) fn i32_at(blob: &[u8], i: usize) -> i32 {
    u32_at(blob, i) as i32
}

/// [`u32_at`] without the bounds check.
///
/// # Safety
///
/// `4 * i + 4 <= blob.len()`.
#[inline(always)]
pub(crate) unsafe fn u32_at_unchecked(blob: &[u8], i: usize) -> u32 {
    #[cfg(tinygen_unaligned_ldr)]
    {
        let v: u32;
        // SAFETY: 4 readable bytes at blob + 4i (the caller's guarantee);
        // these cores load a word from any address; the asm only reads
        // them. Base and offset stay separate operands, so the rows of a
        // kernel block share one offset register.
        unsafe {
            core::arch::asm!("ldr {v}, [{p}, {o}]", v = lateout(reg) v, p = in(reg) blob.as_ptr(),
                o = in(reg) 4 * i, options(pure, readonly, nostack, preserves_flags));
        }
        v
    }
    #[cfg(not(tinygen_unaligned_ldr))]
    {
        // SAFETY: the caller guarantees the 4 bytes are in the blob;
        // read_unaligned has no alignment requirement.
        let p = unsafe { blob.as_ptr().add(4 * i) };
        // SAFETY: as above.
        u32::from_le(unsafe { core::ptr::read_unaligned(p.cast::<u32>()) })
    }
}

/// Reads u32 number `i` of a little-endian blob (blobs have no alignment):
/// one unaligned LDR on cores that have it (the compiler would assemble
/// four bytes), `from_le_bytes` elsewhere.
#[inline(always)]
pub(crate) fn u32_at(blob: &[u8], i: usize) -> u32 {
    let in_bounds = 4 * i + 4 <= blob.len();
    assert!(in_bounds, "u32 {i} past a blob of {} bytes", blob.len());
    // SAFETY: bytes 4i..4i + 4 are in the blob (checked above).
    unsafe { u32_at_unchecked(blob, i) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_and_version_lead_the_encoding() {
        let f = ModelFile {
            magic: MAGIC,
            version: FORMAT_VERSION,
            kind: ModelKind::Vae,
            dtype: DType::F32,
            meta: Meta {
                image: Shape { c: 1, h: 1, w: 1 },
                latent: 1,
                data: "",
                figures: heapless::Vec::new(),
                prior_mean: &[],
                prior_std: &[],
            },
            decoder: Net {
                input: Shape { c: 1, h: 1, w: 1 },
                input_q: None,
                layers: heapless::Vec::new(),
                head: Head::Sigmoid,
            },
            encoder: None,
        };
        let mut buf = [0u8; 64];
        let out = encode(&f, &mut buf).unwrap();
        assert_eq!(&out[..5], &[b'T', b'G', b'M', 0, FORMAT_VERSION as u8]);
        assert_eq!(decode(out).unwrap(), f);
    }
}
