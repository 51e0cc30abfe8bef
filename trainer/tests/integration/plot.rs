//! `trainer plot`: `metrics.csv` parsing (resumed runs, errors) and the PNG it draws, decoded and
//! checked for the curves in each panel.

use std::path::Path;
use walsh_trainer::plot::{PlotError, plot_run, read_metrics, robust_range};

/// Written out rather than taken from the crate: this is the contract with the training loop.
const HEADER: &str = "step,tokens,lr,train_loss,grad_norm,tokens_per_s,val_loss,val_bpb";

fn write_metrics(dir: &Path, body: &str) -> std::path::PathBuf {
    let path = dir.join("metrics.csv");
    std::fs::write(&path, format!("{HEADER}\n{body}")).unwrap();
    path
}

/// A plausible run: the loss falls from ln(50257) towards 2, an evaluation every 50 steps,
/// warmup then cosine decay, and one diverged (NaN) row that must be skipped, not fatal.
fn synthetic_run(steps: u64) -> String {
    let mut out = String::new();
    for step in (0..=steps).step_by(10) {
        let t = step as f64 / steps as f64;
        let lr =
            3e-3 * (step as f64 / 100.0).min(1.0) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos());
        let loss = 2.0 + 8.8 * (-(step as f64) / 150.0).exp() + 0.05 * (step as f64 * 0.7).sin();
        let loss = if step == 370 { f64::NAN } else { loss };
        let (val, bpb) = if step % 50 == 0 {
            let v = loss + 0.1;
            (
                format!("{v}"),
                format!("{}", v / std::f64::consts::LN_2 / 4.0),
            )
        } else {
            (String::new(), String::new())
        };
        out += &format!(
            "{step},{},{lr},{loss},1.5,12000.0,{val},{bpb}\n",
            step * 2048
        );
    }
    out
}

struct Png {
    width: usize,
    height: usize,
    rgb: Vec<u8>,
}

fn decode(path: &Path) -> Png {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(
        info.color_type,
        png::ColorType::Rgb,
        "plotters' bitmap encoder writes RGB"
    );
    buf.truncate(info.buffer_size());
    Png {
        width: info.width as usize,
        height: info.height as usize,
        rgb: buf,
    }
}

impl Png {
    /// Pixels in rows `ys` that `pred` accepts.
    fn count(&self, ys: std::ops::Range<usize>, pred: impl Fn(i32, i32, i32) -> bool) -> usize {
        ys.flat_map(|y| (0..self.width).map(move |x| (y * self.width + x) * 3))
            .filter(|&i| {
                let p = &self.rgb[i..i + 3];
                pred(p[0].into(), p[1].into(), p[2].into())
            })
            .count()
    }
}

// The series colours (matplotlib's tab10) told apart by channel order, which survives
// antialiasing against white; axes, grid and text are grey, so they match none of these.
fn blue(r: i32, g: i32, b: i32) -> bool {
    b > g + 30 && g > r + 30
}
fn red(r: i32, g: i32, b: i32) -> bool {
    r > g + 80 && (g - b).abs() < 25
}
fn green(r: i32, g: i32, b: i32) -> bool {
    g > r + 60 && g > b + 60
}
fn orange(r: i32, g: i32, b: i32) -> bool {
    r > g + 60 && g > b + 50
}

