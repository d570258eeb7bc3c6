//! Convolutions for CPU training: im2col / col2im plus candle's matmul.
//!
//! They compute exactly candle's `conv2d` and `conv_transpose2d` (same weight
//! layouts, same results up to float summation order; the tests compare both,
//! forward and gradients), only faster to train on a CPU. candle 0.11's CPU
//! `conv_transpose2d` is a scalar loop parallel over output channels (one
//! channel for a decoder's last layer: single-threaded), and the backward pass
//! of its `conv2d` runs through that same loop; here every product goes through
//! one multithreaded matmul instead, and the rearrangements are two small
//! custom ops (parallel over images) that are each other's gradient.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! let dev = Device::Cpu;
//! let x = Tensor::randn(0f32, 1.0, (2, 3, 8, 8), &dev)?;
//! let w = Tensor::randn(0f32, 1.0, (5, 3, 4, 4), &dev)?; // (out, in, kh, kw)
//! let y = tinygen_trainer::models::conv::conv2d(&x, &w, None, 2, 1)?;
//! let reference = x.conv2d(&w, 1, 2, 1, 1)?;
//! let diff = (y - reference)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
//! assert!(diff < 1e-4);
//! # candle_core::Result::Ok(())
//! ```

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Where the kernel windows of a convolution lie: an image of `channels` x
/// `img_h` x `img_w` and a grid of `grid_h` x `grid_w` window positions, window
/// (gy, gx) covering image rows `gy * stride + ky - pad`, `ky < k` (likewise columns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Windows {
    channels: usize,
    img_h: usize,
    img_w: usize,
    grid_h: usize,
    grid_w: usize,
    k: usize,
    stride: usize,
    pad: usize,
}

impl Windows {
    fn cols(&self) -> usize {
        self.channels * self.k * self.k
    }

    /// Image coordinate of tap `t` of the window at grid position `g`, if inside.
    fn at(&self, g: usize, t: usize, size: usize) -> Option<usize> {
        (g * self.stride + t)
            .checked_sub(self.pad)
            .filter(|&v| v < size)
    }
}

/// Image (b, c, img_h, img_w), any strides → columns (b·grid_h·grid_w, c·k·k),
/// column index c·k·k + ky·k + kx (candle's conv weight layout flattened).
#[derive(Debug, Clone, Copy)]
struct Im2Col(Windows);

/// The adjoint of [`Im2Col`]: columns → image, overlapping taps summed.
#[derive(Debug, Clone, Copy)]
struct Col2Im(Windows);

fn f32_data<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    match storage {
        CpuStorage::F32(v) => Ok(&v[layout.start_offset()..]),
        _ => candle_core::bail!("tinygen conv: only f32 is supported"),
    }
}

impl CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "tinygen-im2col"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let w = self.0;
        let (b, c, h, wd) = layout.shape().dims4()?;
        if (c, h, wd) != (w.channels, w.img_h, w.img_w) {
            candle_core::bail!("im2col: input {:?} does not match {w:?}", layout.shape());
        }
        let x = f32_data(storage, layout)?;
        let s = layout.stride();
        let (k, cols) = (w.k, w.cols());
        let per_image = w.grid_h * w.grid_w * cols;
        let mut out = vec![0f32; b * per_image];
        // One image per task; rows are (gy, gx), columns (c, ky, kx).
        out.par_chunks_mut(per_image)
            .enumerate()
            .for_each(|(bi, img)| {
                for (r, row) in img.chunks_exact_mut(cols).enumerate() {
                    let (gy, gx) = (r / w.grid_w, r % w.grid_w);
                    for ci in 0..c {
                        for ky in 0..k {
                            let Some(y) = w.at(gy, ky, h) else { continue };
                            let base = bi * s[0] + ci * s[1] + y * s[2];
                            let dst = &mut row[(ci * k + ky) * k..(ci * k + ky + 1) * k];
                            for (kx, d) in dst.iter_mut().enumerate() {
                                if let Some(xx) = w.at(gx, kx, wd) {
                                    *d = x[base + xx * s[3]];
                                }
                            }
                        }
                    }
                }
            });
        Ok((
            CpuStorage::F32(out),
            Shape::from((b * w.grid_h * w.grid_w, cols)),
        ))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad_res.apply_op1(Col2Im(self.0))?))
    }
}

