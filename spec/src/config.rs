//! The model configuration of SPEC §1: fields, validation and the sizes derived from them.

use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("config is not valid JSON for a Walsh model: {0}")]
    Json(String),
    #[error("config field `{field}` = {value}: {rule}")]
    Invalid {
        field: &'static str,
        value: String,
        rule: &'static str,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algebra {
    Dense,
    Octonion,
    Hadamard,
}

impl Algebra {
    /// A: the number of parts an AlgebraLinear splits its input and output into.
    pub fn dim(self) -> usize {
        match self {
            Algebra::Dense => 1,
            Algebra::Octonion => 8,
            Algebra::Hadamard => 32,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Algebra::Dense => "dense",
            Algebra::Octonion => "octonion",
            Algebra::Hadamard => "hadamard",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Embedding {
    Standard,
    Hash,
}

fn default_hash_buckets() -> usize {
    1021
}
fn default_rope_theta() -> f64 {
    10000.0
}
fn default_eos() -> u32 {
    50256
}
fn default_embedding() -> Embedding {
    Embedding::Standard
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    #[serde(default)]
    pub name: String,
    pub vocab_size: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub block_size: usize,
    pub algebra: Algebra,
    #[serde(default)]
    pub head_mixing: bool,
    #[serde(default = "default_embedding")]
    pub embedding: Embedding,
    #[serde(default = "default_hash_buckets")]
    pub hash_buckets: usize,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    #[serde(default = "default_eos")]
    pub eos_token_id: u32,
}

/// Parser errors can quote the input, newlines and all: messages stay on one line.
pub fn one_line(s: &str) -> String {
    s.replace('\r', "\\r")
        .replace('\n', "\\n")
        .replace('\0', "\\0")
}

fn invalid(field: &'static str, value: impl ToString, rule: &'static str) -> ConfigError {
    ConfigError::Invalid {
        field,
        value: value.to_string(),
        rule,
    }
}

impl ModelConfig {
    /// The names of the fields, in order, as they appear in config.json and in a TOML `[model]`
    /// table: read off the type's own serialization, so no list repeats them.
    pub fn keys() -> &'static [&'static str] {
        static KEYS: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
        KEYS.get_or_init(|| {
            let any = ModelConfig {
                name: String::new(),
                vocab_size: 2,
                n_embd: 1,
                n_layer: 1,
                n_head: 1,
                block_size: 1,
                algebra: Algebra::Dense,
                head_mixing: false,
                embedding: Embedding::Standard,
                hash_buckets: default_hash_buckets(),
                rope_theta: default_rope_theta(),
                eos_token_id: 0,
            };
            match serde_json::to_value(any) {
                Ok(serde_json::Value::Object(m)) => m
                    .keys()
                    .map(|k| &*Box::leak(k.clone().into_boxed_str()))
                    .collect(),
                _ => Vec::new(),
            }
        })
    }

    /// Parses and validates a config.json.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        let cfg: ModelConfig = serde_json::from_slice(bytes)
            .map_err(|e| ConfigError::Json(one_line(&e.to_string())))?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn to_json(&self) -> String {
        // A config of plain numbers, strings and enums always serializes.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Checks every rule of SPEC §1. The bounds also keep every size derived from a config (and so
    /// from an untrusted blob) far from integer overflow.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let a = self.algebra.dim();
        if self.name.len() > 256 {
            return Err(invalid("name", self.name.len(), "at most 256 bytes"));
        }
        if !(2..=16_777_216).contains(&self.vocab_size) {
            return Err(invalid(
                "vocab_size",
                self.vocab_size,
                "must be in 2..=16777216",
            ));
        }
        if !(1..=16_384).contains(&self.n_embd) {
            return Err(invalid("n_embd", self.n_embd, "must be in 1..=16384"));
        }
        if !(1..=256).contains(&self.n_layer) {
            return Err(invalid("n_layer", self.n_layer, "must be in 1..=256"));
        }
        if self.n_head == 0 || self.n_head > self.n_embd || !self.n_embd.is_multiple_of(self.n_head)
        {
            return Err(invalid("n_head", self.n_head, "must divide n_embd"));
        }
        if !(self.n_embd / self.n_head).is_multiple_of(2) {
            return Err(invalid(
                "n_head",
                self.n_head,
                "head size n_embd/n_head must be even (RoPE rotates pairs)",
            ));
        }
        if !self.n_embd.is_multiple_of(a) {
            return Err(invalid(
                "n_embd",
                self.n_embd,
                "must be divisible by the algebra dimension (8 octonion, 32 hadamard)",
            ));
        }
        if !(1..=65_536).contains(&self.block_size) {
            return Err(invalid(
                "block_size",
                self.block_size,
                "must be in 1..=65536",
            ));
        }
        if self.head_mixing && !self.n_head.is_multiple_of(a) {
            return Err(invalid(
                "n_head",
                self.n_head,
                "head mixing needs n_head divisible by the algebra dimension",
            ));
        }
        if self.embedding == Embedding::Hash
            && (self.hash_buckets == 0 || self.hash_buckets > self.vocab_size)
        {
            return Err(invalid(
                "hash_buckets",
                self.hash_buckets,
                "must be in 1..=vocab_size",
            ));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 1.0) {
            return Err(invalid(
                "rope_theta",
                self.rope_theta,
                "must be finite and > 1",
            ));
        }
        if self.eos_token_id as usize >= self.vocab_size {
            return Err(invalid(
                "eos_token_id",
                self.eos_token_id,
                "must be < vocab_size",
            ));
        }
        Ok(())
    }

    pub fn algebra_dim(&self) -> usize {
        self.algebra.dim()
    }

    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }

    /// F = ceil(floor(8D/3) / A) · A.
    pub fn mlp_hidden(&self) -> usize {
        let a = self.algebra_dim();
        (8 * self.n_embd / 3).div_ceil(a) * a
    }

    /// Every tensor of the model, in the canonical order of SPEC §3.
    pub fn tensors(&self) -> Vec<TensorSpec> {
        let d = self.n_embd;
        let a = self.algebra_dim();
        let f = self.mlp_hidden();
        let hd = self.head_dim();
        let mut out = Vec::new();
        match self.embedding {
            Embedding::Standard => out.push(TensorSpec::new(
                "tok_emb.weight".into(),
                vec![self.vocab_size, d],
                TensorKind::Embedding,
            )),
            Embedding::Hash => {
                for t in ["tok_emb.hash1", "tok_emb.hash2"] {
                    out.push(TensorSpec::new(
                        t.into(),
                        vec![self.hash_buckets, d],
                        TensorKind::Embedding,
                    ));
                }
            }
        }
        let linear = |out: &mut Vec<TensorSpec>, prefix: String, inp: usize, outp: usize| {
            out.push(TensorSpec::new(
                format!("{prefix}.weight"),
                vec![a, outp / a, inp / a],
                TensorKind::AlgebraWeight,
            ));
            out.push(TensorSpec::new(
                format!("{prefix}.alpha"),
                vec![inp],
                TensorKind::AlgebraScale,
            ));
            out.push(TensorSpec::new(
                format!("{prefix}.beta"),
                vec![outp],
                TensorKind::AlgebraScale,
            ));
        };
        for l in 0..self.n_layer {
            out.push(TensorSpec::new(
                format!("layers.{l}.attn_norm.weight"),
                vec![d],
                TensorKind::Dense,
            ));
            for p in ["q", "k", "v", "o"] {
                linear(&mut out, format!("layers.{l}.attn.{p}"), d, d);
            }
            if self.head_mixing {
                out.push(TensorSpec::new(
                    format!("layers.{l}.attn.mix.weight"),
                    vec![a, hd, hd],
                    TensorKind::Dense,
                ));
                out.push(TensorSpec::new(
                    format!("layers.{l}.attn.mix.beta"),
                    vec![hd],
                    TensorKind::Dense,
                ));
            }
            out.push(TensorSpec::new(
                format!("layers.{l}.mlp_norm.weight"),
                vec![d],
                TensorKind::Dense,
            ));
            linear(&mut out, format!("layers.{l}.mlp.gate"), d, f);
            linear(&mut out, format!("layers.{l}.mlp.up"), d, f);
            linear(&mut out, format!("layers.{l}.mlp.down"), f, d);
        }
        out.push(TensorSpec::new(
            "norm.weight".into(),
            vec![d],
            TensorKind::Dense,
        ));
        out
    }

    /// (embedding, brain) parameter counts, SPEC §3. In u64 (saturating): on wasm32 a usize is
    /// 32 bits, and a valid config can describe 2^38 embedding parameters.
    pub fn param_counts(&self) -> (u64, u64) {
        let mut emb = 0u64;
        let mut brain = 0u64;
        for t in self.tensors() {
            if t.kind == TensorKind::Embedding {
                emb = emb.saturating_add(t.elements());
            } else {
                brain = brain.saturating_add(t.elements());
            }
        }
        (emb, brain)
    }
}

/// What role a tensor plays, which decides the dtypes a blob may store it in (SPEC §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorKind {
    /// `tok_emb.*`: f32, f16 or int8 rows.
    Embedding,
    /// AlgebraLinear `.weight` [A, n, m]: ternary.
    AlgebraWeight,
    /// AlgebraLinear `.alpha` / `.beta`: f32 or f16.
    AlgebraScale,
    /// Norm gains and head mixing: f32 or f16.
    Dense,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub kind: TensorKind,
}

