//! The runtime's one error type.
//!
//! Every variant is small and `Copy`, and named by the phase that produces it:
//! `Format*` while a model file is read and validated, `Plan*` while its memory
//! plan is made or an arena is handed over, `Build*` when a valid file needs
//! kernels this build left out (its Cargo features), `Call*` when a caller passes
//! buffers of the wrong length. Kernels never fail: everything they rely on is
//! checked once, at load.

use core::fmt;

/// Everything that can go wrong in the runtime.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Error {
    /// The file is shorter than the smallest possible model file.
    FormatTruncated {
        /// Bytes present.
        len: u32,
    },
    /// The file does not start with [`crate::version::MAGIC`].
    FormatBadMagic,
    /// The file has a format version this runtime does not read.
    FormatVersion {
        /// The version found in the file.
        found: u16,
    },
    /// The CRC-32 stored at the end of the file does not match its contents.
    FormatCrc {
        /// CRC-32 stored in the file.
        stored: u32,
        /// CRC-32 computed over the file.
        computed: u32,
    },
    /// postcard could not decode the body (truncated, bad varint, unknown
    /// enum tag, too many layers...).
    FormatDecode,
    /// Bytes follow the body that belong to nothing.
    FormatTrailingBytes,
    /// A field holds a value outside its allowed range.
    FormatBadValue {
        /// Layer index, or `u16::MAX` for model-level fields.
        layer: u16,
    },
    /// A weight, bias or quantization blob has the wrong byte length.
    FormatBlobSize {
        /// Layer index.
        layer: u16,
    },
    /// The network's input does not match what the model kind needs.
    PlanInput,
    /// A layer's input shape does not match the previous layer's output.
    PlanShapeMismatch {
        /// Layer index.
        layer: u16,
    },
    /// The network's output is not the model's image shape.
    PlanOutputShape,
    /// An autoregressive network whose logit at some pixel could depend on
    /// that pixel or on a later one (in raster order): its masks or its
    /// stacks are wired wrongly from this layer on.
    PlanNotCausal {
        /// Layer index (the layer count when only the output is wrong).
        layer: u16,
    },
    /// The arena handed over is smaller than the plan needs.
    PlanArenaTooSmall {
        /// Bytes needed.
        need: u32,
        /// Bytes given.
        have: u32,
    },
    /// The arena does not start on a 4-byte boundary (use [`crate::Arena`]).
    PlanArenaMisaligned,
    /// This model kind has no such operation (e.g. `decode` on a PixelCNN).
    CallUnsupported,
    /// A sampling temperature that is not a finite number above 0.
    CallTemperature,
    /// The file's dtype needs kernels this build of the runtime left out
    /// (see [`crate::features`]).
    BuildDtype {
        /// The Cargo feature that carries them.
        feature: &'static str,
    },
    /// A layer's op needs kernels this build of the runtime left out (see
    /// [`crate::features`]).
    BuildOp {
        /// Whether the layer is the encoder's (else the decoder's).
        encoder: bool,
        /// Layer index.
        layer: u16,
        /// The Cargo feature that carries its kernels.
        feature: &'static str,
    },
    /// A caller's buffer has the wrong length.
    CallBufferLen {
        /// Elements expected.
        expected: u32,
        /// Elements given.
        found: u32,
    },
}

/// `Result` with the runtime's [`Error`].
pub type Result<T> = core::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::FormatTruncated { len } => {
                write!(f, "model file truncated: only {len} bytes")
            }
            Error::FormatBadMagic => f.write_str("not a tinygen model file (bad magic)"),
            Error::FormatVersion { found } => write!(
                f,
                "model file format version {found} is not supported (this runtime reads version {})",
                crate::version::FORMAT_VERSION
            ),
            Error::FormatCrc { stored, computed } => write!(
                f,
                "model file corrupted or truncated: CRC-32 stored {stored:#010x}, computed {computed:#010x}"
            ),
            Error::FormatDecode => f.write_str("model file body cannot be decoded"),
            Error::FormatTrailingBytes => f.write_str("model file has trailing bytes"),
            Error::FormatBadValue { layer } => {
                if layer == u16::MAX {
                    f.write_str("model file holds an out-of-range value in its header")
                } else {
                    write!(f, "model file holds an out-of-range value in layer {layer}")
                }
            }
            Error::FormatBlobSize { layer } => {
                write!(f, "layer {layer}: weight or bias blob has the wrong size")
            }
            Error::PlanInput => f.write_str("network input does not match the model's latent"),
            Error::PlanShapeMismatch { layer } => {
                write!(f, "layer {layer}: input shape does not match the previous layer")
            }
            Error::PlanOutputShape => f.write_str("network output is not the model's image shape"),
            Error::PlanNotCausal { layer } => write!(
                f,
                "layer {layer}: a logit could see its own pixel or a later one (autoregressive masks wired wrongly)"
            ),
            Error::PlanArenaTooSmall { need, have } => {
                write!(f, "arena too small: need {need} bytes, have {have}")
            }
            Error::PlanArenaMisaligned => f.write_str("arena is not 4-byte aligned"),
            Error::CallUnsupported => f.write_str("operation not supported by this model kind"),
            Error::CallTemperature => {
                f.write_str("sampling temperature must be a finite number above 0")
            }
            Error::BuildDtype { feature } => write!(
                f,
                "this build of the runtime has no {feature} kernels (Cargo feature `{feature}` left out)"
            ),
            Error::BuildOp {
                encoder,
                layer,
                feature,
            } => write!(
                f,
                "{} layer {layer}: this build of the runtime has no {feature} kernel \
                 (Cargo feature `{feature}` left out)",
                if encoder { "encoder" } else { "decoder" }
            ),
            Error::CallBufferLen { expected, found } => {
                write!(f, "buffer length {found}, expected {expected}")
            }
        }
    }
}

impl core::error::Error for Error {}
