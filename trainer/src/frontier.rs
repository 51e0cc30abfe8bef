//! `trainer plot --frontier TABLE.csv`: bits per byte against blob bytes for a set of models, the
//! Pareto front (no model both smaller and better) marked — docs/MODELS.md's frontier picture.
//!
//! The table is CSV with the header `name,params,blob_bytes,bpb` (more columns after those are
//! ignored), one model a row: `blob_bytes` the packed blob's size, tokenizer included, and `bpb`
//! its bits per byte through `packer eval`.

use crate::plot::{FAMILY, PlotError, draw_title, register_font};
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// The columns the table must start with.
pub const FRONTIER_HEADER: &str = "name,params,blob_bytes,bpb";

/// One model of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub name: String,
    pub params: u64,
    pub blob_bytes: u64,
    pub bpb: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum FrontierError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: the header must start with `{FRONTIER_HEADER}`, found `{found}`", path.display())]
    Header { path: PathBuf, found: String },
    #[error("{}:{line}: `{value}` is not {expected} (column {column})", path.display())]
    Field {
        path: PathBuf,
        line: usize,
        column: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("{}: no models after the header", path.display())]
    Empty { path: PathBuf },
    #[error(transparent)]
    Plot(#[from] PlotError),
    #[error("cannot draw {}: {msg}", path.display())]
    Draw { path: PathBuf, msg: String },
}

