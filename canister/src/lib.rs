//! The walsh canister: the Internet Computer entry points around the engine (`walsh-engine`),
//! uploads into stable memory, the query budget, and the story page it serves over HTTP (`http`). Its Candid types are in `walsh-interface`.

mod budget;
mod hash;
mod http;
mod storage;
mod upload;

use budget::{Budget, CostModel, QUERY_INSTRUCTION_LIMIT};
use candid::Principal;
use std::cell::RefCell;
use std::rc::Rc;
use storage::{ActiveBlob, StableSlots};
use upload::{BlobStore, UploadError, UploadSession};
use walsh_engine::Engine;
use walsh_engine::kv_cache::KvCache;
use walsh_interface::*;
use walsh_spec::blob::hex;
use walsh_spec::sampler::{DEFAULT_DECODING_REPEAT_PENALTY, DEFAULT_REPEAT_LAST_N, SamplingParams};
use walsh_spec::upload::MAX_DOWNLOAD_CHUNK;

/// Prompts longer than this many bytes per context position are refused before tokenizing:
/// tokenizing costs instructions that the query budget must cover, and no prompt that fits the
/// context is anywhere near this long.
const MAX_PROMPT_BYTES_PER_POSITION: usize = 32;

use walsh_engine::generate::PREFILL_CHUNK;

#[cfg(feature = "embedded-model")]
const EMBEDDED_MODEL: Option<&[u8]> = Some(include_bytes!("../../models/walsh-default.walsh"));
#[cfg(not(feature = "embedded-model"))]
const EMBEDDED_MODEL: Option<&[u8]> = None;

struct Loaded {
    engine: Rc<Engine>,
    source: ModelSource,
    /// What a position costs this model, measured when it loaded.
    cost: CostModel,
    /// A KV cache made in the update that loaded the model: a query takes it (the IC discards
    /// a query's heap changes, so the next query finds it again, unused), instead of
    /// allocating and zero-filling megabytes each time (`memory.fill` costs an instruction a
    /// byte). None once a replicated call of a query method took it.
    cache: Option<KvCache>,
}

/// Positions of each of the two prefill chunks `calibrate` runs.
const CALIBRATION_CHUNK: usize = 8;

/// Instructions `calibrate` may spend: a model whose first position costs more than a
/// twentieth of this is measured on that one position only (it can run few positions in a query
/// anyway), so a load never spends more than about this on calibration.
const CALIBRATION_LIMIT: u64 = 3_000_000_000;

/// Measures what positions of this model cost (one position, then two prefill chunks of
/// [`CALIBRATION_CHUNK`] positions, the second in the middle of the context, and one decode step
/// after it: 18 positions, a bounded cost per load), so that `generate` can refuse up front a
/// prompt that no query could process. The positions between the chunks are skipped (their keys
/// and values left zero): the integer kernels cost the same whatever the values, so the second
/// chunk costs what it would after a real prompt, and the slope is measured over the range a
/// prompt spans (attention's cost grows in steps of its 32- and 64-position kernel blocks, which
/// two neighbouring chunks near position 0 would miss).
fn calibrate(engine: &Engine) -> CostModel {
    let c = engine.config();
    let model = &engine.model;
    let mut cache = model.new_cache();
    // Positions skipped first (zero keys and values), then n run and timed.
    let mut run_after = |skip: usize, n: usize| -> Option<u64> {
        cache.advance(skip);
        let before = ic_cdk::api::performance_counter(0);
        model
            .forward(&vec![c.eos_token_id; n], &mut cache, false)
            .ok()?;
        Some(ic_cdk::api::performance_counter(0).saturating_sub(before))
    };
    let Some(first) = run_after(0, 1) else {
        return CostModel::fit(&[], 0, 0);
    };
    if first.saturating_mul(20) > CALIBRATION_LIMIT || c.block_size < 2 * CALIBRATION_CHUNK + 2 {
        return CostModel::fit(&[(1, first)], first, 1);
    }
    let Some(c1) = run_after(0, CALIBRATION_CHUNK) else {
        return CostModel::fit(&[(1, first)], first, 1);
    };
    // The second chunk as late as the context allows, with room for it and the decode step.
    let far = (c.block_size - CALIBRATION_CHUNK - 1).max(1 + CALIBRATION_CHUNK);
    let Some(c2) = run_after(far - (1 + CALIBRATION_CHUNK), CALIBRATION_CHUNK) else {
        return CostModel::fit(&[(1, first)], first, 1);
    };
    let decode = run_after(0, 1).unwrap_or(first);
    CostModel::fit_placed(
        &[(1, CALIBRATION_CHUNK, c1), (far, CALIBRATION_CHUNK, c2)],
        decode,
        far + CALIBRATION_CHUNK,
    )
}

