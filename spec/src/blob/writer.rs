//! Writes a blob in the layout of SPEC §4. Used by the packer and by tests; the canister only
//! reads.

use super::{ALIGN, CHECKSUM_LEN, DType, FLAG_COMPACT_TOKENIZER, HEADER_LEN, MAGIC, VERSION};
use byteorder::{LittleEndian as LE, WriteBytesExt};
use sha2::{Digest, Sha256};

/// One tensor to write: already encoded in its dtype.
#[derive(Debug, Clone)]
pub struct WriterTensor {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

/// The tokenizer section to write: tokenizer.json text, or the compact form's bytes
/// ([`super::CompactTokenizer::encode`]), which sets the header flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriterTokenizer {
    Json(String),
    Compact(Vec<u8>),
}

impl Default for WriterTokenizer {
    fn default() -> Self {
        WriterTokenizer::Json(String::new())
    }
}

impl WriterTokenizer {
    pub fn bytes(&self) -> &[u8] {
        match self {
            WriterTokenizer::Json(s) => s.as_bytes(),
            WriterTokenizer::Compact(b) => b,
        }
    }
}

impl From<super::TokenizerSection<'_>> for WriterTokenizer {
    fn from(t: super::TokenizerSection<'_>) -> Self {
        match t {
            super::TokenizerSection::Json(s) => WriterTokenizer::Json(s.to_string()),
            super::TokenizerSection::Compact(b) => WriterTokenizer::Compact(b.to_vec()),
        }
    }
}

#[derive(Debug, Default)]
pub struct BlobWriter {
    pub config_json: String,
    pub tokenizer: WriterTokenizer,
    pub tensors: Vec<WriterTensor>,
}

impl BlobWriter {
    /// The blob's bytes, checksum included. No validation here: `blob::parse` is the judge, and
    /// tests use this writer to build invalid blobs on purpose.
    pub fn finish(&self) -> Vec<u8> {
        let mut table = Vec::new();
        let mut data_len = 0usize;
        let mut offsets = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            data_len = data_len.next_multiple_of(ALIGN);
            offsets.push(data_len);
            data_len += t.bytes.len();
        }
        for (t, &off) in self.tensors.iter().zip(&offsets) {
            // Writes into a Vec cannot fail.
            let _ = table.write_u16::<LE>(t.name.len() as u16);
            table.extend_from_slice(t.name.as_bytes());
            table.push(t.dtype.code());
            table.push(t.shape.len() as u8);
            for &d in &t.shape {
                let _ = table.write_u64::<LE>(d as u64);
            }
            let _ = table.write_u64::<LE>(off as u64);
            let _ = table.write_u64::<LE>(t.bytes.len() as u64);
        }
        let data_offset =
            (HEADER_LEN + self.config_json.len() + self.tokenizer.bytes().len() + table.len())
                .next_multiple_of(ALIGN);
        let mut out = Vec::with_capacity(data_offset + data_len + CHECKSUM_LEN);
        out.extend_from_slice(&MAGIC);
        let _ = out.write_u32::<LE>(VERSION);
        let flags = match self.tokenizer {
            WriterTokenizer::Json(_) => 0,
            WriterTokenizer::Compact(_) => FLAG_COMPACT_TOKENIZER,
        };
        let _ = out.write_u32::<LE>(flags);
        let _ = out.write_u64::<LE>(self.config_json.len() as u64);
        let _ = out.write_u64::<LE>(self.tokenizer.bytes().len() as u64);
        let _ = out.write_u64::<LE>(self.tensors.len() as u64);
        let _ = out.write_u64::<LE>(data_offset as u64);
        let _ = out.write_u64::<LE>(data_len as u64);
        out.extend_from_slice(self.config_json.as_bytes());
        out.extend_from_slice(self.tokenizer.bytes());
        out.extend_from_slice(&table);
        out.resize(data_offset, 0);
        for (t, &off) in self.tensors.iter().zip(&offsets) {
            out.resize(data_offset + off, 0);
            out.extend_from_slice(&t.bytes);
        }
        let digest = Sha256::digest(&out);
        out.extend_from_slice(&digest);
        out
    }
}
