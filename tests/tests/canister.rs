//! The real canister wasm in the IC emulation harness (`walsh_ic_harness`): install, generate,
//! chunked uploads, refused commits, upgrades, the instruction budget and bad inputs.

use candid::{Encode, Principal};
use sha2::{Digest, Sha256};
use walsh_engine::{Engine, SamplingParams};
use walsh_ic_harness::{CallError, Harness};
use walsh_interface::*;
use walsh_spec::PackOptions;
use walsh_tests::fixtures::{controller, native_tokens, random_blob as blob, stranger};
use walsh_tests::root;

fn wasm() -> &'static [u8] {
    walsh_tests::canister_wasm()
}

fn installed() -> Harness {
    let mut h = Harness::new();
    h.install(
        wasm(),
        &Encode!().unwrap(),
        vec![controller()],
        controller(),
    )
    .expect("install");
    h
}

fn generate(h: &mut Harness, prompt: &str, max: u32) -> (GenerateResult, u64) {
    let r = h
        .query(
            Principal::anonymous(),
            "generate",
            &Encode!(&prompt.to_string(), &max).unwrap(),
        )
        .expect("generate never traps");
    (
        r.decode::<GenerateResult>().expect("GenerateResult"),
        r.instructions,
    )
}

fn generate_with(h: &mut Harness, req: GenerateRequest) -> GenerateResult {
    h.query(
        Principal::anonymous(),
        "generate_with",
        &Encode!(&req).unwrap(),
    )
    .expect("generate_with never traps")
    .decode::<GenerateResult>()
    .expect("GenerateResult")
}

fn ok(r: GenerateResult) -> Generation {
    match r {
        GenerateResult::Ok(g) => g,
        GenerateResult::Err(e) => panic!("generate failed: {e}"),
    }
}

fn err(r: GenerateResult) -> String {
    match r {
        GenerateResult::Ok(g) => panic!("expected an error, got {g:?}"),
        GenerateResult::Err(e) => e,
    }
}

fn model_info(h: &mut Harness) -> ModelInfo {
    match h
        .query(Principal::anonymous(), "model_info", &Encode!().unwrap())
        .unwrap()
        .decode::<ModelInfoResult>()
        .unwrap()
    {
        ModelInfoResult::Ok(i) => i,
        ModelInfoResult::Err(e) => panic!("model_info: {e}"),
    }
}

fn update<T: candid::CandidType + for<'de> candid::Deserialize<'de>>(
    h: &mut Harness,
    caller: Principal,
    method: &str,
    arg: Vec<u8>,
) -> Result<T, CallError> {
    h.update(caller, method, &arg)
        .map(|r| r.decode::<T>().expect("decodes"))
}

fn begin(h: &mut Harness, bytes_len: usize, sha: Vec<u8>, chunk: u32) -> UploadResult {
    let req = UploadBegin {
        total_size: bytes_len as u64,
        sha256: serde_bytes::ByteBuf::from(sha),
        chunk_size: chunk,
    };
    update(h, controller(), "upload_begin", Encode!(&req).unwrap()).unwrap()
}

fn chunk(h: &mut Harness, index: u32, data: &[u8]) -> UploadResult {
    let req = UploadChunk {
        index,
        data: serde_bytes::ByteBuf::from(data.to_vec()),
    };
    update(h, controller(), "upload_chunk", Encode!(&req).unwrap()).unwrap()
}

fn commit(h: &mut Harness) -> CommitResult {
    update(h, controller(), "upload_commit", Encode!().unwrap()).unwrap()
}

/// Uploads `bytes` in chunks sent in reverse order, with chunk 0 sent twice; returns the commit.
fn upload(h: &mut Harness, bytes: &[u8], chunk_size: u32) -> CommitResult {
    let sha = Sha256::digest(bytes).to_vec();
    assert!(matches!(
        begin(h, bytes.len(), sha, chunk_size),
        UploadResult::Ok(_)
    ));
    let chunks: Vec<&[u8]> = bytes.chunks(chunk_size as usize).collect();
    for (i, c) in chunks.iter().enumerate().rev() {
        assert!(matches!(chunk(h, i as u32, c), UploadResult::Ok(_)));
    }
    assert!(matches!(chunk(h, 0, chunks[0]), UploadResult::Ok(_)));
    commit(h)
}

