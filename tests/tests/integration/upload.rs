//! `packer upload` and `packer download` (the logic in `walsh_packer::ic`) against the real
//! canister wasm in the IC emulation harness, through `walsh_tests::harness_transport`: a full
//! upload and its download, an interrupted upload resumed, retries, a duplicate chunk, a
//! corrupted chunk refused at commit while the old model keeps answering, a non-controller
//! refused. Throughput and mainnet cost figures: the ignored `throughput` test.

use candid::{Encode, Principal};
use indicatif::ProgressBar;
use std::cell::RefCell;
use std::future::Future;
use std::time::{Duration, Instant};
use walsh_ic_harness::Harness;
use walsh_interface::{
    GenerateResult, ModelInfo, ModelInfoResult, ModelSource, UploadStatus, UploadStatusResult,
};
use walsh_packer::ic::upload::{self, LocalBlob, Plan, UploadOptions};
use walsh_packer::ic::{CallError, Client, Error, RetryPolicy, download};
use walsh_spec::PackOptions;
use walsh_tests::fixtures::{controller, native_tokens, random_blob, stranger};
use walsh_tests::harness_transport::{Fault, HarnessTransport};
use walsh_tests::root;

fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
        .block_on(f)
}

fn installed() -> RefCell<Harness> {
    let mut h = Harness::new();
    h.install(
        walsh_tests::canister_wasm(),
        &Encode!().unwrap(),
        vec![controller()],
        controller(),
    )
    .expect("install");
    RefCell::new(h)
}

/// Retries as the operator's, but without the waiting: the harness answers at once.
fn fast() -> RetryPolicy {
    RetryPolicy {
        retries: 3,
        first_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(4),
    }
}

/// Small chunks, so that the tiny model takes a dozen calls and several are in flight.
fn opts() -> UploadOptions {
    UploadOptions {
        chunk_size: 128 * 1024,
        concurrency: 3,
        force: false,
    }
}

fn tiny(seed: u64) -> LocalBlob {
    LocalBlob::new(random_blob("tiny.toml", &[], seed, PackOptions::default())).expect("valid")
}

/// What the canister serves, asked directly (not through the client under test).
fn served(h: &RefCell<Harness>) -> ModelInfo {
    match h
        .borrow_mut()
        .query(Principal::anonymous(), "model_info", &Encode!().unwrap())
        .expect("model_info")
        .decode::<ModelInfoResult>()
        .expect("decodes")
    {
        ModelInfoResult::Ok(i) => i,
        ModelInfoResult::Err(e) => panic!("model_info: {e}"),
    }
}

fn status(h: &RefCell<Harness>) -> Option<UploadStatus> {
    match h
        .borrow_mut()
        .query(controller(), "upload_status", &Encode!().unwrap())
        .expect("upload_status")
        .decode()
        .expect("decodes")
    {
        UploadStatusResult::Ok(s) => s,
        UploadStatusResult::Err(e) => panic!("upload_status: {e}"),
    }
}

fn greedy(h: &RefCell<Harness>, prompt: &str, n: u32) -> Vec<u32> {
    let arg = Encode!(&prompt.to_string(), &n).unwrap();
    match h
        .borrow_mut()
        .query(Principal::anonymous(), "generate", &arg)
        .expect("generate")
        .decode::<GenerateResult>()
        .expect("decodes")
    {
        GenerateResult::Ok(g) => g.tokens,
        GenerateResult::Err(e) => panic!("generate: {e}"),
    }
}

/// The canister serves `blob`, and answers like the native engine does with it.
fn serves(h: &RefCell<Harness>, blob: &LocalBlob) {
    let info = served(h);
    assert!(
        blob.is(&info),
        "serves {} ({})",
        info.config.name,
        info.sha256
    );
    assert_eq!(
        greedy(h, "Once upon a time", 12),
        native_tokens(&blob.bytes, "Once upon a time", 12)
    );
}

