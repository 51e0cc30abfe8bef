//! `walsh_spec::init` starts every head-mixing linear as the identity: checked through the
//! engine's AlgebraLinear, which is what runs the weights.

use walsh_engine::algebra_linear::{AlgebraLinear, LinearScratch};
use walsh_spec::config::{Algebra, Embedding, ModelConfig};
use walsh_spec::init::random_checkpoint;

#[test]
fn head_mixing_starts_as_the_identity_for_every_algebra() {
    for (algebra, heads) in [
        (Algebra::Dense, 4),
        (Algebra::Octonion, 8),
        (Algebra::Hadamard, 32),
    ] {
        let cfg = ModelConfig {
            name: String::new(),
            vocab_size: 50,
            n_embd: 64,
            n_layer: 1,
            n_head: heads,
            block_size: 8,
            algebra,
            head_mixing: true,
            embedding: Embedding::Standard,
            hash_buckets: 1021,
            rope_theta: 10000.0,
            eos_token_id: 0,
        };
        let ckpt = random_checkpoint(&cfg, 3, String::new());
        let a = algebra.dim();
        let hd = cfg.head_dim();
        let beta = &ckpt.tensors["layers.0.attn.mix.beta"].data;
        let mix = AlgebraLinear {
            algebra,
            in_dim: a * hd,
            out_dim: a * hd,
            weight: ckpt.tensors["layers.0.attn.mix.weight"].data.clone(),
            alpha: vec![1.0; a * hd],
            beta: beta.repeat(a),
        };
        let x: Vec<f32> = (0..a * hd)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) / 5.0)
            .collect();
        let mut y = vec![0.0; a * hd];
        mix.forward_row(&x, &mut y, &mut LinearScratch::default());
        for (p, q) in x.iter().zip(&y) {
            assert!((p - q).abs() < 1e-5, "{algebra:?}: {p} vs {q}");
        }
    }
}
