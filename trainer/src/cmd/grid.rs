//! `tinygen grid RAW -o grid.png`: streamed pixel bytes to a PNG; with
//! `--log`, the `pixels N: [..]` lines of a board's defmt log.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;

use tinygen_trainer::report::write_grid_png_sized;

/// Turn raw pixel bytes (what the firmware streams under QEMU, or `tinygen
/// sample --raw`), or a board's log with `--log`, into a PNG grid.
#[derive(Debug, Args)]
pub struct GridArgs {
    /// File of n*H*W bytes, images in order (with --log: the log).
    pub raw: PathBuf,
    /// RAW is the firmware's decoded defmt log as `probe-rs run` or
    /// `defmt-print` prints it (nRF52840-DK, Pico, Pico 2): read the pixels
    /// of its `pixels N: [b0, b1, ..]` lines, N = 0, 1, 2, .. in order;
    /// other lines are skipped.
    #[arg(long)]
    pub log: bool,
    /// Image height and width (the model file's image; `tinygen info`).
    #[arg(long, default_value = "28x28", value_name = "HxW", value_parser = parse_size)]
    pub size: (usize, usize),
    /// PNG to write.
    #[arg(short, long, default_value = "grid.png")]
    pub output: PathBuf,
    /// Images per row [default: 8, or fewer for small n].
    #[arg(long)]
    pub cols: Option<usize>,
}

/// Parses `HxW` (both at least 1).
fn parse_size(s: &str) -> Result<(usize, usize), String> {
    let bad = || format!("`{s}` is not a size HxW such as 28x28");
    let (h, w) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    match (h.trim().parse::<usize>(), w.trim().parse::<usize>()) {
        (Ok(h), Ok(w)) if h > 0 && w > 0 => Ok((h, w)),
        _ => Err(bad()),
    }
}

/// Runs `tinygen grid`.
///
/// # Errors
///
/// If the file cannot be read, is empty or not a whole number of images.
pub fn run(args: GridArgs) -> Result<()> {
    let mut bytes =
        std::fs::read(&args.raw).with_context(|| format!("reading {}", args.raw.display()))?;
    let (h, w) = args.size;
    let image_bytes = h * w;
    if args.log {
        let text = String::from_utf8_lossy(&bytes);
        bytes = pixels_from_log(&text, image_bytes)
            .with_context(|| format!("{}: reading the log's pixels", args.raw.display()))?;
    } else if std::str::from_utf8(&bytes).is_ok_and(|t| t.lines().any(|l| find_pixels(l).is_some()))
    {
        // Text with `pixels N: [..]` lines: not pixel bytes, whatever its length.
        bail!(
            "{}: this looks like a firmware log, not raw pixel bytes: add --log",
            args.raw.display()
        );
    } else if bytes.is_empty() || bytes.len() % image_bytes != 0 {
        bail!(
            "{}: {} bytes is not a whole number of {h}x{w} images ({image_bytes} bytes each; \
             --size HxW sets the image size)",
            args.raw.display(),
            bytes.len()
        );
    }
    let n = bytes.len() / image_bytes;
    let cols = args.cols.unwrap_or(8).clamp(1, n);
    write_grid_png_sized(&args.output, &bytes, n, cols, h, w)?;
    println!("wrote {} ({n} images)", args.output.display());
    Ok(())
}

/// The images of a decoded defmt log: the bytes of its `pixels N: [..]`
/// lines (what the boards log with `defmt::info!("pixels {=u32}: {=[u8]}")`),
/// whatever `probe-rs` or `defmt-print` put around them (level, timestamp,
/// location, colours), N = 0, 1, 2, .. in order, `image_bytes` each.
///
/// # Errors
///
/// If there is no such line, a list is not `image_bytes` bytes of 0..=255,
/// or the numbers are not 0, 1, 2, .. (a truncated or repeated run).
pub fn pixels_from_log(text: &str, image_bytes: usize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut n = 0usize;
    for (i, line) in text.lines().enumerate() {
        let Some((index, list)) = find_pixels(line) else {
            continue;
        };
        let lineno = i + 1;
        if index != n {
            bail!(
                "line {lineno}: `pixels {index}` where `pixels {n}` was expected (the lines \
                 must number the images 0, 1, 2, .. once each: keep one run of the log)"
            );
        }
        let start = out.len();
        for item in list.split(',') {
            let item = item.trim();
            let v: u8 = item.parse().map_err(|_| {
                anyhow::anyhow!("line {lineno}: `{item}` in `pixels {index}` is not a byte 0..=255")
            })?;
            out.push(v);
        }
        if out.len() - start != image_bytes {
            bail!(
                "line {lineno}: `pixels {index}` has {} bytes, not {image_bytes} (--size HxW \
                 sets the image size)",
                out.len() - start
            );
        }
        n += 1;
    }
    if n == 0 {
        bail!("no `pixels N: [..]` line (is this the board's decoded defmt log?)");
    }
    Ok(out)
}

/// Finds `pixels N: [LIST]` in `line`: N and the text between the brackets.
fn find_pixels(line: &str) -> Option<(usize, &str)> {
    let mut rest = line;
    while let Some(at) = rest.find("pixels ") {
        let after = &rest[at + "pixels ".len()..];
        let digits = after.len() - after.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if let (Ok(index), Some(tail)) = (
            after[..digits].parse::<usize>(),
            after[digits..].strip_prefix(": ["),
        ) {
            if let Some(end) = tail.find(']') {
                return Some((index, &tail[..end]));
            }
        }
        rest = after;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_probe_rs_and_defmt_print_lines() {
        // probe-rs run (timestamp, level, location), defmt-print (location
        // on the next line), and the other lines of the log.
        let log = "\
0.000000 [INFO ] sampling 2 images, seed 1 (tinygen_firmware src/main.rs:120)
0.000001 [INFO ] sample 1/2: cycles per sample: 12345 (tinygen_firmware src/main.rs:140)
0.000002 [INFO ] pixels 0: [0, 1, 2, 255] (tinygen_firmware src/board/pico.rs:139)
INFO  pixels 1: [9, 8, 7, 6]
\u{2514}\u{2500} tinygen_firmware::pico::__defmt @ src/board/pico.rs:139
INFO  done
";
        assert_eq!(pixels_from_log(log, 4).unwrap(), [0, 1, 2, 255, 9, 8, 7, 6]);
    }

    #[test]
    fn refuses_bad_logs() {
        let err = |log: &str| format!("{:#}", pixels_from_log(log, 2).unwrap_err());
        assert!(err("INFO done\n").contains("no `pixels N: [..]` line"));
        assert!(err("pixels 0: [1, 2, 3]\n").contains("has 3 bytes, not 2"));
        assert!(err("pixels 0: [1, 256]\n").contains("`256`"));
        assert!(err("pixels 0: [1, 2]\npixels 2: [1, 2]\n").contains("`pixels 1` was expected"));
        assert!(err("pixels 0: [1, 2]\npixels 0: [1, 2]\n").contains("keep one run"));
    }
}
