//! Gradient checks of the trainer's CPU reference ops: every backward against f64 central finite
//! differences of its forward (the ops run in f64 here), and the forwards against the inference
//! engine where it has the same computation.
//!
//! Each check takes the scalar L = Σ out ⊙ R for a fixed random R (so dout = R) and reports, per
//! gradient tensor, max|analytic − numeric| / max|numeric|.

use walsh_spec::config::Algebra;
use walsh_trainer::ops::algebra_linear::{
    LinearDims, algebra_linear_backward, algebra_linear_forward,
};
use walsh_trainer::ops::attention::{AttnDims, attention_backward, attention_forward};
use walsh_trainer::ops::cross_entropy::{
    VOCAB_CHUNK, cross_entropy_backward, cross_entropy_forward, hash_cross_entropy_backward,
    hash_cross_entropy_forward,
};
use walsh_trainer::ops::distill::{distill_backward, distill_forward, distill_targets};
use walsh_trainer::ops::embedding::{
    embedding_backward, embedding_forward, hash_embedding_backward, hash_embedding_forward,
};
use walsh_trainer::ops::head_mixing::{MixDims, head_mixing_backward, head_mixing_forward};
use walsh_trainer::ops::rmsnorm::{rmsnorm_backward, rmsnorm_forward};
use walsh_trainer::ops::rope::{rope_backward, rope_forward, rope_table};
use walsh_trainer::ops::swiglu::{swiglu_backward, swiglu_forward};
use walsh_trainer::ops::ternary::{absmean, ternary_backward, ternary_forward, ternary_values};

const TOL: f64 = 1e-4;
const EPS: f64 = 1e-5;

struct Rng(u64);
impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [−1, 1).
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64) / ((1u64 << 53) as f64) * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize, scale: f64) -> Vec<f64> {
        (0..n).map(|_| self.uniform() * scale).collect()
    }
    fn tokens(&mut self, n: usize, vocab: usize) -> Vec<u32> {
        (0..n)
            .map(|_| (self.next_u64() % vocab as u64) as u32)
            .collect()
    }
}

fn weighted(out: &[f64], r: &[f64]) -> f64 {
    out.iter().zip(r).map(|(a, b)| a * b).sum()
}

/// Central differences of `loss` with respect to params[which].
fn numeric(params: &[Vec<f64>], which: usize, loss: &dyn Fn(&[Vec<f64>]) -> f64) -> Vec<f64> {
    let mut p = params.to_vec();
    (0..params[which].len())
        .map(|i| {
            let x = p[which][i];
            p[which][i] = x + EPS;
            let up = loss(&p);
            p[which][i] = x - EPS;
            let down = loss(&p);
            p[which][i] = x;
            (up - down) / (2.0 * EPS)
        })
        .collect()
}

fn rel_err(analytic: &[f64], numeric: &[f64]) -> f64 {
    assert_eq!(analytic.len(), numeric.len());
    let scale = numeric.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let diff = analytic
        .iter()
        .zip(numeric)
        .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
    // A gradient that is exactly zero (e.g. E2 when V = B) is checked absolutely.
    diff / scale.max(1e-3)
}

/// Checks every gradient in `analytic` (one per params entry, `None` to skip) and returns the
/// worst relative error.
fn check(
    name: &str,
    params: &[Vec<f64>],
    analytic: &[Option<&[f64]>],
    loss: &dyn Fn(&[Vec<f64>]) -> f64,
) -> f64 {
    let mut worst = 0.0f64;
    for (i, a) in analytic.iter().enumerate() {
        if let Some(a) = a {
            let e = rel_err(a, &numeric(params, i, loss));
            println!("{name} grad {i}: max rel err {e:.3e}");
            assert!(e < TOL, "{name}: gradient {i} relative error {e:.3e}");
            worst = worst.max(e);
        }
    }
    worst
}

fn to_f32(x: &[f64]) -> Vec<f32> {
    x.iter().map(|v| *v as f32).collect()
}

// ---------------------------------------------------------------------------------------------
// Ternary quantization and AlgebraLinear.

#[test]
fn ternary_follows_absmean_and_ste_is_identity() {
    let w = vec![0.9f32, -0.2, 0.05, -1.7, 0.0, 0.4];
    let mut weff = vec![0.0f32; 6];
    let gamma = ternary_forward(&mut weff, &w, true);
    let want = (0.9 + 0.2 + 0.05 + 1.7 + 0.0 + 0.4) / 6.0;
    assert!((gamma - want).abs() < 1e-6);
    assert_eq!(gamma, absmean(&w));
    // W/γ = 1.66, −0.37, 0.09, −3.14, 0, 0.74.
    assert_eq!(ternary_values(&weff), vec![1, 0, 0, -1, 0, 1]);
    for (e, q) in weff.iter().zip([1.0, 0.0, 0.0, -1.0, 0.0, 1.0]) {
        assert_eq!(*e, gamma * q);
    }
    // Round half away from zero: γ = 1 and W/γ = ±0.5 → ±1 (in f32, 1 + 1e-8 rounds to 1).
    let w = vec![0.5f32, -0.5, 3.0, -2.5, 0.25, -0.25, 0.5, -0.5];
    let mut weff = vec![0.0; 8];
    assert_eq!(ternary_forward(&mut weff, &w, true), 1.0);
    assert_eq!(ternary_values(&weff), vec![1, -1, 1, -1, 0, 0, 1, -1]);
    // Identity quantizer.
    let w: Vec<f64> = w.iter().map(|v| f64::from(*v)).collect();
    let mut weff = vec![0.0; 8];
    let g = ternary_forward(&mut weff, &w, false);
    assert_eq!((g, &weff), (1.0, &w));
    // STE.
    let mut dw = vec![1.0; 8];
    ternary_backward(&mut dw, &[0.5, -2.0, 0.0, 1.0, 3.0, -1.0, 0.25, 0.0]);
    assert_eq!(dw, vec![1.5, -1.0, 1.0, 2.0, 4.0, 0.0, 1.25, 1.0]);
}

