//! The walsh canister: the Internet Computer entry points around the engine (`walsh-engine`),
//! uploads into stable memory, and the query budget. Its Candid types are in `walsh-interface`.

mod budget;
mod storage;
mod upload;

use budget::{Budget, QUERY_INSTRUCTION_LIMIT};
use candid::Principal;
use std::cell::RefCell;
use std::rc::Rc;
use storage::{ActiveBlob, StableSlots};
use upload::{BlobStore, UploadSession};
use walsh_engine::Engine;
use walsh_interface::*;
use walsh_spec::blob::hex;
use walsh_spec::sampler::SamplingParams;
use walsh_spec::upload::MAX_DOWNLOAD_CHUNK;

/// Prompts longer than this many bytes per context position are refused before tokenizing:
/// tokenizing costs instructions that the query budget must cover, and no prompt that fits the
/// context is anywhere near this long.
const MAX_PROMPT_BYTES_PER_POSITION: usize = 32;

#[cfg(feature = "embedded-model")]
const EMBEDDED_MODEL: Option<&[u8]> = Some(include_bytes!("../../models/walsh-default.walsh"));
#[cfg(not(feature = "embedded-model"))]
const EMBEDDED_MODEL: Option<&[u8]> = None;

struct Loaded {
    engine: Rc<Engine>,
    source: ModelSource,
}

thread_local! {
    /// The model serving queries, in heap between calls.
    static LOADED: RefCell<Option<Loaded>> = const { RefCell::new(None) };
}

fn caller_is_controller() -> Result<Principal, String> {
    let caller = ic_cdk::api::msg_caller();
    if ic_cdk::api::is_controller(&caller) {
        Ok(caller)
    } else {
        Err(format!(
            "caller {caller} is not a controller of this canister; only controllers may upload or download models"
        ))
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
                Ok(engine) => Some(Loaded {
                    engine: Rc::new(engine),
                    source: ModelSource::Uploaded {
                        at_ns: a.at_ns,
                        by: a.by,
                    },
                }),
                Err(e) => ic_cdk::trap(format!(
                    "the uploaded model in stable memory does not load: {e}"
                )),
            }
        }
        None => match EMBEDDED_MODEL {
            Some(bytes) => match Engine::load(bytes) {
                Ok(engine) => Some(Loaded {
                    engine: Rc::new(engine),
                    source: ModelSource::Embedded,
                }),
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
}

#[ic_cdk::post_upgrade]
fn post_upgrade() {
    load_active();
}

fn engine() -> Result<Rc<Engine>, String> {
    LOADED.with(|l| {
        l.borrow()
            .as_ref()
            .map(|l| l.engine.clone())
            .ok_or_else(|| "no model is loaded: upload one with `packer upload` (this build has no embedded model)".to_string())
    })
}

/// Instructions one position is assumed to cost before the first is measured: a generous
/// multiple of the multiply-adds it needs.
fn prior_instructions_per_position(engine: &Engine) -> u64 {
    let c = engine.config();
    let (_, brain) = c.param_counts();
    let logits = match c.embedding {
        walsh_spec::config::Embedding::Standard => c.vocab_size * c.n_embd,
        walsh_spec::config::Embedding::Hash => 2 * c.hash_buckets * c.n_embd + 2 * c.vocab_size,
    };
    let attention = 2 * c.n_layer * c.block_size * c.n_embd;
    8 * (brain + logits + attention) as u64
}

fn run_generate(req: GenerateRequest) -> GenerateResult {
    let engine = match engine() {
        Ok(e) => e,
        Err(e) => return GenerateResult::Err(e),
    };
    let max_bytes = MAX_PROMPT_BYTES_PER_POSITION * engine.config().block_size;
    if req.prompt.len() > max_bytes {
        return GenerateResult::Err(format!(
            "prompt is {} bytes; at most {max_bytes} are accepted (the context holds {} tokens)",
            req.prompt.len(),
            engine.config().block_size - 1
        ));
    }
    let params = SamplingParams {
        temperature: req.temperature.unwrap_or(0.0),
        top_k: req.top_k.unwrap_or(0) as usize,
        top_p: req.top_p.unwrap_or(1.0),
        seed: req.seed.unwrap_or(0),
    };
    let stop = req.stop.unwrap_or_default();
    let mut budget = Budget::new(
        QUERY_INSTRUCTION_LIMIT,
        prior_instructions_per_position(&engine),
        ic_cdk::api::performance_counter(0),
    );
    let result = engine.generate(&req.prompt, req.max_tokens as usize, params, &stop, |n| {
        budget.allows(ic_cdk::api::performance_counter(0), n)
    });
    match result {
        Ok(out) => GenerateResult::Ok(Generation {
            text: out.text,
            generated_tokens: out.tokens.len() as u32,
            tokens: out.tokens,
            prompt_tokens: out.prompt_tokens as u32,
            finish_reason: finish_reason(out.finish),
            instructions: ic_cdk::api::performance_counter(0),
        }),
        Err(e) => GenerateResult::Err(e.to_string()),
    }
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

/// Greedy generation of up to `max_tokens` tokens after `prompt`.
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
    })
}

