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
    /// f32 or f16 for the brain's float tensors: α and β (γ folded in), head mixing, norm gains.
    pub floats: DType,
}

impl Default for PackOptions {
    fn default() -> Self {
        PackOptions {
            packing: Packing::X4,
            embeddings: DType::F16,
            floats: DType::F32,
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
    #[error("the brain's float tensors can be stored as f32 or f16, not {0}")]
    FloatDtype(&'static str),
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

/// `data` (finite; rows of `cols`) encoded as `dtype`, or the first value it cannot hold, with
/// the smallest format that holds them all.
fn encode_values(
    name: &str,
    data: &[f32],
    cols: usize,
    dtype: DType,
) -> Result<Vec<u8>, PackError> {
    let encoded = match dtype {
        DType::Int8 | DType::F16 | DType::F32 => match first_out_of_range(data, cols, dtype) {
            Some(bad) => Err(bad),
            None => Ok(match dtype {
                DType::F16 => encode_f16(data),
                DType::Int8 => encode_int8_rows(data, cols),
                _ => encode_f32(data),
            }),
        },
        d => quant::encode_rows(data, cols, d).map_err(|i| (i, data[i])),
    };
    encoded.map_err(|(index, value)| PackError::OutOfRange {
        tensor: name.to_string(),
        index,
        value,
        dtype,
        // f32 holds any finite value.
        fits: [DType::F16, DType::Int8]
            .into_iter()
            .find(|&d| first_out_of_range(data, cols, d).is_none())
            .unwrap_or(DType::F32),
    })
}

pub fn pack(ckpt: &Checkpoint, opts: PackOptions) -> Result<Vec<u8>, PackError> {
    ckpt.validate()?;
    if !opts.embeddings.allowed_for(TensorKind::Embedding) {
        return Err(PackError::EmbeddingDtype(opts.embeddings.name()));
    }
    if !matches!(opts.floats, DType::F32 | DType::F16) {
        return Err(PackError::FloatDtype(opts.floats.name()));
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
            opts.floats
        };
        let cols = spec.shape[spec.shape.len() - 1];
        let bytes = encode_values(&spec.name, &data, cols, dtype)?;
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

/// Re-encodes a blob without its checkpoint: ternary weights in `packing` (lossless: the same
/// trits), embeddings in `embeddings` and the brain's float tensors in `floats` when given (from
/// their decoded values: a narrower format adds its rounding to the blob's), the tokenizer
/// compact when it can be (as [`pack`]), every other tensor as it is. What a version 1 blob needs to use format 2's encodings when its
/// checkpoint is gone.
pub fn repack(
    blob: &crate::blob::Blob<'_>,
    packing: Packing,
    embeddings: Option<DType>,
    floats: Option<DType>,
) -> Result<Vec<u8>, RepackError> {
    if let Some(d) = floats
        && !matches!(d, DType::F32 | DType::F16)
    {
        return Err(PackError::FloatDtype(d.name()).into());
    }
    use crate::blob::TokenizerSection;
    let mut out = Vec::with_capacity(blob.tensors.len());
    for t in &blob.tensors {
        let (dtype, bytes) = match t.kind {
            TensorKind::AlgebraWeight => {
                let q = t.to_ternary()?;
                match (packing, t.shape.as_slice()) {
                    (Packing::X4, _) => (DType::Ternary4x, ternary::pack4x(&q)),
                    (Packing::X5, _) => (DType::Ternary5x, ternary::pack5x(&q)),
                    (Packing::X16, [a, n, m]) => {
                        (DType::Ternary16x, ternary::pack16x(&q, *a, *n, *m))
                    }
                    (Packing::X16, _) => (t.dtype, t.bytes.to_vec()),
                }
            }
            TensorKind::Embedding => match embeddings {
                Some(d) if d != t.dtype => {
                    if !d.allowed_for(TensorKind::Embedding) {
                        return Err(PackError::EmbeddingDtype(d.name()).into());
                    }
                    let data = t.to_f32()?;
                    let cols = t.shape[t.shape.len() - 1];
                    let bytes = encode_values(&t.name, &data, cols, d)?;
                    (d, bytes)
                }
                _ => (t.dtype, t.bytes.to_vec()),
            },
            _ => match floats {
                Some(d) if d != t.dtype => {
                    let data = t.to_f32()?;
                    let cols = t.shape[t.shape.len() - 1];
                    (d, encode_values(&t.name, &data, cols, d)?)
                }
                _ => (t.dtype, t.bytes.to_vec()),
            },
        };
        out.push(WriterTensor {
            name: t.name.clone(),
            dtype,
            shape: t.shape.clone(),
            bytes,
        });
    }
    let tokenizer = match blob.tokenizer {
        TokenizerSection::Json(json) => tokenizer_section(json)?.0,
        TokenizerSection::Compact(bytes) => WriterTokenizer::Compact(bytes.to_vec()),
    };
    let writer = BlobWriter {
        config_json: serde_json::to_string(&blob.config).map_err(PackError::Tokenizer)?,
        tokenizer,
        tensors: out,
    };
    Ok(writer.finish())
}

#[derive(Debug, thiserror::Error)]
pub enum RepackError {
    #[error(transparent)]
    Pack(#[from] PackError),
    #[error(transparent)]
    Blob(#[from] crate::blob::BlobError),
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKENIZER: &str = r#"{"version":"1.0","added_tokens":[],"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":[["a","b"]]}}"#;

    fn tiny() -> crate::config::ModelConfig {
        crate::config::ModelConfig::from_json(
            br#"{"vocab_size":16,"n_embd":64,"n_layer":1,"n_head":32,"block_size":4,"algebra":"hadamard","head_mixing":true,"embedding":"hash","hash_buckets":7,"eos_token_id":2}"#,
        )
        .unwrap()
    }

    /// Repacking keeps the trits and every untouched tensor's bytes, compacts a JSON tokenizer,
    /// and re-encodes what it is asked to from the stored values.
    #[test]
    fn repack_is_lossless_where_it_can_be() {
        let ckpt = crate::init::random_checkpoint(&tiny(), 3, TOKENIZER.into());
        let opts = PackOptions {
            embeddings: DType::Int8,
            ..PackOptions::default()
        };
        let packed = pack(&ckpt, opts).unwrap();
        // The same blob with its tokenizer as JSON, as version 1 blobs carry it.
        let parsed = crate::blob::parse(&packed).unwrap();
        assert_eq!(parsed.tokenizer.form(), "compact");
        let w = BlobWriter {
            config_json: serde_json::to_string(&parsed.config).unwrap(),
            tokenizer: WriterTokenizer::Json(TOKENIZER.into()),
            tensors: parsed
                .tensors
                .iter()
                .map(|t| WriterTensor {
                    name: t.name.clone(),
                    dtype: t.dtype,
                    shape: t.shape.clone(),
                    bytes: t.bytes.to_vec(),
                })
                .collect(),
        };
        let json_blob = w.finish();
        let old = crate::blob::parse(&json_blob).unwrap();
        let five = repack(&old, Packing::X5, None, None).unwrap();
        let new = crate::blob::parse(&five).unwrap();
        assert_eq!(new.tokenizer.form(), "compact");
        for (a, b) in old.tensors.iter().zip(&new.tensors) {
            if a.dtype.is_ternary() {
                assert_eq!(b.dtype, DType::Ternary5x);
                assert_eq!(a.to_ternary().unwrap(), b.to_ternary().unwrap());
            } else {
                assert_eq!((a.dtype, a.bytes), (b.dtype, b.bytes));
            }
        }
        // Back to 4x: the very blob the packer wrote.
        assert_eq!(repack(&new, Packing::X4, None, None).unwrap(), packed);
        let small = repack(&old, Packing::X4, Some(DType::Int4Rot), Some(DType::F16)).unwrap();
        let small = crate::blob::parse(&small).unwrap();
        for (a, b) in old.tensors.iter().zip(&small.tensors) {
            let want = match a.kind {
                TensorKind::Embedding => DType::Int4Rot,
                TensorKind::AlgebraWeight => DType::Ternary4x,
                _ => DType::F16,
            };
            assert_eq!(b.dtype, want, "{}", a.name);
            if !a.dtype.is_ternary() {
                let (x, y) = (a.to_f32().unwrap(), b.to_f32().unwrap());
                let max = x.iter().fold(0f32, |m, v| m.max(v.abs()));
                for (p, q) in x.iter().zip(&y) {
                    assert!((p - q).abs() <= max * 0.2 + 1e-6, "{}: {p} vs {q}", a.name);
                }
            }
        }
        let e = repack(&old, Packing::X4, None, Some(DType::Int8)).unwrap_err();
        assert!(e.to_string().contains("f32 or f16"), "{e}");
    }

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
