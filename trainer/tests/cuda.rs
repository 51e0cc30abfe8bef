//! The CUDA backend against the CPU backend (run on a GPU machine: built only with `--features
//! cuda`, and it fails, rather than skips, without a GPU).
//!
//! - Every op, through the whole model: for each algebra × embedding × head-mixing combination
//!   and for the three seed configs, the same checkpoint and tokens on both backends give the same
//!   loss, the same logits and the same gradient of every tensor (max |Δ| / max |cpu| per tensor
//!   within 1e-3 with IEEE f32 GEMMs: both run f32, in different summation orders; within 1e-2
//!   with the TF32 tensor-core GEMMs that training uses).
//! - Attention alone (the flash kernels, which save only row log-sum-exps and recompute the
//!   softmax) against the CPU reference at the seed's sizes and at odd ones: the CUDA-core
//!   kernels and the tensor-core ones (attention_tc.cu, TF32 mode).
//! - Every other op alone, forward and backward, on fresh random inputs (a clock seed, printed;
//!   `WALSH_OP_SEED` replays one) at the seed configs' sizes (8192 rows): AlgebraLinear for the
//!   three algebras at 512→512, 512→1376 and 1376→512, head mixing, RMSNorm, RoPE, SwiGLU, both
//!   embeddings with the tied cross-entropy (standard, hash factored and unfactored) and their
//!   logits, quantize, the sum of squares and AdamW; IEEE f32 GEMMs, within 1e-4 (1e-5 for the
//!   elementwise ops). Backwards start from non-zero gradients, since they accumulate.
//! - Training: 50 AdamW steps of each tiny combination from the same initialisation on both
//!   backends (all three GEMM modes); the losses agree within 1% at every step, and no NaN ever
//!   appears.
//! - Distillation alone: the teacher's top-k ids (exactly) and probabilities, the student's KL
//!   term and its gradients, at 4,109 tokens (no multiple of 32) and 4,160 rows, τ 1 and 2.
//! - `trainer bench`'s split on the GPU is timed by CUDA events, op by op.
//! - Batched generation (`trainer sample`): padded windows give each sequence's own logits, and
//!   `generate` runs on the GPU (no kernel of its own: the forward's and the logits').

#![cfg(feature = "cuda")]

use std::collections::BTreeMap;
use walsh_spec::Tensor;
use walsh_spec::config::{Algebra, Embedding, ModelConfig};
use walsh_spec::init::{random_checkpoint, scramble};
use walsh_trainer::backend::cpu::CpuBackend;
use walsh_trainer::backend::cuda::{CudaBackend, Matmul};
use walsh_trainer::backend::{AdamW, Backend};
use walsh_trainer::model::Model;
use walsh_trainer::ops::attention::AttnDims;
use walsh_trainer::train::state::Optimizer;

fn gpu(matmul: Matmul) -> CudaBackend {
    CudaBackend::new(0, matmul).expect("a CUDA GPU (these tests run on the GPU machine)")
}

/// Relative tolerances (loss, gradients, logits) of a GEMM mode. bf16 operands (8-bit mantissas,
/// 2^-9 relative rounding) put the worst tensor's gradient 1.1-3.6 % off the f32 reference on an
/// H200 (2026-12-01; 2.6e-3 for TF32): always a β gradient (a sum over every token and input
/// with much cancellation, of dy that carries the bf16 rounding of every layer above), never an
/// activation's or a weight's.
fn tolerances(matmul: Matmul) -> (f64, f32, f32) {
    match matmul {
        Matmul::F32 => (1e-4, 1e-3, 1e-4),
        Matmul::Tf32 => (1e-3, 1e-2, 1e-2),
        Matmul::Bf16 => (1e-2, 5e-2, 2e-2),
    }
}

/// How far 50 training steps on the GPU may drift from the CPU's losses: 1 % (issue 6), except
/// with bf16 operands, whose worst step over the 13 tiny models was 0.64-0.89 % in fourteen runs
/// of fifteen on an H200 and 1.28 % in one (each run differs: the GPU's atomics make it
/// nondeterministic); TF32's 0.50-0.95 % (eight runs), f32's 0.16-0.19 %. The CPU alone, its
/// initial weights perturbed by a relative 2^-11 or 2^-8, drifts up to 1.17 % or 1.73 %
/// (`cargo run --release -p walsh-trainer --example drift_sensitivity`): these bars sit at the
/// models' own sensitivity, not above a GPU error.
fn drift_bar(matmul: Matmul) -> f64 {
    match matmul {
        Matmul::F32 | Matmul::Tf32 => 0.01,
        Matmul::Bf16 => 0.015,
    }
}

fn tiny(algebra: Algebra, embedding: Embedding, head_mixing: bool) -> ModelConfig {
    let (d, h) = match algebra {
        Algebra::Dense => (64, 4),
        Algebra::Octonion => (64, 8),
        Algebra::Hadamard => (128, 32),
    };
    ModelConfig {
        name: "cuda-check".into(),
        vocab_size: 1000,
        n_embd: d,
        n_layer: 2,
        n_head: h,
        block_size: 64,
        algebra,
        head_mixing,
        embedding,
        hash_buckets: 61,
        rope_theta: 10000.0,
        eos_token_id: 0,
    }
}

fn seed_config_path(name: &str) -> std::path::PathBuf {
    // The build's tree, or the current directory's (the GPU machine runs a copied binary).
    let built = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    let dir = if built.exists() {
        built
    } else {
        "configs".into()
    };
    dir.join(format!("{name}.toml"))
}