struct LinCase {
    dims: LinearDims,
    rows: usize,
}

fn lin_cases() -> Vec<LinCase> {
    vec![
        LinCase {
            dims: LinearDims::new(Algebra::Dense, 5, 7),
            rows: 3,
        },
        LinCase {
            dims: LinearDims::new(Algebra::Octonion, 16, 24),
            rows: 3,
        },
        LinCase {
            dims: LinearDims::new(Algebra::Hadamard, 64, 96),
            rows: 2,
        },
    ]
}

/// The forward of a linear with the quantizer in the chain: params = [x, W, α, β].
fn linear_out(p: &[Vec<f64>], dims: LinearDims, quantize: bool) -> Vec<f64> {
    let rows = p[0].len() / dims.in_dim;
    let mut weff = vec![0.0; p[1].len()];
    ternary_forward(&mut weff, &p[1], quantize);
    let mut out = vec![0.0; rows * dims.out_dim];
    let mut u = vec![0.0; rows * dims.in_dim];
    let mut z = vec![0.0; rows * dims.out_dim];
    algebra_linear_forward(&mut out, &mut u, &mut z, &p[0], &weff, &p[2], &p[3], dims);
    out
}

/// Analytic gradients [dx, dW, dα, dβ] of Σ out ⊙ r.
fn linear_grads(p: &[Vec<f64>], r: &[f64], dims: LinearDims, quantize: bool) -> Vec<Vec<f64>> {
    let rows = p[0].len() / dims.in_dim;
    let mut weff = vec![0.0; p[1].len()];
    ternary_forward(&mut weff, &p[1], quantize);
    let mut out = vec![0.0; rows * dims.out_dim];
    let mut u = vec![0.0; rows * dims.in_dim];
    let mut z = vec![0.0; rows * dims.out_dim];
    algebra_linear_forward(&mut out, &mut u, &mut z, &p[0], &weff, &p[2], &p[3], dims);
    let mut g: Vec<Vec<f64>> = p.iter().map(|v| vec![0.0; v.len()]).collect();
    let mut dweff = vec![0.0; weff.len()];
    let [dx, dw, da, db] = &mut g[..] else {
        unreachable!()
    };
    algebra_linear_backward(
        dx, &mut dweff, da, db, r, &p[0], &u, &z, &weff, &p[2], &p[3], dims,
    );
    ternary_backward(dw, &dweff);
    g
}

#[test]
fn algebra_linear_gradients_match_finite_differences() {
    let mut rng = Rng(1);
    for case in lin_cases() {
        let d = case.dims;
        let p = vec![
            rng.vec(case.rows * d.in_dim, 1.0),
            rng.vec(d.weight_len(), 1.0),
            rng.vec(d.in_dim, 1.0),
            rng.vec(d.out_dim, 1.0),
        ];
        let r = rng.vec(case.rows * d.out_dim, 1.0);
        let g = linear_grads(&p, &r, d, false);
        let loss = |q: &[Vec<f64>]| weighted(&linear_out(q, d, false), &r);
        let refs: Vec<Option<&[f64]>> = g.iter().map(|v| Some(v.as_slice())).collect();
        let e = check(d.algebra.name(), &p, &refs, &loss);
        println!("algebra_linear {}: worst {e:.3e}", d.algebra.name());
    }
}

/// With the quantizer on, dW is ∂L/∂(γWq) (γ a constant): the finite differences of the forward
/// with weff itself as the parameter.
#[test]
fn algebra_linear_ste_passes_the_gradient_through() {
    let mut rng = Rng(2);
    for case in lin_cases() {
        let d = case.dims;
        let p = vec![
            rng.vec(case.rows * d.in_dim, 1.0),
            rng.vec(d.weight_len(), 1.0),
            rng.vec(d.in_dim, 1.0),
            rng.vec(d.out_dim, 1.0),
        ];
        let r = rng.vec(case.rows * d.out_dim, 1.0);
        let g = linear_grads(&p, &r, d, true);
        // The same forward with weff = γWq frozen and fed through the identity quantizer.
        let mut weff = vec![0.0; p[1].len()];
        ternary_forward(&mut weff, &p[1], true);
        let pe = vec![p[0].clone(), weff, p[2].clone(), p[3].clone()];
        let loss = |q: &[Vec<f64>]| weighted(&linear_out(q, d, false), &r);
        let refs: Vec<Option<&[f64]>> = g.iter().map(|v| Some(v.as_slice())).collect();
        check(&format!("ste {}", d.algebra.name()), &pe, &refs, &loss);
    }
}

