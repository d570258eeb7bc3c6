//! Loss curves: the columns of a run's `metrics.csv` against epoch, as one
//! PNG of titled panels (plotters' bitmap backend, text drawn with an
//! embedded DejaVu Sans through ab_glyph: no system fonts needed).
//!
//! Columns are grouped into panels by quantity: `train_x` and `test_x` share
//! the panel `x`; a GAN's `d_loss` and `g_loss` share one, and so do `d_real`
//! and `d_fake`; `epoch`, `step`, `g_step` and `seconds` are not plotted.
//! Any family's CSV works, so a new family needs nothing here.
//!
//! ```no_run
//! let png = tinygen_trainer::report::write_loss_png(std::path::Path::new("runs/vae-s0-x/metrics.csv"))?;
//! assert!(png.ends_with("loss.png"));
//! # anyhow::Ok(())
//! ```

use std::path::{Path, PathBuf};
use std::sync::Once;

use anyhow::{anyhow, bail, Context, Result};
use plotters::prelude::*;
use plotters::style::FontStyle;

/// File name of the loss curves, next to `metrics.csv`.
pub const LOSS_FILE: &str = "loss.png";

/// Width and height in pixels of one panel.
const PANEL: (u32, u32) = (480, 320);

/// Font family name the plots use (registered once from embedded bytes).
const FONT: &str = "sans-serif";

/// Columns that are counters or timings, not quantities to plot.
const NOT_PLOTTED: [&str; 4] = ["epoch", "step", "g_step", "seconds"];

/// A parsed metrics CSV: column names and one row of values per line
/// (a field that does not parse as a number is NaN).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsTable {
    /// Header names, in order.
    pub columns: Vec<String>,
    /// Values, `rows[i][j]` for line i and column j.
    pub rows: Vec<Vec<f64>>,
}

impl MetricsTable {
    /// Parses CSV text with a header line.
    ///
    /// # Errors
    /// If there is no header or a row has a different number of fields.
    pub fn parse(text: &str) -> Result<Self> {
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let header = lines
            .next()
            .ok_or_else(|| anyhow!("empty CSV: no header"))?;
        let columns: Vec<String> = header.split(',').map(|s| s.trim().to_string()).collect();
        let mut rows = Vec::new();
        for (i, line) in lines.enumerate() {
            let row: Vec<f64> = line
                .split(',')
                .map(|s| s.trim().parse::<f64>().unwrap_or(f64::NAN))
                .collect();
            if row.len() != columns.len() {
                bail!(
                    "CSV line {}: {} fields, the header has {}",
                    i + 2,
                    row.len(),
                    columns.len()
                );
            }
            rows.push(row);
        }
        Ok(MetricsTable { columns, rows })
    }

    /// The x value of each row: the `epoch` column if there is one and it
    /// increases strictly, else the 1-based row number.
    fn xs(&self) -> Vec<f64> {
        let by_row = || (1..=self.rows.len()).map(|i| i as f64).collect();
        let Some(j) = self.columns.iter().position(|c| c == "epoch") else {
            return by_row();
        };
        let xs: Vec<f64> = self.rows.iter().map(|r| r[j]).collect();
        if xs.iter().all(|x| x.is_finite()) && xs.windows(2).all(|w| w[0] < w[1]) {
            xs
        } else {
            by_row()
        }
    }
}

/// The panel a column belongs to (see the module docs).
fn group_key(column: &str) -> &str {
    match column {
        "d_loss" | "g_loss" => "gan_loss",
        "d_real" | "d_fake" => "d_prob",
        c => c
            .strip_prefix("train_")
            .or_else(|| c.strip_prefix("test_"))
            .unwrap_or(c),
    }
}