#[test]
fn embedded_model_generates_like_the_native_engine() {
    let mut h = installed();
    let info = model_info(&mut h);
    assert!(matches!(info.source, ModelSource::Embedded));
    assert_eq!(info.config.name, "tinystories-hadamard-hash");
    let (r, instructions) = generate(&mut h, "Once upon a time", 100);
    let g = ok(r);
    assert_eq!(g.prompt_tokens, 4);
    assert!(matches!(
        g.finish_reason,
        FinishReason::Length | FinishReason::Eos
    ));
    assert!(g.instructions > 0 && g.instructions <= instructions);
    // The wasm engine computes the same tokens as the native one.
    let default = std::fs::read(root().join("models/walsh-default.walsh")).unwrap();
    assert_eq!(g.tokens, native_tokens(&default, "Once upon a time", 100));
    eprintln!(
        "generate(\"Once upon a time\", 100) on the default model: {} tokens in ONE query, {} instructions ({} per token), finish {:?}",
        g.generated_tokens,
        instructions,
        instructions / u64::from(g.generated_tokens.max(1)),
        g.finish_reason
    );
}

#[test]
fn upload_out_of_order_with_duplicates_then_upgrade() {
    let mut h = installed();
    let tiny = blob("tiny.toml", &[], 5, PackOptions::default());
    // Status before anything: no upload.
    let none: Option<UploadStatus> = h
        .query(controller(), "upload_status", &Encode!().unwrap())
        .unwrap()
        .decode()
        .unwrap();
    assert!(none.is_none());
    let sha = Sha256::digest(&tiny).to_vec();
    let chunk_size = 256 * 1024;
    assert!(matches!(
        begin(&mut h, tiny.len(), sha, chunk_size),
        UploadResult::Ok(_)
    ));
    let chunks: Vec<&[u8]> = tiny.chunks(chunk_size as usize).collect();
    let n = chunks.len() as u32;
    // Send all but chunk 1, in reverse, chunk 3 twice; status says what is missing.
    for i in (0..n).rev().filter(|&i| i != 1) {
        assert!(matches!(
            chunk(&mut h, i, chunks[i as usize]),
            UploadResult::Ok(_)
        ));
    }
    assert!(matches!(chunk(&mut h, 3, chunks[3]), UploadResult::Ok(_)));
    let status: Option<UploadStatus> = h
        .query(controller(), "upload_status", &Encode!().unwrap())
        .unwrap()
        .decode()
        .unwrap();
    let status = status.expect("upload in progress");
    assert_eq!(status.missing, vec![1]);
    assert_eq!(status.received, n - 1);
    // Committing now is refused, and the embedded model still answers.
    match commit(&mut h) {
        CommitResult::Err(e) => {
            assert!(e.contains("missing") && e.contains("still serving"), "{e}")
        }
        CommitResult::Ok(_) => panic!("incomplete upload committed"),
    }
    assert!(matches!(model_info(&mut h).source, ModelSource::Embedded));
    assert!(matches!(chunk(&mut h, 1, chunks[1]), UploadResult::Ok(_)));
    let info = match commit(&mut h) {
        CommitResult::Ok(i) => i,
        CommitResult::Err(e) => panic!("commit: {e}"),
    };
    assert_eq!(info.config.name, "tiny");
    assert!(matches!(info.source, ModelSource::Uploaded { by, .. } if by == controller()));
    let want = native_tokens(&tiny, "Once upon a time", 20);
    assert_eq!(ok(generate(&mut h, "Once upon a time", 20).0).tokens, want);

    // An upgrade keeps the uploaded model.
    h.upgrade(wasm(), &Encode!().unwrap(), controller())
        .expect("upgrade");
    let info = model_info(&mut h);
    assert_eq!(info.config.name, "tiny");
    assert!(matches!(info.source, ModelSource::Uploaded { .. }));
    assert_eq!(ok(generate(&mut h, "Once upon a time", 20).0).tokens, want);
}

