//! A run's configuration: the `[model]` table of a `configs/*.toml` (SPEC §1) and its `[train]`
//! table, with `--set key=value` overrides (`model.` / `train.` prefixes, or a bare key, which
//! goes to `[train]` when it names a training field and to `[model]` otherwise).

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use walsh_spec::config::ModelConfig;
use walsh_spec::config_file::{ConfigFile, ConfigFileError, split_set};

/// The `[train]` table. Every field has a default; unknown fields are an error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// A `trainer prepare` output directory (train.bin, val.bin, tokenizer.json).
    pub data: PathBuf,
    /// Sequences per micro-batch.
    pub batch_size: usize,
    /// Positions per sequence (0: the model's block_size).
    pub seq_len: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    /// Optimizer steps.
    pub steps: u64,
    /// Peak learning rate, reached after `warmup_steps`, then cosine decay to `min_lr`.
    pub lr: f64,
    pub min_lr: f64,
    pub warmup_steps: u64,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Global gradient-norm clip (0: none).
    pub grad_clip: f64,
    /// Steps between evaluations on val.bin (0: only at the end).
    pub eval_every: u64,
    /// Micro-batches per evaluation.
    pub eval_batches: usize,
    /// Steps between checkpoints (0: only at the end and on Ctrl-C).
    pub checkpoint_every: u64,
    /// Steps between metrics.csv rows and progress updates.
    pub log_every: u64,
    /// Seeds the initialisation and the window sampler.
    pub seed: u64,
    /// Prompt of the greedy sample printed at each evaluation (`sample_tokens = 0`: none).
    pub sample_prompt: String,
    pub sample_tokens: usize,
    /// Distillation (docs/TRAINING.md §4.6): a teacher checkpoint directory (same vocabulary and
    /// tokenizer as `data`; a standard-embedding student); empty: none.
    pub teacher: PathBuf,
    /// w of the objective (1 − w)·cross-entropy + w·τ²·KL(teacher ‖ student), in [0, 1].
    pub distill_weight: f64,
    /// τ: both distributions of the KL term are softmaxes of logits / τ (> 0).
    pub distill_temperature: f64,
    /// The teacher's distribution is truncated to its k likeliest tokens and renormalised
    /// (1 ≤ k ≤ vocab_size).
    pub distill_top_k: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            data: PathBuf::from("data/tinystories"),
            batch_size: 32,
            seq_len: 0,
            grad_accum: 1,
            steps: 1000,
            lr: 3e-3,
            min_lr: 3e-4,
            warmup_steps: 100,
            weight_decay: 0.1,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            grad_clip: 1.0,
            eval_every: 250,
            eval_batches: 20,
            checkpoint_every: 1000,
            log_every: 10,
            seed: 1337,
            sample_prompt: "Once upon a time".into(),
            sample_tokens: 48,
            teacher: PathBuf::new(),
            distill_weight: 0.5,
            distill_temperature: 1.0,
            distill_top_k: 32,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunConfigError {
    #[error(transparent)]
    File(#[from] ConfigFileError),
    #[error("{path}: {msg}")]
    Invalid { path: PathBuf, msg: String },
    #[error("--set {key}: no such setting; [train] has {train}; [model] has {model}")]
    UnknownKey {
        key: String,
        train: String,
        model: String,
    },
}

impl TrainConfig {
    /// The fields that differ from `other` among those that decide the trained weights (all but
    /// the length of the run and the logging, evaluation, checkpoint and sample settings).
    pub fn trajectory_changes(&self, other: &TrainConfig) -> Vec<&'static str> {
        let mut v = Vec::new();
        let mut check = |name: &'static str, same: bool| {
            if !same {
                v.push(name);
            }
        };
        check("batch_size", self.batch_size == other.batch_size);
        check("seq_len", self.seq_len == other.seq_len);
        check("grad_accum", self.grad_accum == other.grad_accum);
        check("lr", self.lr == other.lr);
        check("min_lr", self.min_lr == other.min_lr);
        check("warmup_steps", self.warmup_steps == other.warmup_steps);
        check("steps (the cosine's length)", self.steps == other.steps);
        check("weight_decay", self.weight_decay == other.weight_decay);
        check("beta1", self.beta1 == other.beta1);
        check("beta2", self.beta2 == other.beta2);
        check("eps", self.eps == other.eps);
        check("grad_clip", self.grad_clip == other.grad_clip);
        check("seed", self.seed == other.seed);
        check("teacher", self.teacher == other.teacher);
        check(
            "distill_weight",
            self.distill_weight == other.distill_weight,
        );
        check(
            "distill_temperature",
            self.distill_temperature == other.distill_temperature,
        );
        check("distill_top_k", self.distill_top_k == other.distill_top_k);
        v
    }

    /// The sequence length of a model with `block_size` positions.
    /// Whether the run distills from a teacher (`teacher` is set).
    pub fn distills(&self) -> bool {
        !self.teacher.as_os_str().is_empty()
    }

    pub fn seq_len_for(&self, block_size: usize) -> usize {
        if self.seq_len == 0 {
            block_size
        } else {
            self.seq_len
        }
    }

    fn check(&self, model: &ModelConfig) -> Result<(), String> {
        let seq = self.seq_len_for(model.block_size);
        if seq > model.block_size {
            return Err(format!(
                "train.seq_len {seq} exceeds model.block_size {}",
                model.block_size
            ));
        }
        if self.batch_size == 0 || self.grad_accum == 0 || self.steps == 0 {
            return Err("train.batch_size, grad_accum and steps must be at least 1".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite() && self.min_lr >= 0.0 && self.min_lr <= self.lr) {
            return Err(format!(
                "need 0 < train.lr (= {}) and 0 <= train.min_lr (= {}) <= lr",
                self.lr, self.min_lr
            ));
        }
        if !(0.0..1.0).contains(&self.beta1) || !(0.0..1.0).contains(&self.beta2) {
            return Err("train.beta1 and beta2 must be in [0, 1)".into());
        }
        if self.eps <= 0.0 || self.weight_decay < 0.0 || self.grad_clip < 0.0 {
            return Err("train.eps must be > 0; weight_decay and grad_clip >= 0".into());
        }
        if self.log_every == 0 {
            return Err("train.log_every must be at least 1".into());
        }
        if self.distills() {
            if !(0.0..=1.0).contains(&self.distill_weight) {
                return Err(format!(
                    "train.distill_weight {} must be in [0, 1]",
                    self.distill_weight
                ));
            }
            if !(self.distill_temperature > 0.0 && self.distill_temperature.is_finite()) {
                return Err(format!(
                    "train.distill_temperature {} must be a finite number > 0",
                    self.distill_temperature
                ));
            }
            if self.distill_top_k == 0 || self.distill_top_k > model.vocab_size {
                return Err(format!(
                    "train.distill_top_k {} must be in 1..={} (model.vocab_size)",
                    self.distill_top_k, model.vocab_size
                ));
            }
            if model.embedding != walsh_spec::config::Embedding::Standard {
                return Err(
                    "train.teacher: distillation needs a standard embedding (model.embedding = \"standard\")"
                        .into(),
                );
            }
        }
        Ok(())
    }
}

