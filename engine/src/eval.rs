//! The loss and bits per byte of a blob on text, through the canister's engine —
//! what the shipped model scores, with its 2-bit weights and packed embeddings, not what the f32
//! checkpoint scored in training.
//!
//! The text is read the way `trainer prepare` reads a `.txt` file (documents separated by
//! `<|endoftext|>`, each trimmed, empty ones skipped, every document followed by the end-of-text
//! token) and scored the way `trainer eval` scores a token file: non-overlapping windows of the
//! model's context from the start (a remainder shorter than a window is left out), every position
//! predicting the next token. So the two commands give the same numbers for the same model.

use crate::Engine;
use std::path::Path;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum EvalError {
    #[error("cannot read {path}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}: holds no documents")]
    Empty(String),
    #[error("the text is {0} tokens; evaluation needs at least 2")]
    TooShort(usize),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("forward: {0}")]
    Forward(String),
    #[error("a window of {window} positions: it must be 1 to {block_size}, the model's context")]
    Window { window: usize, block_size: usize },
}

/// A text as the model sees it.
#[derive(Debug, Clone)]
pub struct TokenText {
    pub tokens: Vec<u32>,
    /// UTF-8 bytes of the documents (separators excluded): what bits per byte divides by.
    pub bytes: u64,
    pub documents: usize,
}

#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct EvalReport {
    /// Mean cross-entropy, nats per predicted token.
    pub loss: f64,
    /// loss / ln 2 × tokens / bytes of the whole text.
    pub bits_per_byte: f64,
    /// Positions scored.
    pub predicted: usize,
    pub windows: usize,
}

/// The documents of `.txt` files, tokenized by the blob's tokenizer, each followed by eos.
pub fn read_text(engine: &Engine, paths: &[impl AsRef<Path>]) -> Result<TokenText, EvalError> {
    let eos = engine.config().eos_token_id;
    let mut text = TokenText {
        tokens: Vec::new(),
        bytes: 0,
        documents: 0,
    };
    for path in paths {
        let path = path.as_ref();
        let all = std::fs::read_to_string(path).map_err(|source| EvalError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let before = text.documents;
        for doc in walsh_spec::text::documents(&all) {
            let ids = engine
                .tokenizer
                .encode(doc)
                .map_err(|e| EvalError::Tokenizer(e.to_string()))?;
            text.tokens.extend(ids);
            text.tokens.push(eos);
            text.bytes += doc.len() as u64;
            text.documents += 1;
        }
        if text.documents == before {
            return Err(EvalError::Empty(path.display().to_string()));
        }
    }
    Ok(text)
}

/// −log p(target) under `logits` (computed in f64).
fn nll(logits: &[f32], target: u32) -> f64 {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v)) as f64;
    let sum: f64 = logits.iter().map(|&v| (v as f64 - max).exp()).sum();
    max + sum.ln() - logits[target as usize] as f64
}

/// How many positions [`evaluate`] will score: what a progress bar counts to.
pub fn positions(text: &TokenText, window: usize) -> usize {
    let n = text.tokens.len();
    if n < 2 || window == 0 {
        return 0;
    }
    let window = window.min(n - 1);
    (n - 1) / window * window
}

/// Scores `text` in windows of `window` positions (1 to the model's context), on `threads`
/// threads. Each window runs as one prefill from an empty cache, so windows are independent.
/// `progress(k)` is called from the worker threads as each window's `k` positions are scored.
pub fn evaluate(
    engine: &Engine,
    text: &TokenText,
    window: usize,
    threads: usize,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<EvalReport, EvalError> {
    let block_size = engine.config().block_size;
    if !(1..=block_size).contains(&window) {
        return Err(EvalError::Window { window, block_size });
    }
    let n = text.tokens.len();
    if n < 2 {
        return Err(EvalError::TooShort(n));
    }
    let window = window.min(n - 1);
    let windows = (n - 1) / window;
    let vocab = engine.config().vocab_size;
    let score = |w: usize| -> Result<f64, EvalError> {
        let start = w * window;
        let inputs = &text.tokens[start..start + window];
        let targets = &text.tokens[start + 1..start + window + 1];
        let mut cache = engine.model.new_cache();
        let logits = engine
            .model
            .forward(inputs, &mut cache, true)
            .map_err(|e| EvalError::Forward(e.to_string()))?;
        let sum = targets
            .iter()
            .zip(logits.chunks_exact(vocab))
            .map(|(&t, row)| nll(row, t))
            .sum();
        progress(window);
        Ok(sum)
    };
    // Windows are split over the threads in contiguous runs; each thread returns its windows'
    // sums and these are added in window order, so the total is the same bits whatever the
    // thread count (summing per run first made it depend on where the runs split).
    let threads = threads.clamp(1, windows.max(1));
    let per = windows.div_ceil(threads);
    let sums: Vec<Result<Vec<f64>, EvalError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let score = &score;
                s.spawn(move || {
                    (i * per..((i + 1) * per).min(windows))
                        .map(score)
                        .collect::<Result<Vec<f64>, EvalError>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(EvalError::Forward("a worker panicked".into())))
            })
            .collect()
    });
    let mut total = 0.0;
    for s in sums {
        for w in s? {
            total += w;
        }
    }
    let predicted = windows * window;
    let loss = total / predicted as f64;
    Ok(EvalReport {
        loss,
        bits_per_byte: loss / std::f64::consts::LN_2 * n as f64 / text.bytes.max(1) as f64,
        predicted,
        windows,
    })
}