#[test]
fn refused_commits_keep_the_serving_model() {
    let mut h = installed();
    let tiny = blob("tiny.toml", &[], 6, PackOptions::default());
    // Declared SHA-256 does not match what arrives.
    assert!(matches!(
        begin(&mut h, tiny.len(), vec![7; 32], 1 << 20),
        UploadResult::Ok(_)
    ));
    for (i, c) in tiny.chunks(1 << 20).enumerate() {
        assert!(matches!(chunk(&mut h, i as u32, c), UploadResult::Ok(_)));
    }
    match commit(&mut h) {
        CommitResult::Err(e) => assert!(
            e.contains("SHA-256 mismatch") && e.contains("still serving"),
            "{e}"
        ),
        CommitResult::Ok(_) => panic!("wrong SHA-256 committed"),
    }
    assert!(matches!(model_info(&mut h).source, ModelSource::Embedded));
    ok(generate(&mut h, "Hello", 3).0);

    // A corrupted blob, sent with the SHA-256 of its corrupted bytes: the reader refuses it.
    let mut bad = tiny.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x40;
    match upload(&mut h, &bad, 1 << 20) {
        CommitResult::Err(e) => assert!(
            e.contains("invalid blob") && e.contains("still serving"),
            "{e}"
        ),
        CommitResult::Ok(_) => panic!("corrupted blob committed"),
    }
    assert!(matches!(model_info(&mut h).source, ModelSource::Embedded));
    ok(generate(&mut h, "Hello", 3).0);

    // Abort drops the upload; a chunk after that is refused.
    let r: AbortResult = update(&mut h, controller(), "upload_abort", Encode!().unwrap()).unwrap();
    assert!(matches!(r, AbortResult::Ok));
    match chunk(&mut h, 0, &tiny[..1024]) {
        UploadResult::Err(e) => assert!(e.contains("upload_begin"), "{e}"),
        UploadResult::Ok(_) => panic!("chunk without upload accepted"),
    }
}

#[test]
fn non_controllers_cannot_upload() {
    let mut h = installed();
    let req = UploadBegin {
        total_size: 4096,
        sha256: serde_bytes::ByteBuf::from(vec![0; 32]),
        chunk_size: 1024,
    };
    for method in ["upload_begin", "upload_commit", "upload_abort"] {
        let arg = if method == "upload_begin" {
            Encode!(&req).unwrap()
        } else {
            Encode!().unwrap()
        };
        match h.update(stranger(), method, &arg) {
            Err(CallError::InspectRejected(e)) => assert!(e.contains("not a controller"), "{e}"),
            other => panic!("{method} by a stranger: {other:?}"),
        }
    }
    assert!(matches!(model_info(&mut h).source, ModelSource::Embedded));
}

#[test]
fn bad_inputs_get_clear_answers() {
    let mut h = installed();
    // Empty prompt: a new story from the start token.
    let g = ok(generate(&mut h, "", 5).0);
    assert_eq!(g.prompt_tokens, 0);
    // Zero tokens.
    let g = ok(generate(&mut h, "Once", 0).0);
    assert_eq!(
        (g.generated_tokens, g.finish_reason),
        (0, FinishReason::Length)
    );
    // Over-long prompt: refused with both numbers.
    let e = err(generate(&mut h, &"word ".repeat(300), 10).0);
    assert!(
        e.contains("prompt is 301 tokens") && e.contains("255"),
        "{e}"
    );
    // Prompt far beyond any context: refused before tokenizing.
    let e = err(generate(&mut h, &"x".repeat(100_000), 10).0);
    assert!(e.contains("100000 bytes"), "{e}");
    // Bad sampling parameters.
    let e = err(generate_with(
        &mut h,
        GenerateRequest {
            prompt: "Hi".into(),
            max_tokens: 5,
            temperature: Some(-1.0),
            top_k: None,
            top_p: None,
            seed: None,
            stop: None,
        },
    ));
    assert!(e.contains("temperature"), "{e}");
    // Bad upload requests.
    match begin(&mut h, 10, vec![0; 32], 3_000_000) {
        UploadResult::Err(e) => assert!(e.contains("chunk_size"), "{e}"),
        UploadResult::Ok(_) => panic!("oversized chunk size accepted"),
    }
    match begin(&mut h, 10, vec![0; 5], 1024) {
        UploadResult::Err(e) => assert!(e.contains("sha256"), "{e}"),
        UploadResult::Ok(_) => panic!("short sha accepted"),
    }
}

