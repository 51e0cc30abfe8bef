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
}

impl DType {
    pub fn code(self) -> u8 {
        match self {
            DType::F32 => 0,
            DType::F16 => 1,
            DType::Int8 => 2,
            DType::Ternary4x => 3,
            DType::Ternary16x => 4,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => DType::F32,
            1 => DType::F16,
            2 => DType::Int8,
            3 => DType::Ternary4x,
            4 => DType::Ternary16x,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::Int8 => "int8",
            DType::Ternary4x => "ternary4x",
            DType::Ternary16x => "ternary16x",
        }
    }

    pub fn is_ternary(self) -> bool {
        matches!(self, DType::Ternary4x | DType::Ternary16x)
    }

    /// Whether SPEC §4 lets a tensor of this kind be stored in this dtype.
    pub fn allowed_for(self, kind: TensorKind) -> bool {
        match kind {
            TensorKind::AlgebraWeight => self.is_ternary(),
            TensorKind::Embedding => matches!(self, DType::F32 | DType::F16 | DType::Int8),
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
            DType::Int8 => {
                let cols = shape.last().copied().unwrap_or(1).max(1) as u64;
                (numel / cols)
                    .checked_mul(2)
                    .and_then(|s| s.checked_add(numel))
            }
            DType::Ternary4x => Some(numel.div_ceil(4)),
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

/// Decodes an f32, f16 or int8 tensor; returns the index of the first non-finite value as the
/// error. Ternary dtypes are decoded by [`crate::ternary`].
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
        DType::Ternary4x | DType::Ternary16x => return Err(0),
    };
    match out.iter().position(|v| !v.is_finite()) {
        Some(e) => Err(e),
        None => Ok(out),
    }
}
