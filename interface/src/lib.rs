//! The Candid types of the canister's interface (`candid/walsh.did`): what the canister answers
//! and what its clients decode. A crate of its own so that clients (`packer upload`) link the
//! interface, not the canister.

use candid::{CandidType, Deserialize, Principal};
use thiserror::Error;
use walsh_spec::upload::{MAX_BLOB_SIZE, MAX_CHUNK_SIZE, MAX_CHUNKS, MIN_CHUNK_SIZE};

/// Most stop strings a request may give (`generate_with`).
pub const MAX_STOP_STRINGS: usize = 16;
/// Longest stop string, in bytes.
pub const MAX_STOP_BYTES: usize = 64;

#[derive(Debug, Clone, CandidType, Deserialize)]
pub struct GenerateRequest {
    pub prompt: String,
    pub max_tokens: u32,
    /// 0 or absent: greedy.
    pub temperature: Option<f32>,
    /// 0 or absent: no top-k cut.
    pub top_k: Option<u32>,
    /// Absent: 1 (no nucleus cut).
    pub top_p: Option<f32>,
    pub seed: Option<u64>,
    /// Generation stops when the text contains one of these (the text is cut before it). At most
    /// [`MAX_STOP_STRINGS`] strings of at most [`MAX_STOP_BYTES`] bytes each.
    pub stop: Option<Vec<String>>,
    /// The repetition penalty (SPEC §5.2), a finite number > 0. Absent: 1 (off).
    pub repeat_penalty: Option<f32>,
    /// How many of the context's last tokens the penalty looks at; 0 = off. Absent: 64.
    pub repeat_last_n: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, CandidType, Deserialize)]
pub enum FinishReason {
    #[serde(rename = "eos")]
    Eos,
    #[serde(rename = "length")]
    Length,
    #[serde(rename = "context")]
    Context,
    #[serde(rename = "budget")]
    Budget,
    #[serde(rename = "stop")]
    Stop,
}

#[derive(Debug, Clone, CandidType, Deserialize)]
pub struct Generation {
    pub text: String,
    pub tokens: Vec<u32>,
    pub prompt_tokens: u32,
    pub generated_tokens: u32,
    pub finish_reason: FinishReason,
    /// Wasm instructions this call used (`ic0.performance_counter(0)` at the end).
    pub instructions: u64,
}

/// Why `generate` / `generate_with` refused a request (nothing was generated).
#[derive(Debug, Clone, PartialEq, Eq, CandidType, Deserialize, Error)]
pub enum GenerateError {
    #[error(
        "no model is loaded: upload one with `packer upload` (this build has no embedded model)"
    )]
    NoModel,
    #[error(
        "prompt is {bytes} bytes; at most {max} are accepted (the context holds {context} tokens)"
    )]
    PromptTooManyBytes { bytes: u64, max: u64, context: u32 },
    #[error(
        "prompt is {tokens} tokens; at most {max} fit: {max_context} in the context (block_size minus the start token) and {max_query} that one query's {limit} instructions can process before its first new token"
    )]
    PromptTooLong {
        tokens: u32,
        max: u32,
        max_context: u32,
        max_query: u32,
        limit: u64,
    },
    #[error("{count} stop strings; at most {max} are accepted")]
    TooManyStops { count: u64, max: u32 },
    #[error("stop string {index} is {bytes} bytes; at most {max} are accepted")]
    StopTooLong { index: u32, bytes: u64, max: u32 },
    #[error("invalid sampling parameters: {0}")]
    InvalidSampling(String),
    /// The tokenizer or the model failed (not expected of a model that loaded).
    #[error("{0}")]
    Engine(String),
}

#[derive(Debug, Clone, CandidType, Deserialize)]
pub enum GenerateResult {
    Ok(Generation),
    Err(GenerateError),
}

#[derive(Debug, Clone, CandidType, Deserialize)]
pub struct ModelConfigView {
    pub name: String,
    pub algebra: String,
    pub vocab_size: u32,
    pub n_embd: u32,
    pub n_layer: u32,
    pub n_head: u32,
    pub block_size: u32,
    pub head_mixing: bool,
    pub embedding: String,
    pub hash_buckets: u32,
}

#[derive(Debug, Clone, CandidType, Deserialize)]
pub enum ModelSource {
    /// The default model compiled into the wasm.
    #[serde(rename = "embedded")]
    Embedded,
    #[serde(rename = "uploaded")]
    Uploaded { at_ns: u64, by: Principal },
}

#[derive(Debug, Clone, CandidType, Deserialize)]
pub struct ModelInfo {
    pub config: ModelConfigView,
    pub total_params: u64,
    pub brain_params: u64,
    pub embedding_params: u64,
    pub blob_size: u64,
    pub sha256: String,
    pub packing: String,
    pub source: ModelSource,
    /// Heap bytes of the loaded weights.
    pub heap_bytes: u64,
}

// Built once per call and encoded straight away: the size difference of the variants is moot.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, CandidType, Deserialize)]
pub enum ModelInfoResult {
    Ok(ModelInfo),
    Err(ModelError),
}

/// Why `model_info` has nothing to say.
#[derive(Debug, Clone, PartialEq, Eq, CandidType, Deserialize, Error)]
pub enum ModelError {
    #[error("no model is loaded")]
    NoModel,
}

