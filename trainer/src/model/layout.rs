//! Where every tensor of SPEC §3 sits in the flat parameter buffer, and the per-layer references
//! the ops take. Parameters, effective weights, gradients and both AdamW moments share it.

use crate::backend::{EmbRef, LinearRef, MixRef};
use crate::ops::algebra_linear::LinearDims;
use crate::ops::head_mixing::MixDims;
use std::collections::HashMap;
use std::ops::Range;
use walsh_spec::config::{Embedding, ModelConfig, TensorKind, TensorSpec};

/// Tensors start at multiples of this many elements (256 bytes in f32), so a GPU backend can use
/// aligned vector loads on every tensor.
const ALIGN: usize = 64;

#[derive(Debug, Clone)]
pub struct TensorSlot {
    pub spec: TensorSpec,
    pub range: Range<usize>,
}

#[derive(Debug, Clone)]
pub struct LayerRefs {
    pub attn_norm: Range<usize>,
    pub q: LinearRef,
    pub k: LinearRef,
    pub v: LinearRef,
    pub o: LinearRef,
    pub mix: Option<MixRef>,
    pub mlp_norm: Range<usize>,
    pub gate: LinearRef,
    pub up: LinearRef,
    pub down: LinearRef,
}

#[derive(Debug, Clone)]
pub struct ParamLayout {
    /// Every tensor, in SPEC §3 order.
    pub tensors: Vec<TensorSlot>,
    /// Total elements, padding included.
    pub len: usize,
    pub emb: EmbRef,
    pub layers: Vec<LayerRefs>,
    pub norm: Range<usize>,
}

impl ParamLayout {
    pub fn new(cfg: &ModelConfig) -> Self {
        let mut tensors = Vec::new();
        let mut at = 0;
        for spec in cfg.tensors() {
            let n = spec.numel();
            tensors.push(TensorSlot {
                spec,
                range: at..at + n,
            });
            at = (at + n).next_multiple_of(ALIGN);
        }
        let by_name: HashMap<String, Range<usize>> = tensors
            .iter()
            .map(|t: &TensorSlot| (t.spec.name.clone(), t.range.clone()))
            .collect();
        let get = |name: &str| -> Range<usize> {
            by_name
                .get(name)
                .cloned()
                .unwrap_or_else(|| panic!("ModelConfig::tensors() has no `{name}`"))
        };
        let (d, f, a) = (cfg.n_embd, cfg.mlp_hidden(), cfg.algebra);
        let linear = |prefix: String, inp: usize, out: usize| LinearRef {
            dims: LinearDims::new(a, inp, out),
            weight: get(&format!("{prefix}.weight")),
            alpha: get(&format!("{prefix}.alpha")),
            beta: get(&format!("{prefix}.beta")),
        };
        let layers = (0..cfg.n_layer)
            .map(|l| LayerRefs {
                attn_norm: get(&format!("layers.{l}.attn_norm.weight")),
                q: linear(format!("layers.{l}.attn.q"), d, d),
                k: linear(format!("layers.{l}.attn.k"), d, d),
                v: linear(format!("layers.{l}.attn.v"), d, d),
                o: linear(format!("layers.{l}.attn.o"), d, d),
                mix: cfg.head_mixing.then(|| MixRef {
                    dims: MixDims {
                        algebra: a,
                        n_head: cfg.n_head,
                        head_dim: cfg.head_dim(),
                    },
                    weight: get(&format!("layers.{l}.attn.mix.weight")),
                    beta: get(&format!("layers.{l}.attn.mix.beta")),
                }),
                mlp_norm: get(&format!("layers.{l}.mlp_norm.weight")),
                gate: linear(format!("layers.{l}.mlp.gate"), d, f),
                up: linear(format!("layers.{l}.mlp.up"), d, f),
                down: linear(format!("layers.{l}.mlp.down"), f, d),
            })
            .collect();
        let emb = match cfg.embedding {
            Embedding::Standard => EmbRef::Standard {
                table: get("tok_emb.weight"),
                vocab: cfg.vocab_size,
                d,
            },
            Embedding::Hash => EmbRef::Hash {
                e1: get("tok_emb.hash1"),
                e2: get("tok_emb.hash2"),
                buckets: cfg.hash_buckets,
                vocab: cfg.vocab_size,
                d,
            },
        };
        ParamLayout {
            tensors,
            len: at,
            emb,
            layers,
            norm: get("norm.weight"),
        }
    }

    /// The latent ternary weights (AlgebraLinear `.weight`).
    pub fn ternary_ranges(&self) -> Vec<Range<usize>> {
        self.ranges(|s| s.kind == TensorKind::AlgebraWeight)
    }

    /// The tensors AdamW decays: the matrices — AlgebraLinear latent weights, head-mixing weights
    /// and embeddings. Norm gains, α, β and the mixing β are scales, and decaying them would pull
    /// the model towards zero output rather than towards simpler weights.
    pub fn decay_ranges(&self) -> Vec<Range<usize>> {
        self.ranges(|s| {
            matches!(s.kind, TensorKind::AlgebraWeight | TensorKind::Embedding)
                || s.name.ends_with("mix.weight")
        })
    }

    fn ranges(&self, keep: impl Fn(&TensorSpec) -> bool) -> Vec<Range<usize>> {
        self.tensors
            .iter()
            .filter(|t| keep(&t.spec))
            .map(|t| t.range.clone())
            .collect()
    }

    pub fn slot(&self, name: &str) -> Option<&TensorSlot> {
        self.tensors.iter().find(|t| t.spec.name == name)
    }
}
