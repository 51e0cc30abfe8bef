//! Tensor element types of the blob and their byte encodings (SPEC §4, dtypes).

use crate::config::TensorKind;
use half::f16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32,
    F16,
    Int8,
    Ternary4x,
    Ternary16x,
    /// 5 trits a byte, base 3 (1.6 bits a weight).
    Ternary5x,
    Int6,
    Int4,
    /// Rows rotated by the blockwise Walsh–Hadamard transform, then int8 / int6 / int4.
    Int8Rot,
    Int6Rot,
    Int4Rot,
}

/// Every dtype, in code order.
pub const ALL_DTYPES: [DType; 11] = [
    DType::F32,
    DType::F16,
    DType::Int8,
    DType::Ternary4x,
    DType::Ternary16x,
    DType::Ternary5x,
    DType::Int6,
    DType::Int4,
    DType::Int8Rot,
    DType::Int6Rot,
    DType::Int4Rot,
];

impl DType {
    pub fn code(self) -> u8 {
        match self {
            DType::F32 => 0,
            DType::F16 => 1,
            DType::Int8 => 2,
            DType::Ternary4x => 3,
            DType::Ternary16x => 4,
            DType::Ternary5x => 5,
            DType::Int6 => 6,
            DType::Int4 => 7,
            DType::Int8Rot => 8,
            DType::Int6Rot => 9,
            DType::Int4Rot => 10,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        ALL_DTYPES.get(usize::from(code)).copied()
    }

    /// The dtype of a blob of format `version`: version 1 knows codes 0 to 4 only.
    pub fn from_code_in(code: u8, version: u32) -> Option<Self> {
        Self::from_code(code).filter(|_| version >= 2 || code <= 4)
    }

    pub fn from_name(name: &str) -> Option<Self> {
        ALL_DTYPES.into_iter().find(|d| d.name() == name)
    }

    /// Integer rows (SPEC §4.1): bits a code and whether the rows are Hadamard-rotated.
    pub fn quant(self) -> Option<(u32, bool)> {
        match self {
            DType::Int8 => Some((8, false)),
            DType::Int6 => Some((6, false)),
            DType::Int4 => Some((4, false)),
            DType::Int8Rot => Some((8, true)),
            DType::Int6Rot => Some((6, true)),
            DType::Int4Rot => Some((4, true)),
            _ => None,
        }
    }

    /// The integer-rows dtype of `bits` (8, 6 or 4), rotated or not.
    pub fn quant_of(bits: u32, rotated: bool) -> Option<Self> {
        ALL_DTYPES
            .into_iter()
            .find(|d| d.quant() == Some((bits, rotated)))
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::Int8 => "int8",
            DType::Ternary4x => "ternary4x",
            DType::Ternary16x => "ternary16x",
            DType::Ternary5x => "ternary5x",
            DType::Int6 => "int6",
            DType::Int4 => "int4",
            DType::Int8Rot => "int8r",
            DType::Int6Rot => "int6r",
            DType::Int4Rot => "int4r",
        }
    }

    pub fn is_ternary(self) -> bool {
        matches!(
            self,
            DType::Ternary4x | DType::Ternary16x | DType::Ternary5x
        )
    }

    /// Whether SPEC §4 lets a tensor of this kind be stored in this dtype.
    pub fn allowed_for(self, kind: TensorKind) -> bool {
        match kind {
            TensorKind::AlgebraWeight => self.is_ternary(),
            TensorKind::Embedding => {
                matches!(self, DType::F32 | DType::F16) || self.quant().is_some()
            }
            TensorKind::AlgebraScale | TensorKind::Dense => matches!(self, DType::F32 | DType::F16),
        }
    }