fn hidden() -> ProgressBar {
    ProgressBar::hidden()
}

#[test]
fn full_upload_then_download_back() {
    let h = installed();
    let t = HarnessTransport::new(&h, controller());
    let client = Client::new(&t, fast());
    let blob = tiny(1);
    let bar = hidden();
    // 64 KiB chunks: the tiny blob (smaller since format 2's compact tokenizer) still makes more
    // chunks than the calls in flight.
    let small = UploadOptions {
        chunk_size: 64 * 1024,
        ..opts()
    };
    let done = block_on(upload::upload(&client, &blob, &small, &bar)).expect("uploads");
    let plan = done.plan.expect("something was sent");
    let chunks = blob.bytes.len().div_ceil(64 * 1024) as u32;
    assert!(chunks > 6, "{chunks} chunks: more than the calls in flight");
    assert_eq!((plan.chunks, plan.missing.len() as u32), (chunks, chunks));
    assert!(!plan.resumed && plan.replaced.is_none());
    assert_eq!(bar.position(), blob.bytes.len() as u64);
    // One begin, one call per chunk, one commit: nothing more.
    assert_eq!(t.count("upload_begin").executed, 1);
    assert_eq!(t.count("upload_chunk").executed, chunks);
    assert_eq!(t.count("upload_commit").executed, 1);
    assert_eq!(client.stats().updates, chunks + 2);
    assert!(blob.is(&done.info));
    assert!(matches!(done.info.source, ModelSource::Uploaded { by, .. } if by == controller()));
    serves(&h, &blob);

    // Read back: the very bytes.
    let (info, bytes) = block_on(download::download(&client, 3, &hidden())).expect("downloads");
    assert!(blob.is(&info));
    assert!(bytes == blob.bytes, "the downloaded blob differs");

    // The same blob again: nothing is sent.
    let before = client.stats().updates;
    match block_on(upload::plan(&client, &blob, &opts())).expect("plans") {
        Plan::AlreadyActive(info) => assert!(blob.is(&info)),
        Plan::Send(p) => panic!("would send {} chunks again", p.missing.len()),
    }
    assert_eq!(client.stats().updates, before);
}

#[test]
fn embedded_model_downloads_and_strangers_cannot() {
    let h = installed();
    let t = HarnessTransport::new(&h, controller());
    let client = Client::new(&t, fast());
    let (info, bytes) = block_on(download::download(&client, 2, &hidden())).expect("downloads");
    assert!(matches!(info.source, ModelSource::Embedded));
    let default = std::fs::read(root().join("models/walsh-default.walsh")).unwrap();
    assert!(bytes == default, "the embedded model read back differs");
    // Chunks of at most 1.9 MB: the reply limit is respected.
    assert_eq!(
        t.count("download_chunk").executed as usize,
        default.len().div_ceil(1_900_000)
    );

    let t = HarnessTransport::new(&h, stranger());
    let e = block_on(download::download(&Client::new(&t, fast()), 2, &hidden()))
        .expect_err("a stranger downloads");
    assert!(
        matches!(e, Error::NotController { caller, .. } if caller == stranger()),
        "{e}"
    );
}

