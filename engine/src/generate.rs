//! Generation (SPEC §5): the context, prefill in one pass, decode with the KV cache, sampling and
//! the stop conditions. The caller drives it step by step, so the canister can check its
//! instruction budget between steps and a debugger can look at every step's logits.

use crate::Engine;
use crate::kv_cache::KvCache;
use crate::model::{ForwardError, ForwardScratch};
use crate::tokenizer::TokenizerError;
use thiserror::Error;
use walsh_spec::sampler::{Sampler, SamplingParams};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum GenerateError {
    #[error(
        "prompt is {tokens} tokens; this model's context holds {max} prompt tokens (block_size {block_size} minus the start token)"
    )]
    PromptTooLong {
        tokens: usize,
        max: usize,
        block_size: usize,
    },
    #[error("invalid sampling parameters: {0}")]
    Sampling(String),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    Forward(#[from] ForwardError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// The model produced `<|endoftext|>`.
    Eos,
    /// The requested number of new tokens was generated.
    Length,
    /// The context (block_size positions) is full.
    Context,
    /// The caller's budget ran out (the canister's instruction limit).
    Budget,
    /// The text reached one of the caller's stop strings (cut before it).
    Stop,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Eos => "eos",
            FinishReason::Length => "length",
            FinishReason::Context => "context",
            FinishReason::Budget => "budget",
            FinishReason::Stop => "stop",
        }
    }
}

/// Positions per prefill chunk: large enough that the prompt still runs as a batch, small enough
/// that a budget check between chunks is fine-grained.
pub const PREFILL_CHUNK: usize = 32;

/// One generation in progress.
pub struct Generation<'e> {
    engine: &'e Engine,
    cache: KvCache,
    sampler: Sampler,
    /// The whole context so far (start token, prompt, generated), for the repetition penalty.
    context: Vec<u32>,
    prompt_tokens: usize,
    generated: Vec<u32>,
    max_new: usize,
    /// Next-token logits at the end of the context.
    logits: Vec<f32>,
    /// The forward pass's buffers, reused by every step (a decode step allocates nothing).
    scratch: ForwardScratch,
    finish: Option<FinishReason>,
}

impl<'e> Generation<'e> {
    /// Encodes the prompt, checks it fits, and runs the prefill.
    pub fn new(
        engine: &'e Engine,
        prompt: &str,
        max_new: usize,
        params: SamplingParams,
    ) -> Result<Self, GenerateError> {
        params.validate().map_err(GenerateError::Sampling)?;
        let prompt_ids = engine.tokenizer.encode(prompt)?;
        Self::from_tokens(engine, &prompt_ids, max_new, params)
    }

    /// The same from prompt token ids (without the start token, which is added here).
    pub fn from_tokens(
        engine: &'e Engine,
        prompt_ids: &[u32],
        max_new: usize,
        params: SamplingParams,
    ) -> Result<Self, GenerateError> {
        Self::start(engine, prompt_ids, max_new, params, &mut |_| true)
    }

    /// Starts a generation under a budget: the prefill runs in chunks of [`PREFILL_CHUNK`]
    /// positions, and `keep_going(n)` is asked before each chunk of n positions. When it answers
    /// false the generation ends at once with [`FinishReason::Budget`] and no tokens. Chunking
    /// does not change a single bit of the result: every position's computation is the same.
    pub fn start(
        engine: &'e Engine,
        prompt_ids: &[u32],
        max_new: usize,
        params: SamplingParams,
        keep_going: &mut dyn FnMut(usize) -> bool,
    ) -> Result<Self, GenerateError> {
        let cache = engine.model.new_cache();
        Self::start_in(engine, cache, prompt_ids, max_new, params, keep_going)
    }

    /// [`Generation::start`] in a KV cache made earlier by [`Model::new_cache`](crate::model::Model::new_cache) for this
    /// model and not used since (the canister makes it in the update that loads a model, where
    /// it stays in heap: a query then neither allocates nor zero-fills the cache's megabytes).
    /// A cache of another shape or already holding positions is replaced by a new one.
    pub fn start_in(
        engine: &'e Engine,
        cache: KvCache,
        prompt_ids: &[u32],
        max_new: usize,
        params: SamplingParams,
        keep_going: &mut dyn FnMut(usize) -> bool,
    ) -> Result<Self, GenerateError> {
        params.validate().map_err(GenerateError::Sampling)?;
        let cache = if cache.is_empty() && engine.model.fits(&cache) {
            cache
        } else {
            engine.model.new_cache()
        };
        let cfg = &engine.model.config;
        if prompt_ids.len() + 1 > cfg.block_size {
            return Err(GenerateError::PromptTooLong {
                tokens: prompt_ids.len(),
                max: cfg.block_size - 1,
                block_size: cfg.block_size,
            });
        }
        let mut context = Vec::with_capacity(prompt_ids.len() + 1);
        context.push(cfg.eos_token_id);
        context.extend_from_slice(prompt_ids);
        let mut g = Generation {
            engine,
            cache,
            sampler: Sampler::new(params),
            context: {
                let mut all = Vec::with_capacity(cfg.block_size.max(context.len()));
                all.extend_from_slice(&context);
                all
            },
            prompt_tokens: prompt_ids.len(),
            generated: Vec::with_capacity(max_new.min(cfg.block_size)),
            max_new,
            logits: Vec::new(),
            scratch: ForwardScratch::default(),
            finish: None,
        };
        for chunk in context.chunks(PREFILL_CHUNK) {
            if !keep_going(chunk.len()) {
                g.finish = Some(FinishReason::Budget);
                return Ok(g);
            }
            engine
                .model
                .forward_into(chunk, &mut g.cache, false, &mut g.scratch, &mut g.logits)?;
        }
        if max_new == 0 {
            g.finish = Some(FinishReason::Length);
        }
        Ok(g)
    }