#[test]
fn algebra_linear_forward_matches_the_engine() {
    let mut rng = Rng(3);
    for case in lin_cases() {
        let d = case.dims;
        let x = to_f32(&rng.vec(case.rows * d.in_dim, 1.0));
        let w = to_f32(&rng.vec(d.weight_len(), 1.0));
        let alpha = to_f32(&rng.vec(d.in_dim, 1.0));
        let beta = to_f32(&rng.vec(d.out_dim, 1.0));
        let mut weff = vec![0.0f32; w.len()];
        let gamma = ternary_forward(&mut weff, &w, true);
        let mut out = vec![0.0f32; case.rows * d.out_dim];
        let mut u = vec![0.0f32; case.rows * d.in_dim];
        let mut z = vec![0.0f32; case.rows * d.out_dim];
        algebra_linear_forward(&mut out, &mut u, &mut z, &x, &weff, &alpha, &beta, d);
        // The engine quantizes the linear's input to i16 codes (SPEC §2.6): within a few code
        // steps (1/32767 of the input's maximum) of the trainer's f32 product.
        let engine = walsh_engine::ternary_linear::TernaryLinear::new(
            d.algebra,
            d.in_dim,
            d.out_dim,
            &ternary_values(&weff),
            alpha.clone(),
            beta.iter().map(|b| gamma * b).collect(),
        );
        let mut want = vec![0.0f32; out.len()];
        engine.forward(&x, &mut want, &mut Default::default());
        let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        let worst = out
            .iter()
            .zip(&want)
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs() / scale));
        println!("engine {}: max diff {worst:.3e}", d.algebra.name());
        assert!(worst < 1e-4, "{}: {worst}", d.algebra.name());
    }
}

// ---------------------------------------------------------------------------------------------
// RMSNorm, SwiGLU, RoPE.

#[test]
fn rmsnorm_gradients_and_engine() {
    let mut rng = Rng(4);
    let (rows, d) = (3, 8);
    let p = vec![rng.vec(rows * d, 1.0), rng.vec(d, 1.0)];
    let r = rng.vec(rows * d, 1.0);
    let fwd = |q: &[Vec<f64>]| {
        let mut out = vec![0.0; rows * d];
        let mut rstd = vec![0.0; rows];
        rmsnorm_forward(&mut out, &mut rstd, &q[0], &q[1]);
        (out, rstd)
    };
    let (_, rstd) = fwd(&p);
    let (mut dx, mut dg) = (vec![0.0; rows * d], vec![0.0; d]);
    rmsnorm_backward(&mut dx, &mut dg, &r, &p[0], &rstd, &p[1]);
    let loss = |q: &[Vec<f64>]| weighted(&fwd(q).0, &r);
    check("rmsnorm", &p, &[Some(&dx), Some(&dg)], &loss);

    let (x, g) = (to_f32(&p[0]), to_f32(&p[1]));
    let mut out = vec![0.0f32; rows * d];
    let mut rs = vec![0.0f32; rows];
    rmsnorm_forward(&mut out, &mut rs, &x, &g);
    let mut want = vec![0.0f32; d];
    for (xr, yr) in x.chunks(d).zip(out.chunks(d)) {
        walsh_engine::math::rmsnorm(xr, &g, &mut want);
        for (a, b) in yr.iter().zip(&want) {
            assert!((a - b).abs() < 1e-5);
        }
    }
}

#[test]
fn swiglu_gradients_and_engine() {
    let mut rng = Rng(5);
    let n = 40;
    let p = vec![rng.vec(n, 4.0), rng.vec(n, 1.0)];
    let r = rng.vec(n, 1.0);
    let fwd = |q: &[Vec<f64>]| {
        let mut out = vec![0.0; n];
        swiglu_forward(&mut out, &q[0], &q[1]);
        out
    };
    let (mut dg, mut du) = (vec![0.0; n], vec![0.0; n]);
    swiglu_backward(&mut dg, &mut du, &r, &p[0], &p[1]);
    let loss = |q: &[Vec<f64>]| weighted(&fwd(q), &r);
    check("swiglu", &p, &[Some(&dg), Some(&du)], &loss);

    let (a, b) = (to_f32(&p[0]), to_f32(&p[1]));
    let mut out = vec![0.0f32; n];
    swiglu_forward(&mut out, &a, &b);
    for ((o, a), b) in out.iter().zip(&a).zip(&b) {
        assert!((o - walsh_engine::math::silu(*a) * b).abs() < 1e-6);
    }
}

#[test]
fn rope_gradients_and_rotation() {
    let mut rng = Rng(6);
    let (batch, t, nh, hd) = (2, 5, 2, 4);
    let d = nh * hd;
    let (cos, sin) = rope_table::<f64>(t, hd, 10_000.0);
    let p = vec![rng.vec(batch * t * d, 1.0)];
    let r = rng.vec(batch * t * d, 1.0);
    let fwd = |q: &[Vec<f64>]| {
        let mut out = vec![0.0; q[0].len()];
        rope_forward(&mut out, &q[0], &cos, &sin, t, d, hd);
        out
    };
    let mut dx = vec![0.0; p[0].len()];
    rope_backward(&mut dx, &r, &cos, &sin, t, d, hd);
    let loss = |q: &[Vec<f64>]| weighted(&fwd(q), &r);
    check("rope", &p, &[Some(&dx)], &loss);
    // Sequence 1, position 3, head 1, pair 1: angle 3·θ^(−2/4).
    let out = fwd(&p);
    let base = (t + 3) * d + hd;
    let ang = 3.0 * 10_000f64.powf(-0.5);
    let (a, b) = (p[0][base + 2], p[0][base + 3]);
    assert!((out[base + 2] - (a * ang.cos() - b * ang.sin())).abs() < 1e-12);
    assert!((out[base + 3] - (a * ang.sin() + b * ang.cos())).abs() < 1e-12);
    // Position 0 is the identity.
    assert_eq!(out[..d], p[0][..d]);
}

