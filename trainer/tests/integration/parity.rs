//! Parity with the canister: for every config in `configs/`, a checkpoint trained here (a few
//! steps on the TinyStories fixture, so the weights are no longer the initialisation), packed by
//! `packer` (f32 embeddings, both ternary packings) and run by the canister's engine, gives the
//! trainer's own eval-mode logits at every position: max |Δ| < 2e-3 × the logit scale.
//!
//! The engine computes the integer products of SPEC §2.6: it holds every embedding row as int8
//! codes Q(row, 127), whatever the blob stores. The trainer therefore runs on the same rows
//! (each `tok_emb.*` row replaced by its codes × scale), so what is left between the two is the
//! engine's fine quantization of activations (15 bits), keys and values (12 bits) and the head
//! mixing (12 bits): a wrong sign, block or packing anywhere shows up at the logit scale itself.

use crate::common::{config as config_path, data};
use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use walsh_engine::Engine;
use walsh_engine::quant::{EMB_LIMIT, quantize};
use walsh_spec::blob::DType;
use walsh_spec::{Checkpoint, PackOptions, Packing, Tensor, pack};
use walsh_trainer::TokenFile;
use walsh_trainer::backend::cpu::CpuBackend;
use walsh_trainer::model::Model;
use walsh_trainer::train::{TrainOptions, train_cpu};

fn parity(config: &str) {
    let run = tempfile::tempdir().unwrap();
    let sets = [
        format!("data={}", data().display()),
        "steps=3".into(),
        "batch_size=1".into(),
        "seq_len=16".into(),
        "grad_accum=1".into(),
        "warmup_steps=1".into(),
        "lr=0.01".into(),
        "eval_every=0".into(),
        "eval_batches=1".into(),
        "sample_tokens=0".into(),
        "checkpoint_every=0".into(),
    ];
    let opts = TrainOptions {
        config: config_path(config),
        sets: sets.to_vec(),
        out: Some(run.path().to_path_buf()),
        resume: None,
        overwrite: false,
        stop_after: None,
        progress: false,
        verbose: false,
    };
    let report = train_cpu(&opts, &AtomicBool::new(false)).unwrap();
    assert_eq!(report.steps, 3);
    let ckpt = Checkpoint::load(&report.checkpoint).unwrap();

    let val = TokenFile::open(data().join("val.bin")).unwrap();
    let tokens = val.slice(0, 24.min(ckpt.config.block_size));
    let mut model = Model::new(
        CpuBackend::<f32>::new(),
        ckpt.config.clone(),
        &int8_embeddings(&ckpt),
    )
    .unwrap();
    model.forward(&tokens, None, 1, tokens.len()).unwrap();
    let rows: Vec<usize> = (0..tokens.len()).collect();
    let ours = model.logits(&rows).unwrap();
    let scale = ours.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(scale > 0.0 && scale.is_finite());

    for packing in [Packing::X4, Packing::X16] {
        let blob = pack(
            &ckpt,
            PackOptions {
                packing,
                embeddings: DType::F32,
                ..PackOptions::default()
            },
        )
        .unwrap();
        let engine = Engine::load(&blob).unwrap();
        let mut cache = engine.model.new_cache();
        let theirs = engine.model.forward(&tokens, &mut cache, true).unwrap();
        assert_eq!(theirs.len(), ours.len());
        let worst = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        eprintln!("{config} {packing:?}: max |Δlogit| {worst:.3e}, logit scale {scale:.3}");
        assert!(
            worst < 2e-3 * scale,
            "{config} {packing:?}: max |Δlogit| {worst} vs scale {scale}"
        );
    }
}

/// The checkpoint's tensors with every embedding row replaced by its int8 codes × scale, as the
/// engine holds it (SPEC §2.6).
fn int8_embeddings(ckpt: &Checkpoint) -> BTreeMap<String, Tensor> {
    let d = ckpt.config.n_embd;
    let mut tensors = ckpt.tensors.clone();
    let mut seen = 0;
    for (name, t) in tensors.iter_mut() {
        if !name.starts_with("tok_emb.") {
            continue;
        }
        seen += 1;
        let mut codes = vec![0i16; d];
        for row in t.data.chunks_exact_mut(d) {
            let scale = quantize(row, EMB_LIMIT, &mut codes);
            row.iter_mut()
                .zip(&codes)
                .for_each(|(v, c)| *v = f32::from(*c) * scale);
        }
    }
    assert!(seen > 0, "no tok_emb.* tensor in the checkpoint");
    tensors
}

#[test]
fn tiny_matches_the_canister_engine() {
    parity("tiny");
}

#[test]
fn hadamard_hash_matches_the_canister_engine() {
    parity("tinystories-hadamard-hash");
}

#[test]
fn hadamard_matches_the_canister_engine() {
    parity("tinystories-hadamard");
}

#[test]
fn octonion_matches_the_canister_engine() {
    parity("tinystories-octonion");
}