/// Reads `path`, applies `overrides` and validates both tables.
pub fn load_run_config(
    path: &Path,
    overrides: &[String],
) -> Result<(ModelConfig, TrainConfig), RunConfigError> {
    let mut file = ConfigFile::read(path)?;
    let train_keys: Vec<String> = match toml::Value::try_from(TrainConfig::default()) {
        Ok(toml::Value::Table(t)) => t.keys().cloned().collect(),
        _ => Vec::new(),
    };
    let model_keys = ModelConfig::keys();
    for o in overrides {
        let (k, v) = split_set(o)?;
        let (table, key) = if let Some(key) = k.strip_prefix("train.") {
            ("train", key)
        } else if let Some(key) = k.strip_prefix("model.") {
            ("model", key)
        } else if train_keys.iter().any(|t| t == k) {
            ("train", k)
        } else if model_keys.contains(&k) {
            ("model", k)
        } else {
            return Err(RunConfigError::UnknownKey {
                key: k.to_string(),
                train: train_keys.join(", "),
                model: model_keys.join(", "),
            });
        };
        if key.is_empty() {
            return Err(ConfigFileError::BadSet(o.clone()).into());
        }
        file.set(table, key, v)?;
    }
    let model = file.model()?;
    let train: TrainConfig = file.table("train")?.unwrap_or_default();
    train.check(&model).map_err(|msg| RunConfigError::Invalid {
        path: path.to_path_buf(),
        msg,
    })?;
    Ok((model, train))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    const MODEL: &str = "[model]\nvocab_size = 50\nn_embd = 16\nn_layer = 1\nn_head = 4\n\
                         block_size = 8\nalgebra = \"dense\"\neos_token_id = 0\n";

    #[test]
    fn overrides_route_to_the_right_table() {
        let (_d, path) = write(&format!("{MODEL}[train]\nlr = 0.01\n"));
        let sets = ["lr=0.02", "n_layer=2", "train.steps=7", "model.n_head=2"].map(String::from);
        let (m, t) = load_run_config(&path, &sets).unwrap();
        assert_eq!((m.n_layer, m.n_head), (2, 2));
        assert_eq!((t.lr, t.steps), (0.02, 7));
        assert_eq!(t.batch_size, TrainConfig::default().batch_size);
    }

    #[test]
    fn bad_configs_say_what_is_wrong() {
        let (_d, path) = write(&format!("{MODEL}[train]\nlearning_rate = 0.01\n"));
        let e = load_run_config(&path, &[]).unwrap_err().to_string();
        assert!(e.contains("[train]") && e.contains("learning_rate"), "{e}");
        let (_d, path) = write(MODEL);
        let e = load_run_config(&path, &["train.seq_len=9".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("seq_len 9 exceeds"), "{e}");
        let e = load_run_config(&path, &["lr".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected key=value"), "{e}");
    }
}