impl CustomOp1 for Col2Im {
    fn name(&self) -> &'static str {
        "tinygen-col2im"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let w = self.0;
        let (n_rows, n_cols) = layout.shape().dims2()?;
        let per_image = w.grid_h * w.grid_w;
        if n_cols != w.cols() || n_rows % per_image != 0 {
            candle_core::bail!("col2im: input {:?} does not match {w:?}", layout.shape());
        }
        let b = n_rows / per_image;
        let cols = f32_data(storage, layout)?;
        let s = layout.stride();
        let (c, h, wd, k) = (w.channels, w.img_h, w.img_w, w.k);
        let mut out = vec![0f32; b * c * h * wd];
        // One image per task: each writes only its own image.
        out.par_chunks_mut(c * h * wd)
            .enumerate()
            .for_each(|(bi, img)| {
                for gy in 0..w.grid_h {
                    for gx in 0..w.grid_w {
                        let r = (bi * w.grid_h + gy) * w.grid_w + gx;
                        for ci in 0..c {
                            for ky in 0..k {
                                let Some(y) = w.at(gy, ky, h) else { continue };
                                let dst = (ci * h + y) * wd;
                                for kx in 0..k {
                                    if let Some(xx) = w.at(gx, kx, wd) {
                                        img[dst + xx] +=
                                            cols[r * s[0] + ((ci * k + ky) * k + kx) * s[1]];
                                    }
                                }
                            }
                        }
                    }
                }
            });
        Ok((CpuStorage::F32(out), Shape::from((b, c, h, wd))))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad_res.apply_op1(Im2Col(self.0))?))
    }
}

fn square_kernel(w: &Tensor) -> Result<usize> {
    let (_, _, kh, kw) = w.dims4()?;
    if kh != kw {
        candle_core::bail!("tinygen conv: kernels must be square, got {kh}x{kw}");
    }
    Ok(kh)
}

/// Same as `x.conv2d(w, pad, stride, 1, 1)` plus an optional bias: x (b, c, h, w),
/// w (out, c, k, k), bias (out,) → (b, out, (h + 2·pad - k) / stride + 1, ..).
///
/// # Errors
/// On mismatched shapes or a non-f32 input.
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    pad: usize,
) -> Result<Tensor> {
    let (b, c, h, wd) = x.dims4()?;
    let (o, wc, _, _) = w.dims4()?;
    let k = square_kernel(w)?;
    if wc != c {
        candle_core::bail!("conv2d: input has {c} channels, weight expects {wc}");
    }
    if stride == 0 || h + 2 * pad < k || wd + 2 * pad < k {
        candle_core::bail!("conv2d: kernel {k} does not fit a {h}x{wd} input padded by {pad}");
    }
    let (gh, gw) = (
        (h + 2 * pad - k) / stride + 1,
        (wd + 2 * pad - k) / stride + 1,
    );
    let win = Windows {
        channels: c,
        img_h: h,
        img_w: wd,
        grid_h: gh,
        grid_w: gw,
        k,
        stride,
        pad,
    };
    let cols = x.apply_op1(Im2Col(win))?; // (b·gh·gw, c·k·k)
    let mut y = cols.matmul(&w.reshape((o, c * k * k))?.t()?)?; // (b·gh·gw, o)
    if let Some(bias) = bias {
        y = y.broadcast_add(bias)?;
    }
    y.reshape((b, gh, gw, o))?.permute((0, 3, 1, 2))
}

