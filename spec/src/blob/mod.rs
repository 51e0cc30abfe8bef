//! The `.walsh` blob of SPEC §4: its dtypes and errors (here), the parser that validates an
//! untrusted blob (`reader`), the writer the packer uses (`writer`), low-bit rows (`quant`) and
//! the compact tokenizer (`tokenizer`).

mod dtype;
pub mod quant;
mod reader;
pub mod tokenizer;
mod writer;

pub use dtype::{
    DType, decode_f32, decode_floats_into, encode_f16, encode_f32, encode_int8_rows,
    first_not_finite,
};
pub use quant::{QuantRows, QuantRowsRef};
pub use reader::{Blob, TensorView, TokenizerSection, parse, parse_prehashed};
pub use tokenizer::{CompactTokenizer, CompactTokenizerError};
pub use writer::{BlobWriter, WriterTensor, WriterTokenizer};

use crate::config::ConfigError;
use thiserror::Error;

pub const MAGIC: [u8; 8] = *b"WALSHBLB";
/// The version the writer writes. The reader also reads version 1 (SPEC §4: no header flags,
/// the tokenizer as JSON, dtype codes 0 to 4).
pub const VERSION: u32 = 2;
/// Header flag (version 2): the tokenizer section holds the compact form of SPEC §4.2.
pub const FLAG_COMPACT_TOKENIZER: u32 = 1;
pub const HEADER_LEN: usize = 56;
pub const ALIGN: usize = 64;
pub const CHECKSUM_LEN: usize = 32;
pub const MAX_NAME_LEN: usize = 256;
pub const MAX_RANK: usize = 4;

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum BlobError {
    #[error("blob is {have} bytes, shorter than the {needed}-byte header")]
    TooShort { needed: usize, have: usize },
    #[error("not a .walsh blob (magic bytes are {found:02x?}, expected \"WALSHBLB\")")]
    BadMagic { found: [u8; 8] },
    #[error(
        "blob format version {0} is not supported (this engine reads versions 1 and {VERSION}); repack the checkpoint with a packer of this version"
    )]
    UnsupportedVersion(u32),
    #[error("reserved header flags are {0:#x}; they must be 0")]
    ReservedFlags(u32),
    #[error(
        "{section} section (offset {offset}, {len} bytes) runs past byte {limit}, the end of the space it may use"
    )]
    SectionOutOfBounds {
        section: &'static str,
        offset: u64,
        len: u64,
        limit: usize,
    },
    #[error("data offset {0} is not a multiple of {ALIGN}")]
    DataMisaligned(u64),
    #[error("model config in the blob is invalid: {0}")]
    Config(#[from] ConfigError),
    #[error("tokenizer section is not UTF-8")]
    TokenizerNotUtf8,
    #[error(
        "tensor table entry {entry} is truncated: it needs {needed} more bytes before the data section"
    )]
    TableTruncated { entry: u64, needed: usize },
    #[error("tensor table has {count} entries but the model has {expected} tensors")]
    TensorCount { count: u64, expected: usize },
    #[error("tensor table entry {entry} has an invalid name ({why})")]
    BadName { entry: u64, why: &'static str },
    #[error("tensor `{tensor}` has unknown dtype code {code}")]
    UnknownDtype { tensor: String, code: u8 },
    #[error("tensor `{tensor}` has rank {rank}; ranks 1..={MAX_RANK} are allowed")]
    BadRank { tensor: String, rank: u8 },
    #[error("tensor `{0}` appears twice in the tensor table")]
    DuplicateTensor(String),
    #[error("tensor `{0}` is not part of this model's config")]
    UnexpectedTensor(String),
    #[error("tensor `{0}` is missing")]
    MissingTensor(String),
    #[error("tensor `{tensor}` has shape {found:?}; the config says {expected:?}")]
    ShapeMismatch {
        tensor: String,
        expected: Vec<usize>,
        found: Vec<u64>,
    },
    #[error("tensor `{tensor}` is stored as {dtype}, which SPEC §4 does not allow for it")]
    DtypeNotAllowed { tensor: String, dtype: &'static str },
    #[error("tensor `{tensor}` is {found} bytes; its dtype and shape need {expected}")]
    LengthMismatch {
        tensor: String,
        expected: u64,
        found: u64,
    },
    #[error("tensor `{tensor}` starts at data offset {offset}, not a multiple of {ALIGN}")]
    Misaligned { tensor: String, offset: u64 },
    #[error(
        "tensor `{tensor}` starts before the end of the previous tensor (offsets must increase)"
    )]
    Overlap { tensor: String },
    #[error("tensor `{tensor}` ends at data offset {end}, past the {data_len}-byte data section")]
    DataOutOfBounds {
        tensor: String,
        end: u64,
        data_len: u64,
    },
    #[error("padding byte at blob offset {offset} is {value:#04x}; padding must be zero")]
    NonZeroPadding { offset: usize, value: u8 },
    #[error("tensor `{tensor}` element {element} has the invalid ternary code 11")]
    InvalidTernary { tensor: String, element: usize },
    #[error("tensor `{tensor}` has a non-zero ternary padding code in byte {byte}")]
    TernaryPadding { tensor: String, byte: usize },
    #[error("tensor `{tensor}` byte {byte} is {value}; five trits are at most 242 (3^5 - 1)")]
    InvalidTernaryByte {
        tensor: String,
        byte: usize,
        value: u8,
    },
    #[error("tensor `{tensor}` row {row} has non-zero padding bits after its last code")]
    QuantPadding { tensor: String, row: usize },
    #[error("tensor `{tensor}` element {element} is not a finite number")]
    NotFinite { tensor: String, element: usize },
    #[error("blob is {have} bytes but its header says {expected} (truncated?)")]
    Truncated { expected: u64, have: usize },
    #[error("blob has {extra} bytes after its checksum")]
    TrailingBytes { extra: usize },
    #[error(
        "checksum mismatch: the blob says {stored}, its content hashes to {computed} (corrupted?)"
    )]
    ChecksumMismatch { stored: String, computed: String },
}

/// Lower-case hex of a byte string (checksums in messages and in `packer inspect`).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
