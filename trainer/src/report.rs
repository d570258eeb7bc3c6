//! Run artifacts: image grids as PNG, metrics as CSV.
//!
//! ```no_run
//! // 64 images of 28x28 bytes (0 = black, 255 = white) as an 8x8 grid.
//! let images = vec![0u8; 64 * 28 * 28];
//! tinygen_trainer::report::write_grid_png(std::path::Path::new("grid.png"), &images, 64, 8)?;
//! # anyhow::Ok(())
//! ```

use std::path::Path;

use anyhow::{bail, Context, Result};

pub use crate::loss_plot::{write_loss_png, write_loss_png_to, LOSS_FILE};

/// Gray level of the 1-pixel lines between tiles (visible on black and on white digits).
pub const GRID_GAP_LEVEL: u8 = 128;

/// Writes `n` grayscale 28x28 images (`images` holds `n * 784` bytes, row-major)
/// as one PNG grid, `cols` tiles per row, tiles separated by 1-pixel lines.
///
/// # Errors
/// If `images.len() != n * 784`, `n` or `cols` is 0, or the file cannot be written.
pub fn write_grid_png(path: &Path, images: &[u8], n: usize, cols: usize) -> Result<()> {
    write_grid_png_sized(path, images, n, cols, 28, 28)
}

/// [`write_grid_png`] for tiles of any `height` x `width`.
///
/// # Errors
/// As [`write_grid_png`].
pub fn write_grid_png_sized(
    path: &Path,
    images: &[u8],
    n: usize,
    cols: usize,
    height: usize,
    width: usize,
) -> Result<()> {
    let (grid, gw, gh) = grid_pixels(images, n, cols, height, width)?;
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), gw as u32, gh as u32);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc
        .write_header()
        .with_context(|| format!("cannot write PNG {}", path.display()))?;
    writer
        .write_image_data(&grid)
        .with_context(|| format!("cannot write PNG {}", path.display()))?;
    writer
        .finish()
        .with_context(|| format!("cannot write PNG {}", path.display()))?;
    Ok(())
}

/// Lays out the grid; returns (pixels, width, height).
fn grid_pixels(
    images: &[u8],
    n: usize,
    cols: usize,
    height: usize,
    width: usize,
) -> Result<(Vec<u8>, usize, usize)> {
    if n == 0 || cols == 0 || height == 0 || width == 0 {
        bail!("an image grid needs at least one image, one column and non-empty tiles");
    }
    let tile = height * width;
    if images.len() != n * tile {
        bail!(
            "image grid: expected {n} images of {height}x{width} ({} bytes), got {} bytes",
            n * tile,
            images.len()
        );
    }
    let cols = cols.min(n);
    let rows = n.div_ceil(cols);
    let gw = cols * width + (cols - 1);
    let gh = rows * height + (rows - 1);
    let mut grid = vec![GRID_GAP_LEVEL; gw * gh];
    for (i, img) in images.chunks_exact(tile).enumerate() {
        let (r, c) = (i / cols, i % cols);
        let (y0, x0) = (r * (height + 1), c * (width + 1));
        for (y, row) in img.chunks_exact(width).enumerate() {
            let at = (y0 + y) * gw + x0;
            grid[at..at + width].copy_from_slice(row);
        }
    }
    // Empty tiles of a last, partial row stay black rather than gap-gray.
    for i in n..rows * cols {
        let (r, c) = (i / cols, i % cols);
        let (y0, x0) = (r * (height + 1), c * (width + 1));
        for y in 0..height {
            let at = (y0 + y) * gw + x0;
            grid[at..at + width].fill(0);
        }
    }
    Ok((grid, gw, gh))
}

/// Probabilities in [0, 1] to gray bytes (round(p * 255), clamped; NaN → 0).
pub fn probs_to_bytes(probs: &[f32]) -> Vec<u8> {
    probs
        .iter()
        .map(|&p| {
            let v = (p * 255.0).round();
            if v.is_nan() {
                0
            } else {
                v.clamp(0.0, 255.0) as u8
            }
        })
        .collect()
}

