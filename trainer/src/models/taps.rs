//! Tap gathering over channels-last feature maps, for training the two-stack
//! PixelCNN on a CPU.
//!
//! A feature map of `b` images, `h` x `w` pixels and `c` channels is held as
//! a matrix of `b * h * w` rows (pixels in raster order, image after image)
//! and `c` columns. [`Taps`] turns it into the matrix of what each output
//! pixel of a layer reads: for each row (y, x), per [`TapGroup`], per channel,
//! per offset (dy, dx), the input at (y + dy, x + dx) (0 outside the image),
//! optionally through a ReLU, and optionally a last column of ones (so the
//! bias is one more weight column). A layer is then one matmul with its
//! weight rows in the runtime's order (`Op::StackConv2d`: vertical rows
//! `[|V|][k/2 + 1][k]`, horizontal rows `[in_h][n_h]` then the link taps), and
//! its output is the next layer's input matrix, pre-activation.
//!
//! Why not candle's NCHW convolutions: the two-stack layer needs a
//! half-height kernel and column shifts; built from `conv2d`, `pad`,
//! `narrow`, `stack`, `cat`, `permute`, bias adds and ReLUs, a training step
//! spent about 12 % of its time in matrix products and the rest copying and
//! zeroing tensors of tens of MB (`perf`, 32 + 32 channels, batch 128).
//! Here each layer is one gather, one matmul and one scatter (the gather's
//! gradient, which also applies the ReLU's), and the activation never needs
//! a transposition.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use tinygen_trainer::models::taps::{TapGroup, Taps};
//! // Two 2x3 images of one channel; each pixel reads its left neighbour and itself.
//! let x = Tensor::arange(0f32, 12.0, &Device::Cpu)?.reshape((12, 1))?;
//! let taps = Taps::new(2, 3, 1, vec![TapGroup::new(0, 1, vec![(0, -1), (0, 0)])], false, false);
//! let cols = x.apply_op1(taps)?; // (12, 2)
//! assert_eq!(cols.get(0)?.to_vec1::<f32>()?, [0.0, 0.0]); // x = 0: nothing on the left
//! assert_eq!(cols.get(4)?.to_vec1::<f32>()?, [3.0, 4.0]);
//! # candle_core::Result::Ok(())
//! ```

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Channels `ch0 .. ch0 + n_ch` of the input, each read at every offset
/// (dy, dx); columns channel-major, offsets in the given order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapGroup {
    /// First channel.
    pub ch0: usize,
    /// Number of channels.
    pub n_ch: usize,
    /// (dy, dx) offsets, rows then columns.
    pub offsets: Vec<(isize, isize)>,
}

impl TapGroup {
    /// A group of `n_ch` channels from `ch0`, read at `offsets`.
    pub fn new(ch0: usize, n_ch: usize, offsets: Vec<(isize, isize)>) -> Self {
        Self { ch0, n_ch, offsets }
    }

    fn cols(&self) -> usize {
        self.n_ch * self.offsets.len()
    }
}

/// The gather (a `CustomOp1` on an `(b * h * w, channels)` f32 matrix);
/// its gradient is the matching scatter-add.
#[derive(Debug, Clone)]
pub struct Taps {
    h: usize,
    w: usize,
    channels: usize,
    groups: Arc<[TapGroup]>,
    relu: bool,
    ones: bool,
}

impl Taps {
    /// Gathers `groups` from maps of `h` x `w` pixels and `channels`
    /// channels; `relu`: read `max(v, 0)`; `ones`: append a column of 1.0.
    pub fn new(
        h: usize,
        w: usize,
        channels: usize,
        groups: Vec<TapGroup>,
        relu: bool,
        ones: bool,
    ) -> Self {
        Self {
            h,
            w,
            channels,
            groups: groups.into(),
            relu,
            ones,
        }
    }

    /// Columns of the output.
    pub fn cols(&self) -> usize {
        self.groups.iter().map(TapGroup::cols).sum::<usize>() + usize::from(self.ones)
    }

    fn check_groups(&self) -> Result<()> {
        for g in self.groups.iter() {
            if g.ch0 + g.n_ch > self.channels {
                candle_core::bail!(
                    "taps: channels {}..{} of a {}-channel map",
                    g.ch0,
                    g.ch0 + g.n_ch,
                    self.channels
                );
            }
        }
        Ok(())
    }

