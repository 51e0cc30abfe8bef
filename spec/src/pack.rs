//! Checkpoint → blob (SPEC §2.1 and §4): ternary absmean quantization with γ folded into β.

use crate::blob::{
    BlobWriter, CompactTokenizer, DType, WriterTensor, WriterTokenizer, encode_f16, encode_f32,
    encode_int8_rows, quant,
};
use crate::checkpoint::Checkpoint;
use crate::config::TensorKind;
use crate::ternary;
use half::f16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packing {
    /// 4 weights per byte.
    X4,
    /// 16 weights per u32, 4×16 tiles for 128-bit SIMD.
    X16,
    /// 5 weights per byte in base 3 (1.6 bits a weight).
    X5,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackOptions {
    pub packing: Packing,
    /// f32, f16 or integer rows (int8 / int6 / int4, Hadamard-rotated or not) for the
    /// embedding tables.
    pub embeddings: DType,
}

impl Default for PackOptions {
    fn default() -> Self {
        PackOptions {
            packing: Packing::X4,
            embeddings: DType::F16,
        }
    }
}

/// SPEC §2.1: γ = mean|W|, Wq = clamp(round(W / (γ + 1e-8)), −1, 1).
pub fn quantize_ternary(w: &[f32]) -> (Vec<i8>, f32) {
    let gamma = (w.iter().map(|v| f64::from(v.abs())).sum::<f64>() / w.len().max(1) as f64) as f32;
    // Divide (not multiply by a reciprocal) to round exactly as SPEC writes it.
    let q = w
        .iter()
        .map(|v| (v / (gamma + 1e-8)).round().clamp(-1.0, 1.0) as i8)
        .collect();
    (q, gamma)
}

/// Minified tokenizer.json (the blob carries it; whitespace is a third of GPT-2's file).
pub fn minify_json(json: &str) -> Result<String, serde_json::Error> {
    let v: serde_json::Value = serde_json::from_str(json)?;
    serde_json::to_string(&v)
}

/// The tokenizer section for a tokenizer.json: the compact form of SPEC §4.2 when the tokenizer
/// has one (any BPE whose ids are 0..n and whose merges each make a new token) and it decodes
/// back to the same tokenizer, else the minified JSON. Returns why it is JSON, when it is.
pub fn tokenizer_section(json: &str) -> Result<(WriterTokenizer, Option<String>), PackError> {
    let minified = minify_json(json).map_err(PackError::Tokenizer)?;
    let compact = CompactTokenizer::from_json(&minified).and_then(|t| {
        let bytes = t.encode()?;
        // The JSON the compact form stands for must be the JSON given (merges as pairs).
        let back = CompactTokenizer::decode(&bytes)?.to_json();
        let mut want: serde_json::Value = serde_json::from_str(&minified)
            .map_err(|e| crate::blob::CompactTokenizerError::NotCompactible(e.to_string()))?;
        if let Some(m) = want.pointer_mut("/model/merges") {
            *m = t.to_json()["model"]["merges"].clone();
        }
        if back != want {
            return Err(crate::blob::CompactTokenizerError::NotCompactible(
                "it does not decode back to the same tokenizer.json".into(),
            ));
        }
        Ok(bytes)
    });
    Ok(match compact {
        Ok(bytes) => (WriterTokenizer::Compact(bytes), None),
        Err(e) => (WriterTokenizer::Json(minified), Some(e.to_string())),
    })
}

#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    #[error("tokenizer.json is not valid JSON: {0}")]
    Tokenizer(serde_json::Error),
    #[error("embeddings can be stored as f32, f16, int8, int6 or int4 (rotated or not), not {0}")]
    EmbeddingDtype(&'static str),
    /// A finite value the chosen storage cannot hold; `fits` is the smallest embedding format
    /// that holds the whole tensor.
    #[error(
        "tensor `{tensor}` element {index} is {value:e}, which {} cannot hold ({}): pack with --embeddings {}",
        .dtype.name(), range_note(*.dtype), .fits.name()
    )]
    OutOfRange {
        tensor: String,
        index: usize,
        value: f32,
        dtype: DType,
        fits: DType,
    },
    /// Folding γ into β (SPEC §2.1) left f32's range.
    #[error("tensor `{tensor}` element {index}: β × γ = {beta:e} × {gamma:e} overflows f32")]
    FoldOverflow {
        tensor: String,
        index: usize,
        beta: f32,
        gamma: f32,
    },
}

fn range_note(dtype: DType) -> &'static str {
    match dtype {
        DType::F16 => "f16 holds magnitudes up to 65504",
        DType::Int8 => {
            "int8 keeps each row's scale, max|row| / 127, as f16: rows up to about 8.3e6 in magnitude"
        }
        DType::Int6 | DType::Int4 | DType::Int8Rot | DType::Int6Rot | DType::Int4Rot => {
            "the row's scale, max|row| / (2^(bits-1) - 1) after any rotation, is kept as f16"
        }
        _ => "f32 holds magnitudes up to 3.4e38",
    }
}

/// The first element of `data` (rows of `cols` values) that `dtype` cannot store as
/// `encode_f16` / `encode_int8_rows` / `encode_f32` write it: its index and value.
fn first_out_of_range(data: &[f32], cols: usize, dtype: DType) -> Option<(usize, f32)> {
    match dtype {
        DType::F16 => data
            .iter()
            .position(|v| !f16::from_f32(*v).is_finite())
            .map(|i| (i, data[i])),
        DType::Int8 => data.chunks(cols.max(1)).enumerate().find_map(|(r, row)| {
            // The row's largest magnitude sets its scale, as in `encode_int8_rows`.
            let (j, max) = row.iter().enumerate().fold((0, 0f32), |(bj, bm), (j, v)| {
                if v.abs() > bm { (j, v.abs()) } else { (bj, bm) }
            });
            (!f16::from_f32(max / 127.0).is_finite()).then(|| (r * cols + j, row[j]))
        }),
        _ => data
            .iter()
            .position(|v| !v.is_finite())
            .map(|i| (i, data[i])),
    }
}

