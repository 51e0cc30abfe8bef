//! The real canister wasm in the IC emulation harness (`walsh_ic_harness`): install, generate,
//! chunked uploads, refused commits, upgrades, the instruction budget and bad inputs.

use candid::{Encode, Principal};
use sha2::{Digest, Sha256};
use walsh_engine::{Engine, SamplingParams};
use walsh_ic_harness::{CallError, CallReport, Harness};
use walsh_interface::*;
use walsh_spec::PackOptions;
use walsh_tests::fixtures::{
    controller, native_tokens, native_tokens_with, random_blob as blob, stranger,
};
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

fn err(r: GenerateResult) -> GenerateError {
    match r {
        GenerateResult::Ok(g) => panic!("expected an error, got {g:?}"),
        GenerateResult::Err(e) => e,
    }
}

fn upload_status(h: &mut Harness, caller: Principal) -> UploadStatusResult {
    h.query(caller, "upload_status", &Encode!().unwrap())
        .unwrap()
        .decode()
        .unwrap()
}

fn status_now(h: &mut Harness) -> Option<UploadStatus> {
    match upload_status(h, controller()) {
        UploadStatusResult::Ok(s) => s,
        UploadStatusResult::Err(e) => panic!("upload_status: {e}"),
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
    assert_eq!(info.config.name, "bpe4k-octonion-14x288");
    let (r, instructions) = generate(&mut h, "Once upon a time", 100);
    let g = ok(r);
    assert_eq!(g.prompt_tokens, 4);
    // The default model writes all 100 tokens in one query (the IC's limit is 5e9 instructions).
    assert_eq!(g.finish_reason, FinishReason::Length);
    assert_eq!(g.generated_tokens, 100);
    assert!(g.instructions > 0 && g.instructions <= instructions);
    assert!(instructions < 5_000_000_000);
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
    assert!(status_now(&mut h).is_none());
    let sha = Sha256::digest(&tiny).to_vec();
    // Small chunks: the blob (compact tokenizer since format 2) must still make at least 4.
    let chunk_size = 64 * 1024;
    assert!(matches!(
        begin(&mut h, tiny.len(), sha, chunk_size),
        UploadResult::Ok(_)
    ));
    let chunks: Vec<&[u8]> = tiny.chunks(chunk_size as usize).collect();
    let n = chunks.len() as u32;
    assert!(
        n >= 4,
        "the tiny blob makes only {n} chunks of {chunk_size} bytes"
    );
    // Send all but chunk 1, in reverse, chunk 3 twice; status says what is missing.
    for i in (0..n).rev().filter(|&i| i != 1) {
        assert!(matches!(
            chunk(&mut h, i, chunks[i as usize]),
            UploadResult::Ok(_)
        ));
    }
    assert!(matches!(chunk(&mut h, 3, chunks[3]), UploadResult::Ok(_)));
    let status = status_now(&mut h).expect("upload in progress");
    assert_eq!(status.missing, vec![ChunkRange { start: 1, end: 2 }]);
    // Only chunk 0 could be hashed so far (chunk 1 is missing).
    assert_eq!(status.hashed_bytes, u64::from(chunk_size));
    assert_eq!(status.received, n - 1);
    // Committing now is refused, and the embedded model still answers.
    match commit(&mut h) {
        CommitResult::Err(e) => assert!(
            matches!(
                e,
                UploadError::Incomplete {
                    missing: 1,
                    first: 1,
                    ..
                }
            ),
            "{e}"
        ),
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
            matches!(&e, UploadError::ShaMismatch { declared, .. } if declared == &"07".repeat(32))
                && e.to_string().contains("still serving"),
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
            matches!(&e, UploadError::InvalidBlob(m) if m.contains("invalid blob"))
                && e.to_string().contains("still serving"),
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
        UploadResult::Err(e) => assert_eq!(e, UploadError::NoUpload),
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
        matches!(
            e,
            GenerateError::PromptTooLong {
                tokens: 302,
                max_context: 255,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("prompt is 302 tokens"), "{e}");
    // Prompt far beyond any context: refused before tokenizing.
    let e = err(generate(&mut h, &"x".repeat(100_000), 10).0);
    assert!(
        matches!(e, GenerateError::PromptTooManyBytes { bytes: 100_000, .. }),
        "{e}"
    );
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
            repeat_penalty: None,
            repeat_last_n: None,
        },
    ));
    assert!(
        matches!(&e, GenerateError::InvalidSampling(m) if m.contains("temperature")),
        "{e}"
    );
    let e = err(generate_with(
        &mut h,
        GenerateRequest {
            prompt: "Hi".into(),
            max_tokens: 5,
            temperature: None,
            top_k: None,
            top_p: None,
            seed: None,
            stop: None,
            repeat_penalty: Some(0.0),
            repeat_last_n: None,
        },
    ));
    assert!(
        matches!(&e, GenerateError::InvalidSampling(m) if m.contains("repeat_penalty")),
        "{e}"
    );
    // Bad upload requests.
    match begin(&mut h, 10, vec![0; 32], 3_000_000) {
        UploadResult::Err(e) => assert_eq!(e, UploadError::BadChunkSize(3_000_000)),
        UploadResult::Ok(_) => panic!("oversized chunk size accepted"),
    }
    match begin(&mut h, 10, vec![0; 5], 1024) {
        UploadResult::Err(e) => assert_eq!(e, UploadError::BadSha(5)),
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
        repeat_penalty: Some(1.3),
        repeat_last_n: Some(32),
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
        repeat_penalty: 1.3,
        repeat_last_n: 32,
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
    // A prompt that fills most of the context fits the context but not one query: refused up
    // front (it used to stop in the prefill with no token, the query's instructions spent).
    let prompt = "word ".repeat(1500);
    let e = err(generate(&mut h, &prompt, 10).0);
    assert!(
        matches!(e, GenerateError::PromptTooLong { tokens: 1501, max_context: 2047, max_query, .. } if max_query < 1501),
        "{e}"
    );
}

/// A canister with a model uploaded, and what the install, the upload and the commit cost.
struct Uploaded {
    h: Harness,
    install: CallReport,
    blob_len: usize,
    chunk_instructions: u64,
    commit: CallReport,
}

/// The models of `figures` and `profile`: the shipped default (the committed blob, uploaded like
/// any other) and the seed's three configs with random weights, by name.
fn figure_models() -> Vec<(String, Vec<u8>)> {
    let default = std::fs::read(root().join("models/walsh-default.walsh")).unwrap();
    let mut out = vec![("walsh-default".to_string(), default)];
    for (config, embeddings) in [
        (
            "tinystories-hadamard-hash.toml",
            walsh_spec::blob::DType::Int8,
        ),
        ("tinystories-hadamard.toml", walsh_spec::blob::DType::F16),
        ("tinystories-octonion.toml", walsh_spec::blob::DType::F16),
    ] {
        let bytes = blob(
            config,
            &[],
            1,
            PackOptions {
                embeddings,
                ..PackOptions::default()
            },
        );
        out.push((config.trim_end_matches(".toml").to_string(), bytes));
    }
    out
}

/// Installs `wasm` and uploads `bytes` (a blob) in chunks of 1.9 MB.
fn with_blob(wasm: &[u8], bytes: &[u8]) -> Uploaded {
    with_blob_on(Harness::new(), wasm, bytes)
}

/// [`with_blob`] on a given harness (one set to profile, say).
fn with_blob_on(mut h: Harness, wasm: &[u8], bytes: &[u8]) -> Uploaded {
    let install = h
        .install(wasm, &Encode!().unwrap(), vec![controller()], controller())
        .expect("install");
    let sha = Sha256::digest(bytes).to_vec();
    assert!(matches!(
        begin(&mut h, bytes.len(), sha, 1_900_000),
        UploadResult::Ok(_)
    ));
    let mut chunk_instructions = 0;
    for (i, c) in bytes.chunks(1_900_000).enumerate() {
        let req = UploadChunk {
            index: i as u32,
            data: serde_bytes::ByteBuf::from(c.to_vec()),
        };
        let r = h
            .update(controller(), "upload_chunk", &Encode!(&req).unwrap())
            .unwrap();
        chunk_instructions += r.instructions;
    }
    let commit = h
        .update(controller(), "upload_commit", &Encode!().unwrap())
        .unwrap();
    assert!(matches!(
        commit.decode::<CommitResult>().unwrap(),
        CommitResult::Ok(_)
    ));
    Uploaded {
        h,
        install,
        blob_len: bytes.len(),
        chunk_instructions,
        commit,
    }
}

/// The canister's figures for trained blobs (docs/BENCHMARKS.md "Blob formats"): each blob of
/// `WALSH_BLOBS` (paths separated by spaces, relative to the repository root; the committed
/// default when unset) uploaded, committed
/// and asked for `generate("Once upon a time", 200)` (instructions per token averaged over the
/// generated tokens, less the 0-token call):
/// `WALSH_BLOBS="a.walsh b.walsh" cargo test --release -p walsh-tests --test integration -- --ignored --nocapture blob_figures`
#[test]
#[ignore]
fn blob_figures() {
    let paths: Vec<std::path::PathBuf> = match std::env::var("WALSH_BLOBS") {
        // Relative paths are the repository root's (cargo runs tests in tests/).
        Ok(list) => list.split_whitespace().map(|p| root().join(p)).collect(),
        Err(_) => vec![root().join("models/walsh-default.walsh")],
    };
    for path in paths {
        let bytes =
            std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let Uploaded {
            mut h,
            chunk_instructions,
            commit,
            ..
        } = with_blob(wasm(), &bytes);
        let prefill = generate(&mut h, "Once upon a time", 0).1;
        let (r, total) = generate(&mut h, "Once upon a time", 200);
        let g = ok(r);
        let (r, _) = generate(&mut h, "Once upon a time", 100);
        let hundred = ok(r);
        println!(
            "BLOB_FIGURES {{\"blob\": \"{}\", \"bytes\": {}, \"chunk_instructions\": {}, \"commit_instructions\": {}, \"heap_bytes_after_commit\": {}, \"prefill_instructions\": {}, \"instructions_per_token\": {}, \"tokens_of_200\": {}, \"tokens_of_100\": {}}}",
            path.display(),
            bytes.len(),
            chunk_instructions,
            commit.instructions,
            commit.heap_bytes,
            prefill,
            (total - prefill) / u64::from(g.generated_tokens.max(1)),
            g.generated_tokens,
            hundred.generated_tokens,
        );
    }
}

/// Where a generated token's instructions go, per engine phase, for the figures' models:
/// the canister built with its `profile` feature, `generate("Once upon a time", 200)` less a
/// 0-token call, divided by the tokens generated:
/// `cargo test --release -p walsh-tests --test integration -- --ignored --nocapture profile`
#[test]
#[ignore]
fn profile() {
    let wasm = walsh_tests::canister_wasm_profile();
    for (config, bytes) in figure_models() {
        let mut h = with_blob(wasm, &bytes).h;
        let mut run = |n: u32| -> Vec<(String, u64)> {
            let r = h
                .query(
                    Principal::anonymous(),
                    "profile",
                    &Encode!(&"Once upon a time", &n).unwrap(),
                )
                .expect("profile query");
            r.decode::<Vec<(String, u64)>>().expect("decode")
        };
        let (base, long) = (run(0), run(200));
        let tokens = long
            .iter()
            .find(|(k, _)| k == "tokens")
            .map_or(1, |(_, v)| (*v).max(1));
        println!("{config}: per generated token, averaged over {tokens} tokens");
        for ((name, a), (_, b)) in base.iter().zip(&long) {
            if name != "tokens" {
                println!("  {name:<16} {:>12}", (b - a) / tokens);
            }
        }
    }
}

/// Where a generated token's instructions go, per wasm function, for the figures' models: the
/// deployed wasm in a harness that counts each function's own instructions (callees not
/// included; functions the compiler inlined are counted in their caller), over
/// `generate("Once upon a time", 200)` less a 0-token call, per generated token; the largest 30.
/// `WALSH_PROFILE_MODELS` (names, separated by spaces) picks among walsh-default,
/// tinystories-hadamard-hash, tinystories-hadamard and tinystories-octonion:
/// `cargo test -p walsh-tests --test integration -- --ignored --nocapture function_profile`
#[test]
#[ignore]
fn function_profile() {
    let wanted = std::env::var("WALSH_PROFILE_MODELS").ok();
    for (config, bytes) in figure_models() {
        if let Some(w) = &wanted
            && !w.split_whitespace().any(|n| n == config)
        {
            continue;
        }
        let mut h = Harness::new();
        h.set_function_profile(true);
        let mut h = with_blob_on(h, wasm(), &bytes).h;
        h.take_function_profile();
        let (r, _) = generate(&mut h, "Once upon a time", 0);
        ok(r);
        let base = h.take_function_profile();
        let (r, total) = generate(&mut h, "Once upon a time", 200);
        let tokens = u64::from(ok(r).generated_tokens.max(1));
        let long = h.take_function_profile();
        let before = |name: &str| base.iter().find(|(n, _)| n == name).map_or(0, |(_, c)| *c);
        let mut rows: Vec<(u64, &str)> = long
            .iter()
            .map(|(n, c)| (c.saturating_sub(before(n)) / tokens, n.as_str()))
            .collect();
        rows.sort_by(|a, b| b.cmp(a));
        let all: u64 = rows.iter().map(|r| r.0).sum();
        println!(
            "{config}: per generated token over {tokens} tokens ({total} instructions in the call); functions' own instructions, {all} in all"
        );
        for (per_token, name) in rows.iter().take(30) {
            // Rust's symbols with their hash, which tells apart the instances of a generic
            // function (`tile` of each tile size).
            println!("  {per_token:>10}  {}", rustc_demangle::demangle(name));
        }
    }
}

/// The canister's figures of merit for docs/BENCHMARKS.md, for the shipped default model and the
/// seed's three configs with random weights (uploads of up to 52 MB: minutes, so not part of the
/// default run):
/// `cargo test --release -p walsh-tests --test integration -- --ignored --nocapture figures`
#[test]
#[ignore]
fn figures() {
    let wasm = wasm();
    eprintln!(
        "canister wasm: {} bytes (raw cargo output, embedded model included)",
        wasm.len()
    );
    for (config, bytes) in figure_models() {
        let Uploaded {
            mut h,
            install,
            blob_len,
            chunk_instructions: upload_instructions,
            commit: c,
        } = with_blob(wasm, &bytes);
        let prefill = generate(&mut h, "Once upon a time", 0).1;
        let (r, total) = generate(&mut h, "Once upon a time", 100);
        let g = ok(r);
        let per_token = (total - prefill) / u64::from(g.generated_tokens.max(1));
        let (r, total200) = generate(&mut h, "Once upon a time", 200);
        let g200 = ok(r);
        // The wasm engine and the native one write the same tokens (every algebra, every size).
        assert_eq!(
            g200.tokens,
            native_tokens(&bytes, "Once upon a time", g200.tokens.len()),
            "{config}"
        );
        let per_token_200 = (total200 - prefill) / u64::from(g200.generated_tokens.max(1));
        let (r, _) = generate(&mut h, "Once upon a time", 255);
        let most = ok(r);
        // One machine-readable line per model (per token averaged over a 200-token generation).
        println!(
            "FIGURES {{\"config\": \"{}\", \"instructions_per_token\": {}, \"tokens_in_one_query\": {}, \"prefill_instructions\": {}, \"heap_bytes\": {}}}",
            config, per_token_200, most.generated_tokens, prefill, c.heap_bytes
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
            repeat_penalty: None,
            repeat_last_n: None,
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
        // The sampler's wasm paths (the SIMD top-k pass) draw what the native one draws.
        let params = SamplingParams {
            temperature: 0.8,
            top_k: 40,
            seed: 7,
            repeat_penalty: 1.0,
            ..SamplingParams::default()
        };
        assert_eq!(
            sg.tokens,
            native_tokens_with(&bytes, "Once upon a time", sg.tokens.len(), params),
            "{config}, sampled"
        );
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
            blob_len,
            blob_len.div_ceil(1_900_000),
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

/// Every argument is bounded before work proportional to it is done: a stop list of 300,000
/// one-byte strings (a 600 KB argument) once ran the query past its 5e9 instructions; now it is
/// refused at once, as are 17 strings or one of 65 bytes, while 16 of 64 bytes work.
#[test]
fn stop_lists_are_bounded() {
    let mut h = installed();
    let req = |stop: Vec<String>| GenerateRequest {
        prompt: "Once upon a time".into(),
        max_tokens: 20,
        temperature: None,
        top_k: None,
        top_p: None,
        seed: None,
        stop: Some(stop),
        repeat_penalty: None,
        repeat_last_n: None,
    };
    let huge: Vec<String> = (0..300_000)
        .map(|i| ((b'a' + (i % 26) as u8) as char).to_string())
        .collect();
    let arg = Encode!(&req(huge)).unwrap();
    assert!(arg.len() > 500_000, "{}", arg.len());
    let r = h
        .query(Principal::anonymous(), "generate_with", &arg)
        .expect("never traps");
    let e = err(r.decode::<GenerateResult>().unwrap());
    assert_eq!(
        e,
        GenerateError::TooManyStops {
            count: 300_000,
            max: MAX_STOP_STRINGS as u32
        }
    );
    eprintln!(
        "300,000 stop strings ({} bytes): refused in {} instructions",
        arg.len(),
        r.instructions
    );
    assert!(r.instructions < 1_000_000_000, "{}", r.instructions);
    let e = err(generate_with(
        &mut h,
        req(vec!["x".into(); MAX_STOP_STRINGS + 1]),
    ));
    assert!(
        matches!(e, GenerateError::TooManyStops { count: 17, .. }),
        "{e}"
    );
    let mut long = vec!["x".to_string(); 3];
    long[2] = "y".repeat(MAX_STOP_BYTES + 1);
    let e = err(generate_with(&mut h, req(long)));
    assert!(
        matches!(
            e,
            GenerateError::StopTooLong {
                index: 2,
                bytes: 65,
                max: 64
            }
        ),
        "{e}"
    );
    let most: Vec<String> = (0..MAX_STOP_STRINGS).map(|i| format!("{i:0>64}")).collect();
    let g = ok(generate_with(&mut h, req(most)));
    assert_eq!(g.generated_tokens, 20);
}

/// A prompt whose prefill and first step do not fit in one query's instructions is refused up
/// front, naming the limit (it once spent 4.4e9 instructions to answer 0 tokens with finish
/// reason `budget`); the longest prompt accepted gets at least one new token. The default model
/// now prefills its whole context in one query, so this runs on a deeper one (the hash config
/// with 32 layers, random weights; 24 fit since the kernels of 2026-12-03) whose context does not
/// fit.
#[test]
fn prompts_no_query_can_answer_are_refused_up_front() {
    let mut h = installed();
    let deep = blob(
        "tinystories-hadamard-hash.toml",
        &["n_layer=32"],
        11,
        PackOptions::default(),
    );
    assert!(matches!(
        upload(&mut h, &deep, 1_900_000),
        CommitResult::Ok(_)
    ));
    let r = h
        .query(
            Principal::anonymous(),
            "generate",
            &Encode!(&"word ".repeat(250), &10u32).unwrap(),
        )
        .expect("never traps");
    let e = err(r.decode().unwrap());
    let GenerateError::PromptTooLong {
        tokens,
        max,
        max_context,
        max_query,
        limit,
    } = e.clone()
    else {
        panic!("{e}")
    };
    eprintln!("{e} (refused in {} instructions)", r.instructions);
    assert_eq!((tokens, max_context, limit), (251, 255, 5_000_000_000));
    assert!(max_query < tokens && max == max_query, "{e}");
    assert!(max_query > 20, "{e}");
    assert!(r.instructions < 500_000_000, "{}", r.instructions);
    assert!(e.to_string().contains("5000000000 instructions"), "{e}");
    // `k` words are k + 1 tokens: the longest accepted prompt answers.
    let words = max_query as usize - 1;
    let g = ok(generate(&mut h, &"word ".repeat(words), 10).0);
    assert_eq!(g.prompt_tokens, max_query);
    assert!(g.generated_tokens >= 1, "{g:?}");
    eprintln!(
        "the longest prompt ({max_query} tokens): {} new tokens, {} instructions, finish {:?}",
        g.generated_tokens, g.instructions, g.finish_reason
    );
    // The limit counts what the call has already spent (tokenizing the prompt), so it moves by a
    // token or so with the prompt's length: a few tokens over it is refused.
    let e = err(generate(&mut h, &"word ".repeat(words + 8), 10).0);
    assert!(matches!(e, GenerateError::PromptTooLong { .. }), "{e}");
}

/// `upload_status` is for controllers, and no query method can be called as an ingress update
/// (a replicated `generate` would burn the canister's cycles).
#[test]
fn access_rules() {
    let mut h = installed();
    match upload_status(&mut h, stranger()) {
        UploadStatusResult::Err(UploadError::NotController { caller }) => {
            assert_eq!(caller, stranger())
        }
        other => panic!("upload_status by a stranger: {other:?}"),
    }
    for caller in [stranger(), controller(), Principal::anonymous()] {
        for (method, arg) in [
            ("generate", Encode!(&"Hi".to_string(), &3u32).unwrap()),
            ("model_info", Encode!().unwrap()),
            ("upload_status", Encode!().unwrap()),
            ("download_chunk", Encode!(&0u64, &10u32).unwrap()),
        ] {
            match h.update(caller, method, &arg) {
                Err(CallError::InspectRejected(e)) => {
                    assert!(e.contains("query method"), "{method}: {e}")
                }
                other => panic!("{method} as an update by {caller}: {other:?}"),
            }
        }
    }
}

/// Replies stay small whatever the request: an upload has at most 4096 chunks (a 1 GiB total in
/// 1 KiB chunks was a begin reply over 2 MiB), and the missing chunks are ranges.
#[test]
fn upload_replies_are_bounded() {
    let mut h = installed();
    let r = h
        .update(
            controller(),
            "upload_begin",
            &Encode!(&UploadBegin {
                total_size: walsh_spec::upload::MAX_BLOB_SIZE,
                sha256: serde_bytes::ByteBuf::from(vec![0; 32]),
                chunk_size: 1024,
            })
            .unwrap(),
        )
        .expect("never traps");
    assert!(r.bytes().unwrap().len() < 1024);
    match r.decode::<UploadResult>().unwrap() {
        UploadResult::Err(UploadError::TooManyChunks { .. }) => {}
        other => panic!("{other:?}"),
    }
    // The most chunks there can be, every other one sent: 2048 ranges in each reply.
    let chunks = walsh_spec::upload::MAX_CHUNKS;
    assert!(matches!(
        begin(&mut h, chunks as usize * 1024, vec![0; 32], 1024),
        UploadResult::Ok(_)
    ));
    let mut last = 0;
    for i in (0..chunks).step_by(2).take(64) {
        let r = h
            .update(
                controller(),
                "upload_chunk",
                &Encode!(&UploadChunk {
                    index: i,
                    data: serde_bytes::ByteBuf::from(vec![1; 1024]),
                })
                .unwrap(),
            )
            .unwrap();
        last = r.bytes().unwrap().len();
    }
    let s = status_now(&mut h).unwrap();
    assert_eq!(s.missing.len(), 64);
    assert_eq!(s.missing[0], ChunkRange { start: 1, end: 2 });
    assert_eq!(
        s.missing[63],
        ChunkRange {
            start: 127,
            end: chunks
        }
    );
    assert!(last < 2048, "{last}");
}

/// Property: no method traps, whatever its (well-typed) arguments: 300 random calls of every
/// method with boundary values (empty and huge prompts, NaN and negative sampling parameters,
/// stop lists at and past their caps, offsets past the blob, chunks out of range or of the wrong
/// length, commits of nothing or of garbage). Only malformed Candid is refused by a trap, in
/// ic-cdk's decoding before any method runs (deploy/README.md).
#[test]
fn no_argument_makes_a_method_trap() {
    let mut h = installed();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let floats = [
        0.0f32,
        -1.0,
        0.5,
        1.0,
        2.0,
        f32::NAN,
        f32::INFINITY,
        1e30,
        -0.0,
    ];
    let texts = [
        String::new(),
        "Once upon a time".to_string(),
        "word ".repeat(400),
        "\u{0}\u{ffff}é😀".repeat(50),
        "x".repeat(9000),
    ];
    for i in 0..300u64 {
        let r = next();
        let caller = if r & 1 == 0 { controller() } else { stranger() };
        let pick = |n: usize, k: u64| ((k >> 8) % n as u64) as usize;
        let (method, arg, query) = match i % 8 {
            0 => (
                "generate",
                Encode!(&texts[pick(texts.len(), r)], &((r >> 20) as u32 % 300)).unwrap(),
                true,
            ),
            1 => {
                let stops: Vec<String> = (0..(r >> 30) % 20)
                    .map(|k| "ab".repeat((k as usize * 7) % 40))
                    .collect();
                let req = GenerateRequest {
                    prompt: texts[pick(texts.len(), r)].clone(),
                    max_tokens: (r >> 12) as u32 % 50,
                    temperature: Some(floats[pick(floats.len(), r >> 3)]),
                    top_k: Some((r >> 40) as u32 % 70_000),
                    top_p: Some(floats[pick(floats.len(), r >> 5)]),
                    seed: Some(r),
                    stop: Some(stops),
                    repeat_penalty: None,
                    repeat_last_n: None,
                };
                ("generate_with", Encode!(&req).unwrap(), true)
            }
            2 => ("model_info", Encode!().unwrap(), true),
            3 => (
                "download_chunk",
                Encode!(
                    &[0u64, 1, 1 << 20, u64::MAX, r][pick(5, r)],
                    &[0u32, 1, 1_900_000, 1_900_001, u32::MAX][pick(5, r >> 4)]
                )
                .unwrap(),
                true,
            ),
            4 => ("upload_status", Encode!().unwrap(), true),
            5 => {
                let req = UploadBegin {
                    total_size: [0u64, 1, 4096, 1 << 28, 1 << 30, u64::MAX][pick(6, r)],
                    sha256: serde_bytes::ByteBuf::from(vec![7; [0, 31, 32, 33][pick(4, r >> 3)]]),
                    chunk_size: [0u32, 1023, 1024, 65_536, 1_900_000, u32::MAX][pick(6, r >> 6)],
                };
                ("upload_begin", Encode!(&req).unwrap(), false)
            }
            6 => {
                let req = UploadChunk {
                    index: [0u32, 1, 3, u32::MAX][pick(4, r)],
                    data: serde_bytes::ByteBuf::from(vec![1; [0, 1, 1024, 4096][pick(4, r >> 3)]]),
                };
                ("upload_chunk", Encode!(&req).unwrap(), false)
            }
            _ => (
                ["upload_commit", "upload_abort"][pick(2, r)],
                Encode!().unwrap(),
                false,
            ),
        };
        let result = if query {
            h.query(caller, method, &arg)
        } else {
            h.update(caller, method, &arg)
        };
        match result {
            Ok(report) => assert!(report.bytes().is_some(), "{method}: {report:?}"),
            // Strangers' update calls are refused by inspect_message, by design.
            Err(CallError::InspectRejected(_)) if caller == stranger() => {}
            Err(e) => panic!("call {i}: {method} by {caller} trapped: {e}"),
        }
    }
    // The canister still serves.
    ok(generate(&mut h, "Once upon a time", 3).0);
}

/// The running hash lives in stable memory: an upgrade in the middle of an upload loses nothing,
/// and the commit after it does not hash again. Malformed Candid (a prompt that is not UTF-8) is
/// refused by ic-cdk's decoding with a trap before the method runs, as deploy/README.md says.
#[test]
fn upgrade_mid_upload_and_malformed_candid() {
    let mut h = installed();
    let tiny = blob("tiny.toml", &[], 9, PackOptions::default());
    let chunk_size = 64 * 1024;
    assert!(matches!(
        begin(
            &mut h,
            tiny.len(),
            Sha256::digest(&tiny).to_vec(),
            chunk_size
        ),
        UploadResult::Ok(_)
    ));
    let chunks: Vec<&[u8]> = tiny.chunks(chunk_size as usize).collect();
    let half = chunks.len() / 2;
    for (i, c) in chunks.iter().enumerate().take(half) {
        assert!(matches!(chunk(&mut h, i as u32, c), UploadResult::Ok(_)));
    }
    h.upgrade(wasm(), &Encode!().unwrap(), controller())
        .expect("upgrade");
    let s = status_now(&mut h).expect("the upload survives the upgrade");
    assert_eq!(s.hashed_bytes, half as u64 * u64::from(chunk_size));
    for (i, c) in chunks.iter().enumerate().skip(half) {
        assert!(matches!(chunk(&mut h, i as u32, c), UploadResult::Ok(_)));
    }
    assert_eq!(status_now(&mut h).unwrap().hashed_bytes, tiny.len() as u64);
    assert!(matches!(commit(&mut h), CommitResult::Ok(_)));

    let mut arg = Encode!(&"abc".to_string(), &3u32).unwrap();
    let at = arg.windows(3).position(|w| w == b"abc").unwrap();
    arg[at] = 0xff;
    match h.query(Principal::anonymous(), "generate", &arg) {
        Err(CallError::Trap(m)) => assert!(m.contains("decode"), "{m}"),
        other => panic!("{other:?}"),
    }
    ok(generate(&mut h, "Once upon a time", 3).0);
}

/// Format 2 in the canister: the default model repacked (compact tokenizer, 1.6-bit ternary,
/// rotated int4 hash tables, f16 floats) commits and generates what the native engine generates
/// from it. Prints each commit's instructions (upload's parse and load: docs/BENCHMARKS.md,
/// "Blob formats").
#[test]
fn repacked_default_model_commits_and_generates_like_the_native_engine() {
    use walsh_spec::blob::DType;
    let default = std::fs::read(root().join("models/walsh-default.walsh")).unwrap();
    let parsed = walsh_spec::blob::parse(&default).unwrap();
    let repacked = walsh_spec::pack::repack(
        &parsed,
        walsh_spec::Packing::X5,
        Some(DType::Int4Rot),
        Some(DType::F16),
    )
    .unwrap();
    for (label, bytes) in [("format 1", &default), ("format 2", &repacked)] {
        let mut h = installed();
        let sha = Sha256::digest(bytes).to_vec();
        assert!(matches!(
            begin(&mut h, bytes.len(), sha, 1_900_000),
            UploadResult::Ok(_)
        ));
        for (i, c) in bytes.chunks(1_900_000).enumerate() {
            assert!(matches!(chunk(&mut h, i as u32, c), UploadResult::Ok(_)));
        }
        let c = h
            .update(controller(), "upload_commit", &Encode!().unwrap())
            .unwrap();
        assert!(
            matches!(c.decode::<CommitResult>().unwrap(), CommitResult::Ok(_)),
            "{label}"
        );
        let (r, instructions) = generate(&mut h, "Once upon a time", 20);
        let g = ok(r);
        assert_eq!(
            g.tokens,
            native_tokens(bytes, "Once upon a time", 20),
            "{label}"
        );
        eprintln!(
            "{label}: {} bytes; commit {} instructions; generate 20: {} tokens, {} instructions",
            bytes.len(),
            c.instructions,
            g.generated_tokens,
            instructions
        );
    }
}