    /// Images in an `(n, channels)` input.
    fn images(&self, shape: &Shape, what: &str) -> Result<usize> {
        let (n, c) = shape.dims2()?;
        let hw = self.h * self.w;
        if c != self.channels || hw == 0 || n % hw != 0 {
            candle_core::bail!(
                "taps: {what} {shape:?} is not a stack of {}x{} maps of {} channels",
                self.h,
                self.w,
                self.channels
            );
        }
        Ok(n / hw)
    }

    /// Calls `f(col, src)` for every column of output pixel (y, x) that
    /// reads inside the image, `src` the index of the input value within
    /// the image's `h * w * channels` block.
    #[inline]
    fn each_tap(&self, y: usize, x: usize, mut f: impl FnMut(usize, usize)) {
        let mut col = 0;
        for g in self.groups.iter() {
            for ch in g.ch0..g.ch0 + g.n_ch {
                for &(dy, dx) in &g.offsets {
                    let (sy, sx) = (y as isize + dy, x as isize + dx);
                    if sy >= 0 && sx >= 0 && (sy as usize) < self.h && (sx as usize) < self.w {
                        f(
                            col,
                            (sy as usize * self.w + sx as usize) * self.channels + ch,
                        );
                    }
                    col += 1;
                }
            }
        }
    }
}

fn contiguous_f32<'a>(storage: &'a CpuStorage, layout: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = storage else {
        candle_core::bail!("taps: {what} must be f32");
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&v[start..end]),
        None => candle_core::bail!("taps: {what} must be contiguous"),
    }
}

impl CustomOp1 for Taps {
    fn name(&self) -> &'static str {
        "tinygen-taps"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        self.check_groups()?;
        let b = self.images(layout.shape(), "input")?;
        let x = contiguous_f32(storage, layout, "input")?;
        let (hw, k, c) = (self.h * self.w, self.cols(), self.channels);
        let mut out = vec![0f32; b * hw * k];
        out.par_chunks_mut(hw * k)
            .zip(x.par_chunks(hw * c))
            .for_each(|(o, xi)| {
                for (p, row) in o.chunks_exact_mut(k).enumerate() {
                    self.each_tap(p / self.w, p % self.w, |col, src| {
                        let v = xi[src];
                        row[col] = if self.relu && v <= 0.0 { 0.0 } else { v };
                    });
                    if self.ones {
                        row[k - 1] = 1.0;
                    }
                }
            });
        Ok((CpuStorage::F32(out), Shape::from((b * hw, k))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let grad = grad_res.contiguous()?;
        let arg = arg.contiguous()?;
        Ok(Some(grad.apply_op2_no_bwd(&arg, &TapsGrad(self.clone()))?))
    }
}

/// The gradient of [`Taps`]: (grad of the columns, the gathered input) →
/// grad of the input, each column added back where it was read (where the
/// input was positive, with a ReLU).
#[derive(Debug, Clone)]
struct TapsGrad(Taps);

impl CustomOp2 for TapsGrad {
    fn name(&self) -> &'static str {
        "tinygen-taps-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let t = &self.0;
        let b = t.images(l2.shape(), "input")?;
        let (hw, k, c) = (t.h * t.w, t.cols(), t.channels);
        if l1.shape().dims2()? != (b * hw, k) {
            candle_core::bail!("taps grad: {:?} for {} columns", l1.shape(), k);
        }
        let g = contiguous_f32(s1, l1, "gradient")?;
        let x = contiguous_f32(s2, l2, "input")?;
        let mut out = vec![0f32; b * hw * c];
        out.par_chunks_mut(hw * c)
            .zip(x.par_chunks(hw * c))
            .zip(g.par_chunks(hw * k))
            .for_each(|((o, xi), gi)| {
                for (p, row) in gi.chunks_exact(k).enumerate() {
                    t.each_tap(p / t.w, p % t.w, |col, src| {
                        if !t.relu || xi[src] > 0.0 {
                            o[src] += row[col];
                        }
                    });
                }
            });
        Ok((CpuStorage::F32(out), l2.shape().clone()))
    }
}

