//! Checkpoint → blob (SPEC §2.1 and §4): ternary absmean quantization with γ folded into β.

use crate::blob::{BlobWriter, DType, WriterTensor, encode_f16, encode_f32, encode_int8_rows};
use crate::checkpoint::Checkpoint;
use crate::config::TensorKind;
use crate::ternary;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packing {
    /// 4 weights per byte.
    X4,
    /// 16 weights per u32, 4×16 tiles for 128-bit SIMD.
    X16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackOptions {
    pub packing: Packing,
    /// f32, f16 or int8 for the embedding tables.
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

#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    #[error("tokenizer.json is not valid JSON: {0}")]
    Tokenizer(serde_json::Error),
    #[error("embeddings can be stored as f32, f16 or int8, not {0}")]
    EmbeddingDtype(&'static str),
}

pub fn pack(ckpt: &Checkpoint, opts: PackOptions) -> Result<Vec<u8>, PackError> {
    ckpt.validate()?;
    if !matches!(opts.embeddings, DType::F32 | DType::F16 | DType::Int8) {
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
        }
        let dtype = if spec.kind == TensorKind::Embedding {
            opts.embeddings
        } else {
            DType::F32
        };
        let bytes = match dtype {
            DType::F16 => encode_f16(&data),
            DType::Int8 => encode_int8_rows(&data, spec.shape[spec.shape.len() - 1]),
            _ => encode_f32(&data),
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
        tokenizer_json: minify_json(&ckpt.tokenizer_json).map_err(PackError::Tokenizer)?,
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
}
