//! The kernels a build of the runtime carries, chosen by Cargo features
//! (default: all): the dtypes `f32`, `f16`, `int8` and the ops `dense`,
//! `conv2d`, `conv-transpose2d`, `masked-conv2d`, `stack-conv2d`,
//! `row-lstm`. A firmware that samples one int8 decoder needs only
//! `int8`, `dense` and `conv-transpose2d`, and leaves the rest of the
//! code out of its flash. [`crate::Model::load`] refuses a file that needs
//! a left-out kernel (`Error::BuildDtype`, `Error::BuildOp`), so the
//! dispatch never reaches one.

use crate::error::{Error, Result};
use crate::format::{DType, ModelFile, Net, Op};

/// f32 weights and activations (feature `f32`).
pub const F32: bool = cfg!(feature = "f32");
/// f16 weights, f32 activations (feature `f16`).
pub const F16: bool = cfg!(feature = "f16");
/// int8 (feature `int8`).
pub const INT8: bool = cfg!(feature = "int8");
/// Dense layers (feature `dense`).
pub const DENSE: bool = cfg!(feature = "dense");
/// Convolutions (feature `conv2d`).
pub const CONV2D: bool = cfg!(feature = "conv2d");
/// Transposed convolutions (feature `conv-transpose2d`).
pub const CONV_TRANSPOSE2D: bool = cfg!(feature = "conv-transpose2d");
/// Masked convolutions (feature `masked-conv2d`).
pub const MASKED_CONV2D: bool = cfg!(feature = "masked-conv2d");
/// Two-stack masked convolutions (feature `stack-conv2d`).
pub const STACK_CONV2D: bool = cfg!(feature = "stack-conv2d");
/// Row LSTMs (feature `row-lstm`).
pub const ROW_LSTM: bool = cfg!(feature = "row-lstm");

/// The Cargo feature that carries `dtype`'s kernels, and whether this build
/// has it.
pub const fn dtype_feature(dtype: DType) -> (&'static str, bool) {
    match dtype {
        DType::F32 => ("f32", F32),
        DType::F16 => ("f16", F16),
        DType::I8 => ("int8", INT8),
    }
}

/// The Cargo feature that carries `op`'s kernels (None for a reshape,
/// which has none), and whether this build has it.
pub const fn op_feature(op: &Op) -> Option<(&'static str, bool)> {
    match op {
        Op::Dense { .. } => Some(("dense", DENSE)),
        Op::Conv2d { .. } => Some(("conv2d", CONV2D)),
        Op::ConvTranspose2d { .. } => Some(("conv-transpose2d", CONV_TRANSPOSE2D)),
        Op::MaskedConv2d { .. } => Some(("masked-conv2d", MASKED_CONV2D)),
        Op::StackConv2d { .. } => Some(("stack-conv2d", STACK_CONV2D)),
        Op::RowLstm { .. } => Some(("row-lstm", ROW_LSTM)),
        Op::Reshape(_) => None,
    }
}

fn check_net(net: &Net<'_>, encoder: bool) -> Result<()> {
    for (i, layer) in net.layers.iter().enumerate() {
        if let Some((feature, false)) = op_feature(&layer.op) {
            return Err(Error::BuildOp {
                encoder,
                layer: i as u16,
                feature,
            });
        }
    }
    Ok(())
}

/// Whether this build carries every kernel `file` needs (its dtype, each
/// op of its decoder and encoder).
///
/// # Errors
///
/// `BuildDtype` or `BuildOp`, naming the feature left out.
pub fn check(file: &ModelFile<'_>) -> Result<()> {
    if let (feature, false) = dtype_feature(file.dtype) {
        return Err(Error::BuildDtype { feature });
    }
    check_net(&file.decoder, false)?;
    match &file.encoder {
        Some(enc) => check_net(enc, true),
        None => Ok(()),
    }
}