/// Text for [`warm_up`]: words, capitals, punctuation, quotes, digits and a line break, the
/// kinds of text prompts hold.
const WARM_UP_TEXT: &str = "Once upon a time, there was a little girl named Lily.\nShe said: \"Can I play? It's 3 o'clock!\" Tom's dog ran - fast; (yes)";

/// Runs the tokenizer once in the update that loads a model, so that what it builds on first
/// use (the pre-tokenizer's regex, compiled lazily into a global, and the regex engine's lazy
/// DFA states) lives in heap between calls: a query's heap changes are discarded, so without
/// this every `generate` compiled the regex again (about 15M instructions a query, measured
/// with `function_profile`'s harness).
fn warm_up(engine: &Engine) {
    let _ = engine.tokenizer.encode(WARM_UP_TEXT);
}

fn loaded(engine: Engine, source: ModelSource) -> Loaded {
    warm_up(&engine);
    let cost = calibrate(&engine);
    let cache = Some(engine.model.new_cache());
    Loaded {
        engine: Rc::new(engine),
        source,
        cost,
        cache,
    }
}

thread_local! {
    /// The model serving queries, in heap between calls.
    static LOADED: RefCell<Option<Loaded>> = const { RefCell::new(None) };
}

/// The caller if it is a controller; else the caller, as the error.
fn caller_is_controller() -> Result<Principal, Principal> {
    let caller = ic_cdk::api::msg_caller();
    if ic_cdk::api::is_controller(&caller) {
        Ok(caller)
    } else {
        Err(caller)
    }
}

/// Loads the active model (uploaded, else embedded) into heap. Runs in init and post_upgrade;
/// a blob that no longer loads traps, so an upgrade that cannot serve the model is rolled back.
fn load_active() {
    let meta = storage::meta();
    let loaded = match meta.active {
        Some(a) => {
            let bytes = StableSlots.read(a.slot, 0, a.size);
            match Engine::load(&bytes) {
                Ok(engine) => Some(loaded(
                    engine,
                    ModelSource::Uploaded {
                        at_ns: a.at_ns,
                        by: a.by,
                    },
                )),
                Err(e) => ic_cdk::trap(format!(
                    "the uploaded model in stable memory does not load: {e}"
                )),
            }
        }
        None => match EMBEDDED_MODEL {
            Some(bytes) => match Engine::load(bytes) {
                Ok(engine) => Some(loaded(engine, ModelSource::Embedded)),
                Err(e) => ic_cdk::trap(format!("the embedded model does not load: {e}")),
            },
            None => None,
        },
    };
    LOADED.with(|l| *l.borrow_mut() = loaded);
}

#[ic_cdk::init]
fn init() {
    load_active();
    http::certify(EMBEDDED_MODEL);
}

#[ic_cdk::post_upgrade]
fn post_upgrade() {
    load_active();
    http::certify(EMBEDDED_MODEL);
}

/// The story page and the default model's blob, certified (`http.rs`): what the IC's HTTP
/// gateways serve at `https://<canister id>.icp0.io/`.
#[ic_cdk::query]
fn http_request(
    request: ic_http_certification::HttpRequest<'static>,
) -> ic_http_certification::HttpResponse<'static> {
    http::serve(&request)
}

