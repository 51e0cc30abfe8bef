//! A randomly initialised checkpoint of any config, with the initialisation of SPEC §3.1 — what
//! tests and benchmarks use before trained models exist.

use crate::checkpoint::{Checkpoint, Tensor};
use crate::config::{Algebra, ModelConfig, TensorKind};
use crate::sampler::SplitMix64;
use std::collections::BTreeMap;

pub fn random_checkpoint(config: &ModelConfig, seed: u64, tokenizer_json: String) -> Checkpoint {
    let mut rng = SplitMix64::new(seed);
    let a = config.algebra_dim();
    let hd = config.head_dim();
    let residual_beta = 1.0 / (2.0 * config.n_layer as f64).sqrt();
    let mut tensors = BTreeMap::new();
    for spec in config.tensors() {
        let n = spec.numel();
        let name = spec.name.as_str();
        let normal = |rng: &mut SplitMix64, std: f64| -> Vec<f32> {
            (0..n).map(|_| (rng.next_normal() * std) as f32).collect()
        };
        let data = match spec.kind {
            TensorKind::Embedding => {
                let std = match config.embedding {
                    crate::config::Embedding::Standard => 0.02,
                    crate::config::Embedding::Hash => 0.02 / 2f64.sqrt(),
                };
                normal(&mut rng, std)
            }
            TensorKind::AlgebraWeight => {
                let in_dim = spec.shape[2] * a;
                let fan_in = match config.algebra {
                    Algebra::Octonion => in_dim,
                    Algebra::Dense | Algebra::Hadamard => in_dim / a,
                };
                normal(&mut rng, 1.0 / (fan_in as f64).sqrt())
            }
            TensorKind::AlgebraScale => {
                let residual = name.ends_with("attn.o.beta") || name.ends_with("mlp.down.beta");
                let v = if residual { residual_beta as f32 } else { 1.0 };
                vec![v; n]
            }
            TensorKind::Dense if name.ends_with("mix.weight") => {
                // Mixing starts as the identity: block 0 = I for dense and octonion (s(i,0) = +),
                // every block = I for hadamard (H·blockdiag(I)·H = I).
                let blocks = if config.algebra == Algebra::Hadamard {
                    a
                } else {
                    1
                };
                let mut w = vec![0.0; n];
                for b in 0..blocks {
                    for i in 0..hd {
                        w[(b * hd + i) * hd + i] = 1.0;
                    }
                }
                w
            }
            TensorKind::Dense => vec![1.0; n],
        };
        tensors.insert(
            spec.name.clone(),
            Tensor {
                shape: spec.shape.clone(),
                data,
            },
        );
    }
    Checkpoint {
        config: config.clone(),
        tensors,
        tokenizer_json,
    }
}

/// Fills every tensor, norms and scales included, with random values: for tests that must see
/// every parameter matter (the SPEC initialisation sets many of them to constants).
pub fn scramble(ckpt: &mut Checkpoint, seed: u64) {
    let mut rng = SplitMix64::new(seed);
    for (name, t) in ckpt.tensors.iter_mut() {
        let is_weight = name.ends_with(".weight") && t.shape.len() == 3;
        for v in t.data.iter_mut() {
            let r = rng.next_normal() as f32;
            *v = if is_weight || name.starts_with("tok_emb") {
                r * if is_weight { 1.0 } else { 0.5 }
            } else {
                // Gains and scales: positive-ish around 1, like trained ones.
                1.0 + 0.3 * r
            };
        }
    }
}