impl TensorSpec {
    fn new(name: String, shape: Vec<usize>, kind: TensorKind) -> Self {
        TensorSpec { name, shape, kind }
    }

    /// Elements, for a tensor that is about to be allocated (its size already checked against
    /// the engine's heap limit, or a native-only caller). Sizes derived from an untrusted config
    /// use [`TensorSpec::elements`].
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Elements in u64 (saturating), whatever the width of usize: what blob validation and
    /// every size estimate use, so that wasm32 and native reach the same verdict.
    pub fn elements(&self) -> u64 {
        elements(&self.shape)
    }
}

/// The product of a shape's dimensions in u64, saturating at `u64::MAX` (which no blob can
/// match and every limit refuses).
pub fn elements(shape: &[usize]) -> u64 {
    shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
        .unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hadamard_hash() -> ModelConfig {
        ModelConfig {
            name: "t".into(),
            vocab_size: 50257,
            n_embd: 512,
            n_layer: 8,
            n_head: 32,
            block_size: 256,
            algebra: Algebra::Hadamard,
            head_mixing: true,
            embedding: Embedding::Hash,
            hash_buckets: 1021,
            rope_theta: 10000.0,
            eos_token_id: 50256,
        }
    }

    #[test]
    fn seed_parameter_accounting() {
        let mut c = hadamard_hash();
        assert_eq!(c.mlp_hidden(), 1376);
        let (emb, brain) = c.param_counts();
        assert_eq!(emb, 2 * 1021 * 512);
        assert_eq!(brain, 942_976);
        c.embedding = Embedding::Standard;
        let (emb, _) = c.param_counts();
        assert_eq!(emb, 50257 * 512);
        c.algebra = Algebra::Octonion;
        c.n_head = 8;
        assert_eq!(c.mlp_hidden(), 1368);
        let (emb, brain) = c.param_counts();
        assert_eq!(emb + brain, 29_230_656);
    }

    #[test]
    fn validation_names_the_field() {
        let mut c = hadamard_hash();
        c.n_head = 24;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("n_head"), "{e}");
        let mut c = hadamard_hash();
        c.n_embd = 520;
        c.n_head = 4;
        assert!(c.validate().unwrap_err().to_string().contains("n_embd"));
        let mut c = hadamard_hash();
        c.eos_token_id = 60000;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("eos_token_id")
        );
        assert!(ModelConfig::from_json(br#"{"vocab_size": 3}"#).is_err());
        let mut j: serde_json::Value = serde_json::to_value(hadamard_hash()).unwrap();
        j["n_layers"] = 3.into();
        let e = ModelConfig::from_json(j.to_string().as_bytes()).unwrap_err();
        assert!(e.to_string().contains("n_layers"), "{e}");
    }
}