fn engine() -> Result<(Rc<Engine>, CostModel), GenerateError> {
    LOADED.with(|l| {
        l.borrow()
            .as_ref()
            .map(|l| (l.engine.clone(), l.cost))
            .ok_or(GenerateError::NoModel)
    })
}

/// Checks every argument against a limit before any work proportional to it is done.
fn check_request(req: &GenerateRequest, engine: &Engine) -> Result<(), GenerateError> {
    let block_size = engine.config().block_size;
    let max_bytes = MAX_PROMPT_BYTES_PER_POSITION * block_size;
    if req.prompt.len() > max_bytes {
        return Err(GenerateError::PromptTooManyBytes {
            bytes: req.prompt.len() as u64,
            max: max_bytes as u64,
            context: (block_size - 1) as u32,
        });
    }
    if let Some(stop) = &req.stop {
        if stop.len() > MAX_STOP_STRINGS {
            return Err(GenerateError::TooManyStops {
                count: stop.len() as u64,
                max: MAX_STOP_STRINGS as u32,
            });
        }
        if let Some((index, s)) = stop
            .iter()
            .enumerate()
            .find(|(_, s)| s.len() > MAX_STOP_BYTES)
        {
            return Err(GenerateError::StopTooLong {
                index: index as u32,
                bytes: s.len() as u64,
                max: MAX_STOP_BYTES as u32,
            });
        }
    }
    Ok(())
}

fn run_generate(req: GenerateRequest) -> GenerateResult {
    match try_generate(req) {
        Ok(g) => GenerateResult::Ok(g),
        Err(e) => GenerateResult::Err(e),
    }
}

fn try_generate(req: GenerateRequest) -> Result<Generation, GenerateError> {
    let (engine, cost) = engine()?;
    check_request(&req, &engine)?;
    let params = SamplingParams {
        temperature: req.temperature.unwrap_or(0.0),
        top_k: req.top_k.unwrap_or(0) as usize,
        top_p: req.top_p.unwrap_or(1.0),
        seed: req.seed.unwrap_or(0),
        repeat_penalty: req.repeat_penalty.unwrap_or(1.0),
        repeat_last_n: req
            .repeat_last_n
            .map_or(DEFAULT_REPEAT_LAST_N, |n| n as usize),
    };
    params.validate().map_err(GenerateError::InvalidSampling)?;
    let prompt_ids = engine
        .tokenizer
        .encode(&req.prompt)
        .map_err(|e| GenerateError::Engine(e.to_string()))?;
    // Refused up front: a prompt whose prefill and first step cannot fit in this query.
    let max_context = engine.config().block_size - 1;
    let counter = ic_cdk::api::performance_counter(0);
    let max_query = cost.max_prompt_tokens(counter, QUERY_INSTRUCTION_LIMIT, max_context);
    if prompt_ids.len() > max_context.min(max_query) {
        return Err(GenerateError::PromptTooLong {
            tokens: prompt_ids.len() as u32,
            max: max_context.min(max_query) as u32,
            max_context: max_context as u32,
            max_query: max_query as u32,
            limit: QUERY_INSTRUCTION_LIMIT,
        });
    }
    let stop = req.stop.unwrap_or_default();
    let mut budget = Budget::new(QUERY_INSTRUCTION_LIMIT, cost.prior(), counter);
    // The cache made at load. A query's heap changes are discarded, so every query finds it;
    // a query method executed as a replicated call keeps its changes, and calls after it make
    // their own cache, as all did before.
    let cache = LOADED
        .with(|l| l.borrow_mut().as_mut().and_then(|l| l.cache.take()))
        .unwrap_or_else(|| engine.model.new_cache());
    let out = engine
        .generate_tokens_in(
            cache,
            &prompt_ids,
            req.max_tokens as usize,
            params,
            &stop,
            |n| budget.allows(ic_cdk::api::performance_counter(0), n),
        )
        .map_err(|e| GenerateError::Engine(e.to_string()))?;
    Ok(Generation {
        text: out.text,
        generated_tokens: out.tokens.len() as u32,
        tokens: out.tokens,
        prompt_tokens: out.prompt_tokens as u32,
        finish_reason: finish_reason(out.finish),
        instructions: ic_cdk::api::performance_counter(0),
    })
}

