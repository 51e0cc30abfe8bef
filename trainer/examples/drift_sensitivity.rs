//! How far 50 training steps on the CPU backend drift when only the initial weights are perturbed
//! by a relative noise of a rounding's size (f32 2^-24, TF32 and f16 2^-11, bf16 2^-8): the floor
//! under the GPU tests' 50-step agreement bars (trainer/tests/cuda.rs, `drift_bar`). The models,
//! data and optimizer are those of `fifty_training_steps_agree_for_every_combination`; the drift is
//! the worst step's relative loss difference from the unperturbed run, over three noise seeds.
//!
//! `cargo run --release -p walsh-trainer --example drift_sensitivity` (a few minutes on 2 cores).

use walsh_spec::config::{Algebra, Embedding, ModelConfig};
use walsh_spec::init::random_checkpoint;
use walsh_spec::sampler::SplitMix64;
use walsh_trainer::backend::cpu::CpuBackend;
use walsh_trainer::backend::{AdamW, Backend};
use walsh_trainer::model::Model;
use walsh_trainer::train::state::Optimizer;

/// The GPU tests' tiny models (cuda.rs `tiny` and `combos`).
fn models() -> Vec<ModelConfig> {
    let tiny = |algebra, embedding, head_mixing, hash_buckets| {
        let (n_embd, n_head) = match algebra {
            Algebra::Dense => (64, 4),
            Algebra::Octonion => (64, 8),
            Algebra::Hadamard => (128, 32),
        };
        ModelConfig {
            name: "drift-sensitivity".into(),
            vocab_size: 1000,
            n_embd,
            n_layer: 2,
            n_head,
            block_size: 64,
            algebra,
            head_mixing,
            embedding,
            hash_buckets,
            rope_theta: 10000.0,
            eos_token_id: 0,
        }
    };
    let mut v = Vec::new();
    for algebra in [Algebra::Dense, Algebra::Octonion, Algebra::Hadamard] {
        for embedding in [Embedding::Standard, Embedding::Hash] {
            for mixing in [false, true] {
                v.push(tiny(algebra, embedding, mixing, 61));
            }
        }
    }
    v.push(tiny(Algebra::Dense, Embedding::Hash, true, 29));
    v
}

/// The losses of 50 steps from the seed-9 initialisation, every weight times (1 + rel·u),
/// u uniform in [−1, 1) from `seed` (none for rel = 0).
fn losses(cfg: &ModelConfig, rel: f32, seed: u64) -> anyhow::Result<Vec<f64>> {
    let mut tensors = random_checkpoint(cfg, 9, String::new()).tensors;
    let mut rng = SplitMix64::new(seed);
    for t in tensors.values_mut().filter(|_| rel > 0.0) {
        for x in t.data.iter_mut() {
            *x *= 1.0 + rel * (rng.next_f64() as f32 * 2.0 - 1.0);
        }
    }
    let mut model = Model::new(CpuBackend::<f32>::new(), cfg.clone(), &tensors)?;
    let mut opt = Optimizer::new(&model)?;
    let decay = model.layout.decay_ranges();
    let (batch, seq) = (4, 32);
    let mut data = SplitMix64::new(5);
    let mut out = Vec::new();
    for step in 0..50 {
        let x: Vec<u32> = (0..batch * seq)
            .map(|_| (data.next_u64() % cfg.vocab_size as u64) as u32)
            .collect();
        // A learnable stream: each target a fixed function of its token.
        let y: Vec<u32> = x
            .iter()
            .map(|t| (t * 7 + 3) % cfg.vocab_size as u32)
            .collect();
        model.zero_grads()?;
        let loss = model
            .forward(&x, Some(&y), batch, seq)?
            .ok_or_else(|| anyhow::anyhow!("no loss"))?;
        model.backward(1.0)?;
        let norm = model.backend.sum_squares(&model.grads)?.sqrt();
        let hp = AdamW {
            lr: 3e-3,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
            step: step as u64 + 1,
        };
        opt.step(&mut model, &decay, (1.0f64 / norm).min(1.0), hp)?;
        model.quantize()?;
        out.push(loss);
    }
    Ok(out)
}

fn main() -> anyhow::Result<()> {
    let sizes = [
        ("2^-24 (f32)", 2f32.powi(-24)),
        ("2^-11 (TF32, f16)", 2f32.powi(-11)),
        ("2^-8 (bf16)", 2f32.powi(-8)),
    ];
    println!(
        "worst-step drift of 50 CPU training steps, initial weights perturbed (3 noise seeds)"
    );
    let mut worst_of = vec![0.0f64; sizes.len()];
    for cfg in models() {
        let base = losses(&cfg, 0.0, 0)?;
        let mut cells = Vec::new();
        for (k, &(_, rel)) in sizes.iter().enumerate() {
            let mut runs = Vec::new();
            for seed in 1..=3 {
                let p = losses(&cfg, rel, seed)?;
                let worst = (base.iter().zip(&p))
                    .map(|(a, b)| ((a - b) / a).abs())
                    .fold(0.0f64, f64::max);
                worst_of[k] = worst_of[k].max(worst);
                runs.push(format!("{:.2}", 100.0 * worst));
            }
            cells.push(format!("{} %", runs.join(" / ")));
        }
        println!(
            "{:?} {:?} buckets={} mixing={}: {}",
            cfg.algebra,
            cfg.embedding,
            cfg.hash_buckets,
            cfg.head_mixing,
            (sizes.iter().zip(&cells))
                .map(|((name, _), c)| format!("{name} {c}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for ((name, _), w) in sizes.iter().zip(worst_of) {
        println!("worst over the models, {name}: {:.2} %", 100.0 * w);
    }
    Ok(())
}