#[test]
fn interrupted_upload_resumes_with_only_the_missing_chunks() {
    let h = installed();
    let blob = tiny(2);
    // First run: the connection drops for good at the sixth chunk.
    let first = HarnessTransport::new(&h, controller());
    first.fail("upload_chunk", 5, Fault::Unreachable);
    let client = Client::new(&first, RetryPolicy::none());
    let plan = match block_on(upload::plan(&client, &blob, &opts())).expect("plans") {
        Plan::Send(p) => p,
        Plan::AlreadyActive(_) => panic!("nothing to send"),
    };
    let e = block_on(upload::send(&client, &blob, &plan, 3, &hidden())).expect_err("interrupted");
    assert!(e.is_network(), "{e}");
    assert!(e.to_string().contains("cannot reach the replica"), "{e}");
    let arrived = first.count("upload_chunk").executed;
    assert!(arrived >= 5 && arrived < plan.chunks, "{arrived}");
    // The canister knows what arrived; the embedded model still serves.
    let s = status(&h).expect("upload in progress");
    assert_eq!(s.received, arrived);
    assert!(matches!(served(&h).source, ModelSource::Embedded));

    // Second run, from scratch (no local state): only the missing chunks go.
    let second = HarnessTransport::new(&h, controller());
    let client = Client::new(&second, fast());
    let done = block_on(upload::upload(&client, &blob, &opts(), &hidden())).expect("resumes");
    let plan = done.plan.expect("something was sent");
    assert!(plan.resumed);
    assert_eq!(plan.missing, s.missing_chunks().collect::<Vec<_>>());
    assert_eq!(second.count("upload_begin").attempted, 0);
    assert_eq!(second.count("upload_chunk").executed, plan.chunks - arrived);
    serves(&h, &blob);
    assert!(status(&h).is_none());
}

#[test]
fn transient_failures_are_retried_but_a_replica_never_reached_is_not() {
    let h = installed();
    let blob = tiny(3);
    let t = HarnessTransport::new(&h, controller());
    // Two dropped connections mid-upload: retried with backoff, and the upload completes.
    t.fail("upload_chunk", 2, Fault::Unreachable);
    t.fail("upload_chunk", 4, Fault::Unreachable);
    let client = Client::new(&t, fast());
    block_on(upload::upload(&client, &blob, &opts(), &hidden())).expect("uploads");
    assert_eq!(client.stats().retries, 2);
    let chunks = blob.bytes.len().div_ceil(128 * 1024) as u32;
    assert_eq!(t.count("upload_chunk").executed, chunks);
    serves(&h, &blob);

    // The very first call finds no replica: said at once, without the backoff.
    let t = HarnessTransport::new(&h, controller());
    t.fail("upload_status", 0, Fault::Unreachable);
    let client = Client::new(&t, RetryPolicy::default());
    let e = block_on(upload::plan(&client, &tiny(4), &opts())).expect_err("no replica");
    assert!(
        matches!(
            &e,
            Error::Call {
                source: CallError::Unreachable { .. },
                ..
            }
        ),
        "{e}"
    );
    // Said at once: one attempt and no retry, so no backoff was slept (counted, not timed: a
    // wall-clock bound fails on a busy machine).
    assert_eq!(t.count("upload_status").attempted, 1);
    assert_eq!(client.stats().retries, 0);
}

#[test]
fn duplicate_chunks_and_a_lost_commit_reply_are_harmless() {
    let h = installed();
    let blob = tiny(5);
    let t = HarnessTransport::new(&h, controller());
    // A chunk whose reply is lost arrives twice (the client cannot know it arrived).
    t.fail("upload_chunk", 3, Fault::LostReply);
    // The commit's reply is lost: the retry finds no upload, and the model serving is ours.
    t.fail("upload_commit", 0, Fault::LostReply);
    let client = Client::new(&t, fast());
    let plan = match block_on(upload::plan(&client, &blob, &opts())).expect("plans") {
        Plan::Send(p) => p,
        Plan::AlreadyActive(_) => panic!("nothing to send"),
    };
    block_on(upload::send(&client, &blob, &plan, 3, &hidden())).expect("sends");
    assert_eq!(t.count("upload_chunk").executed, plan.chunks + 1);
    // And one sent again on purpose, before the commit.
    let first = &blob.bytes[..128 * 1024];
    block_on(client.upload_chunk(0, first)).expect("duplicate accepted");
    let info = block_on(upload::commit(&client, &blob)).expect("commits");
    assert!(blob.is(&info));
    assert_eq!(t.count("upload_commit").executed, 2);
    serves(&h, &blob);
}