#[ic_cdk::query]
fn generate_with(req: GenerateRequest) -> GenerateResult {
    run_generate(req)
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
        total_params: (emb + brain) as u64,
        brain_params: brain as u64,
        embedding_params: emb as u64,
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
        None => ModelInfoResult::Err("no model is loaded".into()),
    })
}

fn status_of(s: &UploadSession) -> UploadStatus {
    UploadStatus {
        total_size: s.total_size,
        chunk_size: s.chunk_size,
        chunks: s.chunks(),
        received: s.received_count(),
        missing: s.missing(),
        sha256: hex(&s.sha256),
        started_at_ns: s.started_at_ns,
    }
}

/// Starts an upload (replacing any unfinished one). Controllers only.
#[ic_cdk::update]
fn upload_begin(req: UploadBegin) -> UploadResult {
    if let Err(e) = caller_is_controller() {
        return UploadResult::Err(e);
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
            let status = status_of(&s);
            meta.upload = Some(s);
            storage::set_meta(meta);
            UploadResult::Ok(status)
        }
        Err(e) => UploadResult::Err(e.to_string()),
    }
}

/// Stores one chunk (any order; sending a chunk again overwrites it). Controllers only.
#[ic_cdk::update]
fn upload_chunk(req: UploadChunk) -> UploadResult {
    if let Err(e) = caller_is_controller() {
        return UploadResult::Err(e);
    }
    let mut meta = storage::meta();
    let Some(session) = meta.upload.as_mut() else {
        return UploadResult::Err(upload::UploadError::NoUpload.to_string());
    };
    match session.chunk(req.index, &req.data, &mut StableSlots) {
        Ok(()) => {
            let status = status_of(session);
            storage::set_meta(meta);
            UploadResult::Ok(status)
        }
        Err(e) => UploadResult::Err(e.to_string()),
    }
}

/// The upload in progress, if any: what arrived and what is missing (to resume).
#[ic_cdk::query]
fn upload_status() -> Option<UploadStatus> {
    storage::meta().upload.as_ref().map(status_of)
}

/// Checks size, SHA-256 and the whole blob with the engine's reader, then makes it the active
/// model in one step. On any failure the previous model keeps serving. Controllers only.
#[ic_cdk::update]
fn upload_commit() -> CommitResult {
    let caller = match caller_is_controller() {
        Ok(c) => c,
        Err(e) => return CommitResult::Err(e),
    };
    let mut meta = storage::meta();
    let Some(session) = meta.upload.clone() else {
        return CommitResult::Err(upload::UploadError::NoUpload.to_string());
    };
    let still = "; the previous model is still serving";
    let bytes = match session.assemble(&StableSlots) {
        Ok(b) => b,
        Err(e) => return CommitResult::Err(format!("{e}{still}")),
    };
    let engine = match Engine::load(&bytes) {
        Ok(e) => e,
        Err(e) => return CommitResult::Err(format!("{e}{still}")),
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
    LOADED.with(|l| {
        *l.borrow_mut() = Some(Loaded {
            engine: Rc::new(engine),
            source,
        })
    });
    CommitResult::Ok(model)
}

/// Drops the upload in progress. Controllers only.
#[ic_cdk::update]
fn upload_abort() -> AbortResult {
    if let Err(e) = caller_is_controller() {
        return AbortResult::Err(e);
    }
    let mut meta = storage::meta();
    if meta.upload.take().is_none() {
        return AbortResult::Err(upload::UploadError::NoUpload.to_string());
    }
    storage::set_meta(meta);
    AbortResult::Ok
}

/// Bytes `[offset, offset + length)` of the blob serving now (uploaded or embedded), so that an
/// operator can read back what is deployed (`packer download`). Its size and checksum are in
/// `model_info`. Controllers only: the weights are theirs to publish or not.
#[ic_cdk::query]
fn download_chunk(offset: u64, length: u32) -> DownloadResult {
    if let Err(e) = caller_is_controller() {
        return DownloadResult::Err(e);
    }
    if length > MAX_DOWNLOAD_CHUNK {
        return DownloadResult::Err(format!(
            "length {length} is over {MAX_DOWNLOAD_CHUNK} bytes (a reply is limited to 2 MiB)"
        ));
    }
    let active = storage::meta().active;
    let size = match (&active, EMBEDDED_MODEL) {
        (Some(a), _) => a.size,
        (None, Some(embedded)) => embedded.len() as u64,
        (None, None) => return DownloadResult::Err("no model is loaded".into()),
    };
    let Some(end) = offset
        .checked_add(u64::from(length))
        .filter(|&end| end <= size)
    else {
        return DownloadResult::Err(format!(
            "bytes {offset}..{offset}+{length} are outside the blob of {size} bytes"
        ));
    };
    let bytes = match active {
        Some(a) => StableSlots.read(a.slot, offset, u64::from(length)),
        None => EMBEDDED_MODEL.map_or_else(Vec::new, |e| e[offset as usize..end as usize].to_vec()),
    };
    DownloadResult::Ok(serde_bytes::ByteBuf::from(bytes))
}

/// Refuses non-controllers' uploads before they cost anything (ingress only; the update
/// methods check again, since inter-canister calls skip this).
#[ic_cdk::inspect_message]
fn inspect_message() {
    let method = ic_cdk::api::msg_method_name();
    if method.starts_with("upload_")
        && let Err(e) = caller_is_controller()
    {
        ic_cdk::trap(e);
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
