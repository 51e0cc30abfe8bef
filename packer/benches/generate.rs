//! Native generation speed of the canister's engine on the seed's configs with random weights:
//! `cargo bench -p walsh-packer --bench generate`. Reported as tokens/s (criterion's throughput).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::path::Path;
use std::time::Duration;
use walsh_engine::{Engine, Generation, SamplingParams};
use walsh_spec::{PackOptions, config_file, init, pack};

const NEW_TOKENS: usize = 64;

fn engine_for(config: &str) -> Engine {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cfg = config_file::load_model_config(&root.join("configs").join(config), &[])
        .expect("config loads");
    let tok = std::fs::read_to_string(root.join("models/tokenizer-gpt2.json")).expect("tokenizer");
    let ckpt = init::random_checkpoint(&cfg, 1, tok);
    let blob = pack(&ckpt, PackOptions::default()).expect("packs");
    Engine::load(&blob).expect("loads")
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("generate");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8))
        .warm_up_time(Duration::from_secs(1));
    for config in [
        "tinystories-hadamard-hash.toml",
        "tinystories-hadamard.toml",
        "tinystories-octonion.toml",
    ] {
        let engine = engine_for(config);
        let prompt = engine
            .tokenizer
            .encode("Once upon a time")
            .expect("encodes");
        // Prefill of the 5-token context plus NEW_TOKENS greedy decode steps; every step runs
        // (random weights may pick <|endoftext|>, which `force` takes as an ordinary token).
        group.throughput(Throughput::Elements(NEW_TOKENS as u64));
        group.bench_function(config.trim_end_matches(".toml"), |b| {
            b.iter(|| {
                let mut g = Generation::from_tokens(
                    &engine,
                    &prompt,
                    NEW_TOKENS,
                    SamplingParams::default(),
                )
                .expect("starts");
                let mut tokens = 0;
                while g.finish_reason().is_none() {
                    let next = walsh_spec::sampler::argmax(g.logits()) as u32;
                    g.force(next).expect("steps");
                    tokens += 1;
                }
                tokens
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