#[test]
fn corrupted_chunk_is_refused_at_commit_and_the_old_model_keeps_serving() {
    let h = installed();
    let old = tiny(6);
    let t = HarnessTransport::new(&h, controller());
    block_on(upload::upload(
        &Client::new(&t, fast()),
        &old,
        &opts(),
        &hidden(),
    ))
    .expect("uploads");
    serves(&h, &old);

    // The new blob's second chunk is damaged on the way.
    let new = tiny(7);
    let t = HarnessTransport::new(&h, controller());
    t.fail("upload_chunk", 1, Fault::CorruptChunk);
    let client = Client::new(&t, fast());
    let e = block_on(upload::upload(&client, &new, &opts(), &hidden())).expect_err("commits");
    let text = e.to_string();
    assert!(matches!(e, Error::ShaMismatch { .. }), "{text}");
    assert!(
        text.contains("SHA-256 mismatch") && text.contains("previous model is still serving"),
        "{text}"
    );
    serves(&h, &old);
    // The damaged upload was dropped, so the next run starts afresh and succeeds.
    assert!(status(&h).is_none());
    assert_eq!(t.count("upload_abort").executed, 1);
    let t = HarnessTransport::new(&h, controller());
    let done = block_on(upload::upload(
        &Client::new(&t, fast()),
        &new,
        &opts(),
        &hidden(),
    ))
    .expect("uploads");
    assert!(!done.plan.expect("sent").resumed);
    serves(&h, &new);
}

#[test]
fn non_controllers_are_refused_before_any_chunk() {
    let h = installed();
    let t = HarnessTransport::new(&h, stranger());
    let client = Client::new(&t, fast());
    let e = block_on(upload::upload(&client, &tiny(8), &opts(), &hidden())).expect_err("refused");
    let text = e.to_string();
    assert!(
        matches!(e, Error::NotController { caller, canister } if caller == stranger() && canister == h.borrow().canister_id()),
        "{text}"
    );
    assert!(text.contains("--add-controller"), "{text}");
    assert_eq!(t.count("upload_chunk").attempted, 0);
    assert_eq!(t.count("upload_begin").executed, 0);
    // Refusals are not retried.
    assert_eq!(client.stats().retries, 0);
    assert!(status(&h).is_none());
    assert!(matches!(served(&h).source, ModelSource::Embedded));
}

/// Mainnet fees on a 13-node application subnet, in cycles (1 T cycles = 1 XDR), from
/// <https://internetcomputer.org/docs/references/cycles-cost-formulas> (the table there, as of
/// 2025; 34-node subnets cost 34/13 times as much).
mod fees {
    pub const INGRESS_MESSAGE: u64 = 1_200_000;
    pub const INGRESS_BYTE: u64 = 2_000;
    pub const UPDATE_EXECUTION: u64 = 5_000_000;
    pub const PER_INSTRUCTION: u64 = 1;
}

/// Upload and download throughput against the harness, and the mainnet cost of uploading each
/// seed config (docs/BENCHMARKS.md):
/// `cargo test --release -p walsh-tests --test integration -- --ignored --nocapture throughput`
#[test]
#[ignore]
fn throughput() {
    use walsh_spec::blob::DType;
    for (config, embeddings) in [
        ("tinystories-hadamard-hash.toml", DType::Int8),
        ("tinystories-hadamard.toml", DType::F16),
        ("tinystories-octonion.toml", DType::F16),
    ] {
        let blob = LocalBlob::new(random_blob(
            config,
            &[],
            1,
            PackOptions {
                embeddings,
                ..PackOptions::default()
            },
        ))
        .expect("valid");
        let h = installed();
        let t = HarnessTransport::new(&h, controller());
        let client = Client::new(&t, RetryPolicy::default());
        let started = Instant::now();
        let opts = UploadOptions::default();
        block_on(upload::upload(&client, &blob, &opts, &hidden())).expect("uploads");
        let up = started.elapsed().as_secs_f64();
        serves(&h, &blob);
        let started = Instant::now();
        let (_, bytes) = block_on(download::download(&client, 4, &hidden())).expect("downloads");
        let down = started.elapsed().as_secs_f64();
        assert!(bytes == blob.bytes);

        let (updates, instructions) = t.updates_executed();
        let ingress_bytes: u64 = t.ingress_bytes();
        let cycles = u64::from(updates) * (fees::INGRESS_MESSAGE + fees::UPDATE_EXECUTION)
            + ingress_bytes * fees::INGRESS_BYTE
            + instructions * fees::PER_INSTRUCTION;
        let mb = blob.bytes.len() as f64 / 1e6;
        eprintln!(
            "{config}: {mb:.2} MB; upload {up:.2} s = {:.1} MB/s over {} update calls ({} chunks of {} B), {} instructions \
(commit {}), {} ingress bytes => {:.4} T cycles on mainnet; download {down:.2} s = {:.1} MB/s in {} queries",
            mb / up,
            updates,
            t.count("upload_chunk").executed,
            opts.chunk_size,
            instructions,
            t.count("upload_commit").instructions,
            ingress_bytes,
            cycles as f64 / 1e12,
            mb / down,
            t.count("download_chunk").executed,
        );
    }
}