// ---------------------------------------------------------------------------------------------
// Attention.

#[test]
fn attention_gradients_and_causality() {
    let mut rng = Rng(7);
    let dims = AttnDims {
        seq_len: 4,
        n_head: 2,
        head_dim: 4,
    };
    let batch = 2;
    let len = batch * dims.seq_len * dims.d();
    let p = vec![rng.vec(len, 1.5), rng.vec(len, 1.5), rng.vec(len, 1.0)];
    let r = rng.vec(len, 1.0);
    let fwd = |q: &[Vec<f64>]| {
        let mut out = vec![0.0; len];
        let mut att = vec![0.0; dims.att_len(batch)];
        attention_forward(&mut out, &mut att, &q[0], &q[1], &q[2], dims);
        (out, att)
    };
    let (out, att) = fwd(&p);
    let mut g: Vec<Vec<f64>> = vec![vec![0.0; len]; 3];
    let [dq, dk, dv] = &mut g[..] else {
        unreachable!()
    };
    attention_backward(dq, dk, dv, &r, &p[0], &p[1], &p[2], &att, dims);
    let loss = |q: &[Vec<f64>]| weighted(&fwd(q).0, &r);
    check(
        "attention",
        &p,
        &[Some(&g[0]), Some(&g[1]), Some(&g[2])],
        &loss,
    );

    // Causal: changing the last position's k and v changes no earlier output.
    let mut p2 = p.clone();
    let d = dims.d();
    let last = (dims.seq_len - 1) * d;
    p2[1][last..last + d].iter_mut().for_each(|x| *x += 1.0);
    p2[2][last..last + d].iter_mut().for_each(|x| *x -= 1.0);
    let (out2, _) = fwd(&p2);
    assert_eq!(out[..last], out2[..last]);
    assert_ne!(out[last..last + d], out2[last..last + d]);
    // … nor any output of the other sequence.
    assert_eq!(out[last + d..], out2[last + d..]);
    // Position 0 attends only to itself: its output is v[0].
    for h in 0..dims.n_head {
        let s = h * dims.head_dim..(h + 1) * dims.head_dim;
        for i in s {
            assert!((out[i] - p[2][i]).abs() < 1e-12);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Embeddings.

#[test]
fn embedding_gradients() {
    let mut rng = Rng(8);
    let (v, d) = (11, 3);
    let tokens = vec![3u32, 7, 3, 0, 10, 3];
    let n = tokens.len();
    let p = vec![rng.vec(v * d, 1.0)];
    let r = rng.vec(n * d, 1.0);
    let fwd = |q: &[Vec<f64>]| {
        let mut out = vec![0.0; n * d];
        embedding_forward(&mut out, &tokens, &q[0], d);
        out
    };
    let mut de = vec![0.0; v * d];
    embedding_backward(&mut de, &r, &tokens, d);
    check("embedding", &p, &[Some(&de)], &|q: &[Vec<f64>]| {
        weighted(&fwd(q), &r)
    });
    assert_eq!(fwd(&p)[d..2 * d], p[0][7 * d..8 * d]);

    // Hash, with V > B² so that ⌊t/B⌋ wraps modulo B.
    let (b, v) = (3usize, 14u32);
    let tokens: Vec<u32> = vec![0, 5, 13, 9, 4, 12, 13];
    let n = tokens.len();
    let p = vec![rng.vec(b * d, 1.0), rng.vec(b * d, 1.0)];
    let r = rng.vec(n * d, 1.0);
    let fwd = |q: &[Vec<f64>]| {
        let mut out = vec![0.0; n * d];
        hash_embedding_forward(&mut out, &tokens, &q[0], &q[1], b, d);
        out
    };
    let (mut d1, mut d2) = (vec![0.0; b * d], vec![0.0; b * d]);
    hash_embedding_backward(&mut d1, &mut d2, &r, &tokens, b, d);
    check(
        "hash embedding",
        &p,
        &[Some(&d1), Some(&d2)],
        &|q: &[Vec<f64>]| weighted(&fwd(q), &r),
    );
    // Token 13 = 4·3 + 1: E1[1] + E2[4 mod 3 = 1].
    let out = fwd(&p);
    assert!(tokens[2] < v);
    for c in 0..d {
        assert_eq!(out[2 * d + c], p[0][d + c] + p[1][d + c]);
    }
}

// ---------------------------------------------------------------------------------------------
// Cross-entropy.

/// The mean loss from the explicit N×V logits.
fn naive_loss(logits: &[f64], targets: &[u32], v: usize) -> f64 {
    let n = targets.len();
    let mut total = 0.0;
    for (row, &t) in logits.chunks(v).zip(targets) {
        let m = row.iter().fold(f64::NEG_INFINITY, |a, b| a.max(*b));
        let lse = m + row.iter().map(|l| (l - m).exp()).sum::<f64>().ln();
        total += lse - row[t as usize];
    }
    total / n as f64
}

#[test]
fn cross_entropy_standard_gradients_and_loss() {
    let mut rng = Rng(9);
    let (n, v, d) = (3, VOCAB_CHUNK + 45, 4);
    let mut targets = rng.tokens(n, v);
    targets[0] = (VOCAB_CHUNK + 3) as u32; // a target in the second chunk
    let p = vec![rng.vec(n * d, 2.0), rng.vec(v * d, 1.0)];
    let fwd = |q: &[Vec<f64>]| {
        let mut lse = vec![0.0; n];
        let loss = cross_entropy_forward(&mut lse, &q[0], &targets, &q[1], d);
        (loss, lse)
    };
    let (loss, lse) = fwd(&p);
    let logits: Vec<f64> = p[0]
        .chunks(d)
        .flat_map(|h| {
            p[1].chunks(d)
                .map(move |e| e.iter().zip(h).map(|(a, b)| a * b).sum())
        })
        .collect();
    let want = naive_loss(&logits, &targets, v);
    println!("cross entropy: loss {loss} naive {want}");
    assert!((loss - want).abs() < 1e-12 * want.abs().max(1.0));
    let dloss = 1.7;
    let (mut dh, mut de) = (vec![0.0; n * d], vec![0.0; v * d]);
    cross_entropy_backward(&mut dh, &mut de, dloss, &p[0], &targets, &lse, &p[1], d);
    check(
        "cross entropy",
        &p,
        &[Some(&dh), Some(&de)],
        &|q: &[Vec<f64>]| dloss * fwd(q).0,
    );
}

/// Distillation (ops::distill): the teacher's top-k targets against a sort, the KL term against
/// its definition over explicit logits, and its gradients against central differences, at
/// temperatures 1 and 2.5, over two vocabulary chunks.
#[test]
fn distillation_kl_gradients_and_loss() {
    let mut rng = Rng(11);
    let (n, v, d, k) = (3, VOCAB_CHUNK + 45, 4, 7);
    for tau in [1.0, 2.5] {
        let mut teacher = rng.vec(n * v, 3.0);
        // A tie at the top of row 1: the lower id ranks first.
        teacher[v + 9] = 10.0;
        teacher[v + 4] = 10.0;
        let (mut idx, mut q) = (vec![0u32; n * k], vec![0.0; n * k]);
        distill_targets(&mut idx, &mut q, &teacher, v, k, tau);
        assert_eq!(&idx[k..k + 2], &[4, 9]);
        for (r, (ir, qr)) in idx.chunks(k).zip(q.chunks(k)).enumerate() {
            let row = &teacher[r * v..(r + 1) * v];
            let mut sorted: Vec<f64> = row.to_vec();
            sorted.sort_by(|a, b| b.partial_cmp(a).unwrap());
            let picked: Vec<f64> = ir.iter().map(|&i| row[i as usize]).collect();
            assert_eq!(
                picked,
                sorted[..k].to_vec(),
                "row {r}: the k largest, largest first"
            );
            let z: f64 = picked.iter().map(|l| (l / tau).exp()).sum();
            for (qj, l) in qr.iter().zip(&picked) {
                assert!((qj - (l / tau).exp() / z).abs() < 1e-14);
            }
        }
        let p = vec![rng.vec(n * d, 2.0), rng.vec(v * d, 1.0)];
        let fwd = |pp: &[Vec<f64>]| {
            let mut lse = vec![0.0; n];
            let loss = distill_forward(&mut lse, &pp[0], &idx, &q, &pp[1], d, k, tau);
            (loss, lse)
        };
        let (loss, lse) = fwd(&p);
        // The definition: τ²·Σ_j q_j (ln q_j − log softmax(ℓ/τ)[idx_j]), averaged over rows.
        let mut want = 0.0;
        for r in 0..n {
            let h = &p[0][r * d..(r + 1) * d];
            let l: Vec<f64> = p[1]
                .chunks(d)
                .map(|e| e.iter().zip(h).map(|(a, b)| a * b).sum::<f64>() / tau)
                .collect();
            let z = l.iter().map(|x| x.exp()).sum::<f64>().ln();
            for j in 0..k {
                let (i, qj) = (idx[r * k + j] as usize, q[r * k + j]);
                want += tau * tau * qj * (qj.ln() - (l[i] - z));
            }
        }
        want /= n as f64;
        println!("distillation τ={tau}: loss {loss} definition {want}");
        assert!(loss > 0.0 && (loss - want).abs() < 1e-12 * want.abs().max(1.0));
        let dloss = 0.8;
        let (mut dh, mut de) = (vec![0.0; n * d], vec![0.0; v * d]);
        distill_backward(
            &mut dh, &mut de, dloss, &p[0], &idx, &q, &lse, &p[1], d, k, tau,
        );
        check(
            "distillation KL",
            &p,
            &[Some(&dh), Some(&de)],
            &|pp: &[Vec<f64>]| dloss * fwd(pp).0,
        );
    }
}

#[test]
fn cross_entropy_hash_gradients_and_loss() {
    let mut rng = Rng(10);
    // (B, V): V not a multiple of B, and one case with V > B² (⌊t/B⌋ wraps modulo B).
    for (b, v) in [(7usize, 20usize), (7, 53), (5, 5)] {
        let (n, d) = (4, 3);
        let mut targets = rng.tokens(n, v);
        targets[0] = (v - 1) as u32;
        let p = vec![
            rng.vec(n * d, 2.0),
            rng.vec(b * d, 1.0),
            rng.vec(b * d, 1.0),
        ];
        let fwd = |q: &[Vec<f64>]| {
            let mut lse = vec![0.0; n];
            let loss = hash_cross_entropy_forward(&mut lse, &q[0], &targets, &q[1], &q[2], b, v, d);
            (loss, lse)
        };
        let (loss, lse) = fwd(&p);
        // The explicit V×d embedding matrix and its logits.
        let mut explicit = vec![0.0; v * d];
        let toks: Vec<u32> = (0..v as u32).collect();
        hash_embedding_forward(&mut explicit, &toks, &p[1], &p[2], b, d);
        let logits: Vec<f64> = p[0]
            .chunks(d)
            .flat_map(|h| {
                explicit
                    .chunks(d)
                    .map(move |e| e.iter().zip(h).map(|(a, b)| a * b).sum())
            })
            .collect();
        let want = naive_loss(&logits, &targets, v);
        println!("hash cross entropy B={b} V={v}: loss {loss} naive {want}");
        assert!((loss - want).abs() < 1e-12 * want.abs().max(1.0));
        let dloss = 0.6;
        let (mut dh, mut d1, mut d2) = (vec![0.0; n * d], vec![0.0; b * d], vec![0.0; b * d]);
        hash_cross_entropy_backward(
            &mut dh, &mut d1, &mut d2, dloss, &p[0], &targets, &lse, &p[1], &p[2], b, v, d,
        );
        check(
            &format!("hash cross entropy B={b} V={v}"),
            &p,
            &[Some(&dh), Some(&d1), Some(&d2)],
            &|q: &[Vec<f64>]| dloss * fwd(q).0,
        );
    }
}

#[test]
fn cross_entropy_f32_is_stable_for_large_logits() {
    let (n, v, d) = (2, 300, 2);
    let h: Vec<f32> = vec![100.0, -50.0, -80.0, 30.0];
    let e: Vec<f32> = (0..v * d)
        .map(|i| ((i * 7919 % 13) as f32 - 6.0) / 3.0)
        .collect();
    let targets = vec![5u32, 299];
    let mut lse = vec![0.0f32; n];
    let loss = cross_entropy_forward(&mut lse, &h, &targets, &e, d);
    assert!(loss.is_finite() && loss >= 0.0);
}

// ---------------------------------------------------------------------------------------------
// Head mixing.

fn mix_cases() -> Vec<MixDims> {
    vec![
        MixDims {
            algebra: Algebra::Dense,
            n_head: 2,
            head_dim: 4,
        },
        MixDims {
            algebra: Algebra::Octonion,
            n_head: 16,
            head_dim: 2,
        },
        MixDims {
            algebra: Algebra::Hadamard,
            n_head: 32,
            head_dim: 2,
        },
    ]
}

#[test]
fn head_mixing_gradients_and_engine() {
    let mut rng = Rng(11);
    for dims in mix_cases() {
        let (a, hd) = (dims.algebra.dim(), dims.head_dim);
        let rows = 2;
        let len = rows * dims.n_head * hd;
        let p = vec![
            rng.vec(len, 1.0),
            rng.vec(a * hd * hd, 1.0),
            rng.vec(hd, 1.0),
        ];
        let r = rng.vec(len, 1.0);
        let fwd = |q: &[Vec<f64>]| {
            let (mut out, mut u, mut z) = (vec![0.0; len], vec![0.0; len], vec![0.0; len]);
            head_mixing_forward(&mut out, &mut u, &mut z, &q[0], &q[1], &q[2], dims);
            (out, u, z)
        };
        let (out, u, z) = fwd(&p);
        let mut g: Vec<Vec<f64>> = p.iter().map(|v| vec![0.0; v.len()]).collect();
        let [dx, dw, db] = &mut g[..] else {
            unreachable!()
        };
        head_mixing_backward(dx, dw, db, &r, &u, &z, &p[1], &p[2], dims);
        let name = format!("head mixing {}", dims.algebra.name());
        check(
            &name,
            &p,
            &[Some(&g[0]), Some(&g[1]), Some(&g[2])],
            &|q: &[Vec<f64>]| weighted(&fwd(q).0, &r),
        );
        // The engine runs head mixing on integer codes (SPEC §2.6: weights Q(row, 2047), inputs
        // Q(·, L_m)): within a few code steps of the trainer's product.
        let engine = walsh_engine::head_mixing::HeadMixing::new(
            dims.algebra,
            hd,
            &to_f32(&p[1]),
            to_f32(&p[2]),
        );
        let mut want = vec![0.0f32; len];
        engine.forward(&to_f32(&p[0]), &mut want, &mut Default::default());
        let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        for (o, w) in out.iter().zip(&want) {
            assert!(
                (o - f64::from(*w)).abs() < 2e-3 * f64::from(scale),
                "{name}: {o} vs {w}"
            );
        }
        // Identity mixing: W_h[0] = I, other blocks 0 for dense and octonion (s(i, i) = + on
        // the diagonal); every block I for hadamard (H32·diag(I, …, I)·H32 = I; W_h[0] = I alone
        // would keep only the mean over the group's heads).
        let mut w0 = vec![0.0; a * hd * hd];
        let blocks = if dims.algebra == Algebra::Hadamard {
            a
        } else {
            1
        };
        for k in 0..blocks {
            (0..hd).for_each(|i| w0[(k * hd + i) * hd + i] = 1.0);
        }
        let (out0, _, _) = fwd(&[p[0].clone(), w0, vec![1.0; hd]]);
        for (o, x) in out0.iter().zip(&p[0]) {
            assert!(
                (o - x).abs() < 1e-12,
                "{name}: identity mixing is not the identity"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Shapes large enough to split the work into several rayon tasks and vocabulary chunks: the f32
// ops agree with the f64 ops (already checked above on small shapes).

fn close_f32(name: &str, got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{name}");
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-6);
    let diff = got
        .iter()
        .zip(want)
        .fold(0.0f64, |m, (a, b)| m.max((f64::from(*a) - b).abs()));
    println!("{name}: f32 vs f64 max rel diff {:.3e}", diff / scale);
    assert!(diff / scale < 1e-4, "{name}: {}", diff / scale);
}

#[test]
fn large_shapes_agree_between_f32_and_f64() {
    let mut rng = Rng(12);
    // AlgebraLinear, every algebra, 300 rows.
    for dims in [
        LinearDims::new(Algebra::Dense, 48, 40),
        LinearDims::new(Algebra::Octonion, 64, 48),
        LinearDims::new(Algebra::Hadamard, 64, 96),
    ] {
        let rows = 300;
        let p = vec![
            rng.vec(rows * dims.in_dim, 1.0),
            rng.vec(dims.weight_len(), 1.0),
            rng.vec(dims.in_dim, 1.0),
            rng.vec(dims.out_dim, 1.0),
        ];
        let r = rng.vec(rows * dims.out_dim, 1.0);
        let g64 = linear_grads(&p, &r, dims, true);
        let (p32, r32): (Vec<Vec<f32>>, _) = (p.iter().map(|v| to_f32(v)).collect(), to_f32(&r));
        let mut weff = vec![0.0f32; p32[1].len()];
        ternary_forward(&mut weff, &p32[1], true);
        let (mut out, mut u, mut z) = (
            vec![0.0f32; rows * dims.out_dim],
            vec![0.0f32; rows * dims.in_dim],
            vec![0.0f32; rows * dims.out_dim],
        );
        algebra_linear_forward(
            &mut out, &mut u, &mut z, &p32[0], &weff, &p32[2], &p32[3], dims,
        );
        close_f32("linear out", &out, &linear_out(&p, dims, true));
        let mut g: Vec<Vec<f32>> = p32.iter().map(|v| vec![0.0; v.len()]).collect();
        let [dx, dw, da, db] = &mut g[..] else {
            unreachable!()
        };
        algebra_linear_backward(
            dx, dw, da, db, &r32, &p32[0], &u, &z, &weff, &p32[2], &p32[3], dims,
        );
        for (i, (a, b)) in g.iter().zip(&g64).enumerate() {
            close_f32(&format!("linear {} grad {i}", dims.algebra.name()), a, b);
        }
    }
    // Standard cross-entropy: 40 rows (several row blocks), 600 tokens (three chunks).
    let (n, v, d) = (40, 600, 8);
    let targets = rng.tokens(n, v);
    let (h, e) = (rng.vec(n * d, 2.0), rng.vec(v * d, 1.0));
    let mut lse = vec![0.0; n];
    let loss = cross_entropy_forward(&mut lse, &h, &targets, &e, d);
    let (mut dh, mut de) = (vec![0.0; n * d], vec![0.0; v * d]);
    cross_entropy_backward(&mut dh, &mut de, 1.0, &h, &targets, &lse, &e, d);
    let (h32, e32) = (to_f32(&h), to_f32(&e));
    let mut lse32 = vec![0.0f32; n];
    let loss32 = cross_entropy_forward(&mut lse32, &h32, &targets, &e32, d);
    close_f32("ce loss", &[loss32], &[loss]);
    let (mut dh32, mut de32) = (vec![0.0f32; n * d], vec![0.0f32; v * d]);
    cross_entropy_backward(&mut dh32, &mut de32, 1.0, &h32, &targets, &lse32, &e32, d);
    close_f32("ce dh", &dh32, &dh);
    close_f32("ce dE", &de32, &de);
    // Hash cross-entropy: 300 rows (two row blocks of the backward).
    let (n, b, v, d) = (300, 13, 200, 8);
    let targets = rng.tokens(n, v);
    let (h, e1, e2) = (
        rng.vec(n * d, 2.0),
        rng.vec(b * d, 1.0),
        rng.vec(b * d, 1.0),
    );
    let mut lse = vec![0.0; n];
    let loss = hash_cross_entropy_forward(&mut lse, &h, &targets, &e1, &e2, b, v, d);
    let (mut dh, mut d1, mut d2) = (vec![0.0; n * d], vec![0.0; b * d], vec![0.0; b * d]);
    hash_cross_entropy_backward(
        &mut dh, &mut d1, &mut d2, 1.0, &h, &targets, &lse, &e1, &e2, b, v, d,
    );
    let (h32, e132, e232) = (to_f32(&h), to_f32(&e1), to_f32(&e2));
    let mut lse32 = vec![0.0f32; n];
    let loss32 = hash_cross_entropy_forward(&mut lse32, &h32, &targets, &e132, &e232, b, v, d);
    close_f32("hash ce loss", &[loss32], &[loss]);
    let (mut dh32, mut d132, mut d232) = (
        vec![0.0f32; n * d],
        vec![0.0f32; b * d],
        vec![0.0f32; b * d],
    );
    hash_cross_entropy_backward(
        &mut dh32, &mut d132, &mut d232, 1.0, &h32, &targets, &lse32, &e132, &e232, b, v, d,
    );
    close_f32("hash ce dh", &dh32, &dh);
    close_f32("hash ce dE1", &d132, &d1);
    close_f32("hash ce dE2", &d232, &d2);
}

/// Wall times of the f32 ops at a small model's sizes (`cargo test --release -p walsh-trainer
/// --test integration -- --ignored --nocapture gradcheck::timing`); not a check.
#[test]
#[ignore]
fn timing_at_model_sizes() {
    use std::time::Instant;
    let mut rng = Rng(13);
    let (rows, d, f) = (8 * 256, 256, 704);
    let time = |name: &str, f: &mut dyn FnMut()| {
        let t = Instant::now();
        f();
        println!("{name}: {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
    };
    for algebra in [Algebra::Dense, Algebra::Octonion, Algebra::Hadamard] {
        let dims = LinearDims::new(algebra, d, f);
        let x = to_f32(&rng.vec(rows * d, 1.0));
        let w = to_f32(&rng.vec(dims.weight_len(), 1.0));
        let (al, be) = (vec![1.0f32; d], vec![1.0f32; f]);
        let mut weff = vec![0.0f32; w.len()];
        ternary_forward(&mut weff, &w, true);
        let (mut out, mut u, mut z) = (
            vec![0.0f32; rows * f],
            vec![0.0f32; rows * d],
            vec![0.0f32; rows * f],
        );
        time(
            &format!("linear {} {d}→{f} fwd", algebra.name()),
            &mut || algebra_linear_forward(&mut out, &mut u, &mut z, &x, &weff, &al, &be, dims),
        );
        let (mut dx, mut dw, mut da, mut db) = (
            vec![0.0f32; rows * d],
            vec![0.0f32; w.len()],
            vec![0.0f32; d],
            vec![0.0f32; f],
        );
        time(
            &format!("linear {} {d}→{f} bwd", algebra.name()),
            &mut || {
                algebra_linear_backward(
                    &mut dx, &mut dw, &mut da, &mut db, &out, &x, &u, &z, &weff, &al, &be, dims,
                )
            },
        );
    }
    let dims = AttnDims {
        seq_len: 256,
        n_head: 8,
        head_dim: 32,
    };
    let batch = rows / 256;
    let q = to_f32(&rng.vec(rows * d, 1.0));
    let mut out = vec![0.0f32; rows * d];
    let mut att = vec![0.0f32; dims.att_len(batch)];
    time("attention fwd", &mut || {
        attention_forward(&mut out, &mut att, &q, &q, &q, dims)
    });
    let (mut dq, mut dk, mut dv) = (
        vec![0.0f32; rows * d],
        vec![0.0f32; rows * d],
        vec![0.0f32; rows * d],
    );
    time("attention bwd", &mut || {
        attention_backward(&mut dq, &mut dk, &mut dv, &out, &q, &q, &q, &att, dims)
    });
    let v = 8192;
    let targets = rng.tokens(rows, v);
    let e = to_f32(&rng.vec(v * d, 0.1));
    let mut lse = vec![0.0f32; rows];
    time(&format!("cross entropy V={v} fwd"), &mut || {
        cross_entropy_forward(&mut lse, &q, &targets, &e, d);
    });
    let (mut dh, mut de) = (vec![0.0f32; rows * d], vec![0.0f32; v * d]);
    time(&format!("cross entropy V={v} bwd"), &mut || {
        cross_entropy_backward(&mut dh, &mut de, 1.0, &q, &targets, &lse, &e, d)
    });
    let (b, v) = (1021, 50257);
    let targets = rng.tokens(rows, v);
    let (e1, e2) = (to_f32(&rng.vec(b * d, 0.1)), to_f32(&rng.vec(b * d, 0.1)));
    time(&format!("hash cross entropy V={v} B={b} fwd"), &mut || {
        hash_cross_entropy_forward(&mut lse, &q, &targets, &e1, &e2, b, v, d);
    });
    let (mut d1, mut d2) = (vec![0.0f32; b * d], vec![0.0f32; b * d]);
    time(&format!("hash cross entropy V={v} B={b} bwd"), &mut || {
        hash_cross_entropy_backward(
            &mut dh, &mut d1, &mut d2, 1.0, &q, &targets, &lse, &e1, &e2, b, v, d,
        )
    });
}