/// One row of `metrics.csv`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct EpochMetrics {
    /// 1-based epoch.
    pub epoch: usize,
    /// Optimizer steps so far (all epochs).
    pub step: usize,
    /// Mean reconstruction term over the epoch's training batches, nats per image.
    pub train_recon: f64,
    /// Mean KL term over the epoch's training batches, nats per image.
    pub train_kl: f64,
    /// train_recon + train_kl.
    pub train_elbo: f64,
    /// Reconstruction term on the test set, nats per image.
    pub test_recon: f64,
    /// KL term on the test set, nats per image.
    pub test_kl: f64,
    /// -ELBO on the test set, nats per image.
    pub test_elbo: f64,
    /// Wall-clock seconds of this epoch's training steps (evaluation excluded).
    pub seconds: f64,
}

/// The header line of `metrics.csv`.
pub const METRICS_HEADER: &str =
    "epoch,step,train_recon,train_kl,train_elbo,test_recon,test_kl,test_elbo,seconds";

impl EpochMetrics {
    /// This row as CSV, without a newline.
    pub fn csv_row(&self) -> String {
        format!(
            "{},{},{:.4},{:.4},{:.4},{:.4},{:.4},{:.4},{:.3}",
            self.epoch,
            self.step,
            self.train_recon,
            self.train_kl,
            self.train_elbo,
            self.test_recon,
            self.test_kl,
            self.test_elbo,
            self.seconds
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_layout() {
        // Three 2x2 tiles, 2 columns: 2 rows → 5x5 pixels.
        let imgs = [1u8, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
        let (g, w, h) = grid_pixels(&imgs, 3, 2, 2, 2).unwrap();
        assert_eq!((w, h), (5, 5));
        let gap = GRID_GAP_LEVEL;
        #[rustfmt::skip]
        let expected = vec![
            1, 2, gap, 5, 6,
            3, 4, gap, 7, 8,
            gap, gap, gap, gap, gap,
            9, 10, gap, 0, 0,
            11, 12, gap, 0, 0,
        ];
        assert_eq!(g, expected);
    }

    #[test]
    fn grid_errors() {
        assert!(grid_pixels(&[0; 10], 1, 1, 2, 2).is_err());
        assert!(grid_pixels(&[], 0, 1, 2, 2).is_err());
        assert!(grid_pixels(&[0; 4], 1, 0, 2, 2).is_err());
    }

    #[test]
    fn png_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.png");
        let imgs: Vec<u8> = (0..64 * 784).map(|i| (i % 251) as u8).collect();
        write_grid_png(&path, &imgs, 64, 8).unwrap();
        let dec = png::Decoder::new(std::fs::File::open(&path).unwrap());
        let mut reader = dec.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (8 * 28 + 7, 8 * 28 + 7));
        assert_eq!(info.color_type, png::ColorType::Grayscale);
        // Tile 9 (row 1, col 1) starts at (29, 29).
        assert_eq!(buf[29 * info.width as usize + 29], imgs[9 * 784]);
    }

    #[test]
    fn probs_bytes() {
        assert_eq!(
            probs_to_bytes(&[0.0, 0.5, 1.0, 2.0, -1.0, f32::NAN]),
            vec![0, 128, 255, 255, 0, 0]
        );
    }

    #[test]
    fn csv() {
        let m = EpochMetrics {
            epoch: 2,
            step: 110,
            train_recon: 100.0,
            train_kl: 20.5,
            train_elbo: 120.5,
            test_recon: 101.0,
            test_kl: 20.0,
            test_elbo: 121.0,
            seconds: 9.5,
        };
        assert_eq!(
            m.csv_row(),
            "2,110,100.0000,20.5000,120.5000,101.0000,20.0000,121.0000,9.500"
        );
        assert_eq!(
            METRICS_HEADER.split(',').count(),
            m.csv_row().split(',').count()
        );
    }
}
