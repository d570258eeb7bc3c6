//! MNIST in the IDX format, plain or gzip-compressed.
//!
//! ```no_run
//! use std::path::Path;
//! let mnist = tinygen_trainer::data::load_mnist(Path::new("data/mnist-subset"))?;
//! let x = mnist.train_binarized(&candle_core::Device::Cpu)?; // (n, 1, 28, 28), 0.0 or 1.0
//! assert_eq!(x.dims(), &[mnist.n_train, 1, 28, 28]);
//! # anyhow::Ok(())
//! ```
//!
//! The four standard file names are read from one directory, each either plain
//! (`train-images-idx3-ubyte`) or gzip-compressed (`train-images-idx3-ubyte.gz`);
//! when both exist the plain file wins. IDX: a big-endian `u32` magic
//! (`0x00000803` images, `0x00000801` labels), big-endian `u32` count (and rows,
//! cols for images), then the raw bytes.

use std::io::Read;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

/// Image height and width.
pub const SIDE: usize = 28;
/// Pixels per image.
pub const PIXELS: usize = SIDE * SIDE;
/// IDX magic of an image file (`u8` data, 3 dimensions).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// IDX magic of a label file (`u8` data, 1 dimension).
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// The four files, without the optional `.gz` suffix.
pub const TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
/// Training labels file name.
pub const TRAIN_LABELS: &str = "train-labels-idx1-ubyte";
/// Test images file name.
pub const TEST_IMAGES: &str = "t10k-images-idx3-ubyte";
/// Test labels file name.
pub const TEST_LABELS: &str = "t10k-labels-idx1-ubyte";

/// What went wrong reading the data set. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// Neither `name` nor `name.gz` exists in the directory.
    #[error("missing MNIST file: neither {} nor {}.gz exists", .path.display(), .path.display())]
    Missing {
        /// The path without `.gz`.
        path: PathBuf,
    },
    /// The file exists but could not be read.
    #[error("cannot read {}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The `.gz` file is not a valid gzip stream.
    #[error("bad gzip data in {}: {source}", .path.display())]
    Gzip {
        /// The file.
        path: PathBuf,
        /// The decoder's error.
        source: std::io::Error,
    },
    /// The header or the data is shorter than the header says.
    #[error("truncated IDX file {}: {what} needs {expected} bytes, found {found}", .path.display())]
    Truncated {
        /// The file.
        path: PathBuf,
        /// "header" or "data".
        what: &'static str,
        /// Bytes needed.
        expected: usize,
        /// Bytes present.
        found: usize,
    },
    /// More bytes than the header describes.
    #[error("IDX file {} has {extra} bytes after the {count} items its header declares", .path.display())]
    TrailingBytes {
        /// The file.
        path: PathBuf,
        /// Item count from the header.
        count: usize,
        /// Unexpected bytes at the end.
        extra: usize,
    },
    /// The magic number is not the one this file kind needs.
    #[error("wrong IDX magic in {}: found {found:#010x}, expected {expected:#010x} ({kind})", .path.display())]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// "images" or "labels".
        kind: &'static str,
        /// Magic read from the file.
        found: u32,
        /// Magic this kind needs.
        expected: u32,
    },
    /// Images are not 28x28.
    #[error("unexpected image size in {}: {rows}x{cols}, expected 28x28", .path.display())]
    BadDims {
        /// The file.
        path: PathBuf,
        /// Rows from the header.
        rows: u32,
        /// Columns from the header.
        cols: u32,
    },
    /// Image and label files disagree on the count.
    #[error("{} holds {images} images but {} holds {labels} labels", .images_path.display(), .labels_path.display())]
    CountMismatch {
        /// The image file.
        images_path: PathBuf,
        /// Its count.
        images: usize,
        /// The label file.
        labels_path: PathBuf,
        /// Its count.
        labels: usize,
    },
    /// A label outside 0..=9.
    #[error("bad label in {}: item {index} is {label}, expected 0..=9", .path.display())]
    BadLabel {
        /// The file.
        path: PathBuf,
        /// Index of the item.
        index: usize,
        /// The value found.
        label: u8,
    },
}

