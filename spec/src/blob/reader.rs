//! The blob parser: takes untrusted bytes, checks every rule of SPEC §4, and hands out views of
//! the tensors. It never panics and never allocates more than the blob's own size suggests.

use super::quant::{QuantError, QuantRows, QuantRowsRef};
use super::{
    ALIGN, BlobError, CHECKSUM_LEN, DType, FLAG_COMPACT_TOKENIZER, HEADER_LEN, MAGIC, MAX_NAME_LEN,
    MAX_RANK, VERSION, decode_f32, decode_floats_into, first_not_finite, hex,
};
use crate::config::{ModelConfig, TensorKind, TensorSpec};
use crate::ternary::{self, UnpackError};
use byteorder::{ByteOrder, LittleEndian as LE};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// A validated blob, borrowing the bytes it was parsed from.
#[derive(Debug)]
pub struct Blob<'a> {
    pub config: ModelConfig,
    /// Format version (1 or 2).
    pub version: u32,
    /// The tokenizer section (the engine loads it).
    pub tokenizer: TokenizerSection<'a>,
    /// Tensors in table order.
    pub tensors: Vec<TensorView<'a>>,
    pub sha256: [u8; 32],
    pub total_len: usize,
}

/// The tokenizer as the blob stores it (SPEC §4, §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenizerSection<'a> {
    /// tokenizer.json text, validated as UTF-8.
    Json(&'a str),
    /// The compact form's bytes (decoded by [`super::CompactTokenizer::decode`]).
    Compact(&'a [u8]),
}

impl TokenizerSection<'_> {
    pub fn len(&self) -> usize {
        match self {
            TokenizerSection::Json(s) => s.len(),
            TokenizerSection::Compact(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// "json" or "compact".
    pub fn form(&self) -> &'static str {
        match self {
            TokenizerSection::Json(_) => "json",
            TokenizerSection::Compact(_) => "compact",
        }
    }
}

#[derive(Debug, Clone)]
pub struct TensorView<'a> {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub kind: TensorKind,
    pub bytes: &'a [u8],
}

impl<'a> TensorView<'a> {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The values of a float or integer-rows tensor as f32, any rotation undone (already
    /// checked finite by `parse`).
    pub fn to_f32(&self) -> Result<Vec<f32>, BlobError> {
        if self.dtype.quant().is_some() && self.dtype != DType::Int8 {
            return Ok(self.quant_rows()?.to_f32());
        }
        decode_f32(self.dtype, self.bytes, &self.shape).map_err(|element| BlobError::NotFinite {
            tensor: self.name.clone(),
            element,
        })
    }

    /// An integer-rows tensor (int8, int6, int4, rotated or not) as stored: codes, per-row scales
    /// and the rotation block (SPEC §4.1; [`QuantRows`] says exactly what the values are).
    /// `Ok(None)` for a tensor of any other dtype (f32, f16, ternary).
    pub fn to_quant_rows(&self) -> Result<Option<QuantRows>, BlobError> {
        if self.dtype.quant().is_none() {
            return Ok(None);
        }
        self.quant_rows().map(Some)
    }

    fn quant_rows(&self) -> Result<QuantRows, BlobError> {
        QuantRows::decode(self.dtype, self.bytes, &self.shape).map_err(|e| self.quant_error(e))
    }

    /// An integer-rows tensor read in place, one row at a time (the engine builds its tables
    /// from it without a full-size copy). `Ok(None)` for a tensor of any other dtype.
    pub fn quant_rows_ref(&self) -> Result<Option<QuantRowsRef<'a>>, BlobError> {
        if self.dtype.quant().is_none() {
            return Ok(None);
        }
        QuantRowsRef::new(self.dtype, self.bytes, &self.shape)
            .map(Some)
            .ok_or_else(|| self.quant_error(QuantError::Length))
    }

    /// The error of a problem found in this tensor's integer rows.
    pub fn quant_error(&self, e: QuantError) -> BlobError {
        match e {
            QuantError::NotFiniteScale { row } => BlobError::NotFinite {
                tensor: self.name.clone(),
                element: row * self.shape.last().copied().unwrap_or(1),
            },
            QuantError::NonZeroPadding { row } => BlobError::QuantPadding {
                tensor: self.name.clone(),
                row,
            },
            QuantError::Length => BlobError::LengthMismatch {
                tensor: self.name.clone(),
                expected: self.dtype.byte_len(&self.shape),
                found: self.bytes.len() as u64,
            },
        }
    }

    /// Row r of an f32 or f16 tensor of shape [.., cols] into `out[..cols]` (checked finite by
    /// `parse`); false for a tensor of another dtype or a row out of range.
    pub fn float_row_into(&self, r: usize, out: &mut [f32]) -> bool {
        let cols = self.shape.last().copied().unwrap_or(1).max(1);
        let width = match self.dtype {
            DType::F32 => 4,
            DType::F16 => 2,
            _ => return false,
        };
        let Some(row) = self.bytes.get(r * cols * width..(r + 1) * cols * width) else {
            return false;
        };
        decode_floats_into(self.dtype, row, &mut out[..cols])
    }

    /// The values of a ternary tensor, in [A, n, m] row-major order.
    pub fn to_ternary(&self) -> Result<Vec<i8>, BlobError> {
        let unpacked = match (self.dtype, self.shape.as_slice()) {
            (DType::Ternary4x, _) => ternary::unpack4x(self.bytes, self.numel()),
            (DType::Ternary5x, _) => ternary::unpack5x(self.bytes, self.numel()),
            (DType::Ternary16x, [a, n, m]) => ternary::unpack16x(self.bytes, *a, *n, *m),
            _ => {
                return Err(BlobError::DtypeNotAllowed {
                    tensor: self.name.clone(),
                    dtype: self.dtype.name(),
                });
            }
        };
        unpacked.map_err(|e| match e {
            UnpackError::InvalidCode { element } => BlobError::InvalidTernary {
                tensor: self.name.clone(),
                element,
            },
            UnpackError::NonZeroPadding { byte } => BlobError::TernaryPadding {
                tensor: self.name.clone(),
                byte,
            },
            UnpackError::InvalidByte { byte, value } => BlobError::InvalidTernaryByte {
                tensor: self.name.clone(),
                byte,
                value,
            },
        })
    }
}

impl<'a> Blob<'a> {
    pub fn tensor(&self, name: &str) -> Option<&TensorView<'a>> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// A cursor over the tensor table that reports truncation instead of panicking.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    end: usize,
    entry: u64,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], BlobError> {
        if self.end - self.pos < n {
            return Err(BlobError::TableTruncated {
                entry: self.entry,
                needed: n - (self.end - self.pos),
            });
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, BlobError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, BlobError> {
        Ok(LE::read_u16(self.take(2)?))
    }
    fn u64(&mut self) -> Result<u64, BlobError> {
        Ok(LE::read_u64(self.take(8)?))
    }
}

fn section(
    name: &'static str,
    offset: u64,
    len: u64,
    blob_len: usize,
) -> Result<(usize, usize), BlobError> {
    let err = BlobError::SectionOutOfBounds {
        section: name,
        offset,
        len,
        limit: blob_len,
    };
    let end = offset.checked_add(len).ok_or(err.clone())?;
    if end > blob_len as u64 {
        return Err(err);
    }
    Ok((offset as usize, end as usize))
}

fn check_zero(bytes: &[u8], base: usize) -> Result<(), BlobError> {
    match bytes.iter().position(|&b| b != 0) {
        Some(i) => Err(BlobError::NonZeroPadding {
            offset: base + i,
            value: bytes[i],
        }),
        None => Ok(()),
    }
}

/// Parses and fully validates a blob (SPEC §4). The tokenizer is checked as UTF-8 here; the engine
/// loads it and reports what the `tokenizers` crate finds wrong with it.
pub fn parse(bytes: &[u8]) -> Result<Blob<'_>, BlobError> {
    parse_inner(bytes, None)
}

/// [`parse`] with the SHA-256 of the blob's content (every byte before the trailing checksum)
/// already computed by the caller, who hashed the bytes as they arrived (the canister, during an
/// upload): the same verdict as [`parse`] on the same bytes, without hashing them again.
pub fn parse_prehashed(bytes: &[u8], content_sha256: [u8; 32]) -> Result<Blob<'_>, BlobError> {
    parse_inner(bytes, Some(content_sha256))
}

