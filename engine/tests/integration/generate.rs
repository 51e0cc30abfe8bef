//! Generation through the engine's public API.

/// A generation in a cache made earlier (the canister's, made at load) writes what one in a new
/// cache writes; a cache that already holds positions, or one of another model, is replaced.
#[test]
fn a_generation_in_a_cache_made_earlier_writes_the_same_tokens() {
    let bytes = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/walsh-default.walsh"),
    )
    .expect("the default model");
    let engine = walsh_engine::Engine::load(&bytes).expect("loads");
    let params = walsh_engine::SamplingParams::default();
    let ids = engine
        .tokenizer
        .encode("Once upon a time")
        .expect("encodes");
    let want = engine
        .generate_tokens(&ids, 12, params.clone(), &[], |_| true)
        .expect("generates")
        .tokens;
    let fresh = engine.model.new_cache();
    let got = engine
        .generate_tokens_in(fresh, &ids, 12, params.clone(), &[], |_| true)
        .expect("generates")
        .tokens;
    assert_eq!(got, want);
    // A cache holding positions (here with the keys and values of other tokens) is not used.
    let mut used = engine.model.new_cache();
    engine
        .model
        .forward(&[1, 2, 3], &mut used, false)
        .expect("forward");
    let got = engine
        .generate_tokens_in(used, &ids, 12, params.clone(), &[], |_| true)
        .expect("generates")
        .tokens;
    assert_eq!(got, want);
    // Nor one of another shape.
    let other = walsh_engine::kv_cache::KvCache::new(1, 8, 16, 2);
    let got = engine
        .generate_tokens_in(other, &ids, 12, params, &[], |_| true)
        .expect("generates")
        .tokens;
    assert_eq!(got, want);
}