pub fn pack(ckpt: &Checkpoint, opts: PackOptions) -> Result<Vec<u8>, PackError> {
    ckpt.validate()?;
    if !opts.embeddings.allowed_for(TensorKind::Embedding) {
        return Err(PackError::EmbeddingDtype(opts.embeddings.name()));
    }
    let specs = ckpt.config.tensors();
    let mut out = Vec::with_capacity(specs.len());
    // γ of every algebra weight, to fold into its β.
    let mut gammas = std::collections::HashMap::new();
    for spec in &specs {
        if spec.kind == TensorKind::AlgebraWeight {
            let t = &ckpt.tensors[&spec.name];
            let (q, gamma) = quantize_ternary(&t.data);
            let prefix = spec.name.trim_end_matches(".weight").to_string();
            gammas.insert(prefix, gamma);
            let (dtype, bytes) = match opts.packing {
                Packing::X4 => (DType::Ternary4x, ternary::pack4x(&q)),
                Packing::X5 => (DType::Ternary5x, ternary::pack5x(&q)),
                Packing::X16 => (
                    DType::Ternary16x,
                    ternary::pack16x(&q, spec.shape[0], spec.shape[1], spec.shape[2]),
                ),
            };
            out.push(WriterTensor {
                name: spec.name.clone(),
                dtype,
                shape: spec.shape.clone(),
                bytes,
            });
            continue;
        }
        let t = &ckpt.tensors[&spec.name];
        let mut data = t.data.clone();
        if spec.kind == TensorKind::AlgebraScale && spec.name.ends_with(".beta") {
            // The config lists `.weight` before `.beta`, so its γ is known here.
            let gamma = gammas[spec.name.trim_end_matches(".beta")];
            data.iter_mut().for_each(|v| *v *= gamma);
            if let Some(index) = data.iter().position(|v| !v.is_finite()) {
                return Err(PackError::FoldOverflow {
                    tensor: spec.name.clone(),
                    index,
                    beta: t.data[index],
                    gamma,
                });
            }
        }
        let dtype = if spec.kind == TensorKind::Embedding {
            opts.embeddings
        } else {
            DType::F32
        };
        let cols = spec.shape[spec.shape.len() - 1];
        let encoded = match dtype {
            DType::Int8 | DType::F16 | DType::F32 => match first_out_of_range(&data, cols, dtype) {
                Some(bad) => Err(bad),
                None => Ok(match dtype {
                    DType::F16 => encode_f16(&data),
                    DType::Int8 => encode_int8_rows(&data, cols),
                    _ => encode_f32(&data),
                }),
            },
            d => quant::encode_rows(&data, cols, d).map_err(|i| (i, data[i])),
        };
        let bytes = match encoded {
            Ok(bytes) => bytes,
            Err((index, value)) => {
                // The checkpoint's values are finite (validated above): f32 always fits.
                let fits = [DType::F16, DType::Int8]
                    .into_iter()
                    .find(|&d| first_out_of_range(&data, cols, d).is_none())
                    .unwrap_or(DType::F32);
                return Err(PackError::OutOfRange {
                    tensor: spec.name.clone(),
                    index,
                    value,
                    dtype,
                    fits,
                });
            }
        };
        out.push(WriterTensor {
            name: spec.name.clone(),
            dtype,
            shape: spec.shape.clone(),
            bytes,
        });
    }
    let writer = BlobWriter {
        config_json: serde_json::to_string(&ckpt.config).map_err(PackError::Tokenizer)?,
        tokenizer: tokenizer_section(&ckpt.tokenizer_json)?.0,
        tensors: out,
    };
    Ok(writer.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantizer_follows_absmean() {
        let w = [0.9, -0.2, 0.05, -1.7, 0.0, 0.4];
        let (q, g) = quantize_ternary(&w);
        let gamma = (0.9 + 0.2 + 0.05 + 1.7 + 0.0 + 0.4) / 6.0;
        assert!((g - gamma).abs() < 1e-6);
        // 0.9/0.542 = 1.66 → 1; 0.2/0.542 = 0.37 → 0; 0.4/0.542 = 0.74 → 1.
        assert_eq!(q, vec![1, 0, 0, -1, 0, 1]);
        assert_eq!(quantize_ternary(&[0.0; 4]).0, vec![0; 4]);
    }

    #[test]
    fn range_checks_match_the_encoders() {
        // f16's largest finite value is 65504; 65519 still rounds to it, 65520 to infinity.
        assert_eq!(first_out_of_range(&[1.0, 65519.0], 2, DType::F16), None);
        assert_eq!(
            first_out_of_range(&[1.0, -65520.0], 2, DType::F16),
            Some((1, -65520.0))
        );
        // int8: the row's scale max/127 is stored as f16.
        assert_eq!(first_out_of_range(&[8.0e6, 1.0], 2, DType::Int8), None);
        assert_eq!(
            first_out_of_range(&[0.0, 1.0, 2.0, -9.0e6], 2, DType::Int8),
            Some((3, -9.0e6))
        );
        assert_eq!(first_out_of_range(&[3.0e38], 1, DType::F32), None);
    }
}
