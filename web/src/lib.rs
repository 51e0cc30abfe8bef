//! The Walsh engine in the browser: `walsh-engine` behind wasm-bindgen, for the story page's
//! in-browser mode (`web/page/worker.js` runs it in a Web Worker). The logic is in [`story`],
//! plain Rust tested natively; this module only translates to and from JavaScript.
//!
//! The canister does not link this crate: its wasm imports only `ic0`, and wasm-bindgen's
//! imports live here.

pub mod story;

use std::rc::Rc;
use walsh_engine::{Engine, SamplingParams};
use wasm_bindgen::prelude::*;

/// A loaded model.
#[wasm_bindgen]
pub struct WebEngine {
    engine: Rc<Engine>,
}

#[wasm_bindgen]
impl WebEngine {
    /// Loads a `.walsh` blob with the same checks the canister makes on an upload.
    #[wasm_bindgen(constructor)]
    pub fn new(blob: &[u8]) -> Result<WebEngine, JsError> {
        let engine = Engine::load(blob).map_err(|e| JsError::new(&e.to_string()))?;
        Ok(WebEngine {
            engine: Rc::new(engine),
        })
    }

    /// What the canister's `model_info` reports of a model, as JSON (see [`story::info`]).
    #[wasm_bindgen(js_name = infoJson)]
    pub fn info_json(&self) -> String {
        serde_json::to_string(&story::info(&self.engine)).unwrap_or_default()
    }

    /// Encodes and prefills the prompt and returns the story, ready to step. The settings are
    /// those of `packer run` (`top_k` 0: no cut; `top_p` 1: no cut; `temperature` 0: greedy).
    pub fn start(
        &self,
        prompt: &str,
        max_tokens: u32,
        temperature: f32,
        top_k: u32,
        top_p: f32,
        seed: u64,
    ) -> Result<Story, JsError> {
        // No repetition penalty, as the canister's `generate_with` without one (the page's
        // on-chain mode): both modes give the same text.
        let params = SamplingParams {
            temperature,
            top_k: top_k as usize,
            top_p,
            seed,
            ..SamplingParams::default()
        };
        story::Story::start(self.engine.clone(), prompt, max_tokens as usize, params)
            .map(|inner| Story { inner })
            .map_err(|e| JsError::new(&e.to_string()))
    }
}

/// A story being written.
#[wasm_bindgen]
pub struct Story {
    inner: story::Story,
}

#[wasm_bindgen]
impl Story {
    /// Generates up to `n` more tokens; returns how many came (0 once finished).
    pub fn step(&mut self, n: u32) -> Result<u32, JsError> {
        self.inner
            .step(n as usize)
            .map(|k| k as u32)
            .map_err(|e| JsError::new(&e.to_string()))
    }

    /// The text generated so far (without the prompt).
    pub fn text(&self) -> Result<String, JsError> {
        self.inner.text().map_err(|e| JsError::new(&e.to_string()))
    }

    #[wasm_bindgen(js_name = generatedTokens)]
    pub fn generated_tokens(&self) -> u32 {
        self.inner.generated().len() as u32
    }

    #[wasm_bindgen(js_name = promptTokens)]
    pub fn prompt_tokens(&self) -> u32 {
        self.inner.prompt_tokens() as u32
    }

    /// The generated token ids.
    pub fn tokens(&self) -> Vec<u32> {
        self.inner.generated().to_vec()
    }

    /// Why generation ended (`eos`, `length`, `context`, as `packer run` prints), or undefined
    /// while it goes on.
    #[wasm_bindgen(js_name = finishReason)]
    pub fn finish_reason(&self) -> Option<String> {
        self.inner.finish_reason().map(|f| f.as_str().to_string())
    }
}
