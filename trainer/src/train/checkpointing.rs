//! A run's checkpoints on disk: claiming the run directory, saving a checkpoint durably,
//! recovering one from the leftovers of an interrupted swap, and checking on resume that a
//! checkpoint is the model the config describes.
//!
//! A checkpoint `RUN/NAME` is replaced by writing `RUN/.NAME.tmp-PID`, renaming the old one to
//! `RUN/.NAME.old-PID`, the new one to `RUN/NAME`, and deleting the old one
//! ([`walsh_spec::Checkpoint::save_with`]). A crash between the renames leaves no `RUN/NAME`
//! but complete copies under those names; a crash while writing leaves an incomplete `.tmp`.
//! [`recover`] puts the newest complete one back; [`save`] syncs the directory after the renames
//! and deletes what earlier, killed runs left.

use super::state::{self, Optimizer, TrainState};
use crate::backend::Backend;
use crate::model::Model;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use walsh_spec::Checkpoint;
use walsh_spec::checkpoint::read_safetensors;
use walsh_spec::config::ModelConfig;

/// The checkpoint of the run's last step.
pub const CHECKPOINT: &str = "checkpoint";
/// The checkpoint of the run's lowest validation loss.
pub const BEST: &str = "best";
/// The run's log.
pub const METRICS: &str = "metrics.csv";

/// The files and directories of a run directory that a new run would overwrite or append to:
/// its checkpoints, their swap leftovers and metrics.csv.
pub fn run_outputs(run_dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = [CHECKPOINT, BEST, METRICS]
        .iter()
        .map(|n| run_dir.join(n))
        .filter(|p| p.exists())
        .collect();
    for name in [CHECKPOINT, BEST] {
        found.extend(leftovers(&run_dir.join(name)));
    }
    found
}

/// Makes `run_dir` ready for a new (not resumed) run: refuses a directory that holds an earlier
/// run unless `overwrite`, which deletes that run's outputs (and its config.json and loss.png)
/// first.
pub fn claim_run_dir(run_dir: &Path, overwrite: bool) -> Result<()> {
    let outputs = run_outputs(run_dir);
    if outputs.is_empty() {
        return Ok(());
    }
    if !overwrite {
        let names: Vec<String> = outputs
            .iter()
            .filter_map(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        bail!(
            "{} already holds a run ({}): pass --resume {} to continue it, or --overwrite to \
             delete its outputs and start again",
            run_dir.display(),
            names.join(", "),
            run_dir.join(CHECKPOINT).display()
        );
    }
    for path in outputs
        .into_iter()
        .chain(["config.json", "loss.png"].map(|n| run_dir.join(n)))
    {
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else if path.exists() {
            std::fs::remove_file(&path)
        } else {
            Ok(())
        };
        removed.with_context(|| format!("--overwrite: cannot delete {}", path.display()))?;
    }
    Ok(())
}

/// The leftovers of interrupted swaps of checkpoint `dir`: `.NAME.tmp-PID` and `.NAME.old-PID`
/// beside it, whatever the PID.
pub fn leftovers(dir: &Path) -> Vec<PathBuf> {
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
        return Vec::new();
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let name = name.to_string_lossy();
    let (tmp, old) = (format!(".{name}.tmp-"), format!(".{name}.old-"));
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with(&tmp) || n.starts_with(&old)
        })
        .map(|e| e.path())
        .collect();
    found.sort();
    found
}

/// The step of checkpoint `dir` if it is complete: every file of a training checkpoint is there
/// and parses (config.json, tokenizer.json, the model's tensors with the config's names and
/// shapes, train_state.json, both optimizer moments of every tensor). A checkpoint cut short
/// while it was written fails one of these: the safetensors files check their length against
/// their header, the JSON files do not parse when truncated.
pub fn complete_step(dir: &Path) -> Option<u64> {
    let ckpt = Checkpoint::load(dir).ok()?;
    let st = state::read_state(dir).ok()?;
    let moments = read_safetensors(&dir.join(state::OPTIMIZER_FILE)).ok()?;
    let all_moments = ckpt.tensors.iter().all(|(name, t)| {
        ["m", "v"].iter().all(|p| {
            moments
                .get(&format!("{p}.{name}"))
                .is_some_and(|m| m.data.len() == t.data.len())
        })
    });
    all_moments.then_some(st.step)
}