/// A panel's title.
fn title(key: &str) -> String {
    match key {
        "recon" => "reconstruction (nats/image)".into(),
        "kl" => "KL (nats/image)".into(),
        "elbo" => "-ELBO (nats/image)".into(),
        "bce" => "reconstruction BCE (nats/image)".into(),
        "mse" => "reconstruction MSE".into(),
        "nll" => "NLL (nats/image)".into(),
        "bits_per_dim" => "bits/dim".into(),
        "loss" => "cross-entropy (nats)".into(),
        "acc" => "accuracy".into(),
        "gan_loss" => "losses (nats)".into(),
        "d_prob" => "mean D output: real D(x), fake D(G(z))".into(),
        k => k.replace('_', " "),
    }
}

/// The panels: (group key, column indices), in the order the columns first appear.
fn groups(columns: &[String]) -> Vec<(String, Vec<usize>)> {
    let mut out: Vec<(String, Vec<usize>)> = Vec::new();
    for (j, c) in columns.iter().enumerate() {
        if NOT_PLOTTED.contains(&c.as_str()) {
            continue;
        }
        let key = group_key(c);
        match out.iter_mut().find(|(k, _)| k == key) {
            Some((_, cols)) => cols.push(j),
            None => out.push((key.to_string(), vec![j])),
        }
    }
    out
}

/// Line color of a column: training blue, test red, others from a palette.
fn color(column: &str, nth: usize) -> RGBColor {
    const PALETTE: [RGBColor; 4] = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
    ];
    if column.starts_with("train_") {
        PALETTE[0]
    } else if column.starts_with("test_") {
        PALETTE[1]
    } else {
        PALETTE[nth % PALETTE.len()]
    }
}

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // DejaVu Sans is a valid TrueType font: registration cannot fail.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
    });
}

/// Range of the finite values of `cols`, padded by 5% (1 for a constant).
fn y_range(table: &MetricsTable, cols: &[usize]) -> Option<(f64, f64)> {
    let vals = table
        .rows
        .iter()
        .flat_map(|r| cols.iter().map(move |&j| r[j]))
        .filter(|v| v.is_finite());
    let (lo, hi) = vals.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if lo > hi {
        return None;
    }
    let pad = if hi > lo {
        0.05 * (hi - lo)
    } else {
        0.05 * lo.abs().max(1.0)
    };
    Some((lo - pad, hi + pad))
}

/// Where the legend hides the least: upper right unless the curves end
/// high (the right third of the points lies mostly in the upper half).
fn legend_position(
    table: &MetricsTable,
    xs: &[f64],
    cols: &[usize],
    (y0, y1): (f64, f64),
) -> SeriesLabelPosition {
    let x_cut = xs[0] + (xs[xs.len() - 1] - xs[0]) * 2.0 / 3.0;
    let y_mid = 0.5 * (y0 + y1);
    let (mut high, mut all) = (0usize, 0usize);
    for (x, r) in xs.iter().zip(&table.rows) {
        if *x < x_cut {
            continue;
        }
        for &j in cols {
            if r[j].is_finite() {
                all += 1;
                high += usize::from(r[j] > y_mid);
            }
        }
    }
    if 2 * high > all {
        SeriesLabelPosition::LowerRight
    } else {
        SeriesLabelPosition::UpperRight
    }
}