fn finish_reason(f: walsh_engine::FinishReason) -> FinishReason {
    match f {
        walsh_engine::FinishReason::Eos => FinishReason::Eos,
        walsh_engine::FinishReason::Length => FinishReason::Length,
        walsh_engine::FinishReason::Context => FinishReason::Context,
        walsh_engine::FinishReason::Budget => FinishReason::Budget,
        walsh_engine::FinishReason::Stop => FinishReason::Stop,
    }
}

/// The default decoding (SPEC §5): up to `max_tokens` tokens after `prompt`, greedy with the
/// repetition penalty [`DEFAULT_DECODING_REPEAT_PENALTY`] over the last [`DEFAULT_REPEAT_LAST_N`]
/// tokens — what `packer run` does without sampling options.
#[ic_cdk::query]
fn generate(prompt: String, max_tokens: u32) -> GenerateResult {
    run_generate(GenerateRequest {
        prompt,
        max_tokens,
        temperature: None,
        top_k: None,
        top_p: None,
        seed: None,
        stop: None,
        repeat_penalty: Some(DEFAULT_DECODING_REPEAT_PENALTY),
        repeat_last_n: Some(DEFAULT_REPEAT_LAST_N as u32),
    })
}

#[ic_cdk::query]
fn generate_with(req: GenerateRequest) -> GenerateResult {
    run_generate(req)
}

/// Greedy generation as `generate`, returning the instructions spent in each engine phase
/// (walsh_engine::profile) and, last, ("total", all of the call's instructions) and
/// ("tokens", tokens generated). Only in a build with the `profile` feature.
#[cfg(feature = "profile")]
#[ic_cdk::query]
fn profile(prompt: String, max_tokens: u32) -> Vec<(String, u64)> {
    fn clock() -> u64 {
        ic_cdk::api::performance_counter(0)
    }
    walsh_engine::profile::set_clock(Some(clock));
    let r = generate(prompt, max_tokens);
    let mut out: Vec<(String, u64)> = walsh_engine::profile::totals()
        .into_iter()
        .map(|(p, v)| (p.name().to_string(), v))
        .collect();
    walsh_engine::profile::set_clock(None);
    out.push(("total".into(), clock()));
    let tokens = match r {
        GenerateResult::Ok(g) => u64::from(g.generated_tokens),
        GenerateResult::Err(_) => 0,
    };
    out.push(("tokens".into(), tokens));
    out
}

fn info(engine: &Engine, source: ModelSource) -> ModelInfo {
    let c = engine.config();
    let (emb, brain) = c.param_counts();
    ModelInfo {
        config: ModelConfigView {
            name: c.name.clone(),
            algebra: c.algebra.name().to_string(),
            vocab_size: c.vocab_size as u32,
            n_embd: c.n_embd as u32,
            n_layer: c.n_layer as u32,
            n_head: c.n_head as u32,
            block_size: c.block_size as u32,
            head_mixing: c.head_mixing,
            embedding: match c.embedding {
                walsh_spec::config::Embedding::Standard => "standard".into(),
                walsh_spec::config::Embedding::Hash => "hash".into(),
            },
            hash_buckets: c.hash_buckets as u32,
        },
        total_params: emb + brain,
        brain_params: brain,
        embedding_params: emb,
        blob_size: engine.blob_len as u64,
        sha256: hex(&engine.sha256),
        packing: engine.packing.name().to_string(),
        source,
        heap_bytes: engine.model.heap_bytes() as u64,
    }
}

