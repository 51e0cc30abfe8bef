//! The whole pipeline, as a user runs it, on the CPU: TinyStories text (the committed fixture) →
//! `trainer prepare` → `trainer train` of the tiny config → `packer pack` → upload into the real
//! canister wasm in the IC emulation harness → `generate`. The model must have learned (its loss
//! falls well below the entropy of the training tokens' unigram distribution) and the canister
//! must write with it exactly what the native engine writes.

use candid::{Encode, Principal};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use walsh_ic_harness::Harness;
use walsh_interface::*;
use walsh_spec::{Checkpoint, PackOptions, Packing, pack};
use walsh_tests::fixtures::{controller, native_tokens};
use walsh_tests::root;
use walsh_trainer::TokenFile;
use walsh_trainer::prepare::{PrepareOptions, ValSplit, prepare};
use walsh_trainer::train::{TrainOptions, train_cpu};

/// Entropy (nats) of the unigram distribution of a token file's tokens.
fn unigram_entropy(tokens: &TokenFile) -> f64 {
    let mut counts: HashMap<u32, u64> = HashMap::new();
    for t in tokens.slice(0, tokens.len()) {
        *counts.entry(t).or_default() += 1;
    }
    let n = tokens.len() as f64;
    counts
        .values()
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.ln()
        })
        .sum()
}

fn update<T: candid::CandidType + for<'de> candid::Deserialize<'de>>(
    h: &mut Harness,
    method: &str,
    arg: Vec<u8>,
) -> T {
    h.update(controller(), method, &arg)
        .unwrap_or_else(|e| panic!("{method}: {e}"))
        .decode::<T>()
        .expect("decodes")
}

#[test]
fn text_to_tokens_to_trained_model_to_blob_to_canister_to_text() {
    // text → tokens
    let data = tempfile::tempdir().unwrap();
    let fixtures = root().join("trainer/tests/fixtures");
    let mut prep = PrepareOptions::new(
        vec![fixtures.join("tinystories-train.txt")],
        data.path().to_path_buf(),
    );
    prep.val = ValSplit::Files(vec![fixtures.join("tinystories-val.txt")]);
    let summary = prepare(&prep).unwrap();
    assert!(summary.train.tokens > 20_000);

    // tokens → checkpoint: configs/tiny.toml as committed, only the data path set.
    let run = tempfile::tempdir().unwrap();
    let opts = TrainOptions {
        config: root().join("configs/tiny.toml"),
        sets: vec![format!("data={}", data.path().display())],
        out: Some(run.path().to_path_buf()),
        resume: None,
        overwrite: false,
        stop_after: None,
        progress: false,
        verbose: false,
    };
    let report = train_cpu(&opts, &AtomicBool::new(false)).unwrap();
    let train = TokenFile::open(data.path().join("train.bin")).unwrap();
    let entropy = unigram_entropy(&train);
    let vocab_ln = (50257f64).ln();
    let eval = report.last_eval.expect("the last step evaluates");
    eprintln!(
        "{} steps at {:.0} tokens/s: train loss {:.3} (unigram entropy {entropy:.3}, ln V {vocab_ln:.3}); \
         val loss {:.3}, {:.3} bits/byte",
        report.steps,
        report.tokens_per_second,
        report.train_loss,
        eval.loss,
        eval.bpb.unwrap_or(f64::NAN)
    );
    assert!(
        report.train_loss < entropy - 0.5,
        "train loss {} is not clearly below the unigram entropy {entropy}",
        report.train_loss
    );
    assert!(eval.loss < vocab_ln - 3.0, "val loss {}", eval.loss);

    // checkpoint → blob
    let ckpt = Checkpoint::load(&report.checkpoint).unwrap();
    let blob = pack(
        &ckpt,
        PackOptions {
            packing: Packing::X16,
            ..PackOptions::default()
        },
    )
    .unwrap();

    // blob → canister (chunked upload as an operator does) → text
    let mut h = Harness::new();
    h.install(
        walsh_tests::canister_wasm(),
        &Encode!().unwrap(),
        vec![controller()],
        controller(),
    )
    .expect("install");
    let chunk_size = 1 << 20;
    let begin = UploadBegin {
        total_size: blob.len() as u64,
        sha256: serde_bytes::ByteBuf::from(Sha256::digest(&blob).to_vec()),
        chunk_size,
    };
    let r: UploadResult = update(&mut h, "upload_begin", Encode!(&begin).unwrap());
    assert!(matches!(r, UploadResult::Ok(_)), "{r:?}");
    for (i, c) in blob.chunks(chunk_size as usize).enumerate() {
        let req = UploadChunk {
            index: i as u32,
            data: serde_bytes::ByteBuf::from(c.to_vec()),
        };
        let r: UploadResult = update(&mut h, "upload_chunk", Encode!(&req).unwrap());
        assert!(matches!(r, UploadResult::Ok(_)), "{r:?}");
    }
    match update::<CommitResult>(&mut h, "upload_commit", Encode!().unwrap()) {
        CommitResult::Ok(info) => assert_eq!(info.config.name, "tiny"),
        CommitResult::Err(e) => panic!("commit: {e}"),
    }
    let prompt = "Once upon a time";
    let g = match h
        .query(
            Principal::anonymous(),
            "generate",
            &Encode!(&prompt.to_string(), &40u32).unwrap(),
        )
        .expect("generate")
        .decode::<GenerateResult>()
        .unwrap()
    {
        GenerateResult::Ok(g) => g,
        GenerateResult::Err(e) => panic!("generate: {e}"),
    };
    eprintln!("canister: {prompt}{}", g.text);
    assert!(!g.tokens.is_empty());
    assert!(
        g.text.chars().filter(|c| c.is_alphabetic()).count() > 10,
        "{:?}",
        g.text
    );
    assert_eq!(g.tokens, native_tokens(&blob, prompt, 40));
}