/// MNIST images (row-major `u8`, `n * 784` bytes) and labels (0..=9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mnist {
    /// `n_train * 784` bytes, 0 = background, 255 = ink.
    pub train_images: Vec<u8>,
    /// `n_train` labels.
    pub train_labels: Vec<u8>,
    /// `n_test * 784` bytes.
    pub test_images: Vec<u8>,
    /// `n_test` labels.
    pub test_labels: Vec<u8>,
    /// Training images.
    pub n_train: usize,
    /// Test images.
    pub n_test: usize,
}

/// Loads the four MNIST files from `dir`.
///
/// # Errors
/// [`DataError`] for a missing, unreadable, truncated or malformed file, images
/// that are not 28x28, image and label counts that differ, or a label above 9.
pub fn load_mnist(dir: &Path) -> Result<Mnist, DataError> {
    let (train_images, train_labels, n_train) = load_split(dir, TRAIN_IMAGES, TRAIN_LABELS)?;
    let (test_images, test_labels, n_test) = load_split(dir, TEST_IMAGES, TEST_LABELS)?;
    Ok(Mnist {
        train_images,
        train_labels,
        test_images,
        test_labels,
        n_train,
        n_test,
    })
}

fn load_split(
    dir: &Path,
    images: &str,
    labels: &str,
) -> Result<(Vec<u8>, Vec<u8>, usize), DataError> {
    let (images_path, image_bytes) = read_maybe_gz(dir, images)?;
    let (images, n_images) = parse_images(&images_path, image_bytes)?;
    let (labels_path, label_bytes) = read_maybe_gz(dir, labels)?;
    let labels = parse_labels(&labels_path, label_bytes)?;
    if labels.len() != n_images {
        return Err(DataError::CountMismatch {
            images_path,
            images: n_images,
            labels_path,
            labels: labels.len(),
        });
    }
    Ok((images, labels, n_images))
}