/// Same as `x.conv_transpose2d(w, pad, 0, stride, 1)` plus an optional bias:
/// x (b, in, h, w), w (in, out, k, k), bias (out,) → (b, out, (h - 1)·stride - 2·pad + k, ..).
///
/// # Errors
/// On mismatched shapes or a non-f32 input.
pub fn conv_transpose2d(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    pad: usize,
) -> Result<Tensor> {
    let (b, i, h, wd) = x.dims4()?;
    let (wi, o, _, _) = w.dims4()?;
    let k = square_kernel(w)?;
    if wi != i {
        candle_core::bail!("conv_transpose2d: input has {i} channels, weight expects {wi}");
    }
    if stride == 0
        || h == 0
        || wd == 0
        || (h - 1) * stride + k < 2 * pad + 1
        || (wd - 1) * stride + k < 2 * pad + 1
    {
        candle_core::bail!(
            "conv_transpose2d: empty output for a {h}x{wd} input, kernel {k}, padding {pad}"
        );
    }
    let (oh, ow) = (
        (h - 1) * stride + k - 2 * pad,
        (wd - 1) * stride + k - 2 * pad,
    );
    let win = Windows {
        channels: o,
        img_h: oh,
        img_w: ow,
        grid_h: h,
        grid_w: wd,
        k,
        stride,
        pad,
    };
    let xm = x.permute((0, 2, 3, 1))?.reshape((b * h * wd, i))?;
    let cols = xm.matmul(&w.reshape((i, o * k * k))?)?; // (b·h·w, o·k·k)
    let y = cols.apply_op1(Col2Im(win))?;
    match bias {
        Some(bias) => y.broadcast_add(&bias.reshape((1, o, 1, 1))?),
        None => Ok(y),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::test_util::{max_diff, randn};
    use candle_core::Var;

    /// Compares value and gradients (wrt x, w, bias) of `ours` and `theirs` on a
    /// random weighting of the outputs.
    fn check(
        x: &[usize],
        w: &[usize],
        out_ch: usize,
        ours: impl Fn(&Tensor, &Tensor, &Tensor) -> Result<Tensor>,
        theirs: impl Fn(&Tensor, &Tensor, &Tensor) -> Result<Tensor>,
    ) {
        let xv = Var::from_tensor(&randn(1, x)).unwrap();
        let wv = Var::from_tensor(&randn(2, w)).unwrap();
        let bv = Var::from_tensor(&randn(3, &[out_ch])).unwrap();
        let a = ours(xv.as_tensor(), wv.as_tensor(), bv.as_tensor()).unwrap();
        let b = theirs(xv.as_tensor(), wv.as_tensor(), bv.as_tensor()).unwrap();
        assert!(
            max_diff(&a, &b) < 1e-4,
            "forward differs by {}",
            max_diff(&a, &b)
        );
        let weights = randn(4, a.dims());
        let ga = (a * &weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let gb = (b * &weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for (name, v) in [("x", &xv), ("w", &wv), ("bias", &bv)] {
            let (da, db) = (ga.get(v).unwrap(), gb.get(v).unwrap());
            let scale = db
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(
                max_diff(da, db) <= 1e-4 * scale.max(1.0),
                "grad {name} differs by {}",
                max_diff(da, db)
            );
        }
    }

    #[test]
    fn conv2d_matches_candle() {
        // The VAE encoder's layers, and odd shapes (stride 1, k3, no padding, rectangular).
        for (x, w, stride, pad) in [
            (vec![3, 1, 28, 28], vec![8, 1, 4, 4], 2, 1),
            (vec![2, 8, 14, 14], vec![6, 8, 4, 4], 2, 1),
            (vec![2, 3, 7, 9], vec![4, 3, 3, 3], 1, 0),
            (vec![1, 2, 7, 7], vec![3, 2, 3, 3], 2, 2),
        ] {
            check(
                &x,
                &w,
                w[0],
                |x, w, b| conv2d(x, w, Some(b), stride, pad),
                |x, w, b| {
                    x.conv2d(w, pad, stride, 1, 1)?
                        .broadcast_add(&b.reshape((1, (), 1, 1))?)
                },
            );
        }
    }

    #[test]
    fn conv_transpose2d_matches_candle() {
        // The VAE decoder's layers (7→14→28), and odd shapes.
        for (x, w, stride, pad) in [
            (vec![3, 8, 7, 7], vec![8, 4, 4, 4], 2, 1),
            (vec![2, 4, 14, 14], vec![4, 1, 4, 4], 2, 1),
            (vec![2, 3, 5, 6], vec![3, 2, 3, 3], 1, 0),
            (vec![1, 2, 4, 3], vec![2, 3, 3, 3], 2, 1),
        ] {
            check(
                &x,
                &w,
                w[1],
                |x, w, b| conv_transpose2d(x, w, Some(b), stride, pad),
                |x, w, b| {
                    x.conv_transpose2d(w, pad, 0, stride, 1)?
                        .broadcast_add(&b.reshape((1, (), 1, 1))?)
                },
            );
        }
    }

    #[test]
    fn shape_errors() {
        let x = randn(1, &[1, 2, 8, 8]);
        assert!(conv2d(&x, &randn(2, &[3, 4, 4, 4]), None, 2, 1).is_err());
        assert!(conv2d(&x, &randn(2, &[3, 2, 4, 3]), None, 2, 1).is_err());
        assert!(conv2d(&x, &randn(2, &[3, 2, 12, 12]), None, 2, 1).is_err());
        assert!(conv_transpose2d(&x, &randn(2, &[3, 4, 4, 4]), None, 2, 1).is_err());
        assert!(conv2d(
            &x.to_dtype(candle_core::DType::F64).unwrap(),
            &randn(2, &[3, 2, 4, 4]),
            None,
            2,
            1
        )
        .is_err());
    }
}
