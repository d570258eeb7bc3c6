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

/// A two-stack convolution's compact weight blob (`Op::StackConv2d`: the
/// `out_v` vertical rows `[|V|][k/2 + 1][k]`, then the horizontal rows
/// `[in_c - in_v][n_h]` and `[in_v]`) spread over the dense kernels an
/// oracle convolves with: `(dense, link)`, `dense` a `[out_c][in_c][k][k]`
/// kernel for a plain "same" convolution, zero at every tap the op does not
/// read, and `link` a `[out_c][in_c]` 1x1 kernel for the vertical inputs
/// shifted down one row (the link of a horizontal output reads `(y - 1, x)`,
/// which a `k = 1` kernel cannot hold). Written from the format's
/// description, apart from the runtime's `StackGeom`.
///
/// # Panics
///
/// If `w` is not exactly the blob's length.
#[allow(clippy::too_many_arguments)]
pub fn stack_weights<T: Copy + Default>(
    w: &[T],
    in_c: usize,
    in_v: usize,
    out_c: usize,
    out_v: usize,
    k: usize,
    mask_b: bool,
) -> (Vec<T>, Vec<T>) {
    let c = k / 2;
    let n_h = c + usize::from(mask_b);
    let v_src = if in_v == 0 { in_c } else { in_v };
    let mut dense = vec![T::default(); out_c * in_c * k * k];
    let mut link = vec![T::default(); out_c * in_c];
    let mut it = w.iter().copied();
    let mut next = move || it.next().expect("stack weight blob too short");
    for o in 0..out_c {
        if o < out_v {
            for i in 0..v_src {
                for ky in 0..=c {
                    for kx in 0..k {
                        dense[((o * in_c + i) * k + ky) * k + kx] = next();
                    }
                }
            }
        } else {
            for i in in_v..in_c {
                for t in 0..n_h {
                    dense[((o * in_c + i) * k + c) * k + t] = next();
                }
            }
            for i in 0..in_v {
                link[o * in_c + i] = next();
            }
        }
    }
    assert_eq!(
        w.len(),
        stack_weight_len(in_c, in_v, out_c, out_v, k, mask_b),
        "stack weight blob length"
    );
    (dense, link)
}

/// Length of a two-stack convolution's weight blob (see [`stack_weights`]).
pub fn stack_weight_len(
    in_c: usize,
    in_v: usize,
    out_c: usize,
    out_v: usize,
    k: usize,
    mask_b: bool,
) -> usize {
    stack_row_lens(in_c, in_v, out_c, out_v, k, mask_b)
        .iter()
        .sum()
}

/// Length of each output channel's row of a two-stack convolution's weight
/// blob (the int8 per-channel scales are per row).
pub fn stack_row_lens(
    in_c: usize,
    in_v: usize,
    out_c: usize,
    out_v: usize,
    k: usize,
    mask_b: bool,
) -> Vec<usize> {
    let c = k / 2;
    let v_src = if in_v == 0 { in_c } else { in_v };
    let h_row = (in_c - in_v) * (c + usize::from(mask_b)) + in_v;
    (0..out_c)
        .map(|o| {
            if o < out_v {
                v_src * (c + 1) * k
            } else {
                h_row
            }
        })
        .collect()
}

/// candle's two-stack convolution of `x` (`(1, in_c, h, w)`) by the dense
/// kernels of [`stack_weights`] (as candle tensors `(out_c, in_c, k, k)`
/// and `(out_c, in_c, 1, 1)`), without bias: `conv2d(x, dense, pad k/2) +
/// conv2d(x shifted down one row, link)`.
///
/// # Errors
///
/// On mismatched shapes.
pub fn stack_conv2d(x: &Tensor, dense: &Tensor, link: &Tensor) -> Result<Tensor> {
    let (_, _, h, _) = x.dims4()?;
    let k = dense.dim(3)?;
    let main = x.conv2d(dense, k / 2, 1, 1, 1)?;
    let down = x.pad_with_zeros(2, 1, 0)?.narrow(2, 0, h)?;
    main + down.conv2d(link, 0, 1, 1, 1)?
}
