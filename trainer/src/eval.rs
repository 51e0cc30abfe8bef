//! Evaluation: mean loss and bits per byte on a token file, and text samples from the trainer's
//! own forward (what `trainer eval`, `trainer sample` and the training loop print).

use crate::TokenFile;
use crate::backend::Backend;
use crate::model::{Model, ModelError};
use crate::train::batches::eval_batches;
use num_traits::ToPrimitive;
use walsh_spec::sampler::{Sampler, SamplingParams};

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
/// time (the last batch may hold fewer), at most `max_batches` batches (all of the file when
/// `None`). A file shorter than one window gets one shorter window; fewer than 2 tokens is an
/// error.
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
    let batch = batch.max(1);
    let (mut total, mut tokens) = (0.0, 0);
    for b in eval_batches(data, batch, seq, max_batches) {
        let rows = b.targets.len() / seq;
        let loss = model
            .forward(&b.inputs, Some(&b.targets), rows, seq)?
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
    #[error(
        "the prompt is {tokens} tokens; the model's context holds {max} after the end-of-text token"
    )]
    PromptTooLong { tokens: usize, max: usize },
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// Continues `prompt` by up to `max_tokens` tokens as SPEC §5.1 says (the context starts with
/// the end-of-text token, as every story in training does; generation stops at that token or when
/// the context is full), recomputing the whole context each token — the simple way, for checking
/// a run's progress. Temperature 0 is greedy. Returns the prompt and its continuation.
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
    let eos = model.config.eos_token_id;
    let mut ids: Vec<u32> = std::iter::once(eos)
        .chain(enc.get_ids().iter().copied())
        .collect();
    let block = model.config.block_size;
    if ids.len() > block.saturating_sub(1).max(1) {
        return Err(EvalError::PromptTooLong {
            tokens: ids.len() - 1,
            max: block.saturating_sub(1),
        });
    }
    let start = ids.len();
    let mut sampler = Sampler::new(params);
    while ids.len() - start < max_tokens && ids.len() < block {
        model.forward(&ids, None, 1, ids.len())?;
        let logits: Vec<f32> = model
            .logits(&[ids.len() - 1])?
            .iter()
            .map(|v| v.to_f32().unwrap_or(f32::NAN))
            .collect();
        let next = sampler.sample(&logits);
        if next == eos {
            break;
        }
        ids.push(next);
    }
    let text = tokenizer
        .decode(&ids[start..], false)
        .map_err(|e| EvalError::Tokenizer(e.to_string()))?;
    Ok(format!("{prompt}{text}"))
}