/// Reads the table (blank lines and lines starting with `#` skipped).
pub fn read_table(path: &Path) -> Result<Vec<Point>, FrontierError> {
    let text = std::fs::read_to_string(path).map_err(|source| FrontierError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'));
    let header = lines.next().map_or("", |(_, l)| l.trim());
    if !header.starts_with(FRONTIER_HEADER) {
        return Err(FrontierError::Header {
            path: path.to_path_buf(),
            found: header.to_string(),
        });
    }
    let mut points = Vec::new();
    for (i, line) in lines {
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        let field = |k: usize, column: &'static str, expected: &'static str| {
            let value = f.get(k).copied().unwrap_or("");
            move || FrontierError::Field {
                path: path.to_path_buf(),
                line: i + 1,
                column,
                value: value.to_string(),
                expected,
            }
        };
        let name = f.first().copied().unwrap_or("").to_string();
        let params = f.get(1).and_then(|v| v.parse().ok());
        let params = params.ok_or_else(field(1, "params", "a whole number"))?;
        let blob = f
            .get(2)
            .and_then(|v| v.parse().ok())
            .filter(|&b: &u64| b > 0);
        let blob_bytes = blob.ok_or_else(field(2, "blob_bytes", "a whole number > 0"))?;
        let bpb = f
            .get(3)
            .and_then(|v| v.parse().ok())
            .filter(|b: &f64| b.is_finite() && *b > 0.0);
        let bpb = bpb.ok_or_else(field(3, "bpb", "a finite number > 0"))?;
        points.push(Point {
            name,
            params,
            blob_bytes,
            bpb,
        });
    }
    if points.is_empty() {
        return Err(FrontierError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(points)
}

/// Indices of the Pareto front, smallest blob first: the points no other point beats in both
/// blob bytes and bits per byte (at most equal in one and better in the other).
pub fn pareto_front(points: &[Point]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..points.len()).collect();
    order.sort_by(|&a, &b| {
        let (p, q) = (&points[a], &points[b]);
        p.blob_bytes
            .cmp(&q.blob_bytes)
            .then(p.bpb.total_cmp(&q.bpb))
    });
    let mut front = Vec::new();
    let mut best = f64::INFINITY;
    for i in order {
        if points[i].bpb < best {
            best = points[i].bpb;
            front.push(i);
        }
    }
    front
}

const SIZE: (u32, u32) = (1200, 800);
const FRONT: RGBColor = RGBColor(214, 39, 40);
const OTHER: RGBColor = RGBColor(110, 110, 110);

/// Draws `table` into `png`; returns the front's names, smallest blob first.
pub fn plot_frontier(table: &Path, png: &Path) -> Result<Vec<String>, FrontierError> {
    let points = read_table(table)?;
    register_font()?;
    let front = pareto_front(&points);
    draw(png, &points, &front).map_err(|e| FrontierError::Draw {
        path: png.to_path_buf(),
        msg: e.to_string(),
    })?;
    Ok(front.iter().map(|&i| points[i].name.clone()).collect())
}

fn draw(png: &Path, points: &[Point], front: &[usize]) -> Result<(), Box<dyn std::error::Error>> {
    let mb = |p: &Point| p.blob_bytes as f64 / 1e6;
    let x0 = points.iter().map(mb).fold(f64::INFINITY, f64::min) / 1.3;
    // Room on the right for the largest model's label.
    let x1 = points.iter().map(mb).fold(0.0, f64::max) * 2.5;
    let y0 = points.iter().map(|p| p.bpb).fold(f64::INFINITY, f64::min) - 0.02;
    let y1 = points.iter().map(|p| p.bpb).fold(0.0, f64::max) + 0.02;
    let label = |size| (FAMILY, size).into_font();
    let root = BitMapBackend::new(png, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let (band, root) = root.split_vertically(36);
    draw_title(
        &band,
        "bits per byte on TinyStories valid against blob size",
        24.0,
    )?;
    let mut chart = ChartBuilder::on(&root)
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d((x0..x1).log_scale(), y0..y1)?;
    chart
        .configure_mesh()
        .x_desc("blob bytes, tokenizer included (MB, log scale)")
        .y_desc("bits per byte (packer eval, valid.txt)")
        .x_label_formatter(&|v| format!("{v:.1}"))
        // A log axis' minor lines crowd its labels; the major ones are enough.
        .light_line_style(WHITE)
        .label_style(label(15))
        .axis_desc_style(label(17))
        .draw()?;
    let line: Vec<(f64, f64)> = front
        .iter()
        .map(|&i| (mb(&points[i]), points[i].bpb))
        .collect();
    chart
        .draw_series(LineSeries::new(line, FRONT.stroke_width(2)))?
        .label("Pareto front")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], FRONT.stroke_width(2)));
    for (i, p) in points.iter().enumerate() {
        let on = front.contains(&i);
        let color = if on { FRONT } else { OTHER };
        let at = (mb(p), p.bpb);
        chart.draw_series(std::iter::once(Circle::new(at, 5, color.filled())))?;
        chart.draw_series(std::iter::once(Text::new(
            p.name.clone(),
            at,
            label(13)
                .color(&color)
                .pos(plotters::style::text_anchor::Pos::new(
                    plotters::style::text_anchor::HPos::Left,
                    plotters::style::text_anchor::VPos::Bottom,
                )),
        )))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font(label(16))
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str, blob_bytes: u64, bpb: f64) -> Point {
        Point {
            name: name.into(),
            params: 1,
            blob_bytes,
            bpb,
        }
    }

    #[test]
    fn the_front_keeps_only_undominated_points() {
        let pts = [
            p("big-good", 30, 0.90),
            p("small-bad", 3, 1.10),
            p("mid-worse", 10, 1.20),
            p("mid-good", 12, 0.95),
            p("tie-size-worse", 3, 1.15),
        ];
        let names: Vec<&str> = pareto_front(&pts)
            .iter()
            .map(|&i| pts[i].name.as_str())
            .collect();
        assert_eq!(names, ["small-bad", "mid-good", "big-good"]);
    }

    #[test]
    fn a_bad_table_names_the_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        std::fs::write(
            &path,
            "name,params,blob_bytes,bpb\na,10,100,0.9\nb,10,x,0.9\n",
        )
        .unwrap();
        let e = read_table(&path).unwrap_err().to_string();
        assert!(e.contains(":3:") && e.contains("blob_bytes"), "{e}");
        std::fs::write(&path, "model,bytes\n").unwrap();
        let e = read_table(&path).unwrap_err().to_string();
        assert!(e.contains("header"), "{e}");
    }
}