#[ic_cdk::query]
fn model_info() -> ModelInfoResult {
    LOADED.with(|l| match l.borrow().as_ref() {
        Some(l) => ModelInfoResult::Ok(info(&l.engine, l.source.clone())),
        None => ModelInfoResult::Err(ModelError::NoModel),
    })
}

/// Starts an upload (replacing any unfinished one). Controllers only.
#[ic_cdk::update]
fn upload_begin(req: UploadBegin) -> UploadResult {
    if let Err(caller) = caller_is_controller() {
        return UploadResult::Err(UploadError::NotController { caller });
    }
    let mut meta = storage::meta();
    let slot = meta.free_slot();
    match UploadSession::begin(
        slot,
        req.total_size,
        req.sha256.into_vec(),
        req.chunk_size,
        ic_cdk::api::time(),
        &mut StableSlots,
    ) {
        Ok(s) => {
            let status = s.status();
            meta.upload = Some(s);
            storage::set_meta(meta);
            UploadResult::Ok(status)
        }
        Err(e) => UploadResult::Err(e),
    }
}

/// Stores one chunk (any order; sending a chunk again overwrites it). Controllers only.
#[ic_cdk::update]
fn upload_chunk(req: UploadChunk) -> UploadResult {
    if let Err(caller) = caller_is_controller() {
        return UploadResult::Err(UploadError::NotController { caller });
    }
    let mut meta = storage::meta();
    let Some(session) = meta.upload.as_mut() else {
        return UploadResult::Err(UploadError::NoUpload);
    };
    match session.chunk(req.index, &req.data, &mut StableSlots) {
        Ok(()) => {
            let status = session.status();
            storage::set_meta(meta);
            UploadResult::Ok(status)
        }
        Err(e) => UploadResult::Err(e),
    }
}

/// The upload in progress, if any: what arrived and what is missing (to resume). Controllers
/// only.
#[ic_cdk::query]
fn upload_status() -> UploadStatusResult {
    if let Err(caller) = caller_is_controller() {
        return UploadStatusResult::Err(UploadError::NotController { caller });
    }
    UploadStatusResult::Ok(storage::meta().upload.as_ref().map(UploadSession::status))
}

/// Checks size, SHA-256 and the whole blob with the engine's reader, then makes it the active
/// model in one step. On any failure the previous model keeps serving. Controllers only.
#[ic_cdk::update]
fn upload_commit() -> CommitResult {
    let caller = match caller_is_controller() {
        Ok(c) => c,
        Err(caller) => return CommitResult::Err(UploadError::NotController { caller }),
    };
    let mut meta = storage::meta();
    let Some(mut session) = meta.upload.take() else {
        return CommitResult::Err(UploadError::NoUpload);
    };
    let assembled = session.assemble(&StableSlots);
    let assembled = match assembled {
        Ok(a) => a,
        Err(e) => {
            // Keeps what this call hashed.
            meta.upload = Some(session);
            storage::set_meta(meta);
            return CommitResult::Err(e);
        }
    };
    // The content's SHA-256 was taken as the chunks arrived: the engine does not hash again.
    let loaded_engine = match assembled.content_sha256 {
        Some(d) => Engine::load_prehashed(&assembled.bytes, d),
        None => Engine::load(&assembled.bytes),
    };
    drop(assembled);
    let engine = match loaded_engine {
        Ok(e) => e,
        Err(e) => return CommitResult::Err(UploadError::InvalidBlob(e.to_string())),
    };
    let now = ic_cdk::api::time();
    meta.active = Some(ActiveBlob {
        slot: session.slot,
        size: session.total_size,
        sha256: session.sha256.clone(),
        at_ns: now,
        by: caller,
    });
    meta.upload = None;
    storage::set_meta(meta);
    let source = ModelSource::Uploaded {
        at_ns: now,
        by: caller,
    };
    let model = info(&engine, source.clone());
    let l = loaded(engine, source);
    LOADED.with(|cell| *cell.borrow_mut() = Some(l));
    CommitResult::Ok(model)
}

