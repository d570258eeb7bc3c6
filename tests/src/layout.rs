//! Layouts between candle's NCHW tensors and the runtime's slices (see the
//! crate docs: the runtime's are candle's, so nothing is permuted).

use candle_core::{Device, Result, Tensor, WithDType};

/// A runtime CHW activation as a candle `(1, c, h, w)` tensor.
///
/// # Errors
///
/// If `chw.len() != c * h * w`.
pub fn nchw<T: WithDType>(chw: &[T], c: usize, h: usize, w: usize, dev: &Device) -> Result<Tensor> {
    Tensor::from_slice(chw, (1, c, h, w), dev)
}

/// Sample 0 of a candle NCHW tensor (any dtype) as a runtime CHW f64 vector.
///
/// # Errors
///
/// If the tensor is not 4-D with a batch of 1.
pub fn chw(t: &Tensor) -> Result<Vec<f64>> {
    let (b, _, _, _) = t.dims4()?;
    if b != 1 {
        candle_core::bail!("chw: batch of {b}, expected 1");
    }
    t.flatten_all()?
        .to_dtype(candle_core::DType::F64)?
        .to_vec1::<f64>()
}

/// A runtime dense weight `[out][inp]` as candle's `(out, inp)` (Linear).
///
/// # Errors
///
/// On a length mismatch.
pub fn dense_weight<T: WithDType>(w: &[T], out: usize, inp: usize, dev: &Device) -> Result<Tensor> {
    Tensor::from_slice(w, (out, inp), dev)
}

/// A runtime convolution weight `[out_c][in_c][k][k]` as candle's
/// `(out_c, in_c, k, k)` (`Tensor::conv2d`'s kernel).
///
/// # Errors
///
/// On a length mismatch.
pub fn conv_weight<T: WithDType>(
    w: &[T],
    out_c: usize,
    in_c: usize,
    k: usize,
    dev: &Device,
) -> Result<Tensor> {
    Tensor::from_slice(w, (out_c, in_c, k, k), dev)
}

/// A runtime transposed-convolution weight `[in_c][out_c][k][k]` as candle's
/// `(in_c, out_c, k, k)` (`Tensor::conv_transpose2d`'s kernel).
///
/// # Errors
///
/// On a length mismatch.
pub fn conv_t_weight<T: WithDType>(
    w: &[T],
    in_c: usize,
    out_c: usize,
    k: usize,
    dev: &Device,
) -> Result<Tensor> {
    Tensor::from_slice(w, (in_c, out_c, k, k), dev)
}

/// Adds a per-output-channel bias to an NCHW tensor.
///
/// # Errors
///
/// On mismatched channel counts.
pub fn add_channel_bias(t: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let c = bias.dim(0)?;
    t.broadcast_add(&bias.reshape((1, c, 1, 1))?)
}
