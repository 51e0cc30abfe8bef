//! `trainer plot RUN_DIR`: the loss curves of a run, from `RUN_DIR/metrics.csv` to
//! `RUN_DIR/loss.png`.
//!
//! Text is drawn with DejaVu Sans embedded in the binary (`trainer/assets/`, license alongside)
//! because plotters' ab_glyph backend finds no system fonts, and CI machines have none anyway.

use plotters::coord::Shift;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use thiserror::Error;

/// The header the training loop writes; anything else is a different format.
pub const METRICS_HEADER: &str =
    "step,tokens,lr,train_loss,grad_norm,tokens_per_s,val_loss,val_bpb";
const FIELDS: [&str; 8] = [
    "step",
    "tokens",
    "lr",
    "train_loss",
    "grad_norm",
    "tokens_per_s",
    "val_loss",
    "val_bpb",
];

static FONT_TTF: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
/// Registered under plotters' default family name as well as used explicitly, so no text
/// element (tick labels, legends) can fall back to a font that is not there.
pub(crate) const FAMILY: &str = "sans-serif";

const SIZE: (u32, u32) = (1200, 800);
const TRAIN: RGBColor = RGBColor(31, 119, 180);
const VAL: RGBColor = RGBColor(214, 39, 40);
const BPB: RGBColor = RGBColor(44, 160, 44);
const LR: RGBColor = RGBColor(255, 127, 14);

#[derive(Debug, Error)]
pub enum PlotError {
    #[error("{} not found: `trainer train --out RUN_DIR` writes metrics.csv into RUN_DIR", path.display())]
    MissingMetrics { path: PathBuf },
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: header is `{found}`, expected `{METRICS_HEADER}`", path.display())]
    Header { path: PathBuf, found: String },
    #[error("{}:{line}: expected {} comma-separated fields ({METRICS_HEADER}), found {found}", path.display(), FIELDS.len())]
    FieldCount {
        path: PathBuf,
        line: usize,
        found: usize,
    },
    #[error("{}:{line}: field `{field}`: `{value}` is not {expected}", path.display())]
    Field {
        path: PathBuf,
        line: usize,
        field: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("{}: no rows after the header (the run has not logged a step yet)", path.display())]
    NoRows { path: PathBuf },
    #[error("plotters rejected the embedded font")]
    Font,
    #[error("cannot draw {}: {msg}", path.display())]
    Draw { path: PathBuf, msg: String },
}

/// One logged step of `metrics.csv`; the `val_*` fields are set on rows with an evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsRow {
    pub step: u64,
    pub tokens: u64,
    pub lr: f64,
    pub train_loss: f64,
    pub grad_norm: f64,
    pub tokens_per_s: f64,
    pub val_loss: Option<f64>,
    pub val_bpb: Option<f64>,
}