fn seed_config(name: &str) -> ModelConfig {
    walsh_trainer::train::load_run_config(&seed_config_path(name), &[])
        .unwrap()
        .0
}

fn combos() -> Vec<ModelConfig> {
    let mut v = Vec::new();
    for algebra in [Algebra::Dense, Algebra::Octonion, Algebra::Hadamard] {
        for embedding in [Embedding::Standard, Embedding::Hash] {
            for mixing in [false, true] {
                v.push(tiny(algebra, embedding, mixing));
            }
        }
    }
    // Hash embeddings with V > B² (the unfactored cross-entropy kernels).
    let mut few = tiny(Algebra::Dense, Embedding::Hash, true);
    few.hash_buckets = 29;
    v.push(few);
    v
}

fn tokens(n: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let mut rng = walsh_spec::sampler::SplitMix64::new(seed);
    (0..n)
        .map(|_| (rng.next_u64() % vocab as u64) as u32)
        .collect()
}

/// Scrambled (every parameter random: every gradient path matters) for the small models; the
/// SPEC §3.1 initialisation for the seed's, where scrambled weights blow the logits up (loss ~50)
/// into a regime no training visits.
fn tensors(cfg: &ModelConfig, scrambled: bool) -> BTreeMap<String, Tensor> {
    let mut ckpt = random_checkpoint(cfg, 5, String::new());
    if scrambled {
        scramble(&mut ckpt, 6);
    }
    ckpt.tensors
}

fn rel(a: &[f32], b: &[f32]) -> f32 {
    let scale = a.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-12);
    let diff = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(
        b.iter().all(|v| v.is_finite()),
        "non-finite value on the GPU"
    );
    diff / scale
}

/// One forward + backward on both backends; per-tensor gradient and logit comparisons.
fn compare(cfg: &ModelConfig, batch: usize, seq: usize, scrambled: bool, matmul: Matmul) -> f32 {
    let (tol_loss, tol_grad, tol_logits) = tolerances(matmul);
    let t = tensors(cfg, scrambled);
    let mut cpu = Model::new(CpuBackend::<f32>::new(), cfg.clone(), &t).unwrap();
    let mut gpu = Model::new(gpu(matmul), cfg.clone(), &t).unwrap();
    let (x, y) = (
        tokens(batch * seq, cfg.vocab_size, 1),
        tokens(batch * seq, cfg.vocab_size, 2),
    );
    let mut worst = 0.0f32;
    let mut losses = Vec::new();
    for m in [&mut cpu as &mut dyn Step, &mut gpu as &mut dyn Step] {
        losses.push(m.step(&x, &y, batch, seq));
    }
    assert!(
        ((losses[0] - losses[1]) / losses[0]).abs() < tol_loss,
        "{} {matmul:?}: loss cpu {} gpu {}",
        describe(cfg),
        losses[0],
        losses[1]
    );
    let (gc, gg) = (
        cpu.backend.download(&cpu.grads).unwrap(),
        gpu.backend.download(&gpu.grads).unwrap(),
    );
    for slot in &cpu.layout.tensors {
        let e = rel(&gc[slot.range.clone()], &gg[slot.range.clone()]);
        assert!(
            e < tol_grad,
            "{} {matmul:?}: gradient of `{}` differs by {e:.2e}",
            describe(cfg),
            slot.spec.name
        );
        worst = worst.max(e);
    }
    let rows: Vec<usize> = (0..seq.min(4)).collect();
    let (lc, lg) = (cpu.logits(&rows).unwrap(), gpu.logits(&rows).unwrap());
    let e = rel(&lc, &lg);
    assert!(
        e < tol_logits,
        "{} {matmul:?}: logits differ by {e:.2e}",
        describe(cfg)
    );
    worst.max(e)
}

trait Step {
    fn step(&mut self, x: &[u32], y: &[u32], batch: usize, seq: usize) -> f64;
}
impl<B: Backend<Elem = f32>> Step for Model<B> {
    fn step(&mut self, x: &[u32], y: &[u32], batch: usize, seq: usize) -> f64 {
        self.zero_grads().unwrap();
        let loss = self.forward(x, Some(y), batch, seq).unwrap().unwrap();
        self.backward(1.0).unwrap();
        loss
    }
}

fn describe(c: &ModelConfig) -> String {
    format!(
        "{} {:?} {:?} buckets={} mixing={} D={}",
        c.name, c.algebra, c.embedding, c.hash_buckets, c.head_mixing, c.n_embd
    )
}

#[test]
fn every_op_matches_the_cpu_backend_for_every_combination() {
    for matmul in [Matmul::F32, Matmul::Tf32, Matmul::Bf16] {
        for cfg in combos() {
            // Scrambled weights exercise every path exactly in f32; their logits (loss ~10) are
            // too peaked for TF32's 10-bit operands to be compared at 1e-2, so TF32 is compared
            // where training is, from the SPEC initialisation.
            let e = compare(&cfg, 3, 37, matmul == Matmul::F32, matmul);
            eprintln!("{} {matmul:?}: worst {e:.2e}", describe(&cfg));
        }
    }
}

#[test]
fn every_op_matches_the_cpu_backend_on_the_seed_configs() {
    for name in [
        "tinystories-hadamard-hash",
        "tinystories-hadamard",
        "tinystories-octonion",
    ] {
        let cfg = seed_config(name);
        for matmul in [Matmul::F32, Matmul::Tf32, Matmul::Bf16] {
            let e = compare(&cfg, 2, 128, false, matmul);
            eprintln!("{} {matmul:?}: worst {e:.2e}", describe(&cfg));
        }
    }
}