    /// Bytes of a tensor of this dtype and shape, in u64 with checked arithmetic (`u64::MAX`
    /// when it overflows, a length no blob can have): a usize is 32 bits on wasm32, where
    /// 16,777,216 × 256 f32 embeddings would wrap to 0 bytes.
    pub fn byte_len(self, shape: &[usize]) -> u64 {
        let numel = crate::config::elements(shape);
        let len = match self {
            DType::F32 => numel.checked_mul(4),
            DType::F16 => numel.checked_mul(2),
            DType::Int8
            | DType::Int6
            | DType::Int4
            | DType::Int8Rot
            | DType::Int6Rot
            | DType::Int4Rot => {
                // Rows of ceil(bits·c/8) bytes, then an f16 scale per row.
                let bits = self.quant().map_or(8, |q| u64::from(q.0));
                let cols = shape.last().copied().unwrap_or(1).max(1) as u64;
                let rows = numel / cols;
                rows.checked_mul((bits * cols).div_ceil(8) + 2)
            }
            DType::Ternary4x => Some(numel.div_ceil(4)),
            DType::Ternary5x => Some(numel.div_ceil(5)),
            DType::Ternary16x => match shape {
                [a, n, m] => 16u64
                    .checked_mul(*a as u64)
                    .and_then(|v| v.checked_mul((*n as u64).div_ceil(4)))
                    .and_then(|v| v.checked_mul((*m as u64).div_ceil(16))),
                _ => None,
            },
        };
        len.unwrap_or(u64::MAX)
    }
}

pub fn encode_f32(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

pub fn encode_f16(values: &[f32]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|v| f16::from_f32(*v).to_le_bytes())
        .collect()
}

/// int8 rows: per row scale = max|row| / 127 (stored as f16), q = round(v / scale).
pub fn encode_int8_rows(values: &[f32], cols: usize) -> Vec<u8> {
    let rows = values.len() / cols;
    let mut q = Vec::with_capacity(values.len() + 2 * rows);
    let mut scales = Vec::with_capacity(rows);
    for row in values.chunks(cols) {
        let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = f16::from_f32(max / 127.0);
        let s = scale.to_f32();
        for v in row {
            let x = if s > 0.0 {
                (v / s).round().clamp(-127.0, 127.0)
            } else {
                0.0
            };
            q.push(x as i8 as u8);
        }
        scales.push(scale);
    }
    q.extend(scales.iter().flat_map(|s| s.to_le_bytes()));
    q
}

/// Decodes f32 or f16 values (`bytes.len()` = 4 or 2 · `out.len()`) into `out`; false for
/// another dtype or a length that does not match.
pub fn decode_floats_into(dtype: DType, bytes: &[u8], out: &mut [f32]) -> bool {
    match dtype {
        DType::F32 if bytes.len() == 4 * out.len() => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
            true
        }
        DType::F16 if bytes.len() == 2 * out.len() => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = f16::from_le_bytes([b[0], b[1]]).to_f32();
            }
            true
        }
        _ => false,
    }
}

/// The index of the first value of an f32 or f16 tensor that is not finite (None for another
/// dtype), read in place: validating a float tensor keeps no copy of it.
pub fn first_not_finite(dtype: DType, bytes: &[u8]) -> Option<usize> {
    match dtype {
        DType::F32 => bytes
            .chunks_exact(4)
            .position(|b| !f32::from_le_bytes([b[0], b[1], b[2], b[3]]).is_finite()),
        DType::F16 => bytes
            .chunks_exact(2)
            .position(|b| !f16::from_le_bytes([b[0], b[1]]).is_finite()),
        _ => None,
    }
}

/// Decodes an f32, f16 or int8 tensor; returns the index of the first non-finite value as the
/// error. Ternary dtypes are decoded by [`crate::ternary`], int6 / int4 and rotated rows by
/// [`super::quant`].
pub fn decode_f32(dtype: DType, bytes: &[u8], shape: &[usize]) -> Result<Vec<f32>, usize> {
    let out: Vec<f32> = match dtype {
        DType::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        DType::F16 => bytes
            .chunks_exact(2)
            .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        DType::Int8 => {
            let numel: usize = shape.iter().product();
            let cols = shape.last().copied().unwrap_or(1).max(1);
            let (q, s) = bytes.split_at(numel);
            let scales: Vec<f32> = s
                .chunks_exact(2)
                .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect();
            if let Some(r) = scales.iter().position(|s| !s.is_finite()) {
                return Err(r * cols);
            }
            q.iter()
                .enumerate()
                .map(|(e, &b)| f32::from(b as i8) * scales[e / cols])
                .collect()
        }
        _ => return Err(0),
    };
    match out.iter().position(|v| !v.is_finite()) {
        Some(e) => Err(e),
        None => Ok(out),
    }
}