/// Reads `dir/name`, or else decompresses `dir/name.gz`; returns the path read.
fn read_maybe_gz(dir: &Path, name: &str) -> Result<(PathBuf, Vec<u8>), DataError> {
    let plain = dir.join(name);
    if plain.is_file() {
        let bytes = std::fs::read(&plain).map_err(|source| DataError::Io {
            path: plain.clone(),
            source,
        })?;
        return Ok((plain, bytes));
    }
    let gz = dir.join(format!("{name}.gz"));
    if !gz.is_file() {
        return Err(DataError::Missing { path: plain });
    }
    let compressed = std::fs::read(&gz).map_err(|source| DataError::Io {
        path: gz.clone(),
        source,
    })?;
    let mut bytes = Vec::new();
    if let Err(source) = flate2::read::GzDecoder::new(compressed.as_slice()).read_to_end(&mut bytes)
    {
        return Err(DataError::Gzip { path: gz, source });
    }
    Ok((gz, bytes))
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Checks the header length and the magic; returns the item count.
fn parse_header(
    path: &Path,
    bytes: &[u8],
    header_len: usize,
    kind: &'static str,
    expected: u32,
) -> Result<usize, DataError> {
    // The magic is checked as soon as 4 bytes are there, so that a wrong file
    // kind is reported as such rather than as a short header.
    if bytes.len() < 4 {
        return Err(DataError::Truncated {
            path: path.to_owned(),
            what: "header",
            expected: header_len,
            found: bytes.len(),
        });
    }
    let found = be_u32(bytes, 0);
    if found != expected {
        return Err(DataError::BadMagic {
            path: path.to_owned(),
            kind,
            found,
            expected,
        });
    }
    if bytes.len() < header_len {
        return Err(DataError::Truncated {
            path: path.to_owned(),
            what: "header",
            expected: header_len,
            found: bytes.len(),
        });
    }
    Ok(be_u32(bytes, 4) as usize)
}

/// Checks the data length against `count * item_len`; returns the data.
fn take_data(
    path: &Path,
    mut bytes: Vec<u8>,
    header_len: usize,
    count: usize,
    item_len: usize,
) -> Result<Vec<u8>, DataError> {
    let found = bytes.len() - header_len;
    let expected = count.saturating_mul(item_len);
    if found < expected {
        return Err(DataError::Truncated {
            path: path.to_owned(),
            what: "data",
            expected,
            found,
        });
    }
    if found > expected {
        return Err(DataError::TrailingBytes {
            path: path.to_owned(),
            count,
            extra: found - expected,
        });
    }
    bytes.drain(..header_len);
    Ok(bytes)
}

fn parse_images(path: &Path, bytes: Vec<u8>) -> Result<(Vec<u8>, usize), DataError> {
    const HEADER: usize = 16;
    let count = parse_header(path, &bytes, HEADER, "images", IMAGES_MAGIC)?;
    let (rows, cols) = (be_u32(&bytes, 8), be_u32(&bytes, 12));
    if rows as usize != SIDE || cols as usize != SIDE {
        return Err(DataError::BadDims {
            path: path.to_owned(),
            rows,
            cols,
        });
    }
    let data = take_data(path, bytes, HEADER, count, PIXELS)?;
    Ok((data, count))
}

fn parse_labels(path: &Path, bytes: Vec<u8>) -> Result<Vec<u8>, DataError> {
    const HEADER: usize = 8;
    let count = parse_header(path, &bytes, HEADER, "labels", LABELS_MAGIC)?;
    let data = take_data(path, bytes, HEADER, count, 1)?;
    if let Some((index, &label)) = data.iter().enumerate().find(|(_, &l)| l > 9) {
        return Err(DataError::BadLabel {
            path: path.to_owned(),
            index,
            label,
        });
    }
    Ok(data)
}

impl Mnist {
    /// Keeps only the first `n` training images (all of them if `n >= n_train`).
    pub fn limit_train(&mut self, n: usize) {
        let n = n.min(self.n_train);
        self.train_images.truncate(n * PIXELS);
        self.train_labels.truncate(n);
        self.n_train = n;
    }

    /// Training images as f32 in [0, 1], shape (n_train, 1, 28, 28).
    ///
    /// # Errors
    /// Only if candle cannot allocate the tensor.
    pub fn train_float(&self, device: &Device) -> candle_core::Result<Tensor> {
        images_float(&self.train_images, self.n_train, device)
    }

    /// Training images binarized (pixel >= 128 → 1.0, else 0.0), shape (n_train, 1, 28, 28).
    ///
    /// # Errors
    /// Only if candle cannot allocate the tensor.
    pub fn train_binarized(&self, device: &Device) -> candle_core::Result<Tensor> {
        images_binarized(&self.train_images, self.n_train, device)
    }

    /// Test images as f32 in [0, 1], shape (n_test, 1, 28, 28).
    ///
    /// # Errors
    /// Only if candle cannot allocate the tensor.
    pub fn test_float(&self, device: &Device) -> candle_core::Result<Tensor> {
        images_float(&self.test_images, self.n_test, device)
    }

    /// Test images binarized (pixel >= 128 → 1.0), shape (n_test, 1, 28, 28).
    ///
    /// # Errors
    /// Only if candle cannot allocate the tensor.
    pub fn test_binarized(&self, device: &Device) -> candle_core::Result<Tensor> {
        images_binarized(&self.test_images, self.n_test, device)
    }

    /// Training labels as a u32 tensor of shape (n_train,).
    ///
    /// # Errors
    /// Only if candle cannot allocate the tensor.
    pub fn train_labels_tensor(&self, device: &Device) -> candle_core::Result<Tensor> {
        Tensor::new(self.train_labels.as_slice(), device)?.to_dtype(DType::U32)
    }

    /// Test labels as a u32 tensor of shape (n_test,).
    ///
    /// # Errors
    /// Only if candle cannot allocate the tensor.
    pub fn test_labels_tensor(&self, device: &Device) -> candle_core::Result<Tensor> {
        Tensor::new(self.test_labels.as_slice(), device)?.to_dtype(DType::U32)
    }
}

/// `n` images of 784 bytes as f32 in [0, 1], shape (n, 1, 28, 28).
///
/// # Errors
/// If `bytes.len() != n * 784`.
pub fn images_float(bytes: &[u8], n: usize, device: &Device) -> candle_core::Result<Tensor> {
    check_len(bytes, n)?;
    let data: Vec<f32> = bytes.iter().map(|&b| f32::from(b) / 255.0).collect();
    Tensor::from_vec(data, (n, 1, SIDE, SIDE), device)
}

/// `n` images of 784 bytes binarized at 0.5 (byte >= 128 → 1.0), shape (n, 1, 28, 28).
///
/// # Errors
/// If `bytes.len() != n * 784`.
pub fn images_binarized(bytes: &[u8], n: usize, device: &Device) -> candle_core::Result<Tensor> {
    check_len(bytes, n)?;
    let data: Vec<f32> = bytes
        .iter()
        .map(|&b| f32::from(u8::from(b >= 128)))
        .collect();
    Tensor::from_vec(data, (n, 1, SIDE, SIDE), device)
}

fn check_len(bytes: &[u8], n: usize) -> candle_core::Result<()> {
    if bytes.len() != n * PIXELS {
        candle_core::bail!(
            "expected {n} images of {PIXELS} bytes ({} bytes), got {} bytes",
            n * PIXELS,
            bytes.len()
        );
    }
    Ok(())
}

/// The shipped data set: `data/mnist-subset` under the current directory if it
/// exists there, else next to this crate (`CARGO_MANIFEST_DIR/../data/mnist-subset`).
pub fn default_data_dir() -> PathBuf {
    let local = PathBuf::from("data/mnist-subset");
    if local.is_dir() {
        return local;
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("data")
        .join("mnist-subset")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn idx_images(magic: u32, n: u32, rows: u32, cols: u32, data_len: usize) -> Vec<u8> {
        let mut v = Vec::new();
        for x in [magic, n, rows, cols] {
            v.extend_from_slice(&x.to_be_bytes());
        }
        v.extend((0..data_len).map(|i| (i % 256) as u8));
        v
    }

    fn idx_labels(magic: u32, n: u32, labels: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&magic.to_be_bytes());
        v.extend_from_slice(&n.to_be_bytes());
        v.extend_from_slice(labels);
        v
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    /// A valid set: 3 training and 2 test images; returns the tempdir.
    fn valid_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::write(
            p.join(TRAIN_IMAGES),
            idx_images(IMAGES_MAGIC, 3, 28, 28, 3 * PIXELS),
        )
        .unwrap();
        std::fs::write(
            p.join(TRAIN_LABELS),
            idx_labels(LABELS_MAGIC, 3, &[0, 9, 4]),
        )
        .unwrap();
        std::fs::write(
            p.join(format!("{TEST_IMAGES}.gz")),
            gz(&idx_images(IMAGES_MAGIC, 2, 28, 28, 2 * PIXELS)),
        )
        .unwrap();
        std::fs::write(
            p.join(format!("{TEST_LABELS}.gz")),
            gz(&idx_labels(LABELS_MAGIC, 2, &[1, 2])),
        )
        .unwrap();
        dir
    }

    fn err_of(dir: &tempfile::TempDir) -> (DataError, String) {
        let e = load_mnist(dir.path()).unwrap_err();
        let msg = e.to_string();
        (e, msg)
    }

    #[test]
    fn loads_plain_and_gz() {
        let dir = valid_dir();
        let m = load_mnist(dir.path()).unwrap();
        assert_eq!((m.n_train, m.n_test), (3, 2));
        assert_eq!(m.train_labels, vec![0, 9, 4]);
        assert_eq!(m.test_labels, vec![1, 2]);
        assert_eq!(m.train_images.len(), 3 * PIXELS);
        assert_eq!(m.test_images[..3], [0, 1, 2]);
        assert_eq!(m.train_images[300], (300 % 256) as u8);
    }

    #[test]
    fn plain_file_preferred_over_gz() {
        let dir = valid_dir();
        // A broken .gz next to a valid plain file is never opened.
        std::fs::write(dir.path().join(format!("{TRAIN_IMAGES}.gz")), b"not gzip").unwrap();
        load_mnist(dir.path()).unwrap();
    }

    #[test]
    fn missing_file() {
        let dir = valid_dir();
        std::fs::remove_file(dir.path().join(format!("{TEST_LABELS}.gz"))).unwrap();
        let (e, msg) = err_of(&dir);
        assert!(matches!(e, DataError::Missing { .. }), "{e:?}");
        assert!(msg.contains(TEST_LABELS), "{msg}");
    }

    #[test]
    fn missing_directory() {
        let e = load_mnist(Path::new("/nonexistent/tinygen/mnist")).unwrap_err();
        assert!(matches!(e, DataError::Missing { .. }), "{e:?}");
        assert!(e.to_string().contains("/nonexistent/tinygen/mnist"), "{e}");
    }

    #[test]
    fn truncated_header() {
        let dir = valid_dir();
        let bytes = idx_images(IMAGES_MAGIC, 3, 28, 28, 0);
        std::fs::write(dir.path().join(TRAIN_IMAGES), &bytes[..10]).unwrap();
        let (e, msg) = err_of(&dir);
        assert!(
            matches!(
                e,
                DataError::Truncated {
                    what: "header",
                    expected: 16,
                    found: 10,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(msg.contains(TRAIN_IMAGES), "{msg}");

        std::fs::write(dir.path().join(TRAIN_IMAGES), &bytes[..2]).unwrap();
        let (e, _) = err_of(&dir);
        assert!(
            matches!(
                e,
                DataError::Truncated {
                    what: "header",
                    found: 2,
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn truncated_data() {
        let dir = valid_dir();
        std::fs::write(
            dir.path().join(TRAIN_IMAGES),
            idx_images(IMAGES_MAGIC, 3, 28, 28, 3 * PIXELS - 1),
        )
        .unwrap();
        let (e, msg) = err_of(&dir);
        assert!(
            matches!(
                e,
                DataError::Truncated {
                    what: "data",
                    expected: 2352,
                    found: 2351,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(
            msg.contains(TRAIN_IMAGES) && msg.contains("2352") && msg.contains("2351"),
            "{msg}"
        );
    }

    #[test]
    fn truncated_labels_in_gz() {
        let dir = valid_dir();
        std::fs::write(
            dir.path().join(format!("{TEST_LABELS}.gz")),
            gz(&idx_labels(LABELS_MAGIC, 2, &[1])),
        )
        .unwrap();
        let (e, msg) = err_of(&dir);
        assert!(
            matches!(
                e,
                DataError::Truncated {
                    what: "data",
                    expected: 2,
                    found: 1,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(msg.contains(&format!("{TEST_LABELS}.gz")), "{msg}");
    }

    #[test]
    fn huge_count_is_truncation_not_allocation() {
        let dir = valid_dir();
        std::fs::write(
            dir.path().join(TRAIN_IMAGES),
            idx_images(IMAGES_MAGIC, u32::MAX, 28, 28, 10),
        )
        .unwrap();
        let (e, _) = err_of(&dir);
        assert!(
            matches!(
                e,
                DataError::Truncated {
                    what: "data",
                    found: 10,
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn trailing_bytes() {
        let dir = valid_dir();
        std::fs::write(
            dir.path().join(TRAIN_LABELS),
            idx_labels(LABELS_MAGIC, 3, &[0, 1, 2, 3]),
        )
        .unwrap();
        let (e, msg) = err_of(&dir);
        assert!(
            matches!(
                e,
                DataError::TrailingBytes {
                    count: 3,
                    extra: 1,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(msg.contains(TRAIN_LABELS), "{msg}");
    }

    #[test]
    fn wrong_magic_images() {
        let dir = valid_dir();
        // A label file where the images should be.
        std::fs::write(
            dir.path().join(TRAIN_IMAGES),
            idx_labels(LABELS_MAGIC, 3, &[0, 1, 2]),
        )
        .unwrap();
        let (e, msg) = err_of(&dir);
        assert!(
            matches!(
                e,
                DataError::BadMagic {
                    found: LABELS_MAGIC,
                    expected: IMAGES_MAGIC,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(
            msg.contains("0x00000801") && msg.contains("0x00000803"),
            "{msg}"
        );
        assert!(msg.contains(TRAIN_IMAGES), "{msg}");
    }

    #[test]
    fn wrong_magic_labels() {
        let dir = valid_dir();
        std::fs::write(
            dir.path().join(TRAIN_LABELS),
            idx_labels(0xdead_beef, 3, &[0, 1, 2]),
        )
        .unwrap();
        let (e, msg) = err_of(&dir);
        assert!(
            matches!(
                e,
                DataError::BadMagic {
                    found: 0xdead_beef,
                    expected: LABELS_MAGIC,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(
            msg.contains("0xdeadbeef") && msg.contains(TRAIN_LABELS),
            "{msg}"
        );
    }

    #[test]
    fn bad_dims() {
        let dir = valid_dir();
        std::fs::write(
            dir.path().join(TRAIN_IMAGES),
            idx_images(IMAGES_MAGIC, 3, 32, 32, 3 * 1024),
        )
        .unwrap();
        let (e, msg) = err_of(&dir);
        assert!(
            matches!(
                e,
                DataError::BadDims {
                    rows: 32,
                    cols: 32,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(msg.contains("32x32") && msg.contains(TRAIN_IMAGES), "{msg}");
    }

    #[test]
    fn count_mismatch() {
        let dir = valid_dir();
        std::fs::write(
            dir.path().join(TRAIN_LABELS),
            idx_labels(LABELS_MAGIC, 2, &[0, 1]),
        )
        .unwrap();
        let (e, msg) = err_of(&dir);
        assert!(
            matches!(
                e,
                DataError::CountMismatch {
                    images: 3,
                    labels: 2,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(
            msg.contains(TRAIN_IMAGES) && msg.contains(TRAIN_LABELS),
            "{msg}"
        );
    }

    #[test]
    fn label_out_of_range() {
        let dir = valid_dir();
        std::fs::write(
            dir.path().join(TRAIN_LABELS),
            idx_labels(LABELS_MAGIC, 3, &[0, 10, 1]),
        )
        .unwrap();
        let (e, msg) = err_of(&dir);
        assert!(
            matches!(
                e,
                DataError::BadLabel {
                    index: 1,
                    label: 10,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(msg.contains(TRAIN_LABELS), "{msg}");
    }

    #[test]
    fn bad_gzip() {
        let dir = valid_dir();
        let path = dir.path().join(format!("{TEST_IMAGES}.gz"));
        std::fs::write(&path, b"\x1f\x8b definitely not deflate").unwrap();
        let (e, msg) = err_of(&dir);
        assert!(matches!(e, DataError::Gzip { .. }), "{e:?}");
        assert!(msg.contains(&format!("{TEST_IMAGES}.gz")), "{msg}");

        // A gzip stream cut short is also bad gzip, not a silent short read.
        let full = gz(&idx_images(IMAGES_MAGIC, 2, 28, 28, 2 * PIXELS));
        std::fs::write(&path, &full[..full.len() / 2]).unwrap();
        let (e, _) = err_of(&dir);
        assert!(matches!(e, DataError::Gzip { .. }), "{e:?}");
    }

    #[test]
    fn tensors_and_binarization() {
        let dev = Device::Cpu;
        let bytes: Vec<u8> = (0..PIXELS).map(|i| [0u8, 127, 128, 255][i % 4]).collect();
        let f = images_float(&bytes, 1, &dev).unwrap();
        assert_eq!(f.dims(), &[1, 1, 28, 28]);
        let fv = f.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(fv[..4], [0.0, 127.0 / 255.0, 128.0 / 255.0, 1.0]);
        let b = images_binarized(&bytes, 1, &dev).unwrap();
        let bv = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(bv[..4], [0.0, 0.0, 1.0, 1.0]);
        assert!(images_float(&bytes, 2, &dev).is_err());
    }

    #[test]
    fn limit_train() {
        let dir = valid_dir();
        let mut m = load_mnist(dir.path()).unwrap();
        m.limit_train(2);
        assert_eq!(
            (m.n_train, m.train_labels.len(), m.train_images.len()),
            (2, 2, 2 * PIXELS)
        );
        m.limit_train(100);
        assert_eq!(m.n_train, 2);
    }

    #[test]
    fn shipped_subset() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/mnist-subset");
        let m = load_mnist(&dir).unwrap();
        assert_eq!((m.n_train, m.n_test), (7000, 1000));
        assert_eq!(m.train_images.len(), 7000 * PIXELS);
        assert_eq!(m.test_images.len(), 1000 * PIXELS);
        // Every digit is present in both splits.
        for d in 0..10u8 {
            assert!(
                m.train_labels.contains(&d) && m.test_labels.contains(&d),
                "digit {d}"
            );
        }
        // Real digits: mostly background, some ink.
        let ink = m.train_images.iter().filter(|&&p| p >= 128).count() as f64
            / m.train_images.len() as f64;
        assert!((0.05..0.25).contains(&ink), "ink fraction {ink}");
        let x = m.test_binarized(&Device::Cpu).unwrap();
        assert_eq!(x.dims(), &[1000, 1, 28, 28]);
        assert_eq!(m.train_labels_tensor(&Device::Cpu).unwrap().dims(), &[7000]);
    }
}