#[test]
fn sampling_and_stop_strings() {
    let mut h = installed();
    let req = |stop: Option<Vec<String>>| GenerateRequest {
        prompt: "Once upon a time".into(),
        max_tokens: 30,
        temperature: Some(0.9),
        top_k: Some(40),
        top_p: Some(0.95),
        seed: Some(11),
        stop,
    };
    let a = ok(generate_with(&mut h, req(None)));
    let b = ok(generate_with(&mut h, req(None)));
    assert_eq!(a.tokens, b.tokens, "same seed, same tokens");
    // Same as the native engine with the same parameters.
    let default = std::fs::read(root().join("models/walsh-default.walsh")).unwrap();
    let engine = Engine::load(&default).unwrap();
    let params = SamplingParams {
        temperature: 0.9,
        top_k: 40,
        top_p: 0.95,
        seed: 11,
    };
    let native = engine
        .generate("Once upon a time", 30, params, &[], |_| true)
        .unwrap();
    assert_eq!(a.tokens, native.tokens);
    // A stop string taken from the middle of that text ends generation there.
    if a.text.chars().count() > 4 {
        let piece: String = a
            .text
            .chars()
            .skip(a.text.chars().count() / 2)
            .take(2)
            .collect();
        let s = ok(generate_with(&mut h, req(Some(vec![piece.clone()]))));
        assert_eq!(s.finish_reason, FinishReason::Stop);
        assert!(
            !s.text.contains(&piece) && a.text.starts_with(&s.text),
            "{:?} / {:?}",
            s.text,
            a.text
        );
    }
}

#[test]
fn budget_ends_generation_cleanly() {
    let mut h = installed();
    // The default config with a 2048-token context: far more tokens than fit one query.
    let long = blob(
        "tinystories-hadamard-hash.toml",
        &["block_size=2048"],
        8,
        PackOptions {
            embeddings: walsh_spec::blob::DType::Int8,
            ..PackOptions::default()
        },
    );
    assert!(matches!(
        upload(&mut h, &long, 1_900_000),
        CommitResult::Ok(_)
    ));
    let (r, instructions) = generate(&mut h, "Once upon a time", 2000);
    let g = ok(r);
    assert_eq!(
        g.finish_reason,
        FinishReason::Budget,
        "{} tokens",
        g.generated_tokens
    );
    assert!(instructions < 5_000_000_000);
    eprintln!(
        "budget: {} tokens fit one query ({} instructions of 5e9)",
        g.generated_tokens, instructions
    );
    // A prompt that fills most of the context stops in the prefill, still without a trap.
    let prompt = "word ".repeat(1500);
    let g = ok(generate(&mut h, &prompt, 10).0);
    assert!(matches!(
        g.finish_reason,
        FinishReason::Budget | FinishReason::Length
    ));
}

