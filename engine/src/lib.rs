//! The Walsh inference engine: the model of `docs/SPEC.md` (whose definitions are in
//! `walsh-spec`), loaded from a `.walsh` blob and run with a KV cache in heap. This crate
//! compiles natively (`packer run`, `packer eval`, tests) and to wasm32-unknown-unknown (the
//! canister), with the same results on both. It knows nothing of the Internet Computer.

pub mod attention;
pub mod embedding_table;
pub mod eval;
pub mod generate;
pub mod head_mixing;
pub mod int_math;
pub mod kv_cache;
pub mod math;
pub mod model;
pub mod octonion_product;
pub mod part_fht;
pub mod profile;
pub mod quant;
pub mod row_matrix;
pub mod ternary_linear;
pub mod tokenizer;

#[cfg(target_arch = "wasm32")]
mod wasm_entropy;

pub use generate::{FinishReason, GenerateError, Generation, Output};
pub use model::Model;
pub use tokenizer::{Tokenizer, TokenizerError};
pub use walsh_spec::{BlobError, ModelConfig, SamplingParams};

use walsh_spec::blob;

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum LoadError {
    #[error("invalid blob: {0}")]
    Blob(#[from] BlobError),
    #[error("invalid blob: {0}")]
    Tokenizer(#[from] TokenizerError),
    #[error(
        "the model would need {needed} bytes of heap to run (weights as f32, RoPE tables, KV cache); the engine allows {limit}"
    )]
    TooLarge { needed: u64, limit: u64 },
}

/// Heap the engine may take for one model: wasm32's 4 GiB less room for the tokenizer, the blob
/// being validated during an upload, and the call's own buffers.
pub const MAX_ENGINE_HEAP: u64 = 3 << 30;

/// A loaded model and its tokenizer, ready to generate.
#[derive(Debug)]
pub struct Engine {
    pub model: Model,
    pub tokenizer: Tokenizer,
    /// SHA-256 of the blob it was loaded from.
    pub sha256: [u8; 32],
    pub blob_len: usize,
    /// Layout of the ternary weights in the blob.
    pub packing: blob::DType,
}

impl Engine {
    /// Parses, validates and loads a blob: the complete check an uploaded blob must pass.
    pub fn load(bytes: &[u8]) -> Result<Self, LoadError> {
        Self::from_parsed(blob::parse(bytes)?)
    }

    /// [`Engine::load`] with the SHA-256 of the blob's content (all but its last 32 bytes)
    /// computed by the caller as the bytes arrived: the same verdict, one hash pass fewer.
    pub fn load_prehashed(bytes: &[u8], content_sha256: [u8; 32]) -> Result<Self, LoadError> {
        Self::from_parsed(blob::parse_prehashed(bytes, content_sha256)?)
    }

    fn from_parsed(blob: blob::Blob<'_>) -> Result<Self, LoadError> {
        let tokenizer = Tokenizer::from_section(blob.tokenizer, blob.config.vocab_size)?;
        if blob.config.eos_token_id as usize >= tokenizer.vocab_size() {
            return Err(TokenizerError::EosOutOfRange {
                eos: blob.config.eos_token_id,
                vocab: tokenizer.vocab_size(),
            }
            .into());
        }
        let heap = Model::heap_estimate(&blob.config);
        if heap > MAX_ENGINE_HEAP {
            return Err(LoadError::TooLarge {
                needed: heap,
                limit: MAX_ENGINE_HEAP,
            });
        }
        let model = Model::from_blob(&blob)?;
        let packing = blob
            .tensors
            .iter()
            .find(|t| t.dtype.is_ternary())
            .map_or(blob::DType::Ternary4x, |t| t.dtype);
        Ok(Engine {
            model,
            tokenizer,
            sha256: blob.sha256,
            blob_len: blob.total_len,
            packing,
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.model.config
    }
}
