//! What the canister scenario tests share, whichever IC they run on (our harness or PocketIC):
//! principals, random model blobs, and the native engine's answer to compare against.

use crate::root;
use candid::Principal;
use walsh_engine::{Engine, SamplingParams};
use walsh_spec::sampler::DEFAULT_DECODING_REPEAT_PENALTY;
use walsh_spec::{PackOptions, config_file, init, pack};

pub fn controller() -> Principal {
    Principal::self_authenticating(b"walsh test controller")
}

pub fn stranger() -> Principal {
    Principal::self_authenticating(b"someone else")
}

pub fn tokenizer_json() -> String {
    std::fs::read_to_string(root().join("models/tokenizer-gpt2.json"))
        .expect("models/tokenizer-gpt2.json")
}

/// A blob of a config from configs/ with `key=value` overrides and random weights.
pub fn random_blob(config: &str, overrides: &[&str], seed: u64, opts: PackOptions) -> Vec<u8> {
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    let cfg = config_file::load_model_config(&root().join("configs").join(config), &overrides)
        .expect("config loads");
    pack(&init::random_checkpoint(&cfg, seed, tokenizer_json()), opts).expect("packs")
}

/// The native engine's tokens with the canister's default decoding (SPEC §5: greedy, the
/// repetition penalty [`DEFAULT_DECODING_REPEAT_PENALTY`] over the last 64 tokens), to compare
/// the canister's `generate` with.
pub fn native_tokens(blob: &[u8], prompt: &str, max: usize) -> Vec<u32> {
    let params = SamplingParams {
        repeat_penalty: DEFAULT_DECODING_REPEAT_PENALTY,
        ..SamplingParams::default()
    };
    native_tokens_with(blob, prompt, max, params)
}

/// The tokens the native engine generates for `prompt` with these sampling parameters.
pub fn native_tokens_with(
    blob: &[u8],
    prompt: &str,
    max: usize,
    params: SamplingParams,
) -> Vec<u32> {
    Engine::load(blob)
        .expect("blob loads")
        .generate(prompt, max, params, &[], |_| true)
        .expect("generates")
        .tokens
}