fn train_losses<B: Backend<Elem = f32>>(b: B, cfg: &ModelConfig, steps: usize) -> Vec<f64> {
    let t = random_checkpoint(cfg, 9, String::new()).tensors;
    let mut model = Model::new(b, cfg.clone(), &t).unwrap();
    let mut opt = Optimizer::new(&model).unwrap();
    let decay = model.layout.decay_ranges();
    let (batch, seq) = (4, 32);
    // A learnable stream: each target is a fixed function of the previous token.
    let mut losses = Vec::new();
    for step in 0..steps {
        let x = tokens(batch * seq, cfg.vocab_size, 100 + step as u64);
        let y: Vec<u32> = x
            .iter()
            .map(|t| (t * 7 + 3) % cfg.vocab_size as u32)
            .collect();
        model.zero_grads().unwrap();
        let loss = model.forward(&x, Some(&y), batch, seq).unwrap().unwrap();
        model.backward(1.0).unwrap();
        let norm = model.backend.sum_squares(&model.grads).unwrap().sqrt();
        assert!(
            loss.is_finite() && norm.is_finite(),
            "step {step}: loss {loss}, |g| {norm}"
        );
        let hp = AdamW {
            lr: 3e-3,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
            step: step as u64 + 1,
        };
        opt.step(&mut model, &decay, (1.0 / norm).min(1.0), hp)
            .unwrap();
        model.quantize().unwrap();
        losses.push(loss);
    }
    losses
}

#[test]
fn fifty_training_steps_agree_for_every_combination() {
    for (cfg, matmul) in combos()
        .into_iter()
        .flat_map(|c| [Matmul::F32, Matmul::Tf32, Matmul::Bf16].map(|m| (c.clone(), m)))
    {
        let cpu = train_losses(CpuBackend::<f32>::new(), &cfg, 50);
        let gpu = train_losses(gpu(matmul), &cfg, 50);
        let worst = cpu
            .iter()
            .zip(&gpu)
            .map(|(a, b)| ((a - b) / a).abs())
            .fold(0.0f64, f64::max);
        eprintln!(
            "{} {matmul:?}: loss {:.4} → {:.4} (cpu) / {:.4} (gpu), worst step {worst:.2e}",
            describe(&cfg),
            cpu[0],
            cpu[49],
            gpu[49]
        );
        assert!(
            worst < drift_bar(matmul),
            "{} {matmul:?}: losses differ by {worst:.3e}",
            describe(&cfg)
        );
        assert!(cpu[49] < cpu[0], "{}: did not learn", describe(&cfg));
    }
}

/// out, dq, dk, dv of one attention call on `b` (the gradients start from zero).
fn attention_on<B: Backend<Elem = f32>>(
    b: &B,
    batch: usize,
    dims: AttnDims,
    inputs: &[Vec<f32>; 4],
) -> [Vec<f32>; 4] {
    let [q, k, v, dout] = inputs.each_ref().map(|x| b.upload(x).unwrap());
    let n = q_len(batch, dims);
    let mut out = b.zeros(n).unwrap();
    let mut saved = b.zeros(b.attention_saved_len(batch, dims)).unwrap();
    b.attention_forward(&mut out, &mut saved, &q, &k, &v, dims)
        .unwrap();
    let [mut dq, mut dk, mut dv] = [(); 3].map(|_| b.zeros(n).unwrap());
    b.attention_backward(
        &mut dq, &mut dk, &mut dv, &dout, &out, &q, &k, &v, &saved, dims,
    )
    .unwrap();
    [&out, &dq, &dk, &dv].map(|x| b.download(x).unwrap())
}

fn q_len(batch: usize, dims: AttnDims) -> usize {
    batch * dims.seq_len * dims.d()
}

#[test]
fn attention_matches_the_cpu_reference() {
    // (B, T, H, hd): the hash/hadamard seed shape, the octonion one, a long context, and sizes
    // that leave partial tiles and head sizes between the compiled ones.
    for (batch, seq, n_head, head_dim) in [
        (8, 256, 32, 16),
        (4, 256, 8, 64),
        (1, 1024, 8, 64),
        (3, 200, 6, 24),
        (2, 300, 4, 16),
        (2, 77, 32, 4),
        (2, 65, 2, 128),
    ] {
        let dims = AttnDims {
            seq_len: seq,
            n_head,
            head_dim,
        };
        let n = q_len(batch, dims);
        let mut rng = walsh_spec::sampler::SplitMix64::new(seq as u64 * 31 + head_dim as u64);
        let mut random = |scale: f32| -> Vec<f32> {
            (0..n)
                .map(|_| (rng.next_u64() as f64 / u64::MAX as f64 * 2.0 - 1.0) as f32 * scale)
                .collect()
        };
        // q·k/√hd spans several units, so the softmax is far from uniform.
        let inputs = [random(2.0), random(2.0), random(1.0), random(1.0)];
        let cpu = attention_on(&CpuBackend::<f32>::new(), batch, dims, &inputs);
        // The CUDA-core kernels, exact to f32 rounding; the tensor-core ones (attention_tc.cu,
        // head sizes to 64) with 10-bit operands.
        for (tc, tol) in [(false, 1e-4), (true, 1e-2)] {
            let mut backend = gpu(if tc { Matmul::Tf32 } else { Matmul::F32 });
            backend.set_tensor_core_attention(tc).unwrap();
            let gpu = attention_on(&backend, batch, dims, &inputs);
            let kind = if tc { "tensor cores" } else { "CUDA cores" };
            let errs: Vec<f32> = cpu.iter().zip(&gpu).map(|(c, g)| rel(c, g)).collect();
            eprintln!(
                "attention B{batch} T{seq} H{n_head} hd{head_dim} {kind}: out {:.1e} dq {:.1e} dk {:.1e} dv {:.1e}",
                errs[0], errs[1], errs[2], errs[3]
            );
            for (e, what) in errs.iter().zip(["out", "dq", "dk", "dv"]) {
                assert!(
                    *e < tol,
                    "attention B{batch} T{seq} H{n_head} hd{head_dim} {kind}: {what} differs by {e:.2e}"
                );
            }
        }
    }
}

