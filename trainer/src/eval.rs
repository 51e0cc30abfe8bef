//! Evaluation: mean loss and bits per byte on a token file, and text samples from the trainer's
//! own forward (what `trainer eval`, `trainer sample` and the training loop print).

use crate::TokenFile;
use crate::backend::Backend;
use crate::model::{Model, ModelError};
use crate::train::batches::eval_batches;
use num_traits::ToPrimitive;
use walsh_canister::sampler::{Sampler, SamplingParams};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvalResult {
    /// Mean cross-entropy in nats per predicted token.
    pub loss: f64,
    /// Bits per UTF-8 byte of the source text: loss / ln 2 × tokens / bytes of the token file
    /// (None when its sidecar counts no bytes).
    pub bpb: Option<f64>,
    /// Predicted tokens evaluated.
    pub tokens: usize,
}

/// Bits per byte of a mean loss on `data`.
pub fn bits_per_byte(loss: f64, data: &TokenFile) -> Option<f64> {
    let s = data.sidecar();
    (s.bytes > 0).then(|| loss / std::f64::consts::LN_2 * s.tokens as f64 / s.bytes as f64)
}

/// Evaluates non-overlapping windows of `seq` positions from the start of `data`, `batch` at a
/// time, at most `max_batches` micro-batches (all of the file when `None`). Shorter files get
/// shorter or fewer windows; a file of fewer than 2 tokens is an error.
pub fn evaluate<B: Backend>(
    model: &mut Model<B>,
    data: &TokenFile,
    batch: usize,
    seq: usize,
    max_batches: Option<usize>,
) -> Result<EvalResult, EvalError> {
    if data.len() < 2 {
        return Err(EvalError::TooShort(data.len()));
    }
    let seq = seq.min(data.len() - 1);
    let batch = batch.min((data.len() - 1) / seq).max(1);
    let (mut total, mut tokens) = (0.0, 0);
    for b in eval_batches(data, batch, seq, max_batches) {
        let loss = model
            .forward(&b.inputs, Some(&b.targets), batch, seq)?
            .unwrap_or(f64::NAN);
        total += loss * b.targets.len() as f64;
        tokens += b.targets.len();
    }
    let loss = total / tokens.max(1) as f64;
    Ok(EvalResult {
        loss,
        bpb: bits_per_byte(loss, data),
        tokens,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("the token file holds {0} tokens; evaluation needs at least 2")]
    TooShort(usize),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// Continues `prompt` by `max_tokens` tokens (fewer if the model emits its end-of-text token),
/// recomputing the whole context each token — the simple way, for checking a run's progress.
/// Temperature 0 is greedy. Returns the prompt and its continuation.
pub fn sample<B: Backend>(
    model: &mut Model<B>,
    tokenizer: &tokenizers::Tokenizer,
    prompt: &str,
    max_tokens: usize,
    params: SamplingParams,
) -> Result<String, EvalError> {
    let enc = tokenizer
        .encode(prompt, false)
        .map_err(|e| EvalError::Tokenizer(e.to_string()))?;
    let mut ids: Vec<u32> = enc.get_ids().to_vec();
    if ids.is_empty() {
        ids.push(model.config.eos_token_id);
    }
    let start = ids.len();
    let mut sampler = Sampler::new(params);
    for _ in 0..max_tokens {
        let from = ids.len().saturating_sub(model.config.block_size);
        let ctx = &ids[from..];
        model.forward(ctx, None, 1, ctx.len())?;
        let logits: Vec<f32> = model
            .logits(&[ctx.len() - 1])?
            .iter()
            .map(|v| v.to_f32().unwrap_or(f32::NAN))
            .collect();
        let next = sampler.sample(&logits);
        if next == model.config.eos_token_id {
            break;
        }
        ids.push(next);
    }
    let text = tokenizer
        .decode(&ids[start..], false)
        .map_err(|e| EvalError::Tokenizer(e.to_string()))?;
    Ok(format!("{prompt}{text}"))
}
