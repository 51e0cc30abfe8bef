//! metrics.csv: a row per logged step ([`METRICS_HEADER`]), flushed after every row; a resumed
//! run appends to it.

use crate::eval::EvalResult;
use crate::plot::METRICS_HEADER;
use anyhow::{Context, Result};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// One metrics.csv row.
pub struct Row {
    pub step: u64,
    pub tokens: u64,
    pub lr: f64,
    pub train_loss: f64,
    pub grad_norm: f64,
    pub tokens_per_s: f64,
    pub val: Option<EvalResult>,
}

/// An open metrics.csv.
pub struct Metrics {
    path: PathBuf,
    file: File,
}

impl Metrics {
    /// Opens `path` for appending, writing the header when the file is new.
    pub fn open(path: &Path) -> Result<Metrics> {
        let new_file = !path.exists();
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        if new_file {
            writeln!(file, "{METRICS_HEADER}")
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(Metrics {
            path: path.to_path_buf(),
            file,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `r` and flushes.
    pub fn write(&mut self, r: &Row) -> Result<()> {
        let (vl, vb) = match r.val {
            Some(e) => (
                format!("{:.6}", e.loss),
                e.bpb.map(|b| format!("{b:.6}")).unwrap_or_default(),
            ),
            None => (String::new(), String::new()),
        };
        writeln!(
            self.file,
            "{},{},{:.6e},{:.6},{:.6},{:.1},{vl},{vb}",
            r.step, r.tokens, r.lr, r.train_loss, r.grad_norm, r.tokens_per_s
        )
        .and_then(|()| self.file.flush())
        .with_context(|| format!("cannot write {}", self.path.display()))
    }
}
