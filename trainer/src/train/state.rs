//! What a checkpoint holds beyond the model (the format `packer` reads): the AdamW moments in
//! `optimizer.safetensors` (tensors `m.<name>` and `v.<name>`, f32, the model's names and shapes)
//! and the loop's position in `train_state.json`. All of it is written in one atomic rename
//! ([`super::checkpointing`] makes the rename durable and recovers from a crash in the middle).

use super::TrainConfig;
use crate::backend::{AdamW, Backend};
use crate::model::Model;
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use walsh_spec::Checkpoint;
use walsh_spec::checkpoint::{read_safetensors, safetensors_bytes};
use walsh_spec::config::ModelConfig;

pub const FORMAT: &str = "walsh-train-state-v1";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
pub const STATE_FILE: &str = "train_state.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainState {
    pub format: String,
    /// Optimizer steps completed.
    pub step: u64,
    /// Training tokens consumed.
    pub tokens: u64,
    /// The `[train]` table of the run, for the record.
    pub train: TrainConfig,
    pub elapsed_seconds: f64,
    /// Validation loss of the evaluation at `step`, where one ran (what `best/` is chosen by).
    #[serde(default)]
    pub val_loss: Option<f64>,
    /// The model the weights were trained as: what a resume checks `config.json` against, since
    /// `block_size`, `rope_theta` or `eos_token_id` leave no trace in the tensors' shapes
    /// (absent in checkpoints written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelConfig>,
}

/// The validation loss recorded in checkpoint `dir`, if it has one (a run's `best/`).
pub fn recorded_val_loss(dir: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(dir.join(STATE_FILE)).ok()?;
    serde_json::from_str::<TrainState>(&text).ok()?.val_loss
}

/// The AdamW moments, in the model's parameter layout.
pub struct Optimizer<B: Backend> {
    pub m: B::Buf,
    pub v: B::Buf,
}

impl<B: Backend> Optimizer<B> {
    pub fn new(model: &Model<B>) -> Result<Self> {
        Ok(Optimizer {
            m: model.backend.zeros(model.layout.len)?,
            v: model.backend.zeros(model.layout.len)?,
        })
    }

    pub fn step(
        &mut self,
        model: &mut Model<B>,
        decay: &[Range<usize>],
        grad_scale: f64,
        hp: AdamW,
    ) -> Result<()> {
        model.backend.adamw(
            &mut model.params,
            &model.grads,
            &mut self.m,
            &mut self.v,
            decay,
            grad_scale,
            hp,
        )?;
        Ok(())
    }
}

/// Writes model, tokenizer, optimizer and state into `dir` atomically.
pub fn save<B: Backend<Elem = f32>>(
    dir: &Path,
    model: &Model<B>,
    opt: &Optimizer<B>,
    state: &TrainState,
    tokenizer_json: &str,
) -> Result<()> {
    let ckpt = Checkpoint {
        config: model.config.clone(),
        tensors: model.tensors()?,
        tokenizer_json: tokenizer_json.to_string(),
    };
    let mut moments = BTreeMap::new();
    for (prefix, buf) in [("m", &opt.m), ("v", &opt.v)] {
        let host = model.backend.download(buf)?;
        for (name, t) in model.layout.tensors_of(&host) {
            moments.insert(format!("{prefix}.{name}"), t);
        }
    }
    let opt_bytes = safetensors_bytes(&moments, &dir.join(OPTIMIZER_FILE))?;
    let state_json = serde_json::to_vec_pretty(state)?;
    ckpt.save_with(
        dir,
        &[(OPTIMIZER_FILE, &opt_bytes), (STATE_FILE, &state_json)],
    )?;
    Ok(())
}

/// Reads the loop state `train_state.json` of the checkpoint `dir`.
pub fn read_state(dir: &Path) -> Result<TrainState> {
    let state_path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&state_path).with_context(|| {
        format!(
            "cannot read {} (a checkpoint written by `trainer train` has it; packer-only \
             checkpoints cannot be resumed)",
            state_path.display()
        )
    })?;
    let state: TrainState = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a train state", state_path.display()))?;
    if state.format != FORMAT {
        bail!(
            "{}: format {:?}, expected {FORMAT:?}",
            state_path.display(),
            state.format
        );
    }
    Ok(state)
}

/// Reads the optimizer state of the checkpoint `dir` for `model` (already holding the
/// checkpoint's weights).
pub fn load_optimizer<B: Backend<Elem = f32>>(
    dir: &Path,
    model: &mut Model<B>,
) -> Result<Optimizer<B>> {
    let opt_path = dir.join(OPTIMIZER_FILE);
    let moments = read_safetensors(&opt_path)?;
    let mut bufs = Vec::new();
    for prefix in ["m", "v"] {
        let mut host = vec![0.0f32; model.layout.len];
        for slot in &model.layout.tensors {
            let key = format!("{prefix}.{}", slot.spec.name);
            let t = moments
                .get(&key)
                .with_context(|| format!("{}: tensor `{key}` is missing", opt_path.display()))?;
            if t.data.len() != slot.range.len() {
                bail!(
                    "{}: tensor `{key}` has {} elements, the model needs {}",
                    opt_path.display(),
                    t.data.len(),
                    slot.range.len()
                );
            }
            host[slot.range.clone()].copy_from_slice(&t.data);
        }
        bufs.push(model.backend.upload(&host)?);
    }
    let v = bufs.pop().context("two moment buffers")?;
    let m = bufs.pop().context("two moment buffers")?;
    Ok(Optimizer { m, v })
}
