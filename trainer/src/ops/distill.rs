//! Distillation (docs/TRAINING.md §4.6): the KL divergence from a teacher's truncated, tempered
//! distribution to the student's tempered softmax of its tied standard logits.
//!
//! - **Teacher** ([`distill_targets`]): from the teacher's logits ℓᵀ of a row, its `k` largest
//!   (ties: the lower token id first), in that order, as ids `idx` and probabilities
//!   q_j = softmax_j(ℓᵀ[idx_j] / τ) over those k alone (the truncated distribution renormalised).
//! - **Student** ([`distill_forward`]): with ℓ = E·h and log p^τ = ℓ/τ − lse_τ,
//!   lse_τ = log Σ_v exp(ℓ_v/τ), the row's loss is τ² · Σ_j q_j (ln q_j − log p^τ[idx_j]) — the
//!   KL divergence KL(q ‖ p^τ), scaled by τ² so that its gradient keeps the cross-entropy's
//!   magnitude at any temperature (Hinton et al. 2015); q_j = 0 contributes 0. The forward
//!   returns the mean over rows and saves lse_τ.
//! - **Backward** ([`distill_backward`]): ∂loss_n/∂ℓ_v = τ · (p^τ_v − Σ_j q_j [idx_j = v]); with
//!   g = dloss/N times that, dh[n] += Σ_v g E[v] and dE[v] += Σ_n g h[n].
//!
//! The rows are summed in row order, as the cross-entropy's are, so a step is reproducible.

use super::cross_entropy::VOCAB_CHUNK;
use super::{Real, axpy, cast, dot};
use rayon::prelude::*;

/// The teacher's targets of every row of `logits` [rows, vocab]: `idx` and `q` [rows, k] (see the
/// module doc). 1 ≤ k ≤ vocab, τ > 0.
pub fn distill_targets<T: Real>(
    idx: &mut [u32],
    q: &mut [T],
    logits: &[T],
    vocab: usize,
    k: usize,
    tau: T,
) {
    assert!(k >= 1 && k <= vocab, "need 1 ≤ k ≤ vocab");
    let rows = logits.len() / vocab;
    assert_eq!(
        (logits.len(), idx.len(), q.len()),
        (rows * vocab, rows * k, rows * k)
    );
    idx.par_chunks_mut(k)
        .zip(q.par_chunks_mut(k))
        .zip(logits.par_chunks(vocab))
        .for_each(|((ir, qr), lr)| {
            let mut order: Vec<u32> = (0..vocab as u32).collect();
            // Larger logit first; equal logits by lower id (a stable sort keeps id order).
            order.sort_by(|&a, &b| {
                let (x, y) = (lr[a as usize], lr[b as usize]);
                y.partial_cmp(&x).unwrap_or(std::cmp::Ordering::Equal)
            });
            ir.copy_from_slice(&order[..k]);
            let top = lr[ir[0] as usize];
            let mut sum = T::zero();
            for (qv, &i) in qr.iter_mut().zip(ir.iter()) {
                *qv = ((lr[i as usize] - top) / tau).exp();
                sum += *qv;
            }
            for qv in qr.iter_mut() {
                *qv /= sum;
            }
        });
}

/// The student's logits of one row against the table `emb` [V, d].
fn row_logits<T: Real>(out: &mut [T], hr: &[T], emb: &[T]) {
    for (l, er) in out.iter_mut().zip(emb.chunks_exact(hr.len())) {
        *l = dot(er, hr);
    }
}

/// log Σ_v exp(ℓ_v / τ).
fn tempered_lse<T: Real>(logits: &[T], tau: T) -> T {
    let m = logits
        .iter()
        .fold(T::neg_infinity(), |m, &l| m.max(l / tau));
    let s: T = logits.iter().map(|&l| (l / tau - m).exp()).sum();
    m + s.ln()
}

