//! The teacher of a distilled run (`[train] teacher`, docs/TRAINING.md §4.6): a checkpoint loaded
//! into a model of its own on another backend of the student's device, run forward on each
//! micro-batch to give the student its top-k targets.

use super::{RunData, TrainConfig};
use crate::backend::Backend;
use crate::model::{Distill, Model};
use anyhow::{Context, Result, bail};
use walsh_spec::Checkpoint;
use walsh_spec::config::ModelConfig;

pub struct Teacher<B: Backend> {
    pub model: Model<B>,
    pub k: usize,
    pub tau: f64,
    pub weight: f64,
}

impl<B: Backend<Elem = f32>> Teacher<B> {
    /// The teacher of `tcfg` (None when the run does not distill) on `backend`, checked against
    /// the student `mcfg`, its windows of `seq` positions and the run's tokenizer.
    pub fn load(
        backend: B,
        tcfg: &TrainConfig,
        mcfg: &ModelConfig,
        seq: usize,
        data: &RunData,
    ) -> Result<Option<Self>> {
        if !tcfg.distills() {
            return Ok(None);
        }
        let dir = &tcfg.teacher;
        let ckpt =
            Checkpoint::load(dir).with_context(|| format!("train.teacher {}", dir.display()))?;
        let t = &ckpt.config;
        if t.vocab_size != mcfg.vocab_size || t.eos_token_id != mcfg.eos_token_id {
            bail!(
                "train.teacher {}: vocabulary {} (eos {}), the student's is {} (eos {}): a \
                 teacher must share the student's tokenizer",
                dir.display(),
                t.vocab_size,
                t.eos_token_id,
                mcfg.vocab_size,
                mcfg.eos_token_id
            );
        }
        let theirs = tokenizers::Tokenizer::from_bytes(ckpt.tokenizer_json.as_bytes())
            .map_err(|e| anyhow::anyhow!("train.teacher {}: tokenizer.json: {e}", dir.display()))?;
        if theirs.get_vocab(true) != data.tokenizer.get_vocab(true) {
            bail!(
                "train.teacher {}: its tokenizer.json has another vocabulary than {}'s",
                dir.display(),
                tcfg.data.display()
            );
        }
        if seq > t.block_size {
            bail!(
                "train.teacher {}: block_size {} is shorter than the run's windows of {seq}",
                dir.display(),
                t.block_size
            );
        }
        let model = Model::new(backend, t.clone(), &ckpt.tensors)
            .with_context(|| format!("train.teacher {}", dir.display()))?;
        Ok(Some(Teacher {
            model,
            k: tcfg.distill_top_k,
            tau: tcfg.distill_temperature,
            weight: tcfg.distill_weight,
        }))
    }

    /// The teacher's targets for the micro-batch `inputs` [batch, seq], on the student's
    /// `backend`.
    pub fn targets(
        &mut self,
        backend: &B,
        inputs: &[u32],
        batch: usize,
        seq: usize,
    ) -> Result<Distill<B>> {
        let (idx, q) = self
            .model
            .teacher_targets(inputs, batch, seq, self.k, self.tau)?;
        Ok(Distill {
            idx: backend.upload_tokens(&idx)?,
            q: backend.upload(&q)?,
            k: self.k,
            tau: self.tau,
            weight: self.weight,
        })
    }
}
