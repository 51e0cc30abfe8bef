//! The Candid types of the canister's interface (`candid/walsh.did`): what the canister answers
//! and what its clients decode. A crate of its own so that clients (`packer upload`) link the
//! interface, not the canister.

use candid::{CandidType, Deserialize, Principal};
use thiserror::Error;
use walsh_spec::upload::{MAX_BLOB_SIZE, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE};

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
    /// Generation stops when the text contains one of these (the text is cut before it).
    pub stop: Option<Vec<String>>,
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

#[derive(Debug, Clone, CandidType, Deserialize)]
pub enum GenerateResult {
    Ok(Generation),
    Err(String),
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
    Err(String),
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

#[derive(Debug, Clone, CandidType, Deserialize)]
pub struct UploadStatus {
    pub total_size: u64,
    pub chunk_size: u32,
    pub chunks: u32,
    pub received: u32,
    pub missing: Vec<u32>,
    pub sha256: String,
    pub started_at_ns: u64,
}

#[derive(Debug, Clone, CandidType, Deserialize)]
pub enum UploadResult {
    Ok(UploadStatus),
    Err(String),
}

// Built once per call and encoded straight away: the size difference of the variants is moot.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, CandidType, Deserialize)]
pub enum CommitResult {
    Ok(ModelInfo),
    Err(String),
}

#[derive(Debug, Clone, CandidType, Deserialize)]
pub enum AbortResult {
    Ok,
    Err(String),
}

/// Bytes of the active blob (`download_chunk`).
#[derive(Debug, Clone, CandidType, Deserialize)]
pub enum DownloadResult {
    Ok(serde_bytes::ByteBuf),
    Err(String),
}

/// Why an upload step was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UploadError {
    #[error("no upload in progress: call upload_begin first")]
    NoUpload,
    #[error("total_size {0} is out of range: 1..={MAX_BLOB_SIZE} bytes")]
    BadSize(u64),
    #[error(
        "chunk_size {0} is out of range: {MIN_CHUNK_SIZE}..={MAX_CHUNK_SIZE} bytes (ingress messages are limited to 2 MiB)"
    )]
    BadChunkSize(u32),
    #[error("sha256 must be 32 bytes, got {0}")]
    BadSha(usize),
    #[error("chunk index {index} is out of range: this upload has {chunks} chunks")]
    BadIndex { index: u32, chunks: u32 },
    #[error("chunk {index} must be {expected} bytes, got {got}")]
    BadChunkLen { index: u32, expected: u64, got: u64 },
    #[error("{missing} of {chunks} chunks are missing (first missing: {first}); see upload_status")]
    Incomplete {
        missing: u32,
        chunks: u32,
        first: u32,
    },
    #[error(
        "SHA-256 mismatch: upload_begin declared {declared}, the received bytes hash to {received}"
    )]
    ShaMismatch { declared: String, received: String },
    #[error("cannot reserve stable memory: {0}")]
    Storage(String),
}