/// Mean over the rows of h [N, d] of τ²·KL(q ‖ p^τ), the student's tied logits against the
/// teacher's `idx`, `q` [N, k]; saves `lse` [N] = lse_τ of each row.
#[allow(clippy::too_many_arguments)]
pub fn distill_forward<T: Real>(
    lse: &mut [T],
    h: &[T],
    idx: &[u32],
    q: &[T],
    emb: &[T],
    d: usize,
    k: usize,
    tau: T,
) -> T {
    let n = lse.len();
    let v = emb.len() / d;
    assert_eq!((h.len(), idx.len(), q.len()), (n * d, n * k, n * k));
    let losses: Vec<T> = lse
        .par_iter_mut()
        .zip(h.par_chunks(d))
        .zip(idx.par_chunks(k).zip(q.par_chunks(k)))
        .map(|((z, hr), (ir, qr))| {
            let mut logits = vec![T::zero(); v];
            row_logits(&mut logits, hr, emb);
            *z = tempered_lse(&logits, tau);
            let mut kl = T::zero();
            for (&i, &qj) in ir.iter().zip(qr) {
                assert!(
                    (i as usize) < v,
                    "teacher token {i} outside the vocabulary of {v}"
                );
                if qj > T::zero() {
                    kl += qj * (qj.ln() - (logits[i as usize] / tau - *z));
                }
            }
            kl * tau * tau
        })
        .collect();
    let total = losses.into_iter().fold(T::zero(), |a, b| a + b);
    total / cast(n.max(1) as f64)
}

/// Accumulates the gradients of `dloss` × [`distill_forward`]'s mean into `dh` [N, d] and
/// `demb` [V, d]; `lse` is the forward's.
#[allow(clippy::too_many_arguments)]
pub fn distill_backward<T: Real>(
    dh: &mut [T],
    demb: &mut [T],
    dloss: T,
    h: &[T],
    idx: &[u32],
    q: &[T],
    lse: &[T],
    emb: &[T],
    d: usize,
    k: usize,
    tau: T,
) {
    let n = lse.len();
    let v = emb.len() / d;
    assert_eq!(
        (h.len(), dh.len(), idx.len(), q.len()),
        (n * d, n * d, n * k, n * k)
    );
    assert_eq!(demb.len(), v * d);
    let scale = dloss * tau / cast(n.max(1) as f64);
    let mut grad = vec![T::zero(); n * VOCAB_CHUNK];
    for (c, (ec, dec)) in emb
        .chunks(VOCAB_CHUNK * d)
        .zip(demb.chunks_mut(VOCAB_CHUNK * d))
        .enumerate()
    {
        let v0 = c * VOCAB_CHUNK;
        let cw = ec.len() / d;
        let grad = &mut grad[..n * cw];
        grad.par_chunks_mut(cw)
            .zip(dh.par_chunks_mut(d))
            .zip(h.par_chunks(d))
            .zip(lse.par_iter().zip(idx.par_chunks(k).zip(q.par_chunks(k))))
            .for_each(|(((gr, dhr), hr), (&z, (ir, qr)))| {
                for (g, er) in gr.iter_mut().zip(ec.chunks_exact(d)) {
                    *g = (dot(er, hr) / tau - z).exp() * scale;
                }
                for (&i, &qj) in ir.iter().zip(qr) {
                    let i = i as usize;
                    if (v0..v0 + cw).contains(&i) {
                        gr[i - v0] -= qj * scale;
                    }
                }
                for (g, er) in gr.iter().zip(ec.chunks_exact(d)) {
                    axpy(dhr, *g, er);
                }
            });
        const VROWS: usize = 8;
        let grad = &*grad;
        dec.par_chunks_mut(VROWS * d)
            .enumerate()
            .for_each(|(j, dchunk)| {
                for (i, hr) in h.chunks_exact(d).enumerate() {
                    for (l, der) in dchunk.chunks_exact_mut(d).enumerate() {
                        axpy(der, grad[i * cw + j * VROWS + l], hr);
                    }
                }
            });
    }
}