#[test]
fn plot_draws_each_curve_in_its_panel() {
    let dir = tempfile::tempdir().unwrap();
    write_metrics(dir.path(), &synthetic_run(2000));
    std::fs::write(dir.path().join("config.json"), r#"{"name": "tiny-test"}"#).unwrap();
    let png = plot_run(dir.path()).unwrap();
    assert_eq!(png, dir.path().join("loss.png"));
    let img = decode(&png);
    assert_eq!((img.width, img.height), (1200, 800));

    // A legend sample is ~60 pixels; a curve across the panel is thousands.
    let (top, bottom) = (50..440, 500..800);
    let curve = 600;
    for (name, ys, pred) in [
        (
            "train loss (top)",
            top.clone(),
            blue as fn(i32, i32, i32) -> bool,
        ),
        ("val loss (top)", top.clone(), red),
        ("val bpb (bottom)", bottom.clone(), green),
        ("learning rate (bottom)", bottom.clone(), orange),
    ] {
        let n = img.count(ys, pred);
        assert!(n > curve, "{name}: {n} pixels of its colour");
    }
    // And none of a panel's curves leaks into the other.
    assert!(img.count(bottom, blue) < 50 && img.count(top, green) < 50);
    // The title is text in the embedded font: dark pixels above the panels.
    assert!(img.count(0..35, |r, g, b| r.max(g).max(b) < 110) > 200);
}

#[test]
fn plot_single_row_without_evaluations() {
    let dir = tempfile::tempdir().unwrap();
    write_metrics(dir.path(), "0,0,0.0,10.8,3.0,0.0,,\n");
    let img = decode(&plot_run(dir.path()).unwrap());
    assert_eq!((img.width, img.height), (1200, 800));
}

#[test]
fn robust_range_sets_aside_an_initial_spike() {
    let body = (0..199).map(|i| 2.0 + 3.0 * i as f64 / 198.0);
    let (lo, hi) = robust_range(std::iter::once(1e6).chain(body)).unwrap();
    assert!(lo < 2.0 && hi > 4.8 && hi < 6.0, "{lo}..{hi}");
    // Few points: every one is shown.
    let (lo, hi) = robust_range([3.0, 1.0, 10.0, f64::NAN, f64::INFINITY]).unwrap();
    assert!(lo < 1.0 && hi > 10.0, "{lo}..{hi}");
    let (lo, hi) = robust_range([2.5; 4]).unwrap();
    assert!(lo < 2.5 && hi > 2.5);
    assert_eq!(robust_range([f64::NAN]), None);
}

#[test]
fn resumed_run_keeps_the_last_row_written_per_step() {
    let dir = tempfile::tempdir().unwrap();
    // Steps 20 and 30 logged, then the run restarted from step 10's checkpoint and logged them
    // again; step 40 of the first attempt has no later row and stays.
    let path = write_metrics(
        dir.path(),
        "10,100,1e-3,5.0,1.0,900.5,4.9,1.7\n\
         20,200,1e-3,4.0,1.0,900.5,,\n\
         30,300,1e-3,3.0,1.0,900.5,,\n\
         40,400,1e-3,2.5,1.0,900.5,2.4,0.9\n\
         20,200,1e-3,4.2,1.0,900.5,,\n\
         30,300,1e-3,3.3,1.0,900.5,3.2,1.1\n",
    );
    let rows = read_metrics(&path).unwrap();
    let got: Vec<(u64, f64, Option<f64>)> = rows
        .iter()
        .map(|r| (r.step, r.train_loss, r.val_loss))
        .collect();
    assert_eq!(
        got,
        [
            (10, 5.0, Some(4.9)),
            (20, 4.2, None),
            (30, 3.3, Some(3.2)),
            (40, 2.5, Some(2.4))
        ]
    );
    assert_eq!(
        (
            rows[0].tokens,
            rows[0].lr,
            rows[0].tokens_per_s,
            rows[0].val_bpb
        ),
        (100, 1e-3, 900.5, Some(1.7))
    );
}

#[test]
fn unfinished_last_line_is_skipped_but_a_bad_middle_line_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_metrics(dir.path(), "10,100,1e-3,5.0,1.0,900,,\n20,200,1e-3,4.");
    assert_eq!(read_metrics(&path).unwrap().len(), 1);
    let path = write_metrics(dir.path(), "10,100,1e-3,5.0,1.0,900,,\n20,200,1e-3,4.\n");
    let err = read_metrics(&path).unwrap_err().to_string();
    assert!(
        err.contains("metrics.csv:3") && err.contains("8 comma-separated fields"),
        "{err}"
    );
}

#[test]
fn missing_metrics_says_what_writes_it() {
    let dir = tempfile::tempdir().unwrap();
    let err = plot_run(dir.path()).unwrap_err();
    assert!(matches!(err, PlotError::MissingMetrics { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("metrics.csv") && msg.contains("trainer train --out RUN_DIR"),
        "{msg}"
    );
}

#[test]
fn wrong_header_names_the_expected_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.csv");
    std::fs::write(&path, "step,loss\n1,2.0\n").unwrap();
    let msg = read_metrics(&path).unwrap_err().to_string();
    assert!(msg.contains("`step,loss`") && msg.contains(HEADER), "{msg}");
}

#[test]
fn bad_field_names_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_metrics(
        dir.path(),
        "10,100,1e-3,5.0,1.0,900,,\n20,200,1e-3,abc,1.0,900,,\n",
    );
    let msg = plot_run(dir.path()).unwrap_err().to_string();
    assert!(msg.contains(&format!("{}:3", path.display())), "{msg}");
    assert!(
        msg.contains("`train_loss`") && msg.contains("`abc`"),
        "{msg}"
    );
    let path = write_metrics(dir.path(), "1.5,100,1e-3,5.0,1.0,900,,\n");
    let msg = read_metrics(&path).unwrap_err().to_string();
    assert!(
        msg.contains("metrics.csv:2") && msg.contains("`step`"),
        "{msg}"
    );
    assert!(
        !dir.path().join("loss.png").exists(),
        "no picture from a bad file"
    );
}

#[test]
fn header_only_is_no_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_metrics(dir.path(), "");
    assert!(matches!(read_metrics(&path), Err(PlotError::NoRows { .. })));
}