/// Reads `metrics.csv`, one row per step in step order. A resumed run appends rows for steps it
/// repeats after restarting from an older checkpoint; the last row written for a step wins.
/// NaN and inf parse (a diverged run logs them) and are left for the plot to skip.
pub fn read_metrics(path: &Path) -> Result<Vec<MetricsRow>, PlotError> {
    let text = std::fs::read_to_string(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            PlotError::MissingMetrics {
                path: path.to_path_buf(),
            }
        } else {
            PlotError::Read {
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    let mut lines = text.lines().enumerate();
    let header = lines.next().map_or("", |(_, l)| l);
    let header = header.trim_start_matches('\u{feff}').trim_end();
    if header != METRICS_HEADER {
        return Err(PlotError::Header {
            path: path.to_path_buf(),
            found: header.to_string(),
        });
    }
    let last_line = text.lines().count();
    let mut by_step = BTreeMap::new();
    for (i, line) in lines {
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        match parse_row(path, i + 1, line) {
            Ok(row) => {
                by_step.insert(row.step, row);
            }
            // A run killed mid-write leaves a partial last line; the rows before it still plot.
            Err(e) if i + 1 == last_line && !text.ends_with('\n') => {
                eprintln!("warning: skipping an unfinished last line: {e}");
            }
            Err(e) => return Err(e),
        }
    }
    if by_step.is_empty() {
        return Err(PlotError::NoRows {
            path: path.to_path_buf(),
        });
    }
    Ok(by_step.into_values().collect())
}

fn parse_row(path: &Path, line: usize, text: &str) -> Result<MetricsRow, PlotError> {
    let fields: Vec<&str> = text.split(',').map(str::trim).collect();
    if fields.len() != FIELDS.len() {
        return Err(PlotError::FieldCount {
            path: path.to_path_buf(),
            line,
            found: fields.len(),
        });
    }
    let bad = |i: usize, expected: &'static str| PlotError::Field {
        path: path.to_path_buf(),
        line,
        field: FIELDS[i],
        value: fields[i].to_string(),
        expected,
    };
    let int = |i: usize| fields[i].parse::<u64>().map_err(|_| bad(i, "an integer"));
    let num = |i: usize| fields[i].parse::<f64>().map_err(|_| bad(i, "a number"));
    let opt = |i: usize| {
        if fields[i].is_empty() {
            Ok(None)
        } else {
            num(i).map(Some)
        }
    };
    Ok(MetricsRow {
        step: int(0)?,
        tokens: int(1)?,
        lr: num(2)?,
        train_loss: num(3)?,
        grad_norm: num(4)?,
        tokens_per_s: num(5)?,
        val_loss: opt(6)?,
        val_bpb: opt(7)?,
    })
}

/// A y range for `values` that an early spike does not flatten: from the minimum to the largest
/// value once the top 2% are set aside (none set aside below 50 values, where each point
/// matters), with a 5% margin. Non-finite values are ignored; `None` if nothing is left.
pub fn robust_range(values: impl IntoIterator<Item = f64>) -> Option<(f64, f64)> {
    let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let lo = v[0];
    let hi = v[v.len() - 1 - v.len() / 50];
    let span = if hi > lo {
        hi - lo
    } else {
        // A flat curve still needs a range with height to draw in.
        (lo.abs() * 0.1).max(1e-3)
    };
    Some((lo - 0.05 * span, hi + 0.05 * span))
}

/// Plots `RUN_DIR/metrics.csv` to `RUN_DIR/loss.png` and returns the PNG's path.
pub fn plot_run(run_dir: &Path) -> Result<PathBuf, PlotError> {
    let metrics = run_dir.join("metrics.csv");
    let rows = read_metrics(&metrics)?;
    register_font()?;
    let (train, a) = series(&rows, |r| Some(r.train_loss));
    let (val, b) = series(&rows, |r| r.val_loss);
    let (bpb, c) = series(&rows, |r| r.val_bpb);
    let (lr, d) = series(&rows, |r| Some(r.lr));
    let skipped = a + b + c + d;
    if skipped > 0 {
        eprintln!(
            "warning: {}: {skipped} NaN/inf values left out of the plot",
            metrics.display()
        );
    }
    let png = run_dir.join("loss.png");
    let curves = Curves {
        train,
        val,
        bpb,
        lr,
    };
    draw(&png, &title(run_dir), &curves).map_err(|e| PlotError::Draw {
        path: png.clone(),
        msg: e.to_string(),
    })?;
    Ok(png)
}

/// Height of the title's band: what plotters' `titled` took for a 26 px title (text + 2 × 5 px).
const TITLE_BAND: i32 = 36;

/// The title, centred in `band`, laid out and rasterized with ab_glyph directly. plotters' own
/// ab_glyph text drawing places each glyph's bitmap at the pen position without the glyph's left
/// bearing, truncated to whole pixels, which spaces letters unevenly ("ti nystories") — most
/// visible at the title's size. Here every glyph sits at its subpixel pen position plus its
/// bearing, with kerning, and its coverage is blended into the white background.
pub(crate) fn draw_title<DB: DrawingBackend>(
    band: &DrawingArea<DB, Shift>,
    text: &str,
    px: f32,
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    use ab_glyph::{Font, FontRef, PxScale, ScaleFont, point};
    let font = FontRef::try_from_slice(FONT_TTF)?;
    let scaled = font.as_scaled(PxScale::from(px));
    let mut glyphs = Vec::new();
    let (mut x, mut prev) = (0f32, None);
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        if let Some(p) = prev {
            x += scaled.kern(p, id);
        }
        glyphs.push(id.with_scale_and_position(px, point(x, scaled.ascent())));
        x += scaled.h_advance(id);
        prev = Some(id);
    }
    let (w, h) = band.dim_in_pixel();
    let left = ((w as f32 - x) / 2.0).max(0.0);
    let top = ((h as f32 - scaled.height()) / 2.0).max(0.0);
    let mut pixels = Vec::new();
    for g in glyphs {
        if let Some(outline) = font.outline_glyph(g) {
            let b = outline.px_bounds();
            outline.draw(|gx, gy, coverage| {
                let px = (left + b.min.x).round() as i32 + gx as i32;
                let py = (top + b.min.y).round() as i32 + gy as i32;
                pixels.push((px, py, coverage));
            });
        }
    }
    for (px, py, coverage) in pixels {
        if coverage > 0.0 {
            band.draw_pixel((px, py), &BLACK.mix(f64::from(coverage.min(1.0))))?;
        }
    }
    Ok(())
}