/// Committing costs little and grows linearly with the blob: the SHA-256 is taken as the chunks
/// arrive (each byte hashed once, in the `upload_chunk` that brings it), and the engine does not
/// hash the blob again (`Engine::load_prehashed`). A 50 MB blob once took 28e9 of an update's
/// 40e9 instructions to commit (hashed twice at commit), and a 101 MB one could never commit.
#[test]
fn commit_cost_is_linear_and_small() {
    use walsh_spec::blob::DType;
    use walsh_spec::upload::MAX_BLOB_SIZE;
    let mut measured = Vec::new();
    for (config, embeddings) in [
        ("tinystories-hadamard-hash.toml", DType::Int8),
        ("tinystories-hadamard.toml", DType::F16),
    ] {
        let blob = LocalBlob::new(random_blob(
            config,
            &[],
            1,
            PackOptions {
                embeddings,
                ..PackOptions::default()
            },
        ))
        .expect("valid");
        let h = installed();
        let t = HarnessTransport::new(&h, controller());
        let client = Client::new(&t, RetryPolicy::default());
        block_on(upload::upload(
            &client,
            &blob,
            &UploadOptions::default(),
            &hidden(),
        ))
        .expect("uploads");
        serves(&h, &blob);
        let commit = t.count("upload_commit");
        let chunks = t.count("upload_chunk");
        let len = blob.bytes.len() as u64;
        eprintln!(
            "{config} ({embeddings:?} embeddings), {len} bytes: commit {} instructions ({:.1} per byte) in {} call(s); {} upload_chunk calls, {} instructions ({:.1} per byte, the hashing included)",
            commit.instructions,
            commit.instructions as f64 / len as f64,
            commit.executed,
            chunks.executed,
            chunks.instructions,
            chunks.instructions as f64 / len as f64,
        );
        assert_eq!(commit.executed, 1);
        // Each chunk's bytes are hashed once, in its own call: far from an update's limit.
        assert!(chunks.instructions / u64::from(chunks.executed) < 2_000_000_000);
        measured.push((len as f64, commit.instructions as f64));
    }
    // The largest blob an upload accepts commits within an update's 40e9, with a margin: the
    // cost per byte beyond the fixed part (the tokenizer, the calibration) times MAX_BLOB_SIZE.
    let [(l1, c1), (l2, c2)] = measured[..] else {
        unreachable!()
    };
    let per_byte = (c2 - c1) / (l2 - l1);
    let at_max = c2 + per_byte * (MAX_BLOB_SIZE as f64 - l2);
    eprintln!(
        "commit: {per_byte:.1} instructions per byte beyond a fixed part; {at_max:.3e} predicted at MAX_BLOB_SIZE = {MAX_BLOB_SIZE}"
    );
    assert!(at_max <= 0.8 * 40e9, "{at_max:.3e}");
}