    /// Logits for the next token.
    pub fn logits(&self) -> &[f32] {
        &self.logits
    }

    /// Samples the next token; runs the decode step for it unless generation ends with it.
    /// Returns None once finished (see [`Generation::finish_reason`]).
    pub fn step(&mut self) -> Result<Option<u32>, GenerateError> {
        if self.finish.is_some() {
            return Ok(None);
        }
        let mut laps = crate::profile::Laps::start();
        let token = self.sampler.sample_after(&mut self.logits, &self.context);
        laps.lap(crate::profile::Phase::Sample);
        if token == self.engine.model.config.eos_token_id {
            self.finish = Some(FinishReason::Eos);
            return Ok(None);
        }
        self.accept(token)?;
        Ok(Some(token))
    }

    /// Appends a token chosen by the caller instead of the sampler (scoring a given text,
    /// benchmarks that must run every step); `<|endoftext|>` is taken as an ordinary token here.
    pub fn force(&mut self, token: u32) -> Result<(), GenerateError> {
        if self.finish.is_some() {
            return Ok(());
        }
        self.accept(token)
    }

    fn accept(&mut self, token: u32) -> Result<(), GenerateError> {
        self.generated.push(token);
        self.context.push(token);
        if self.generated.len() >= self.max_new {
            self.finish = Some(FinishReason::Length);
        } else if self.cache.len() >= self.cache.capacity() {
            self.finish = Some(FinishReason::Context);
        } else {
            self.engine.model.forward_into(
                &[token],
                &mut self.cache,
                false,
                &mut self.scratch,
                &mut self.logits,
            )?;
        }
        Ok(())
    }

    /// Ends the generation early (the caller's budget ran out).
    pub fn stop(&mut self, reason: FinishReason) {
        self.finish.get_or_insert(reason);
    }

    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.finish
    }

    pub fn generated(&self) -> &[u32] {
        &self.generated
    }

    pub fn prompt_tokens(&self) -> usize {
        self.prompt_tokens
    }

    pub fn cache_bytes(&self) -> usize {
        self.cache.bytes()
    }

    pub fn text(&self) -> Result<String, GenerateError> {
        Ok(self.engine.tokenizer.decode(&self.generated)?)
    }
}

/// Result of a whole generation.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub text: String,
    pub tokens: Vec<u32>,
    pub prompt_tokens: usize,
    pub finish: FinishReason,
}

impl Engine {
    /// Runs a generation to the end. `keep_going(n)` is asked before every unit of work of n
    /// positions (prefill chunks, then one per decode step) and ends the generation with
    /// [`FinishReason::Budget`] when it answers false. Generation also ends when the text
    /// contains one of `stop` (the text is cut before it).
    pub fn generate(
        &self,
        prompt: &str,
        max_new: usize,
        params: SamplingParams,
        stop: &[String],
        keep_going: impl FnMut(usize) -> bool,
    ) -> Result<Output, GenerateError> {
        let prompt_ids = self.tokenizer.encode(prompt)?;
        self.generate_tokens(&prompt_ids, max_new, params, stop, keep_going)
    }

    /// [`Engine::generate`] from the prompt's token ids (without the start token), for a caller
    /// that tokenized the prompt itself (the canister checks its length first).
    pub fn generate_tokens(
        &self,
        prompt_ids: &[u32],
        max_new: usize,
        params: SamplingParams,
        stop: &[String],
        keep_going: impl FnMut(usize) -> bool,
    ) -> Result<Output, GenerateError> {
        let cache = self.model.new_cache();
        self.generate_tokens_in(cache, prompt_ids, max_new, params, stop, keep_going)
    }

    /// [`Engine::generate_tokens`] in a KV cache made earlier ([`Generation::start_in`]).
    pub fn generate_tokens_in(
        &self,
        cache: KvCache,
        prompt_ids: &[u32],
        max_new: usize,
        params: SamplingParams,
        stop: &[String],
        mut keep_going: impl FnMut(usize) -> bool,
    ) -> Result<Output, GenerateError> {
        let mut g =
            Generation::start_in(self, cache, prompt_ids, max_new, params, &mut keep_going)?;
        let stop: Vec<&String> = stop.iter().filter(|s| !s.is_empty()).collect();
        let mut cut: Option<usize> = None;
        while g.finish_reason().is_none() {
            if !keep_going(1) {
                g.stop(FinishReason::Budget);
                break;
            }
            if g.step()?.is_some() && !stop.is_empty() {
                let text = g.text()?;
                if let Some(pos) = stop.iter().filter_map(|s| text.find(s.as_str())).min() {
                    cut = Some(pos);
                    g.stop(FinishReason::Stop);
                }
            }
        }
        let mut text = g.text()?;
        if let Some(pos) = cut {
            text.truncate(pos);
        }
        Ok(Output {
            text,
            tokens: g.generated().to_vec(),
            prompt_tokens: g.prompt_tokens(),
            finish: g.finish_reason().unwrap_or(FinishReason::Length),
        })
    }
}
