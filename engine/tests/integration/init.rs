//! `walsh_spec::init` starts every head-mixing linear as the identity: checked through the
//! engine's HeadMixing, which is what runs the weights (within its integer codes' rounding,
//! SPEC §2.6).

use walsh_engine::head_mixing::{HeadMixing, MixScratch};
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
        let mix = HeadMixing::new(
            algebra,
            hd,
            &ckpt.tensors["layers.0.attn.mix.weight"].data,
            ckpt.tensors["layers.0.attn.mix.beta"].data.clone(),
        );
        let x: Vec<f32> = (0..a * hd)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) / 5.0)
            .collect();
        let mut y = vec![0.0; a * hd];
        mix.forward(&x, &mut y, &mut MixScratch::default());
        for (p, q) in x.iter().zip(&y) {
            // Codes of at most L_m = 32,767 for the input (max |x| = 1.2): steps of 3.7e-5.
            assert!((p - q).abs() < 1e-4, "{algebra:?}: {p} vs {q}");
        }
    }
}
