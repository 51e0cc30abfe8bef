//! Evaluation: mean loss and bits per byte on a token file, and text samples from the trainer's
//! own forward (what `trainer eval`, `trainer sample` and the training loop print).

use crate::TokenFile;
use crate::backend::Backend;
use crate::generate::{GenerateError, Sequence, generate, start_context, story_text};
use crate::model::{Model, ModelError};
use crate::train::batches::eval_batches;
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
    #[error(transparent)]
    Generate(#[from] GenerateError),
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// Continues `prompt` by up to `max_tokens` tokens as SPEC §5.1 says (the context starts with
/// the end-of-text token, as every story in training does; generation stops at that token or when
/// the context is full): [`generate`] of one sequence. Temperature 0 is greedy. Returns the
/// prompt and its continuation.
pub fn sample<B: Backend>(
    model: &mut Model<B>,
    tokenizer: &tokenizers::Tokenizer,
    prompt: &str,
    max_tokens: usize,
    params: SamplingParams,
) -> Result<String, EvalError> {
    let (eos, block) = (model.config.eos_token_id, model.config.block_size);
    let context = start_context(tokenizer, prompt, eos, block)?;
    let seq = Sequence {
        context: context.clone(),
        sampler: Sampler::new(params),
    };
    let out = generate(model, vec![seq], max_tokens)?;
    let generated = out.generations.first().map_or(&[][..], |g| &g.tokens[..]);
    Ok(story_text(tokenizer, &context, generated)?)
}
