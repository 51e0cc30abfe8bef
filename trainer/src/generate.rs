//! Batched generation with the trainer's own forward: many sequences at once, each with its own
//! [`Sampler`] (SPEC §5.2), through the same [`Model`] and [`Backend`] ops as training, so the CPU
//! and the CUDA backend run one code path.
//!
//! The model has no KV cache: every step recomputes the whole window of every live sequence
//! (`[live, T]`, T the longest context rounded up to [`WINDOW_STEP`]), then samples each one's
//! next token from the logits of its own last position. Causal attention and row-wise ops make a
//! sequence's logits independent of what the others hold (shorter ones are padded on the right,
//! after their last position), so on the CPU, whose ops are row-wise with a fixed summation order,
//! a sequence generates the same tokens bit for bit whatever the batch holds. Finished sequences
//! leave the batch at once.

use crate::backend::Backend;
use crate::model::{Model, ModelError};
use num_traits::ToPrimitive;
use rayon::prelude::*;
use walsh_spec::sampler::Sampler;

/// The window grows by this many positions at a time, so a batch's activations are reallocated
/// block_size/16 times rather than at every token (the padding costs at most 15 positions).
pub const WINDOW_STEP: usize = 16;

/// Why a sequence stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The model sampled the end-of-text token (not kept in the tokens).
    EndOfText,
    /// It generated the most tokens asked for.
    MaxTokens,
    /// The context reached the model's block_size.
    ContextFull,
}

/// One finished sequence: the tokens generated after its context, and why it stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    pub tokens: Vec<u32>,
    pub stop: Stop,
}

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error(
        "the prompt {prompt:?} is {tokens} tokens; at most {max} fit the model's context with the \
         end-of-text token before them and one position after"
    )]
    PromptTooLong {
        prompt: String,
        tokens: usize,
        max: usize,
    },
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// The context a generation starts from (SPEC §5.1): the end-of-text token, as before every
/// story in training, then the prompt's tokens (none for an unconditional story). At least one
/// position must be left for the model to fill.
pub fn start_context(
    tokenizer: &tokenizers::Tokenizer,
    prompt: &str,
    eos: u32,
    block_size: usize,
) -> Result<Vec<u32>, GenerateError> {
    let enc = tokenizer
        .encode(prompt, false)
        .map_err(|e| GenerateError::Tokenizer(e.to_string()))?;
    let ids: Vec<u32> = std::iter::once(eos)
        .chain(enc.get_ids().iter().copied())
        .collect();
    let max = block_size.saturating_sub(2);
    if ids.len() - 1 > max {
        return Err(GenerateError::PromptTooLong {
            prompt: prompt.to_string(),
            tokens: ids.len() - 1,
            max,
        });
    }
    Ok(ids)
}

/// The text of a story: its context after the start token (the prompt) and what was generated,
/// decoded together so that the prompt's last token and the first generated one join as the
/// tokenizer joins them.
pub fn story_text(
    tokenizer: &tokenizers::Tokenizer,
    context: &[u32],
    generated: &[u32],
) -> Result<String, GenerateError> {
    let ids: Vec<u32> = context.iter().skip(1).chain(generated).copied().collect();
    tokenizer
        .decode(&ids, false)
        .map_err(|e| GenerateError::Tokenizer(e.to_string()))
}

/// What [`generate`] returns: each sequence's generation, in the order given, and the cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    pub generations: Vec<Generation>,
    /// Positions the forward ran over (live sequences × window, summed over the steps): with
    /// no KV cache, far more than the tokens generated (docs/BENCHMARKS.md says how many).
    pub positions: u64,
}

/// One sequence of [`generate`]: its context so far (the end-of-text token, the prompt, then
/// what it generated) and its sampler.
pub struct Sequence {
    pub context: Vec<u32>,
    pub sampler: Sampler,
}

/// Continues every sequence until it samples the end-of-text token, has generated `max_tokens`
/// tokens or fills the context. Each context is one of [`start_context`]: non-empty, shorter
/// than block_size.
pub fn generate<B: Backend>(
    model: &mut Model<B>,
    sequences: Vec<Sequence>,
    max_tokens: usize,
) -> Result<Generated, ModelError> {
    let (eos, block) = (model.config.eos_token_id, model.config.block_size);
    let starts: Vec<usize> = sequences.iter().map(|s| s.context.len()).collect();
    assert!(
        starts.iter().all(|&l| l > 0 && l < block),
        "contexts come from start_context"
    );
    let mut seqs = sequences;
    let mut done: Vec<Option<Stop>> = vec![None; seqs.len()];
    let mut live: Vec<usize> = (0..seqs.len()).collect();
    let mut window = Vec::new();
    let mut positions = 0u64;
    loop {
        live.retain(|&i| {
            let generated = seqs[i].context.len() - starts[i];
            if done[i].is_none() && generated >= max_tokens {
                done[i] = Some(Stop::MaxTokens);
            } else if done[i].is_none() && seqs[i].context.len() >= block {
                done[i] = Some(Stop::ContextFull);
            }
            done[i].is_none()
        });
        if live.is_empty() {
            break;
        }
        let longest = live.iter().map(|&i| seqs[i].context.len()).max();
        let t = longest
            .unwrap_or(1)
            .next_multiple_of(WINDOW_STEP)
            .min(block);
        window.clear();
        let mut rows = Vec::with_capacity(live.len());
        for (r, &i) in live.iter().enumerate() {
            let ctx = &seqs[i].context;
            window.extend_from_slice(ctx);
            // Padding after the last position: causal attention never lets it reach back.
            window.resize((r + 1) * t, eos);
            rows.push(r * t + ctx.len() - 1);
        }
        model.forward(&window, None, live.len(), t)?;
        positions += window.len() as u64;
        let logits = model.logits(&rows)?;
        let vocab = model.config.vocab_size;
        // Each sequence draws from its own row with its own sampler, so the draws run in
        // parallel (sorting 4K–50K candidates for hundreds of sequences a step is not free).
        let mut live_seqs: Vec<&mut Sequence> = seqs
            .iter_mut()
            .zip(&done)
            .filter_map(|(s, d)| d.is_none().then_some(s))
            .collect();
        debug_assert_eq!(live_seqs.len(), live.len());
        let nexts: Vec<u32> = live_seqs
            .par_iter_mut()
            .zip(logits.par_chunks(vocab))
            .map(|(s, l)| {
                let mut row: Vec<f32> = l.iter().map(|v| v.to_f32().unwrap_or(f32::NAN)).collect();
                s.sampler.sample_after(&mut row, &s.context)
            })
            .collect();
        for (&i, next) in live.iter().zip(nexts) {
            if next == eos {
                done[i] = Some(Stop::EndOfText);
            } else {
                seqs[i].context.push(next);
            }
        }
    }
    let generations = seqs
        .into_iter()
        .zip(starts)
        .zip(done)
        .map(|((s, start), stop)| Generation {
            tokens: s.context[start..].to_vec(),
            stop: stop.unwrap_or(Stop::MaxTokens),
        })
        .collect();
    Ok(Generated {
        generations,
        positions,
    })
}