#[derive(Debug, Clone, CandidType, Deserialize)]
pub struct UploadBegin {
    pub total_size: u64,
    pub sha256: serde_bytes::ByteBuf,
    pub chunk_size: u32,
}

#[derive(Debug, Clone, CandidType, Deserialize)]
pub struct UploadChunk {
    pub index: u32,
    pub data: serde_bytes::ByteBuf,
}

/// Chunks `start..end` (end excluded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, CandidType, Deserialize)]
pub struct ChunkRange {
    pub start: u32,
    pub end: u32,
}

#[derive(Debug, Clone, CandidType, Deserialize)]
pub struct UploadStatus {
    pub total_size: u64,
    pub chunk_size: u32,
    pub chunks: u32,
    pub received: u32,
    /// The chunks not received yet, as ranges (at most [`MAX_CHUNKS`] / 2 of them).
    pub missing: Vec<ChunkRange>,
    pub sha256: String,
    pub started_at_ns: u64,
    /// Bytes the canister has hashed so far (it hashes chunks in order as they arrive, so that
    /// the commit does not have to).
    pub hashed_bytes: u64,
}

impl UploadStatus {
    /// The missing chunk indices, one by one.
    pub fn missing_chunks(&self) -> impl Iterator<Item = u32> + '_ {
        self.missing.iter().flat_map(|r| r.start..r.end)
    }
}

#[derive(Debug, Clone, CandidType, Deserialize)]
pub enum UploadResult {
    Ok(UploadStatus),
    Err(UploadError),
}

#[derive(Debug, Clone, CandidType, Deserialize)]
pub enum UploadStatusResult {
    /// `None`: no upload in progress.
    Ok(Option<UploadStatus>),
    Err(UploadError),
}

// Built once per call and encoded straight away: the size difference of the variants is moot.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, CandidType, Deserialize)]
pub enum CommitResult {
    Ok(ModelInfo),
    Err(UploadError),
}

#[derive(Debug, Clone, CandidType, Deserialize)]
pub enum AbortResult {
    Ok,
    Err(UploadError),
}

/// Bytes of the active blob (`download_chunk`).
#[derive(Debug, Clone, CandidType, Deserialize)]
pub enum DownloadResult {
    Ok(serde_bytes::ByteBuf),
    Err(DownloadError),
}

/// Why `download_chunk` refused.
#[derive(Debug, Clone, PartialEq, Eq, CandidType, Deserialize, Error)]
pub enum DownloadError {
    #[error("caller {caller} is not a controller of this canister; {NOT_CONTROLLER_RULE}")]
    NotController { caller: Principal },
    #[error("no model is loaded")]
    NoModel,
    #[error("length {length} is over {max} bytes (a reply is limited to 2 MiB)")]
    TooLong { length: u32, max: u32 },
    #[error("bytes {offset}..{offset}+{length} are outside the blob of {size} bytes")]
    OutOfRange { offset: u64, length: u32, size: u64 },
}

/// Why only controllers may call the upload and download methods.
pub const NOT_CONTROLLER_RULE: &str = "only controllers may upload or download models";

/// Why an upload step was refused. On every refusal of `upload_commit` the previous model keeps
/// serving.
#[derive(Debug, Clone, PartialEq, Eq, CandidType, Deserialize, Error)]
pub enum UploadError {
    #[error("caller {caller} is not a controller of this canister; {NOT_CONTROLLER_RULE}")]
    NotController { caller: Principal },
    #[error("no upload in progress: call upload_begin first")]
    NoUpload,
    #[error("total_size {0} is out of range: 1..={MAX_BLOB_SIZE} bytes")]
    BadSize(u64),
    #[error(
        "chunk_size {0} is out of range: {MIN_CHUNK_SIZE}..={MAX_CHUNK_SIZE} bytes (ingress messages are limited to 2 MiB)"
    )]
    BadChunkSize(u32),
    #[error(
        "{chunks} chunks of {chunk_size} bytes; an upload has at most {MAX_CHUNKS} chunks (use larger chunks)"
    )]
    TooManyChunks { chunks: u64, chunk_size: u32 },
    #[error("sha256 must be 32 bytes, got {0}")]
    BadSha(u64),
    #[error("chunk index {index} is out of range: this upload has {chunks} chunks")]
    BadIndex { index: u32, chunks: u32 },
    #[error("chunk {index} must be {expected} bytes, got {got}")]
    BadChunkLen { index: u32, expected: u64, got: u64 },
    #[error(
        "{missing} of {chunks} chunks are missing (first missing: {first}); see upload_status. The previous model is still serving"
    )]
    Incomplete {
        missing: u32,
        chunks: u32,
        first: u32,
    },
    #[error(
        "{hashed} of {total} bytes are hashed so far: call upload_commit again (each call hashes a bounded part)"
    )]
    Hashing { hashed: u64, total: u64 },
    #[error(
        "SHA-256 mismatch: upload_begin declared {declared}, the received bytes hash to {received}; the previous model is still serving"
    )]
    ShaMismatch { declared: String, received: String },
    /// The engine refuses the blob (its message); the previous model is still serving.
    #[error("{0}; the previous model is still serving")]
    InvalidBlob(String),
    #[error("cannot reserve stable memory: {0}")]
    Storage(String),
}