/// Draws the panels of `table` as an RGB image of `w` x `h` pixels.
fn render(table: &MetricsTable, run_name: &str) -> Result<(Vec<u8>, u32, u32)> {
    let panels = groups(&table.columns);
    if panels.is_empty() {
        bail!("no quantity columns to plot in {:?}", table.columns);
    }
    if table.rows.is_empty() {
        bail!("no rows to plot");
    }
    let n = panels.len();
    let cols = if n <= 3 { n } else { n.div_ceil(2) };
    let rows = n.div_ceil(cols);
    let title_h = 36;
    let (w, h) = (PANEL.0 * cols as u32, PANEL.1 * rows as u32 + title_h);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    register_font();
    let xs = table.xs();
    let (x0, x1) = (xs[0], xs[xs.len() - 1]);
    let (x0, x1) = if x1 > x0 {
        (x0, x1)
    } else {
        (x0 - 0.5, x0 + 0.5)
    };
    let err = |e: &dyn std::fmt::Display| anyhow!("drawing the loss curves: {e}");
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let root = root
            .titled(run_name, (FONT, 22).into_font())
            .map_err(|e| err(&e))?;
        for (area, (key, cols)) in root.split_evenly((rows, cols)).iter().zip(&panels) {
            let Some((y0, y1)) = y_range(table, cols) else {
                // Only NaN or inf: a titled, empty panel says so.
                area.titled(&format!("{} (no finite values)", title(key)), (FONT, 17))
                    .map_err(|e| err(&e))?;
                continue;
            };
            let mut chart = ChartBuilder::on(area)
                .caption(title(key), (FONT, 17))
                .margin(10)
                .x_label_area_size(36)
                .y_label_area_size(56)
                .build_cartesian_2d(x0..x1, y0..y1)
                .map_err(|e| err(&e))?;
            let integral_x = xs.iter().all(|x| x.fract() == 0.0);
            let x_fmt = move |x: &f64| {
                if integral_x && (x - x.round()).abs() < 1e-9 {
                    format!("{x:.0}")
                } else if integral_x {
                    String::new()
                } else {
                    format!("{x}")
                }
            };
            chart
                .configure_mesh()
                .x_label_formatter(&x_fmt)
                .x_desc(if table.columns.iter().any(|c| c == "epoch") {
                    "epoch"
                } else {
                    "row"
                })
                .label_style((FONT, 13))
                .axis_desc_style((FONT, 14))
                .x_labels(xs.len().clamp(2, 10))
                .y_labels(6)
                .light_line_style(RGBColor(235, 235, 235))
                .draw()
                .map_err(|e| err(&e))?;
            for (nth, &j) in cols.iter().enumerate() {
                let name = &table.columns[j];
                let c = color(name, nth);
                let pts: Vec<(f64, f64)> = xs
                    .iter()
                    .zip(&table.rows)
                    .map(|(&x, r)| (x, r[j]))
                    .filter(|(_, y)| y.is_finite())
                    .collect();
                chart
                    .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                    .map_err(|e| err(&e))?
                    .label(name.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
                    });
                // Dots too, so that a run of one epoch still shows its value.
                chart
                    .draw_series(pts.iter().map(|&p| Circle::new(p, 2, c.filled())))
                    .map_err(|e| err(&e))?;
            }
            chart
                .configure_series_labels()
                .position(legend_position(table, &xs, cols, (y0, y1)))
                .label_font((FONT, 13))
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(160, 160, 160))
                .draw()
                .map_err(|e| err(&e))?;
        }
        root.present().map_err(|e| err(&e))?;
    }
    Ok((buf, w, h))
}

/// Writes `loss.png` next to `metrics_csv` (one titled panel per quantity,
/// training and test curves together) and returns its path.
///
/// # Errors
/// If the CSV cannot be read or has no rows or no quantity columns, or the
/// PNG cannot be written.
pub fn write_loss_png(metrics_csv: &Path) -> Result<PathBuf> {
    let out = metrics_csv.with_file_name(LOSS_FILE);
    let name = metrics_csv
        .parent()
        .and_then(|d| d.file_name())
        .map_or_else(
            || "metrics".to_string(),
            |d| d.to_string_lossy().into_owned(),
        );
    write_loss_png_to(metrics_csv, &out, &name)?;
    Ok(out)
}

