//! Whole-model gradient checks: for every algebra × embedding × head-mixing combination, a tiny
//! two-layer model runs in f64 on the CPU backend with the identity quantizer, and the backward's
//! gradient of the mean cross-entropy is compared with central finite differences on a sample of
//! every tensor's entries. Then the STE: with the quantizer on, the gradient of a latent ternary
//! weight is the gradient with respect to its effective weight γ·Wq.

use std::collections::BTreeMap;
use walsh_spec::config::{Algebra, Embedding, ModelConfig};
use walsh_spec::init::{random_checkpoint, scramble};
use walsh_trainer::backend::cpu::CpuBackend;
use walsh_trainer::model::Model;

const TOL: f64 = 1e-4;
const EPS: f64 = 1e-5;
/// Entries sampled per tensor (all of them when the tensor is smaller).
const SAMPLES: usize = 5;
const BATCH: usize = 2;
const SEQ: usize = 5;

fn config(algebra: Algebra, embedding: Embedding, head_mixing: bool) -> ModelConfig {
    let (d, h) = match algebra {
        Algebra::Dense => (16, 4),
        Algebra::Octonion => (32, 8),
        Algebra::Hadamard => (64, 32),
    };
    ModelConfig {
        name: "gradcheck".into(),
        vocab_size: 37,
        n_embd: d,
        n_layer: 2,
        n_head: h,
        block_size: 8,
        algebra,
        head_mixing,
        embedding,
        hash_buckets: 7,
        rope_theta: 10000.0,
        eos_token_id: 0,
    }
}

fn model(cfg: &ModelConfig, quantize: bool) -> Model<CpuBackend<f64>> {
    let mut ckpt = random_checkpoint(cfg, 1, String::new());
    scramble(&mut ckpt, 2);
    // Smaller weights keep the f64 differences far from the softmax's saturation.
    let tensors: BTreeMap<_, _> = ckpt
        .tensors
        .into_iter()
        .map(|(n, mut t)| {
            if n.ends_with(".weight") && t.shape.len() == 3 && !n.contains("mix") {
                t.data.iter_mut().for_each(|v| *v *= 0.5);
            }
            (n, t)
        })
        .collect();
    let mut m = Model::new(CpuBackend::<f64>::new(), cfg.clone(), &tensors).unwrap();
    m.quantize = quantize;
    m.quantize().unwrap();
    m
}

fn data(cfg: &ModelConfig) -> (Vec<u32>, Vec<u32>) {
    let v = cfg.vocab_size as u32;
    let tokens = (0..BATCH * SEQ).map(|i| (i as u32 * 7 + 3) % v).collect();
    let targets = (0..BATCH * SEQ).map(|i| (i as u32 * 11 + 5) % v).collect();
    (tokens, targets)
}

fn loss(m: &mut Model<CpuBackend<f64>>, tokens: &[u32], targets: &[u32]) -> f64 {
    m.forward(tokens, Some(targets), BATCH, SEQ)
        .unwrap()
        .unwrap()
}

/// Sampled indices of a range: evenly spread, first and last included.
fn sample(r: &std::ops::Range<usize>) -> Vec<usize> {
    let n = r.len();
    if n <= SAMPLES {
        return r.clone().collect();
    }
    (0..SAMPLES)
        .map(|i| r.start + i * (n - 1) / (SAMPLES - 1))
        .collect()
}

#[test]
fn whole_model_gradients_match_finite_differences_for_every_combination() {
    let mut report = Vec::new();
    for algebra in [Algebra::Dense, Algebra::Octonion, Algebra::Hadamard] {
        for embedding in [Embedding::Standard, Embedding::Hash] {
            for head_mixing in [false, true] {
                let cfg = config(algebra, embedding, head_mixing);
                let (tokens, targets) = data(&cfg);
                let mut m = model(&cfg, false);
                m.zero_grads().unwrap();
                loss(&mut m, &tokens, &targets);
                m.backward(1.0).unwrap();
                let grads = m.grads.clone();
                let mut worst = (0.0f64, String::new());
                for slot in m.layout.tensors.clone() {
                    let mut num_max = 0.0f64;
                    let mut diff_max = 0.0f64;
                    for i in sample(&slot.range) {
                        let p0 = m.params[i];
                        m.params[i] = p0 + EPS;
                        m.quantize().unwrap();
                        let up = loss(&mut m, &tokens, &targets);
                        m.params[i] = p0 - EPS;
                        m.quantize().unwrap();
                        let down = loss(&mut m, &tokens, &targets);
                        m.params[i] = p0;
                        let numeric = (up - down) / (2.0 * EPS);
                        num_max = num_max.max(numeric.abs());
                        diff_max = diff_max.max((numeric - grads[i]).abs());
                    }
                    m.quantize().unwrap();
                    assert!(
                        num_max > 1e-9,
                        "{algebra:?} {embedding:?} mixing={head_mixing}: `{}` has no gradient",
                        slot.spec.name
                    );
                    let rel = diff_max / num_max;
                    if rel > worst.0 {
                        worst = (rel, slot.spec.name.clone());
                    }
                }
                report.push(format!(
                    "{algebra:?} {embedding:?} mixing={head_mixing}: worst {:.2e} ({})",
                    worst.0, worst.1
                ));
                assert!(
                    worst.0 < TOL,
                    "{algebra:?} {embedding:?} mixing={head_mixing}: `{}` relative error {:.3e}",
                    worst.1,
                    worst.0
                );
            }
        }
    }
    eprintln!("{}", report.join("\n"));
}

#[test]
fn the_ste_passes_the_effective_weights_gradient_to_the_latent_weight() {
    for algebra in [Algebra::Dense, Algebra::Octonion, Algebra::Hadamard] {
        let cfg = config(algebra, Embedding::Standard, true);
        let (tokens, targets) = data(&cfg);
        let mut m = model(&cfg, true);
        m.zero_grads().unwrap();
        loss(&mut m, &tokens, &targets);
        m.backward(1.0).unwrap();
        let ternary = m.layout.ternary_ranges();
        // The effective weights really are γ·Wq: three values per tensor at most.
        for r in &ternary {
            let mut distinct: Vec<f64> = m.eff[r.clone()].to_vec();
            distinct.sort_by(f64::total_cmp);
            distinct.dedup();
            assert!(distinct.len() <= 3, "{algebra:?}: {distinct:?}");
        }
        // ∂L/∂W (what the backward wrote for the latent W) = ∂L/∂eff, differentiated on eff
        // directly (the quantizer's own derivative is zero almost everywhere: the STE ignores it).
        for r in ternary.iter().take(4) {
            for i in sample(r) {
                let e0 = m.eff[i];
                m.eff[i] = e0 + EPS;
                let up = loss(&mut m, &tokens, &targets);
                m.eff[i] = e0 - EPS;
                let down = loss(&mut m, &tokens, &targets);
                m.eff[i] = e0;
                let numeric = (up - down) / (2.0 * EPS);
                let g = m.grads[i];
                assert!(
                    (numeric - g).abs() <= 1e-6 + 1e-5 * numeric.abs(),
                    "{algebra:?} element {i}: ∂L/∂W = {g}, ∂L/∂(γWq) = {numeric}"
                );
            }
        }
    }
}
