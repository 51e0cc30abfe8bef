//! `packer run`: generation through the canister's engine, natively, with timing and optional
//! per-step log-probabilities.

use serde::Serialize;
use std::ops::ControlFlow;
use std::time::Instant;
use walsh_engine::{Engine, GenerateError, Generation, SamplingParams};

#[derive(Debug, Clone, Serialize)]
pub struct TopToken {
    pub token: u32,
    pub text: String,
    pub logprob: f32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub token: u32,
    pub text: String,
    pub logprob: f32,
    pub top: Vec<TopToken>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub prompt: String,
    pub text: String,
    pub tokens: Vec<u32>,
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    pub finish_reason: &'static str,
    pub prefill_seconds: f64,
    pub decode_seconds: f64,
    /// Generated tokens per second of decoding (prefill excluded).
    pub tokens_per_second: f64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<Step>,
}

fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v));
    let lse = max as f64
        + logits
            .iter()
            .map(|v| ((v - max) as f64).exp())
            .sum::<f64>()
            .ln();
    logits.iter().map(|v| (*v as f64 - lse) as f32).collect()
}

/// A generation whose prompt and sampling settings are checked and whose prompt is prefilled:
/// what can be refused has been, so the caller may start printing.
pub struct Started<'e> {
    engine: &'e Engine,
    generation: Generation<'e>,
    prompt: String,
    prefill_seconds: f64,
}

/// Checks the settings and the prompt's length, and prefills the prompt.
pub fn start<'e>(
    engine: &'e Engine,
    prompt: &str,
    max_tokens: usize,
    params: SamplingParams,
) -> Result<Started<'e>, GenerateError> {
    let t0 = Instant::now();
    let generation = Generation::new(engine, prompt, max_tokens, params)?;
    Ok(Started {
        engine,
        generation,
        prompt: prompt.to_string(),
        prefill_seconds: t0.elapsed().as_secs_f64(),
    })
}

impl Started<'_> {
    /// Generates and, with `logprobs` > 0, records the top tokens of each step's distribution.
    /// `on_token` sees each new token as it comes (for streaming to a terminal); when it breaks,
    /// generation stops there (the reader went away) and the result holds what came before.
    pub fn finish(
        self,
        logprobs: usize,
        mut on_token: impl FnMut(u32) -> ControlFlow<()>,
    ) -> Result<RunResult, GenerateError> {
        let Started {
            engine,
            generation: mut g,
            prompt,
            prefill_seconds,
        } = self;
        let t1 = Instant::now();
        let mut steps = Vec::new();
        loop {
            let lp = if logprobs > 0 {
                Some(log_softmax(g.logits()))
            } else {
                None
            };
            let Some(token) = g.step()? else {
                break;
            };
            if let Some(lp) = lp {
                let mut idx: Vec<usize> = (0..lp.len()).collect();
                idx.sort_by(|&a, &b| lp[b].total_cmp(&lp[a]).then(a.cmp(&b)));
                let top = idx
                    .iter()
                    .take(logprobs)
                    .map(|&i| TopToken {
                        token: i as u32,
                        text: engine.tokenizer.token_text(i as u32),
                        logprob: lp[i],
                    })
                    .collect();
                steps.push(Step {
                    token,
                    text: engine.tokenizer.token_text(token),
                    logprob: lp[token as usize],
                    top,
                });
            }
            if on_token(token).is_break() {
                break;
            }
        }
        let decode_seconds = t1.elapsed().as_secs_f64();
        let n = g.generated().len();
        Ok(RunResult {
            prompt,
            text: g.text()?,
            tokens: g.generated().to_vec(),
            prompt_tokens: g.prompt_tokens(),
            generated_tokens: n,
            finish_reason: g.finish_reason().map_or("length", |f| f.as_str()),
            prefill_seconds,
            decode_seconds,
            tokens_per_second: if decode_seconds > 0.0 {
                n as f64 / decode_seconds
            } else {
                0.0
            },
            steps,
        })
    }
}

/// [`start`] and [`Started::finish`] in one, for callers that print nothing on the way.
pub fn run(
    engine: &Engine,
    prompt: &str,
    max_tokens: usize,
    params: SamplingParams,
    logprobs: usize,
    mut on_token: impl FnMut(u32),
) -> Result<RunResult, GenerateError> {
    start(engine, prompt, max_tokens, params)?.finish(logprobs, |t| {
        on_token(t);
        ControlFlow::Continue(())
    })
}