/// When checkpoint `dir` is missing, moves the newest complete leftover of an interrupted swap
/// (the highest step) into its place and returns where it came from and its step.
pub fn recover(dir: &Path) -> Result<Option<(PathBuf, u64)>> {
    if dir.exists() {
        return Ok(None);
    }
    let best = leftovers(dir)
        .into_iter()
        .filter_map(|p| complete_step(&p).map(|step| (p, step)))
        // The highest step; at equal steps the later-written `.tmp` (sorted after `.old`).
        .max_by(|a, b| a.1.cmp(&b.1).then_with(|| is_tmp(&a.0).cmp(&is_tmp(&b.0))));
    let Some((from, step)) = best else {
        return Ok(None);
    };
    std::fs::rename(&from, dir)
        .with_context(|| format!("cannot move {} to {}", from.display(), dir.display()))?;
    sync_parent(dir)?;
    Ok(Some((from, step)))
}

fn is_tmp(p: &Path) -> bool {
    p.file_name()
        .is_some_and(|n| n.to_string_lossy().contains(".tmp-"))
}

/// Deletes the leftovers of interrupted swaps of `dir`.
pub fn remove_leftovers(dir: &Path) -> Result<()> {
    for p in leftovers(dir) {
        std::fs::remove_dir_all(&p).with_context(|| format!("cannot delete {}", p.display()))?;
    }
    Ok(())
}

/// Syncs the directory that holds `path`, so that renames inside it survive a power cut (Unix;
/// elsewhere a no-op).
pub fn sync_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => sync_dir(p),
        _ => sync_dir(Path::new(".")),
    }
}

/// Syncs directory `dir`'s entries to disk (Unix; elsewhere a no-op).
pub fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync the directory {}", dir.display()))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Writes checkpoint `dir` (model, tokenizer, optimizer, state) atomically and durably, then
/// deletes the leftovers of earlier interrupted swaps of it.
pub fn save<B: Backend<Elem = f32>>(
    dir: &Path,
    model: &Model<B>,
    opt: &Optimizer<B>,
    st: &TrainState,
    tokenizer_json: &str,
) -> Result<()> {
    state::save(dir, model, opt, st, tokenizer_json)
        .and_then(|()| sync_dir(dir))
        .and_then(|()| sync_parent(dir))
        .and_then(|()| remove_leftovers(dir))
        .with_context(|| format!("cannot write the checkpoint {}", dir.display()))
}

/// The fields in which two model configs differ, each as `field: A in WHERE_A, B in WHERE_B`.
pub fn config_differences(a: &ModelConfig, a_is: &str, b: &ModelConfig, b_is: &str) -> Vec<String> {
    let (Ok(serde_json::Value::Object(x)), Ok(serde_json::Value::Object(y))) =
        (serde_json::to_value(a), serde_json::to_value(b))
    else {
        return vec![format!("{a:?} in {a_is}, {b:?} in {b_is}")];
    };
    let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| x.get(*k) != y.get(*k))
        .map(|k| {
            let show = |v: Option<&serde_json::Value>| {
                v.map(|v| v.to_string())
                    .unwrap_or_else(|| "(absent)".into())
            };
            format!(
                "{k} = {} in {a_is}, {} in {b_is}",
                show(x.get(k)),
                show(y.get(k))
            )
        })
        .collect()
}

/// Checks that checkpoint `dir`, recorded in `st`, is the model `config` describes: its
/// config.json against the model its train state recorded (what the tensors cannot show), then
/// against the run's config.
pub fn check_resumed_model(
    dir: &Path,
    ckpt: &ModelConfig,
    st: &TrainState,
    config: &ModelConfig,
    config_path: &Path,
) -> Result<()> {
    if let Some(trained) = &st.model {
        let diff = config_differences(trained, "train_state.json", ckpt, "config.json");
        if !diff.is_empty() {
            bail!(
                "{}: config.json does not describe the model these weights were trained as: {} \
                 (the tensors cannot show this; restore config.json)",
                dir.display(),
                diff.join("; ")
            );
        }
    }
    let diff = config_differences(
        ckpt,
        "the checkpoint",
        config,
        &config_path.display().to_string(),
    );
    if !diff.is_empty() {
        bail!(
            "{} holds a different model than {}: {}",
            dir.display(),
            config_path.display(),
            diff.join("; ")
        );
    }
    Ok(())
}

/// The checkpoint `resume` names, recovered from an interrupted swap if it is missing (with a
/// line on stderr saying so).
pub fn resume_dir(resume: &Path) -> Result<PathBuf> {
    if let Some((from, step)) = recover(resume)? {
        eprintln!(
            "recovered the checkpoint of step {step} from {} (a save was interrupted) into {}",
            from.display(),
            resume.display()
        );
    }
    Ok(resume.to_path_buf())
}
