//! `packer eval`: windowed scoring through the canister's engine, checked against token-by-token
//! decoding with the KV cache, the same whatever the thread count, and the trained default model's
//! score on TinyStories-style text.

use std::path::{Path, PathBuf};
use std::process::Command;
use walsh_engine::Engine;
use walsh_engine::eval::{evaluate, read_text};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn default_engine() -> Engine {
    Engine::load(&std::fs::read(root().join("models/walsh-default.walsh")).unwrap()).unwrap()
}

fn fixture() -> PathBuf {
    root().join("trainer/tests/fixtures/tinystories-val.txt")
}

#[test]
fn windows_score_what_token_by_token_decoding_scores() {
    let engine = default_engine();
    let text = read_text(&engine, &[fixture()]).unwrap();
    assert_eq!(text.documents, 17);
    let eos = engine.config().eos_token_id;
    assert_eq!(text.tokens.iter().filter(|&&t| t == eos).count(), 17);
    // A short prefix, in windows of 16: each window decoded one token at a time instead.
    let short = walsh_engine::eval::TokenText {
        tokens: text.tokens[..16 * 5 + 3].to_vec(),
        bytes: 1000,
        documents: 1,
    };
    let r = evaluate(&engine, &short, 16, 2, &|_| {}).unwrap();
    assert_eq!((r.windows, r.predicted), (5, 80));
    let vocab = engine.config().vocab_size;
    let mut total = 0.0f64;
    for w in 0..5 {
        let mut cache = engine.model.new_cache();
        for i in 0..16 {
            let at = w * 16 + i;
            let logits = engine
                .model
                .forward(&short.tokens[at..at + 1], &mut cache, false)
                .unwrap();
            assert_eq!(logits.len(), vocab);
            let max = logits.iter().fold(f32::MIN, |m, v| m.max(*v)) as f64;
            let lse = max
                + logits
                    .iter()
                    .map(|&v| (v as f64 - max).exp())
                    .sum::<f64>()
                    .ln();
            total += lse - logits[short.tokens[at + 1] as usize] as f64;
        }
    }
    let expected = total / 80.0;
    assert!(
        (r.loss - expected).abs() < 1e-4 * expected,
        "windowed {} vs token by token {expected}",
        r.loss
    );
    let bpb = r.loss / std::f64::consts::LN_2 * 83.0 / 1000.0;
    assert!((r.bits_per_byte - bpb).abs() < 1e-12);
    // The thread count changes nothing: four windows of 256 on one thread and on three (a
    // prefix of the fixture: each full evaluation of it costs CI about 15 s).
    let four = walsh_engine::eval::TokenText {
        tokens: text.tokens[..4 * 256 + 1].to_vec(),
        bytes: 4000,
        documents: 4,
    };
    let one = evaluate(&engine, &four, 256, 1, &|_| {}).unwrap();
    let three = evaluate(&engine, &four, 256, 3, &|_| {}).unwrap();
    assert_eq!((one.windows, three.windows), (4, 4));
    assert_eq!(one.loss.to_bits(), three.loss.to_bits());
}

#[test]
fn the_default_model_scores_like_its_training_run() {
    let out = Command::new(env!("CARGO_BIN_EXE_packer"))
        .current_dir(root())
        .args(["eval", "models/walsh-default.walsh"])
        .arg(fixture())
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (loss, bpb) = (
        r["loss"].as_f64().unwrap(),
        r["bits_per_byte"].as_f64().unwrap(),
    );
    // docs/MODELS.md: the default scores 0.8740 bits/byte on all of valid.txt (its predecessors
    // 0.8933, 0.9066 and 0.9599); an untrained model of this 4,096-token vocabulary scores about
    // ln 4096 = 8.3 nats, and the GPT-2-vocabulary default before them 1.107 bits/byte.
    assert!((2.0..2.8).contains(&loss), "loss {loss}");
    assert!((0.85..1.05).contains(&bpb), "bits per byte {bpb}");
}

#[test]
fn eval_errors_name_the_problem() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_packer"))
            .current_dir(root())
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = run(&[
        "eval",
        "models/walsh-default.walsh",
        "/nonexistent/valid.txt",
    ]);
    assert!(e.contains("cannot read /nonexistent/valid.txt"), "{e}");
    let empty = std::env::temp_dir().join(format!("walsh-eval-empty-{}.txt", std::process::id()));
    std::fs::write(&empty, "\n<|endoftext|>\n  \n").unwrap();
    let e = run(&[
        "eval",
        "models/walsh-default.walsh",
        empty.to_str().unwrap(),
    ]);
    assert!(e.contains("holds no documents"), "{e}");
    let _ = std::fs::remove_file(&empty);
}