/// Drops the upload in progress. Controllers only.
#[ic_cdk::update]
fn upload_abort() -> AbortResult {
    if let Err(caller) = caller_is_controller() {
        return AbortResult::Err(UploadError::NotController { caller });
    }
    let mut meta = storage::meta();
    if meta.upload.take().is_none() {
        return AbortResult::Err(UploadError::NoUpload);
    }
    storage::set_meta(meta);
    AbortResult::Ok
}

/// Bytes `[offset, offset + length)` of the blob serving now (uploaded or embedded), so that an
/// operator can read back what is deployed (`packer download`). Its size and checksum are in
/// `model_info`. Controllers only: the weights are theirs to publish or not.
#[ic_cdk::query]
fn download_chunk(offset: u64, length: u32) -> DownloadResult {
    if let Err(caller) = caller_is_controller() {
        return DownloadResult::Err(DownloadError::NotController { caller });
    }
    if length > MAX_DOWNLOAD_CHUNK {
        return DownloadResult::Err(DownloadError::TooLong {
            length,
            max: MAX_DOWNLOAD_CHUNK,
        });
    }
    let active = storage::meta().active;
    let size = match (&active, EMBEDDED_MODEL) {
        (Some(a), _) => a.size,
        (None, Some(embedded)) => embedded.len() as u64,
        (None, None) => return DownloadResult::Err(DownloadError::NoModel),
    };
    let Some(end) = offset
        .checked_add(u64::from(length))
        .filter(|&end| end <= size)
    else {
        return DownloadResult::Err(DownloadError::OutOfRange {
            offset,
            length,
            size,
        });
    };
    let bytes = match active {
        Some(a) => StableSlots.read(a.slot, offset, u64::from(length)),
        None => EMBEDDED_MODEL.map_or_else(Vec::new, |e| e[offset as usize..end as usize].to_vec()),
    };
    DownloadResult::Ok(serde_bytes::ByteBuf::from(bytes))
}

/// The update methods: the only ones an ingress message may call as an update.
const UPDATE_METHODS: [&str; 4] = [
    "upload_begin",
    "upload_chunk",
    "upload_commit",
    "upload_abort",
];

/// Runs for ingress update calls only (inter-canister calls skip it, so the methods check the
/// caller again): refuses non-controllers' uploads before they cost anything, and any update
/// call of a query method (`generate` run as a replicated call would burn the canister's cycles
/// on every node of the subnet; queries are free to call as queries).
#[ic_cdk::inspect_message]
fn inspect_message() {
    let method = ic_cdk::api::msg_method_name();
    if !UPDATE_METHODS.contains(&method.as_str()) {
        ic_cdk::trap(format!(
            "{method} is a query method: call it as a query, not as an update"
        ));
    }
    if let Err(caller) = caller_is_controller() {
        ic_cdk::trap(UploadError::NotController { caller }.to_string());
    }
    ic_cdk::api::accept_message();
}

ic_cdk::export_candid!();

#[cfg(test)]
mod tests {
    use candid_parser::utils::{CandidSource, service_compatible, service_equal};

    #[test]
    fn candid_file_matches_the_code() {
        let exported = super::__export_service();
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../candid/walsh.did");
        let file = std::fs::read_to_string(&path).expect("candid/walsh.did exists");
        service_equal(CandidSource::Text(&exported), CandidSource::Text(&file)).unwrap_or_else(
            |e| panic!("candid/walsh.did differs from the code: {e}\n--- exported:\n{exported}"),
        );
        service_compatible(CandidSource::Text(&exported), CandidSource::Text(&file))
            .expect("the code's interface is a subtype of candid/walsh.did");
        service_compatible(CandidSource::Text(&file), CandidSource::Text(&exported))
            .expect("candid/walsh.did is a subtype of the code's interface");
    }
}