// ---------------------------------------------------------------- every op alone, seed sizes

/// Fresh random numbers: a clock seed, printed, so that a failure can be replayed
/// (`WALSH_OP_SEED=…`).
fn op_rng() -> walsh_spec::sampler::SplitMix64 {
    let seed = std::env::var("WALSH_OP_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    eprintln!("op tests: WALSH_OP_SEED={seed}");
    walsh_spec::sampler::SplitMix64::new(seed)
}

/// `n` uniform values in [centre − scale, centre + scale].
fn uniform(
    rng: &mut walsh_spec::sampler::SplitMix64,
    n: usize,
    centre: f32,
    scale: f32,
) -> Vec<f32> {
    (0..n)
        .map(|_| centre + (rng.next_u64() as f64 / u64::MAX as f64 * 2.0 - 1.0) as f32 * scale)
        .collect()
}

/// Asserts every pair of outputs agrees within `tol` (relative to the CPU's largest magnitude).
fn agree(what: &str, names: &[&str], cpu: &[Vec<f32>], gpu: &[Vec<f32>], tol: f32) {
    let errs: Vec<String> = names
        .iter()
        .zip(cpu.iter().zip(gpu))
        .map(|(n, (c, g))| {
            assert_eq!(c.len(), g.len(), "{what}: {n} lengths");
            let e = rel(c, g);
            assert!(e < tol, "{what}: {n} differs by {e:.2e} (bar {tol:.0e})");
            format!("{n} {e:.1e}")
        })
        .collect();
    eprintln!("{what}: {}", errs.join(", "));
}

/// y, dx, and the parameter gradients of one AlgebraLinear (or, with `mix`, head mixing) on `b`;
/// dx and the gradients start non-zero, since backwards accumulate.
fn linear_on<B: Backend<Elem = f32>>(
    b: &B,
    lin: Option<&walsh_trainer::backend::LinearRef>,
    mix: Option<&walsh_trainer::backend::MixRef>,
    (rows, di, dout): (usize, usize, usize),
    params: &[f32],
    x: &[f32],
    dy: &[f32],
) -> [Vec<f32>; 3] {
    let eff = b.upload(params).unwrap();
    let (xb, dyb) = (b.upload(x).unwrap(), b.upload(dy).unwrap());
    let mut y = b.zeros(rows * dout).unwrap();
    let mut dx = b.upload(&vec![0.5; rows * di]).unwrap();
    let mut grads = b.upload(&vec![0.25; params.len()]).unwrap();
    if let Some(lin) = lin {
        let mut u = b.zeros(b.linear_saved_len(rows * di)).unwrap();
        let mut z = b.zeros(b.linear_saved_len(rows * dout)).unwrap();
        b.linear_forward(&mut y, &mut u, &mut z, &xb, &eff, lin)
            .unwrap();
        b.linear_backward(&mut dx, &mut grads, &dyb, &xb, &u, &z, &eff, lin, true)
            .unwrap();
    } else if let Some(mix) = mix {
        let mut u = b.zeros(rows * di).unwrap();
        let mut z = b.zeros(b.linear_saved_len(rows * dout)).unwrap();
        b.mix_forward(&mut y, &mut u, &mut z, &xb, &eff, mix)
            .unwrap();
        b.mix_backward(&mut dx, &mut grads, &dyb, &u, &z, &eff, mix, true)
            .unwrap();
    }
    [&y, &dx, &grads].map(|v| b.download(v).unwrap())
}

#[test]
fn algebra_linear_and_head_mixing_alone_match_the_cpu_at_seed_sizes() {
    use walsh_trainer::backend::{LinearRef, MixRef};
    use walsh_trainer::ops::algebra_linear::LinearDims;
    use walsh_trainer::ops::head_mixing::MixDims;
    let mut rng = op_rng();
    let rows = 32 * 256;
    for algebra in [Algebra::Dense, Algebra::Octonion, Algebra::Hadamard] {
        for (di, dout) in [(512, 512), (512, 1376), (1376, 512)] {
            let dims = LinearDims::new(algebra, di, dout);
            let w = dims.weight_len();
            let lin = LinearRef {
                dims,
                weight: 0..w,
                alpha: w..w + di,
                beta: w + di..w + di + dout,
            };
            let mut params = uniform(&mut rng, w, 0.0, 1.0 / (di as f32).sqrt());
            params.extend(uniform(&mut rng, di + dout, 1.0, 0.3));
            let x = uniform(&mut rng, rows * di, 0.0, 1.0);
            let dy = uniform(&mut rng, rows * dout, 0.0, 1.0);
            let shape = (rows, di, dout);
            let cpu = linear_on(
                &CpuBackend::<f32>::new(),
                Some(&lin),
                None,
                shape,
                &params,
                &x,
                &dy,
            );
            let gpu = linear_on(&gpu(Matmul::F32), Some(&lin), None, shape, &params, &x, &dy);
            let what = format!("{algebra:?} linear {rows}×{di}→{dout}");
            agree(&what, &["y", "dx", "dW,dα,dβ"], &cpu, &gpu, 1e-4);
        }
    }
    for (algebra, n_head, head_dim) in [(Algebra::Hadamard, 32, 16), (Algebra::Octonion, 8, 64)] {
        let a = algebra.dim();
        let w = a * head_dim * head_dim;
        let mix = MixRef {
            dims: MixDims {
                algebra,
                n_head,
                head_dim,
            },
            weight: 0..w,
            beta: w..w + head_dim,
        };
        let d = n_head * head_dim;
        let mut params = uniform(&mut rng, w, 0.0, 1.0 / ((a * head_dim) as f32).sqrt());
        params.extend(uniform(&mut rng, head_dim, 1.0, 0.3));
        let x = uniform(&mut rng, rows * d, 0.0, 1.0);
        let dy = uniform(&mut rng, rows * d, 0.0, 1.0);
        let cpu = linear_on(
            &CpuBackend::<f32>::new(),
            None,
            Some(&mix),
            (rows, d, d),
            &params,
            &x,
            &dy,
        );
        let gpu = linear_on(
            &gpu(Matmul::F32),
            None,
            Some(&mix),
            (rows, d, d),
            &params,
            &x,
            &dy,
        );
        let what = format!("{algebra:?} head mixing {rows}×{n_head}×{head_dim}");
        agree(&what, &["y", "dx", "dW,dβ"], &cpu, &gpu, 1e-4);
    }
}

/// RMSNorm, RoPE and SwiGLU forward and backward on `b`.
fn elementwise_on<B: Backend<Elem = f32>>(
    b: &B,
    (rows, d, f, seq, hd): (usize, usize, usize, usize, usize),
    inputs: &[Vec<f32>; 5],
) -> Vec<Vec<f32>> {
    let [x, gain, dy, gate, up] = inputs.each_ref().map(|v| b.upload(v).unwrap());
    let mut out = Vec::new();
    // RMSNorm: the gain sits at offset 0 of the parameters.
    let mut y = b.zeros(rows * d).unwrap();
    let mut rstd = b.zeros(rows).unwrap();
    b.rmsnorm_forward(&mut y, &mut rstd, &x, &gain, 0..d)
        .unwrap();
    let mut dx = b.upload(&vec![0.5; rows * d]).unwrap();
    let mut dgain = b.upload(&vec![0.25; d]).unwrap();
    b.rmsnorm_backward(&mut dx, &mut dgain, &dy, &x, &rstd, &gain, 0..d)
        .unwrap();
    out.extend([&y, &rstd, &dx, &dgain].map(|v| b.download(v).unwrap()));
    // RoPE.
    let (cos, sin) = walsh_trainer::ops::rope::rope_table::<f32>(seq, hd, 10000.0);
    let (cos, sin) = (b.upload(&cos).unwrap(), b.upload(&sin).unwrap());
    let mut r = b.zeros(rows * d).unwrap();
    b.rope_forward(&mut r, &x, &cos, &sin, seq, d, hd).unwrap();
    let mut dr = b.upload(&vec![0.5; rows * d]).unwrap();
    b.rope_backward(&mut dr, &dy, &cos, &sin, seq, d, hd, true)
        .unwrap();
    // Without `accumulate` the old contents are overwritten.
    let mut dr_set = b.upload(&vec![7.0; rows * d]).unwrap();
    b.rope_backward(&mut dr_set, &dy, &cos, &sin, seq, d, hd, false)
        .unwrap();
    out.extend([&r, &dr, &dr_set].map(|v| b.download(v).unwrap()));
    // SwiGLU.
    let mut s = b.zeros(rows * f).unwrap();
    b.swiglu_forward(&mut s, &gate, &up).unwrap();
    let ds = b
        .upload(
            &b.download(&up)
                .unwrap()
                .iter()
                .map(|v| v * 0.7 - 0.1)
                .collect::<Vec<_>>(),
        )
        .unwrap();
    let mut dgate = b.upload(&vec![0.5; rows * f]).unwrap();
    let mut dup = b.upload(&vec![0.25; rows * f]).unwrap();
    b.swiglu_backward(&mut dgate, &mut dup, &ds, &gate, &up, true)
        .unwrap();
    let mut dgate_set = b.upload(&vec![7.0; rows * f]).unwrap();
    let mut dup_set = b.upload(&vec![-7.0; rows * f]).unwrap();
    b.swiglu_backward(&mut dgate_set, &mut dup_set, &ds, &gate, &up, false)
        .unwrap();
    out.extend([&s, &dgate, &dup, &dgate_set, &dup_set].map(|v| b.download(v).unwrap()));
    out
}

#[test]
fn norms_rope_and_swiglu_alone_match_the_cpu_at_seed_sizes() {
    let mut rng = op_rng();
    let (rows, d, f, seq, hd) = (32 * 256, 512, 1376, 256, 16);
    let inputs = [
        uniform(&mut rng, rows * d, 0.0, 2.0),
        uniform(&mut rng, d, 1.0, 0.3),
        uniform(&mut rng, rows * d, 0.0, 1.0),
        uniform(&mut rng, rows * f, 0.0, 4.0),
        uniform(&mut rng, rows * f, 0.0, 2.0),
    ];
    let shape = (rows, d, f, seq, hd);
    let cpu = elementwise_on(&CpuBackend::<f32>::new(), shape, &inputs);
    let gpu = elementwise_on(&gpu(Matmul::F32), shape, &inputs);
    let names = [
        "rmsnorm y",
        "rstd",
        "dx",
        "dgain",
        "rope y",
        "rope dx",
        "rope dx overwritten",
        "swiglu y",
        "dgate",
        "dup",
        "dgate overwritten",
        "dup overwritten",
    ];
    agree(
        "rmsnorm, rope, swiglu at 8192×512 / ×1376",
        &names,
        &cpu,
        &gpu,
        1e-5,
    );
}

/// Embedding forward and backward, then the loss, lse, dh and parameter gradients of the tied
/// cross-entropy, and the first rows' logits, on `b`.
fn embedding_and_loss_on<B: Backend<Elem = f32>>(
    b: &B,
    emb: &walsh_trainer::backend::EmbRef,
    params: &[f32],
    tokens: &[u32],
    h: &[f32],
    dy: &[f32],
    recompute: bool,
) -> (f64, Vec<Vec<f32>>) {
    let d = match emb {
        walsh_trainer::backend::EmbRef::Standard { d, .. }
        | walsh_trainer::backend::EmbRef::Hash { d, .. } => *d,
    };
    let n = tokens.len();
    let eff = b.upload(params).unwrap();
    let toks = b.upload_tokens(tokens).unwrap();
    let mut e = b.zeros(n * d).unwrap();
    b.embed_forward(&mut e, &toks, &eff, emb).unwrap();
    let mut grads = b.upload(&vec![0.25; params.len()]).unwrap();
    let dyb = b.upload(dy).unwrap();
    b.embed_backward(&mut grads, &dyb, &toks, emb).unwrap();
    let hb = b.upload(h).unwrap();
    let mut lse = b.zeros(n).unwrap();
    // With `recompute`, an empty saved buffer: the forward keeps nothing, the backward recomputes
    // the logits (what the CUDA bf16 mode keeps otherwise).
    let kept = if recompute {
        0
    } else {
        b.cross_entropy_saved_len(n, emb)
    };
    let mut saved = b.zeros(kept).unwrap();
    let loss = b
        .cross_entropy_forward(&mut lse, &mut saved, &hb, &toks, &eff, emb)
        .unwrap();
    let rows = 4;
    let first = b.upload(&h[..rows * d]).unwrap();
    // Another forward in between, with buffers of its own: the backward reads the first one's.
    let mut lse2 = b.zeros(rows).unwrap();
    let mut saved2 = b.zeros(b.cross_entropy_saved_len(rows, emb)).unwrap();
    let toks2 = b.upload_tokens(&tokens[..rows]).unwrap();
    b.cross_entropy_forward(&mut lse2, &mut saved2, &first, &toks2, &eff, emb)
        .unwrap();
    let mut dh = b.upload(&vec![0.5; n * d]).unwrap();
    b.cross_entropy_backward(
        &mut dh, &mut grads, 0.5, &hb, &toks, &lse, &mut saved, &eff, emb,
    )
    .unwrap();
    let mut logits = b.zeros(rows * emb.vocab()).unwrap();
    b.logits(&mut logits, &first, &eff, emb).unwrap();
    let out = [&e, &lse, &dh, &grads, &logits].map(|v| b.download(v).unwrap());
    (loss, out.into())
}

#[test]
fn embeddings_and_cross_entropy_alone_match_the_cpu() {
    use walsh_trainer::backend::EmbRef;
    let mut rng = op_rng();
    let (vocab, d) = (50257, 512);
    // (embedding, rows): standard at just over the 4096 rows the GPU takes at once (the CPU
    // reference is V·d per row), hash with the seed's 1021 buckets (the factored kernels,
    // V ≤ B²) and with 29 (V > B²).
    for (buckets, n) in [(0usize, 4096 + 64), (1021, 32 * 256), (29, 512)] {
        let (emb, len) = if buckets == 0 {
            (
                EmbRef::Standard {
                    table: 0..vocab * d,
                    vocab,
                    d,
                },
                vocab * d,
            )
        } else {
            let t = buckets * d;
            (
                EmbRef::Hash {
                    e1: 0..t,
                    e2: t..2 * t,
                    buckets,
                    vocab,
                    d,
                },
                2 * t,
            )
        };
        let params = uniform(&mut rng, len, 0.0, 0.1);
        let tokens: Vec<u32> = (0..n)
            .map(|_| (rng.next_u64() % vocab as u64) as u32)
            .collect();
        let h = uniform(&mut rng, n * d, 0.0, 1.0);
        let dy = uniform(&mut rng, n * d, 0.0, 1.0);
        let cpu_backend = CpuBackend::<f32>::new();
        let (lc, cpu) = embedding_and_loss_on(&cpu_backend, &emb, &params, &tokens, &h, &dy, false);
        // f32 GEMMs to f32 rounding; the standard embedding's bf16 mode (its own code path: bf16
        // copies of the table and h, bf16 logits kept from the forward for the backward in
        // `saved`, or recomputed when `saved` is empty) within bf16 rounding.
        let modes: &[(Matmul, bool, f64, f32)] = if buckets == 0 {
            &[
                (Matmul::F32, false, 1e-5, 1e-4),
                (Matmul::Bf16, false, 1e-3, 2e-2),
                (Matmul::Bf16, true, 1e-3, 2e-2),
            ]
        } else {
            &[(Matmul::F32, false, 1e-5, 1e-4)]
        };
        for &(matmul, recompute, tol_loss, tol) in modes {
            let b = gpu(matmul);
            let (lg, gpu) = embedding_and_loss_on(&b, &emb, &params, &tokens, &h, &dy, recompute);
            let what = format!(
                "embedding + cross-entropy, buckets {buckets}, {n} rows, {matmul:?}{}",
                if recompute { ", recomputed" } else { "" }
            );
            eprintln!("{what}: loss cpu {lc} gpu {lg}");
            assert!(
                ((lc - lg) / lc).abs() < tol_loss,
                "{what}: loss cpu {lc} gpu {lg}"
            );
            agree(
                &what,
                &["embed", "lse", "dh", "grads", "logits"],
                &cpu,
                &gpu,
                tol,
            );
        }
    }
}

/// Distillation on `b` (ops::distill): the teacher's targets of `teacher` [n, V], then the
/// student's KL term of `h` [n, d] against them and its backward (dh and the gradients start
/// non-zero, since backwards accumulate). Returns the loss, the ids, and q, lse, dh, grads.
#[allow(clippy::too_many_arguments)]
fn distill_on<B: Backend<Elem = f32>>(
    b: &B,
    emb: &walsh_trainer::backend::EmbRef,
    params: &[f32],
    teacher: &[f32],
    h: &[f32],
    k: usize,
    tau: f64,
) -> (f64, Vec<u32>, Vec<Vec<f32>>) {
    let (vocab, d) = (emb.vocab(), h.len() / (teacher.len() / emb.vocab()));
    let n = teacher.len() / vocab;
    let mut logits = b.upload(teacher).unwrap();
    let mut idx = b.upload_tokens(&vec![0; n * k]).unwrap();
    let mut q = b.zeros(n * k).unwrap();
    b.distill_targets(&mut idx, &mut q, &mut logits, vocab, k, tau)
        .unwrap();
    let eff = b.upload(params).unwrap();
    let hb = b.upload(h).unwrap();
    let mut lse = b.zeros(n).unwrap();
    let loss = b
        .distill_forward(&mut lse, &hb, &idx, &q, k, tau, &eff, emb)
        .unwrap();
    let mut dh = b.upload(&vec![0.5; n * d]).unwrap();
    let mut grads = b.upload(&vec![0.25; params.len()]).unwrap();
    b.distill_backward(
        &mut dh, &mut grads, 0.7, &hb, &idx, &q, &lse, k, tau, &eff, emb,
    )
    .unwrap();
    let ids = b.download_tokens(&idx).unwrap();
    let out = [&q, &lse, &dh, &grads].map(|v| b.download(v).unwrap());
    (loss, ids, out.into())
}

#[test]
fn distillation_alone_matches_the_cpu() {
    use walsh_trainer::backend::EmbRef;
    let mut rng = op_rng();
    // A vocabulary that is no multiple of 32 (the padded logits), rows past the 4096 the GPU
    // takes at once.
    let (vocab, d, n, k) = (4096 + 13, 256, 4096 + 64, 32);
    let emb = EmbRef::Standard {
        table: 0..vocab * d,
        vocab,
        d,
    };
    let params = uniform(&mut rng, vocab * d, 0.0, 0.1);
    let teacher = uniform(&mut rng, n * vocab, 0.0, 4.0);
    let h = uniform(&mut rng, n * d, 0.0, 1.0);
    for tau in [1.0, 2.0] {
        let (lc, ic, cpu) = distill_on(
            &CpuBackend::<f32>::new(),
            &emb,
            &params,
            &teacher,
            &h,
            k,
            tau,
        );
        for (matmul, tol_loss, tol) in [(Matmul::F32, 1e-5, 1e-4), (Matmul::Bf16, 1e-2, 5e-2)] {
            let b = gpu(matmul);
            let (lg, ig, gpu) = distill_on(&b, &emb, &params, &teacher, &h, k, tau);
            let what = format!("distillation, τ {tau}, {n} rows, V {vocab}, k {k}, {matmul:?}");
            eprintln!("{what}: loss cpu {lc} gpu {lg}");
            assert_eq!(ic, ig, "{what}: the teacher's top-k ids");
            assert!(
                ((lc - lg) / lc).abs() < tol_loss,
                "{what}: loss cpu {lc} gpu {lg}"
            );
            agree(&what, &["q", "lse", "dh", "grads"], &cpu, &gpu, tol);
        }
    }
}

/// quantize, sum of squares and one AdamW step on `b`.
fn optimizer_on<B: Backend<Elem = f32>>(
    b: &B,
    params: &[f32],
    grads: &[f32],
    ternary: &[std::ops::Range<usize>],
) -> (f64, Vec<Vec<f32>>) {
    let p = b.upload(params).unwrap();
    let mut eff = b.zeros(params.len()).unwrap();
    b.quantize(&mut eff, &p, ternary, true).unwrap();
    let g = b.upload(grads).unwrap();
    let ss = b.sum_squares(&g).unwrap();
    let mut p = p;
    let mut m = b.upload(&vec![0.01; params.len()]).unwrap();
    let mut v = b.upload(&vec![0.02; params.len()]).unwrap();
    let hp = AdamW {
        lr: 3e-3,
        beta1: 0.9,
        beta2: 0.95,
        eps: 1e-8,
        weight_decay: 0.1,
        step: 7,
    };
    b.adamw(&mut p, &g, &mut m, &mut v, &ternary[..1], 0.5, hp)
        .unwrap();
    (
        ss,
        [&eff, &p, &m, &v].map(|x| b.download(x).unwrap()).into(),
    )
}

#[test]
fn quantize_and_adamw_alone_match_the_cpu() {
    let mut rng = op_rng();
    let n = 2_000_003;
    let params = uniform(&mut rng, n, 0.0, 0.05);
    let grads = uniform(&mut rng, n, 0.0, 0.01);
    let ternary = [0..786_432, 1_000_000..1_262_144];
    let (sc, cpu) = optimizer_on(&CpuBackend::<f32>::new(), &params, &grads, &ternary);
    let (sg, gpu) = optimizer_on(&gpu(Matmul::F32), &params, &grads, &ternary);
    assert!(
        ((sc - sg) / sc).abs() < 1e-9,
        "sum of squares: cpu {sc} gpu {sg}"
    );
    agree(
        "quantize, AdamW over 2M parameters",
        &["eff", "params", "m", "v"],
        &cpu,
        &gpu,
        1e-5,
    );
}

#[test]
fn bench_times_each_op_by_cuda_events() {
    let report = walsh_trainer::bench::bench(
        gpu(Matmul::Tf32),
        &seed_config_path("tinystories-hadamard-hash"),
        &["batch_size=4".into(), "seq_len=128".into()],
        3,
    )
    .unwrap();
    eprintln!("{report}");
    assert_eq!(report.clock, "device events");
    let ops: Vec<&str> = report.split.iter().map(|s| s.0).collect();
    for op in [
        "algebra linear fwd",
        "attention bwd",
        "cross-entropy fwd",
        "adamw",
    ] {
        assert!(ops.contains(&op), "{op} missing from the split {ops:?}");
    }
    // Device time inside the ops is positive and, unlike host-clock times with a sync after each
    // op, cannot exceed a whole step's (3 steps; generous for run-to-run variation).
    let total: f64 = report.split.iter().map(|s| s.1.as_secs_f64()).sum();
    let step = report.step_time.as_secs_f64();
    assert!(
        total > 0.0 && total < 2.0 * step,
        "ops {total} s, steps {step} s"
    );
}

/// Batched generation (`trainer sample`, generate.rs) on the GPU: sequences of different lengths
/// padded into one window give, at each one's last position, the logits of that sequence run
/// alone on the CPU (f32 GEMMs, 1e-3 of the largest logit); then `generate` itself runs on the
/// GPU, every story ending as the rules say, with ids inside the vocabulary.
#[test]
fn batched_generation_matches_the_cpu() {
    use walsh_spec::sampler::{Sampler, SamplingParams};
    use walsh_trainer::generate::{Sequence, Stop, WINDOW_STEP, generate};
    for cfg in [
        tiny(Algebra::Octonion, Embedding::Standard, false),
        tiny(Algebra::Hadamard, Embedding::Hash, true),
    ] {
        let t = tensors(&cfg, false);
        let mut cpu = Model::new(CpuBackend::<f32>::new(), cfg.clone(), &t).unwrap();
        let mut gpu_model = Model::new(gpu(Matmul::F32), cfg.clone(), &t).unwrap();
        let lens = [1usize, 5, 17, 30, 2];
        let seqs: Vec<Vec<u32>> = lens
            .iter()
            .enumerate()
            .map(|(i, &n)| tokens(n, cfg.vocab_size, 40 + i as u64))
            .collect();
        let window = 30usize.next_multiple_of(WINDOW_STEP);
        let mut padded = Vec::new();
        let mut rows = Vec::new();
        for (r, s) in seqs.iter().enumerate() {
            padded.extend_from_slice(s);
            padded.resize((r + 1) * window, cfg.eos_token_id);
            rows.push(r * window + s.len() - 1);
        }
        gpu_model
            .forward(&padded, None, seqs.len(), window)
            .unwrap();
        let got = gpu_model.logits(&rows).unwrap();
        let v = cfg.vocab_size;
        for (r, s) in seqs.iter().enumerate() {
            cpu.forward(s, None, 1, s.len()).unwrap();
            let want = cpu.logits(&[s.len() - 1]).unwrap();
            let e = rel(&want, &got[r * v..(r + 1) * v]);
            assert!(e < 1e-3, "{}: sequence {r}: {e}", describe(&cfg));
        }
        let stories = (0..9)
            .map(|i| Sequence {
                context: vec![cfg.eos_token_id],
                sampler: Sampler::new(SamplingParams {
                    temperature: 1.0,
                    seed: i,
                    ..SamplingParams::default()
                }),
            })
            .collect();
        let out = generate(&mut gpu_model, stories, 40).unwrap();
        assert_eq!(out.generations.len(), 9);
        for g in &out.generations {
            assert!(
                g.tokens
                    .iter()
                    .all(|&t| (t as usize) < v && t != cfg.eos_token_id)
            );
            match g.stop {
                Stop::MaxTokens => assert_eq!(g.tokens.len(), 40),
                Stop::EndOfText => assert!(g.tokens.len() < 40),
                Stop::ContextFull => panic!("40 tokens fit a block of 64"),
            }
        }
    }
}
