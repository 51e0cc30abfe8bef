//! A generation that owns its model, so that the page can step it a few tokens at a time (the
//! Web Worker answers a Stop between steps) and drop it whenever it likes.

use serde::Serialize;
use std::rc::Rc;
use walsh_engine::{Engine, FinishReason, GenerateError, Generation, SamplingParams};
use walsh_spec::blob::hex;

self_cell::self_cell!(
    struct StoryCell {
        owner: Rc<Engine>,
        #[covariant]
        dependent: Generation,
    }
);

/// A story being written: the engine's [`Generation`] together with the engine it borrows.
pub struct Story {
    cell: StoryCell,
}

impl Story {
    /// Encodes and prefills the prompt (the checks and the work of [`Generation::new`]).
    pub fn start(
        engine: Rc<Engine>,
        prompt: &str,
        max_tokens: usize,
        params: SamplingParams,
    ) -> Result<Self, GenerateError> {
        let cell = StoryCell::try_new(engine, |e| Generation::new(e, prompt, max_tokens, params))?;
        Ok(Story { cell })
    }

    /// Generates up to `n` more tokens; returns how many came.
    pub fn step(&mut self, n: usize) -> Result<usize, GenerateError> {
        self.cell.with_dependent_mut(|_, g| {
            let mut made = 0;
            while made < n && g.step()?.is_some() {
                made += 1;
            }
            Ok(made)
        })
    }

    pub fn text(&self) -> Result<String, GenerateError> {
        self.cell.borrow_dependent().text()
    }

    pub fn generated(&self) -> &[u32] {
        self.cell.borrow_dependent().generated()
    }

    pub fn prompt_tokens(&self) -> usize {
        self.cell.borrow_dependent().prompt_tokens()
    }

    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.cell.borrow_dependent().finish_reason()
    }
}

/// What the page shows of a model: the fields of the canister's `model_info` that a blob
/// alone determines (the canister adds where its model came from and its heap).
#[derive(Debug, Serialize)]
pub struct Info {
    pub name: String,
    pub algebra: String,
    pub embedding: &'static str,
    pub vocab_size: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub block_size: usize,
    pub total_params: u64,
    pub brain_params: u64,
    pub embedding_params: u64,
    pub blob_size: usize,
    pub sha256: String,
    pub packing: String,
}

pub fn info(engine: &Engine) -> Info {
    let c = engine.config();
    let (emb, brain) = c.param_counts();
    Info {
        name: c.name.clone(),
        algebra: c.algebra.name().to_string(),
        embedding: match c.embedding {
            walsh_spec::config::Embedding::Standard => "standard",
            walsh_spec::config::Embedding::Hash => "hash",
        },
        vocab_size: c.vocab_size,
        n_embd: c.n_embd,
        n_layer: c.n_layer,
        n_head: c.n_head,
        block_size: c.block_size,
        total_params: emb + brain,
        brain_params: brain,
        embedding_params: emb,
        blob_size: engine.blob_len,
        sha256: hex(&engine.sha256),
        packing: engine.packing.name().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/walsh-default.walsh");

    fn engine() -> Rc<Engine> {
        let path = DEFAULT;
        let bytes = std::fs::read(path).expect("models/walsh-default.walsh");
        Rc::new(Engine::load(&bytes).expect("the default model loads"))
    }

    /// Stepping a few tokens at a time gives what one whole generation gives, greedy and
    /// sampled.
    #[test]
    fn stepping_in_batches_matches_a_whole_generation() {
        let engine = engine();
        for params in [
            SamplingParams::default(),
            SamplingParams {
                temperature: 0.8,
                top_k: 40,
                top_p: 0.95,
                seed: 7,
                ..SamplingParams::default()
            },
        ] {
            let whole = engine
                .generate("Once upon a time", 40, params.clone(), &[], |_| true)
                .expect("generates");
            let mut story =
                Story::start(engine.clone(), "Once upon a time", 40, params).expect("starts");
            let mut total = 0;
            loop {
                let made = story.step(3).expect("steps");
                total += made;
                if made < 3 {
                    break;
                }
            }
            assert_eq!(story.generated(), whole.tokens.as_slice());
            assert_eq!(total, whole.tokens.len());
            assert_eq!(story.text().expect("decodes"), whole.text);
            assert_eq!(story.finish_reason(), Some(whole.finish));
            assert_eq!(
                story.step(5).expect("steps"),
                0,
                "a finished story makes no more"
            );
        }
    }

    #[test]
    fn bad_settings_are_refused_before_any_work() {
        let params = SamplingParams {
            temperature: -1.0,
            ..SamplingParams::default()
        };
        let err = Story::start(engine(), "Once", 5, params)
            .err()
            .expect("refused");
        assert!(err.to_string().contains("temperature"), "{err}");
    }

    #[test]
    fn info_reports_the_blob() {
        let i = info(&engine());
        let len = std::fs::metadata(DEFAULT)
            .expect("models/walsh-default.walsh")
            .len();
        assert_eq!(i.blob_size as u64, len);
        assert_eq!(i.total_params, i.brain_params + i.embedding_params);
        assert_eq!(i.sha256.len(), 64);
    }
}