pub(crate) fn register_font() -> Result<(), PlotError> {
    static OK: OnceLock<bool> = OnceLock::new();
    let ok = OK.get_or_init(|| {
        plotters::style::register_font(FAMILY, FontStyle::Normal, FONT_TTF).is_ok()
    });
    if *ok { Ok(()) } else { Err(PlotError::Font) }
}

/// The finite `(step, value)` points of one column, and how many were NaN or inf.
fn series(
    rows: &[MetricsRow],
    get: impl Fn(&MetricsRow) -> Option<f64>,
) -> (Vec<(u64, f64)>, usize) {
    let mut bad = 0;
    let points = rows
        .iter()
        .filter_map(|r| {
            let v = get(r)?;
            if v.is_finite() {
                Some((r.step, v))
            } else {
                bad += 1;
                None
            }
        })
        .collect();
    (points, bad)
}

/// The run directory's name, with the config's `name` when `config.json` has one. The config is
/// decoration here, so a missing or unreadable one just leaves it out.
fn title(run_dir: &Path) -> String {
    let dir = std::fs::canonicalize(run_dir)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| run_dir.display().to_string());
    let name = std::fs::read_to_string(run_dir.join("config.json"))
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .and_then(|v| v.get("name")?.as_str().map(str::to_owned));
    match name {
        Some(name) if name != dir => format!("{dir} — {name}"),
        _ => dir,
    }
}

struct Curves {
    train: Vec<(u64, f64)>,
    val: Vec<(u64, f64)>,
    bpb: Vec<(u64, f64)>,
    lr: Vec<(u64, f64)>,
}