fn parse_inner(bytes: &[u8], content_sha256: Option<[u8; 32]>) -> Result<Blob<'_>, BlobError> {
    let blob_len = bytes.len();
    if blob_len < HEADER_LEN {
        return Err(BlobError::TooShort {
            needed: HEADER_LEN,
            have: blob_len,
        });
    }
    let mut found = [0u8; 8];
    found.copy_from_slice(&bytes[0..8]);
    if found != MAGIC {
        return Err(BlobError::BadMagic { found });
    }
    let version = LE::read_u32(&bytes[8..12]);
    if !(1..=VERSION).contains(&version) {
        return Err(BlobError::UnsupportedVersion(version));
    }
    let flags = LE::read_u32(&bytes[12..16]);
    // Version 1 has no flags; version 2 one, the compact tokenizer.
    let known = if version == 1 {
        0
    } else {
        FLAG_COMPACT_TOKENIZER
    };
    if flags & !known != 0 {
        return Err(BlobError::ReservedFlags(flags & !known));
    }
    let config_len = LE::read_u64(&bytes[16..24]);
    let tokenizer_len = LE::read_u64(&bytes[24..32]);
    let tensor_count = LE::read_u64(&bytes[32..40]);
    let data_offset = LE::read_u64(&bytes[40..48]);
    let data_len = LE::read_u64(&bytes[48..56]);

    // The overall size first: a truncated download should say "truncated", not "bad table".
    let expected_total = data_offset
        .checked_add(data_len)
        .and_then(|v| v.checked_add(CHECKSUM_LEN as u64))
        .ok_or(BlobError::SectionOutOfBounds {
            section: "data",
            offset: data_offset,
            len: data_len,
            limit: blob_len,
        })?;
    if (blob_len as u64) < expected_total {
        return Err(BlobError::Truncated {
            expected: expected_total,
            have: blob_len,
        });
    }
    if (blob_len as u64) > expected_total {
        return Err(BlobError::TrailingBytes {
            extra: blob_len - expected_total as usize,
        });
    }
    if data_offset % ALIGN as u64 != 0 {
        return Err(BlobError::DataMisaligned(data_offset));
    }

    // Checksum before anything is interpreted further: a corrupted upload is named as such.
    let content_end = blob_len - CHECKSUM_LEN;
    let computed: [u8; 32] =
        content_sha256.unwrap_or_else(|| Sha256::digest(&bytes[..content_end]).into());
    let stored = &bytes[content_end..];
    if computed.as_slice() != stored {
        return Err(BlobError::ChecksumMismatch {
            stored: hex(stored),
            computed: hex(&computed),
        });
    }

    let (cfg_start, cfg_end) = section("config", HEADER_LEN as u64, config_len, blob_len)?;
    let (tok_start, tok_end) = section("tokenizer", cfg_end as u64, tokenizer_len, blob_len)?;
    let (data_start, data_end) = section("data", data_offset, data_len, content_end)?;
    if tok_end > data_start {
        return Err(BlobError::SectionOutOfBounds {
            section: "tokenizer",
            offset: cfg_end as u64,
            len: tokenizer_len,
            limit: data_start,
        });
    }
    let config = ModelConfig::from_json(&bytes[cfg_start..cfg_end])?;
    let tokenizer = if flags & FLAG_COMPACT_TOKENIZER != 0 {
        TokenizerSection::Compact(&bytes[tok_start..tok_end])
    } else {
        TokenizerSection::Json(
            std::str::from_utf8(&bytes[tok_start..tok_end])
                .map_err(|_| BlobError::TokenizerNotUtf8)?,
        )
    };

    let specs = config.tensors();
    if tensor_count != specs.len() as u64 {
        return Err(BlobError::TensorCount {
            count: tensor_count,
            expected: specs.len(),
        });
    }
    let by_name: HashMap<&str, &TensorSpec> = specs.iter().map(|s| (s.name.as_str(), s)).collect();

    let mut cur = Cursor {
        bytes,
        pos: tok_end,
        end: data_start,
        entry: 0,
    };
    let data = &bytes[data_start..data_end];
    let mut tensors: Vec<TensorView<'_>> = Vec::with_capacity(specs.len());
    let mut seen: HashMap<String, ()> = HashMap::with_capacity(specs.len());
    let mut data_cursor: u64 = 0;
    for entry in 0..tensor_count {
        cur.entry = entry;
        let name_len = cur.u16()? as usize;
        if name_len == 0 || name_len > MAX_NAME_LEN {
            return Err(BlobError::BadName {
                entry,
                why: "length must be 1..=256",
            });
        }
        let raw = cur.take(name_len)?;
        // SPEC §3 names use ASCII letters, digits, '.' and '_' only; anything else is refused
        // before it can reach an error message.
        if !raw
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'.' || *b == b'_')
        {
            return Err(BlobError::BadName {
                entry,
                why: "only ASCII letters, digits, '.' and '_' are allowed",
            });
        }
        let name = String::from_utf8_lossy(raw).into_owned();
        let code = cur.u8()?;
        let dtype = DType::from_code_in(code, version).ok_or_else(|| BlobError::UnknownDtype {
            tensor: name.clone(),
            code,
        })?;
        let rank = cur.u8()?;
        if rank == 0 || rank as usize > MAX_RANK {
            return Err(BlobError::BadRank { tensor: name, rank });
        }
        let mut dims = Vec::with_capacity(rank as usize);
        for _ in 0..rank {
            dims.push(cur.u64()?);
        }
        let offset = cur.u64()?;
        let length = cur.u64()?;

        let spec = by_name
            .get(name.as_str())
            .ok_or_else(|| BlobError::UnexpectedTensor(name.clone()))?;
        if seen.insert(name.clone(), ()).is_some() {
            return Err(BlobError::DuplicateTensor(name));
        }
        if dims.len() != spec.shape.len()
            || dims.iter().zip(&spec.shape).any(|(d, s)| *d != *s as u64)
        {
            return Err(BlobError::ShapeMismatch {
                tensor: name,
                expected: spec.shape.clone(),
                found: dims,
            });
        }
        if !dtype.allowed_for(spec.kind) || (dtype == DType::Ternary16x && spec.shape.len() != 3) {
            return Err(BlobError::DtypeNotAllowed {
                tensor: name,
                dtype: dtype.name(),
            });
        }
        let expected = dtype.byte_len(&spec.shape);
        if length != expected {
            return Err(BlobError::LengthMismatch {
                tensor: name,
                expected,
                found: length,
            });
        }
        if offset % ALIGN as u64 != 0 {
            return Err(BlobError::Misaligned {
                tensor: name,
                offset,
            });
        }
        if offset < data_cursor {
            return Err(BlobError::Overlap { tensor: name });
        }
        let end = offset
            .checked_add(length)
            .filter(|e| *e <= data_len)
            .ok_or(BlobError::DataOutOfBounds {
                tensor: name.clone(),
                end: offset.saturating_add(length),
                data_len,
            })?;
        check_zero(
            &data[data_cursor as usize..offset as usize],
            data_start + data_cursor as usize,
        )?;
        data_cursor = end;
        let view = TensorView {
            name,
            dtype,
            shape: spec.shape.clone(),
            kind: spec.kind,
            bytes: &data[offset as usize..end as usize],
        };
        // Content: ternary codes, integer rows (scales and padding; every code is a value, and
        // codes times finite f16 scales, rotated or not, stay finite) and float values.
        if dtype.is_ternary() {
            view.to_ternary()?;
        } else if let Some(rows) = view.quant_rows_ref()? {
            // Row by row: validating keeps no copy of the tensor (it is all of the heap's
            // high-water mark for a large embedding).
            rows.validate().map_err(|e| view.quant_error(e))?;
        } else if let Some(element) = first_not_finite(view.dtype, view.bytes) {
            return Err(BlobError::NotFinite {
                tensor: view.name.clone(),
                element,
            });
        }
        tensors.push(view);
    }
    // Everything between the table and the data section, and after the last tensor, is zero.
    check_zero(&bytes[cur.pos..data_start], cur.pos)?;
    check_zero(
        &data[data_cursor as usize..],
        data_start + data_cursor as usize,
    )?;
    if let Some(missing) = specs.iter().find(|s| !seen.contains_key(&s.name)) {
        return Err(BlobError::MissingTensor(missing.name.clone()));
    }
    Ok(Blob {
        config,
        version,
        tokenizer,
        tensors,
        sha256: computed,
        total_len: blob_len,
    })
}