/// [`write_loss_png`] to any `output` path, with the figure titled `title`.
///
/// # Errors
/// As [`write_loss_png`].
pub fn write_loss_png_to(metrics_csv: &Path, output: &Path, title: &str) -> Result<()> {
    let text = std::fs::read_to_string(metrics_csv)
        .with_context(|| format!("cannot read {}", metrics_csv.display()))?;
    let table =
        MetricsTable::parse(&text).with_context(|| format!("parsing {}", metrics_csv.display()))?;
    let (rgb, w, h) =
        render(&table, title).with_context(|| format!("plotting {}", metrics_csv.display()))?;
    let file = std::fs::File::create(output)
        .with_context(|| format!("cannot create {}", output.display()))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc
        .write_header()
        .with_context(|| format!("cannot write PNG {}", output.display()))?;
    writer
        .write_image_data(&rgb)
        .with_context(|| format!("cannot write PNG {}", output.display()))?;
    writer
        .finish()
        .with_context(|| format!("cannot write PNG {}", output.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VAE_CSV: &str =
        "epoch,step,train_recon,train_kl,train_elbo,test_recon,test_kl,test_elbo,seconds\n\
        1,55,180.0,10.0,190.0,150.0,12.0,162.0,5.0\n\
        2,110,140.0,14.0,154.0,130.0,15.0,145.0,5.1\n\
        3,165,125.0,16.0,141.0,120.0,16.5,136.5,5.2\n";

    #[test]
    fn groups_pair_train_and_test() {
        let t = MetricsTable::parse(VAE_CSV).unwrap();
        let g = groups(&t.columns);
        let keys: Vec<&str> = g.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["recon", "kl", "elbo"]);
        assert_eq!(g[2].1, vec![4, 7]);
        let gan = [
            "epoch", "g_step", "d_loss", "g_loss", "d_real", "d_fake", "seconds",
        ]
        .map(String::from);
        let keys: Vec<String> = groups(&gan).into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["gan_loss", "d_prob"]);
    }

    #[test]
    fn parse_errors_and_x() {
        assert!(MetricsTable::parse("").is_err());
        assert!(MetricsTable::parse("a,b\n1\n").is_err());
        let t = MetricsTable::parse("epoch,loss\n1,nan\n1,2\n").unwrap();
        assert!(t.rows[0][1].is_nan());
        // Repeated epochs: rows are numbered instead.
        assert_eq!(t.xs(), vec![1.0, 2.0]);
    }

    fn decode(path: &Path) -> (u32, u32, Vec<u8>) {
        let dec = png::Decoder::new(std::fs::File::open(path).unwrap());
        let mut reader = dec.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(info.color_type, png::ColorType::Rgb);
        (info.width, info.height, buf)
    }

    #[test]
    fn tiny_csv_makes_a_png() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("metrics.csv");
        std::fs::write(&csv, VAE_CSV).unwrap();
        let png = write_loss_png(&csv).unwrap();
        assert_eq!(png, dir.path().join(LOSS_FILE));
        let (w, h, buf) = decode(&png);
        assert_eq!((w, h), (3 * PANEL.0, PANEL.1 + 36));
        // Not blank: the curves' blue and red are there, and so is dark text.
        let px: Vec<&[u8]> = buf.chunks_exact(3).collect();
        assert!(px.contains(&&[31u8, 119, 180][..]));
        assert!(px.contains(&&[214u8, 39, 40][..]));
        let dark = px.iter().filter(|p| p.iter().all(|&v| v < 80)).count();
        assert!(dark > 500, "{dark} dark pixels: no text or axes?");
    }

    #[test]
    fn one_row_and_nan_columns() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("metrics.csv");
        std::fs::write(
            &csv,
            "epoch,step,train_nll,test_nll,seconds\n1,10,inf,90.5,1.0\n",
        )
        .unwrap();
        let (w, h, _) = decode(&write_loss_png(&csv).unwrap());
        assert_eq!((w, h), (PANEL.0, PANEL.1 + 36));
        std::fs::write(&csv, "epoch,d_loss\n1,nan\n2,nan\n").unwrap();
        assert!(write_loss_png(&csv).is_ok());
        std::fs::write(&csv, "epoch,step,seconds\n1,2,3\n").unwrap();
        assert!(write_loss_png(&csv).is_err());
    }
}