fn draw(png: &Path, title: &str, c: &Curves) -> Result<(), Box<dyn std::error::Error>> {
    let steps = c.train.iter().chain(&c.lr).chain(&c.val).chain(&c.bpb);
    let x0 = steps.clone().map(|p| p.0).min().unwrap_or(0);
    let x1 = steps.map(|p| p.0).max().unwrap_or(0).max(x0 + 1);
    let label = |size| (FAMILY, size).into_font();

    let root = BitMapBackend::new(png, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let (band, root) = root.split_vertically(TITLE_BAND);
    draw_title(&band, title, 26.0)?;
    let (top, bottom) = root.split_vertically(58.percent_height());

    let (lo, hi) = robust_range(c.train.iter().chain(&c.val).map(|p| p.1)).unwrap_or((0.0, 1.0));
    // A secondary coord that is never drawn takes the right label area, which plotters would
    // otherwise fill with a copy of the left axis.
    let mut loss = chart(&top)
        .build_cartesian_2d(x0..x1, lo..hi)?
        .set_secondary_coord(x0..x1, lo..hi);
    loss.configure_mesh()
        .x_desc("step")
        .y_desc("loss (nats/token)")
        .label_style(label(15))
        .axis_desc_style(label(17))
        .draw()?;
    if let Some(&(_, last)) = c.train.last() {
        loss.draw_series(LineSeries::new(
            c.train.iter().copied(),
            TRAIN.stroke_width(2),
        ))?
        .label(format!("train loss (last {last:.3})"))
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], TRAIN.stroke_width(2)));
    }
    if let Some(&(_, last)) = c.val.last() {
        loss.draw_series(LineSeries::new(c.val.iter().copied(), VAL.stroke_width(2)))?;
        loss.draw_series(
            c.val
                .iter()
                .map(|&p| Circle::new(p, marker(&c.val), VAL.filled())),
        )?
        .label(format!("val loss (last {last:.3})"))
        .legend(|(x, y)| {
            EmptyElement::at((x, y))
                + PathElement::new([(0, 0), (20, 0)], VAL.stroke_width(2))
                + Circle::new((10, 0), 4, VAL.filled())
        });
    }
    loss.configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font(label(16))
        .draw()?;

    let (lo, hi) = robust_range(c.bpb.iter().map(|p| p.1)).unwrap_or((0.0, 1.0));
    let lr_max = c.lr.iter().map(|p| p.1).fold(0.0, f64::max);
    let lr_hi = if lr_max > 0.0 { lr_max * 1.1 } else { 1.0 };
    let mut eval = chart(&bottom)
        .build_cartesian_2d(x0..x1, lo..hi)?
        .set_secondary_coord(x0..x1, 0.0..lr_hi);
    eval.configure_mesh()
        .x_desc("step")
        .y_desc(if c.bpb.is_empty() {
            "val bits per byte (no evaluations yet)"
        } else {
            "val bits per byte"
        })
        .label_style(label(15))
        .axis_desc_style(label(17))
        .draw()?;
    eval.configure_secondary_axes()
        .y_desc("learning rate")
        .y_label_formatter(&|v: &f64| match *v {
            0.0 => "0".to_string(),
            v => format!("{v:.1e}"),
        })
        .label_style(label(15))
        .axis_desc_style(label(17))
        .draw()?;
    // The learning rate first, so the evaluation curve is drawn over it.
    if !c.lr.is_empty() {
        eval.draw_secondary_series(LineSeries::new(c.lr.iter().copied(), LR.stroke_width(1)))?
            .label("learning rate (right axis)")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], LR.stroke_width(1)));
    }
    if let Some(&(_, last)) = c.bpb.last() {
        eval.draw_series(LineSeries::new(c.bpb.iter().copied(), BPB.stroke_width(2)))?;
        eval.draw_series(
            c.bpb
                .iter()
                .map(|&p| Circle::new(p, marker(&c.bpb), BPB.filled())),
        )?
        .label(format!("val bits/byte (last {last:.3})"))
        .legend(|(x, y)| {
            EmptyElement::at((x, y))
                + PathElement::new([(0, 0), (20, 0)], BPB.stroke_width(2))
                + Circle::new((10, 0), 4, BPB.filled())
        });
    }
    eval.configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font(label(16))
        .draw()?;
    root.present()?;
    Ok(())
}

/// Marker radius: dense evaluations would merge into a band at full size.
fn marker(points: &[(u64, f64)]) -> u32 {
    if points.len() > 100 { 2 } else { 4 }
}

/// The same label areas for both panels (the right one empty on top) so their step axes line up.
fn chart<'a, 'b, DB: DrawingBackend>(area: &'a DrawingArea<DB, Shift>) -> ChartBuilder<'a, 'b, DB> {
    let mut b = ChartBuilder::on(area);
    b.margin(10)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .right_y_label_area_size(80);
    b
}