/// The canister's figures of merit for docs/BENCHMARKS.md, for the seed's three configs with
/// random weights (uploads of up to 52 MB: minutes, so not part of the default run):
/// `cargo test --release -p walsh-tests --test canister -- --ignored --nocapture figures`
#[test]
#[ignore]
fn figures() {
    let wasm = wasm();
    eprintln!(
        "canister wasm: {} bytes (raw cargo output, embedded model included)",
        wasm.len()
    );
    for (config, embeddings) in [
        (
            "tinystories-hadamard-hash.toml",
            walsh_spec::blob::DType::Int8,
        ),
        ("tinystories-hadamard.toml", walsh_spec::blob::DType::F16),
        ("tinystories-octonion.toml", walsh_spec::blob::DType::F16),
    ] {
        let mut h = Harness::new();
        let install = h
            .install(wasm, &Encode!().unwrap(), vec![controller()], controller())
            .expect("install");
        let bytes = blob(
            config,
            &[],
            1,
            PackOptions {
                embeddings,
                ..PackOptions::default()
            },
        );
        let sha = Sha256::digest(&bytes).to_vec();
        assert!(matches!(
            begin(&mut h, bytes.len(), sha, 1_900_000),
            UploadResult::Ok(_)
        ));
        let mut upload_instructions = 0;
        for (i, c) in bytes.chunks(1_900_000).enumerate() {
            let req = UploadChunk {
                index: i as u32,
                data: serde_bytes::ByteBuf::from(c.to_vec()),
            };
            let r = h
                .update(controller(), "upload_chunk", &Encode!(&req).unwrap())
                .unwrap();
            upload_instructions += r.instructions;
        }
        let c = h
            .update(controller(), "upload_commit", &Encode!().unwrap())
            .unwrap();
        assert!(matches!(
            c.decode::<CommitResult>().unwrap(),
            CommitResult::Ok(_)
        ));
        let prefill = generate(&mut h, "Once upon a time", 0).1;
        let (r, total) = generate(&mut h, "Once upon a time", 100);
        let g = ok(r);
        let per_token = (total - prefill) / u64::from(g.generated_tokens.max(1));
        let (r, total200) = generate(&mut h, "Once upon a time", 200);
        let g200 = ok(r);
        let per_token_200 = (total200 - prefill) / u64::from(g200.generated_tokens.max(1));
        let (r, _) = generate(&mut h, "Once upon a time", 255);
        let most = ok(r);
        // One machine-readable line per model (per token averaged over a 200-token generation).
        println!(
            "FIGURES {{\"config\": \"{}\", \"instructions_per_token\": {}, \"tokens_in_one_query\": {}, \"prefill_instructions\": {}, \"heap_bytes\": {}}}",
            config.trim_end_matches(".toml"),
            per_token_200,
            most.generated_tokens,
            prefill,
            c.heap_bytes
        );
        // Sampled (temperature 0.8, top-k 40): what the sampler adds per token.
        let sampled = GenerateRequest {
            prompt: "Once upon a time".into(),
            max_tokens: 100,
            temperature: Some(0.8),
            top_k: Some(40),
            top_p: None,
            seed: Some(7),
            stop: None,
        };
        let s = h
            .query(
                Principal::anonymous(),
                "generate_with",
                &Encode!(&sampled).unwrap(),
            )
            .unwrap();
        let sampled_total = s.instructions;
        let sg = ok(s.decode::<GenerateResult>().unwrap());
        eprintln!(
            "{config}: sampled (t 0.8, top-k 40): {} tokens, {} instructions, {} per token",
            sg.generated_tokens,
            sampled_total,
            (sampled_total - prefill) / u64::from(sg.generated_tokens.max(1))
        );
        eprintln!(
            "{config}: blob {} B in {} chunks ({} instructions for chunks, {} for commit); heap {} B after commit (install {} instructions, heap {} B); \
prefill of 5 positions {} instructions; generate 100: {} tokens, {} instructions, {} per token, finish {:?}; \
max in one query: {} tokens (finish {:?}, {} instructions)",
            bytes.len(),
            bytes.len().div_ceil(1_900_000),
            upload_instructions,
            c.instructions,
            c.heap_bytes,
            install.instructions,
            install.heap_bytes,
            prefill,
            g.generated_tokens,
            total,
            per_token,
            g.finish_reason,
            most.generated_tokens,
            most.finish_reason,
            most.instructions
        );
    }
}