/// `(rows, k)` columns times a weight `(out, k - 1)` plus a bias `(out,)`
/// when the last column is the ones column: `cols · [w | bias]ᵀ`.
///
/// # Errors
/// On mismatched shapes.
pub fn affine(cols: &Tensor, w: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let wb = Tensor::cat(&[w, &bias.unsqueeze(1)?], 1)?;
    cols.matmul(&wb.t()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::test_util::{max_diff, randn};
    use candle_core::{Device, Var};

    /// The gather by candle ops on an NCHW view: pad, narrow, ReLU, cat.
    fn reference(x: &Tensor, t: &Taps) -> Tensor {
        let (n, c) = x.dims2().unwrap();
        let b = n / (t.h * t.w);
        let mut img = x
            .reshape((b, t.h, t.w, c))
            .unwrap()
            .permute((0, 3, 1, 2))
            .unwrap();
        if t.relu {
            img = img.relu().unwrap();
        }
        let m = t.h.max(t.w);
        let padded = img
            .pad_with_zeros(2, m, m)
            .unwrap()
            .pad_with_zeros(3, m, m)
            .unwrap();
        let mut cols = Vec::new();
        for g in t.groups.iter() {
            for ch in g.ch0..g.ch0 + g.n_ch {
                for &(dy, dx) in &g.offsets {
                    let y0 = (m as isize + dy) as usize;
                    let x0 = (m as isize + dx) as usize;
                    cols.push(
                        padded
                            .narrow(1, ch, 1)
                            .unwrap()
                            .narrow(2, y0, t.h)
                            .unwrap()
                            .narrow(3, x0, t.w)
                            .unwrap(),
                    );
                }
            }
        }
        let mut out = Tensor::cat(&cols, 1)
            .unwrap()
            .permute((0, 2, 3, 1))
            .unwrap()
            .reshape((n, cols.len()))
            .unwrap();
        if t.ones {
            let ones = Tensor::ones((n, 1), candle_core::DType::F32, &Device::Cpu).unwrap();
            out = Tensor::cat(&[&out, &ones], 1).unwrap();
        }
        out
    }

    #[test]
    fn gather_and_gradient_match_candle_ops() {
        let groups = vec![
            TapGroup::new(
                0,
                2,
                vec![(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 0), (0, 1)],
            ),
            TapGroup::new(2, 3, vec![(0, -2), (0, -1)]),
            TapGroup::new(1, 1, vec![(-1, 0), (2, 3)]),
        ];
        for (relu, ones) in [(false, false), (true, true), (true, false)] {
            let t = Taps::new(5, 4, 5, groups.clone(), relu, ones);
            let x = Var::from_tensor(&randn(1, &[3 * 20, 5])).unwrap();
            let ours = x.as_tensor().apply_op1(t.clone()).unwrap();
            let theirs = reference(x.as_tensor(), &t);
            assert_eq!(ours.dims(), &[60, t.cols()]);
            assert!(max_diff(&ours, &theirs) == 0.0, "forward differs");
            let weights = randn(2, ours.dims());
            let ga = (ours * &weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let gb = (theirs * &weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let d = max_diff(ga.get(&x).unwrap(), gb.get(&x).unwrap());
            assert!(d < 1e-5, "gradient differs by {d} (relu {relu})");
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        let x = randn(1, &[20, 3]);
        let g = |ch0, n| vec![TapGroup::new(ch0, n, vec![(0, 0)])];
        assert!(x
            .apply_op1(Taps::new(5, 4, 4, g(0, 1), false, false))
            .is_err());
        assert!(x
            .apply_op1(Taps::new(3, 3, 3, g(0, 1), false, false))
            .is_err());
        assert!(x
            .apply_op1(Taps::new(5, 4, 3, g(2, 2), false, false))
            .is_err());
        assert!(x
            .t()
            .unwrap()
            .apply_op1(Taps::new(1, 3, 20, g(0, 1), false, false))
            .is_err());
    }

    #[test]
    fn affine_appends_the_bias() {
        let cols = Tensor::new(&[[1f32, 2.0, 1.0], [3.0, 4.0, 1.0]], &Device::Cpu).unwrap();
        let w = Tensor::new(&[[1f32, 1.0], [0.0, 2.0]], &Device::Cpu).unwrap();
        let b = Tensor::new(&[10f32, 20.0], &Device::Cpu).unwrap();
        let y = affine(&cols, &w, &b).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(y, vec![vec![13.0, 24.0], vec![17.0, 28.0]]);
    }
}
