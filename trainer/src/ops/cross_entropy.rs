//! Mean cross-entropy of the tied output logits (SPEC §2.4) from the final hidden rows h [N, d]
//! (the output of the final RMSNorm), never materialising the N×V logits:
//!
//! - **standard**: ℓ = E·h, computed in vocabulary chunks of [`VOCAB_CHUNK`] rows of E with an
//!   online log-sum-exp in the forward; the backward recomputes each chunk's logits into an
//!   N×chunk tile of gradients, from which dh and that chunk of dE follow.
//! - **hash**: s1 = E1·h, s2 = E2·h ∈ R^B, ℓ_t = s1[t mod B] + s2[⌊t/B⌋ mod B]. The log-sum-exp
//!   over the V tokens factorizes: with e1 = exp(s1 − max s1) and f_q = exp(s2[q mod B] − max),
//!   Σ_t exp ℓ_t ∝ Σ_q f_q · Σ_{r < cnt_q} e1[r] (cnt_q = min(B, V − qB) tokens in block q), so a
//!   row costs O(B + V/B) besides the 2·B dot products, and so do its gradients ∂s1, ∂s2.
//!
//! The forward returns the mean loss over the N rows and saves the log-sum-exp of every row. The
//! per-row losses are summed in row order, not by rayon's `sum` (whose tree follows work
//! stealing), so a step is bit-for-bit reproducible and a resumed run equals an unbroken one.

use super::embedding::hash_index;
use super::{Real, axpy, cast, dot};
use rayon::prelude::*;

/// Vocabulary rows of E per chunk.
pub const VOCAB_CHUNK: usize = 256;
/// Rows of h per forward task (they share each chunk of E in cache).
const ROW_BLOCK: usize = 16;
/// Rows of h per step of the hash backward (bounds its N×B gradient tiles).
const HASH_ROW_BLOCK: usize = 256;

/// Standard: ℓ = E·h for E [V, d]. Saves `lse` [N]; returns mean_n (lse_n − ℓ_n[target_n]).
pub fn cross_entropy_forward<T: Real>(
    lse: &mut [T],
    h: &[T],
    targets: &[u32],
    emb: &[T],
    d: usize,
) -> T {
    let n = targets.len();
    let v = emb.len() / d;
    assert_eq!((h.len(), lse.len(), emb.len()), (n * d, n, v * d));
    let total: T = lse
        .par_chunks_mut(ROW_BLOCK)
        .zip(h.par_chunks(ROW_BLOCK * d))
        .zip(targets.par_chunks(ROW_BLOCK))
        .map(|((lc, hc), tc)| {
            let rows = tc.len();
            let mut max = vec![T::neg_infinity(); rows];
            let mut sum = vec![T::zero(); rows];
            let mut tile = [T::zero(); VOCAB_CHUNK];
            for ec in emb.chunks(VOCAB_CHUNK * d) {
                for (i, hr) in hc.chunks_exact(d).enumerate() {
                    let tile = &mut tile[..ec.len() / d];
                    let mut cmax = T::neg_infinity();
                    for (l, er) in tile.iter_mut().zip(ec.chunks_exact(d)) {
                        *l = dot(er, hr);
                        cmax = cmax.max(*l);
                    }
                    let m = max[i].max(cmax);
                    let s: T = tile.iter().map(|l| (*l - m).exp()).sum();
                    sum[i] = sum[i] * (max[i] - m).exp() + s;
                    max[i] = m;
                }
            }
            let mut loss = T::zero();
            for (i, ((l, hr), &t)) in lc.iter_mut().zip(hc.chunks_exact(d)).zip(tc).enumerate() {
                let t = t as usize;
                assert!(t < v, "target {t} outside the vocabulary of {v}");
                *l = max[i] + sum[i].ln();
                loss += *l - dot(&emb[t * d..(t + 1) * d], hr);
            }
            loss
        })
        .collect::<Vec<T>>()
        .into_iter()
        .sum();
    total / cast(n.max(1) as f64)
}

/// Standard backward: with g_{n,v} = dloss/N · (softmax_v − [v = target_n]), dh[n] += Σ_v g E[v]
/// and dE[v] += Σ_n g h[n].
#[allow(clippy::too_many_arguments)]
pub fn cross_entropy_backward<T: Real>(
    dh: &mut [T],
    demb: &mut [T],
    dloss: T,
    h: &[T],
    targets: &[u32],
    lse: &[T],
    emb: &[T],
    d: usize,
) {
    let n = targets.len();
    let v = emb.len() / d;
    assert_eq!((h.len(), dh.len(), lse.len()), (n * d, n * d, n));
    assert_eq!((emb.len(), demb.len()), (v * d, v * d));
    let scale = dloss / cast(n.max(1) as f64);
    let mut grad = vec![T::zero(); n * VOCAB_CHUNK];
    for (c, (ec, dec)) in emb
        .chunks(VOCAB_CHUNK * d)
        .zip(demb.chunks_mut(VOCAB_CHUNK * d))
        .enumerate()
    {
        let v0 = c * VOCAB_CHUNK;
        let cw = ec.len() / d;
        let grad = &mut grad[..n * cw];
        // The tile of logit gradients, and dh, row by row.
        grad.par_chunks_mut(cw)
            .zip(dh.par_chunks_mut(d))
            .zip(h.par_chunks(d))
            .zip(targets.par_iter().zip(lse.par_iter()))
            .for_each(|(((gr, dhr), hr), (&t, &l))| {
                for (j, (g, er)) in gr.iter_mut().zip(ec.chunks_exact(d)).enumerate() {
                    let p = (dot(er, hr) - l).exp();
                    let y = if v0 + j == t as usize {
                        T::one()
                    } else {
                        T::zero()
                    };
                    *g = (p - y) * scale;
                    axpy(dhr, *g, er);
                }
            });
        // This chunk's rows of dE, a few per task so that each h row is reused.
        const VROWS: usize = 8;
        let grad = &*grad;
        dec.par_chunks_mut(VROWS * d)
            .enumerate()
            .for_each(|(k, dchunk)| {
                for (i, hr) in h.chunks_exact(d).enumerate() {
                    for (l, der) in dchunk.chunks_exact_mut(d).enumerate() {
                        axpy(der, grad[i * cw + k * VROWS + l], hr);
                    }
                }
            });
    }
}

/// The hash factorization's shape: B buckets, V tokens, q blocks of B tokens.
#[derive(Debug, Clone, Copy)]
struct HashShape {
    buckets: usize,
    vocab: usize,
    /// ceil(V/B): the blocks q of tokens qB .. qB + B − 1.
    blocks: usize,
    /// Rows of E2 any token uses: min(blocks, B).
    used2: usize,
}

impl HashShape {
    fn new(buckets: usize, vocab: usize) -> Self {
        assert!(buckets >= 1 && buckets <= vocab, "need 1 ≤ B ≤ V");
        let blocks = vocab.div_ceil(buckets);
        HashShape {
            buckets,
            vocab,
            blocks,
            used2: blocks.min(buckets),
        }
    }
    /// Tokens in block q.
    fn count(&self, q: usize) -> usize {
        self.buckets.min(self.vocab - q * self.buckets)
    }
}

/// Per-row statistics of the factorized softmax: s1, s2, their maxima, e1 = exp(s1 − m1), its
/// prefix sums, f_q = exp(s2[q mod B] − m2), and Σ_t exp(ℓ_t − m1 − m2).
struct HashRow<T> {
    s1: Vec<T>,
    s2: Vec<T>,
    m1: T,
    m2: T,
    e1: Vec<T>,
    /// prefix[k] = Σ_{r<k} e1[r], k = 0..=B.
    prefix: Vec<T>,
    f: Vec<T>,
    total: T,
}

impl<T: Real> HashRow<T> {
    fn new(hr: &[T], e1: &[T], e2: &[T], sh: HashShape, d: usize) -> Self {
        let s1: Vec<T> = e1.chunks_exact(d).map(|er| dot(er, hr)).collect();
        let s2: Vec<T> = e2[..sh.used2 * d]
            .chunks_exact(d)
            .map(|er| dot(er, hr))
            .collect();
        let m1 = s1.iter().fold(T::neg_infinity(), |m, v| m.max(*v));
        let m2 = s2.iter().fold(T::neg_infinity(), |m, v| m.max(*v));
        let e1v: Vec<T> = s1.iter().map(|s| (*s - m1).exp()).collect();
        let mut prefix = Vec::with_capacity(sh.buckets + 1);
        let mut acc = T::zero();
        prefix.push(acc);
        for e in &e1v {
            acc += *e;
            prefix.push(acc);
        }
        let f: Vec<T> = (0..sh.blocks)
            .map(|q| (s2[q % sh.buckets] - m2).exp())
            .collect();
        let total = (0..sh.blocks).map(|q| f[q] * prefix[sh.count(q)]).sum();
        HashRow {
            s1,
            s2,
            m1,
            m2,
            e1: e1v,
            prefix,
            f,
            total,
        }
    }
    fn lse(&self) -> T {
        self.m1 + self.m2 + self.total.ln()
    }
}

/// Hash: ℓ_t = s1[t mod B] + s2[⌊t/B⌋ mod B] with s1 = E1·h, s2 = E2·h (E1, E2 [B, d]) over the
/// V = `vocab` tokens. Saves `lse` [N]; returns the mean loss.
#[allow(clippy::too_many_arguments)]
pub fn hash_cross_entropy_forward<T: Real>(
    lse: &mut [T],
    h: &[T],
    targets: &[u32],
    e1: &[T],
    e2: &[T],
    buckets: usize,
    vocab: usize,
    d: usize,
) -> T {
    let n = targets.len();
    let sh = HashShape::new(buckets, vocab);
    assert_eq!((h.len(), lse.len()), (n * d, n));
    assert_eq!((e1.len(), e2.len()), (buckets * d, buckets * d));
    let total: T = lse
        .par_iter_mut()
        .zip(h.par_chunks(d))
        .zip(targets.par_iter())
        .map(|((l, hr), &t)| {
            assert!(
                (t as usize) < vocab,
                "target {t} outside the vocabulary of {vocab}"
            );
            let row = HashRow::new(hr, e1, e2, sh, d);
            *l = row.lse();
            let (i1, i2) = hash_index(t, buckets);
            *l - (row.s1[i1] + row.s2[i2])
        })
        .collect::<Vec<T>>()
        .into_iter()
        .sum();
    total / cast(n.max(1) as f64)
}

/// Hash backward: ∂s1[r] = Σ_{t ≡ r} g_t and ∂s2[q'] = Σ_{⌊t/B⌋ ≡ q'} g_t with
/// g_t = dloss/N · (p_t − [t = target]), in closed form per row; then dh += E1ᵀ∂s1 + E2ᵀ∂s2,
/// dE1 += ∂s1 ⊗ h, dE2 += ∂s2 ⊗ h.
#[allow(clippy::too_many_arguments)]
pub fn hash_cross_entropy_backward<T: Real>(
    dh: &mut [T],
    de1: &mut [T],
    de2: &mut [T],
    dloss: T,
    h: &[T],
    targets: &[u32],
    lse: &[T],
    e1: &[T],
    e2: &[T],
    buckets: usize,
    vocab: usize,
    d: usize,
) {
    let n = targets.len();
    let sh = HashShape::new(buckets, vocab);
    assert_eq!((h.len(), dh.len(), lse.len()), (n * d, n * d, n));
    assert_eq!((e1.len(), e2.len()), (buckets * d, buckets * d));
    assert_eq!((de1.len(), de2.len()), (buckets * d, buckets * d));
    let scale = dloss / cast(n.max(1) as f64);
    let (b, u2) = (buckets, sh.used2);
    let mut ds1 = vec![T::zero(); HASH_ROW_BLOCK * b];
    let mut ds2 = vec![T::zero(); HASH_ROW_BLOCK * u2];
    for ((hb, dhb), (tb, lb)) in h
        .chunks(HASH_ROW_BLOCK * d)
        .zip(dh.chunks_mut(HASH_ROW_BLOCK * d))
        .zip(
            targets
                .chunks(HASH_ROW_BLOCK)
                .zip(lse.chunks(HASH_ROW_BLOCK)),
        )
    {
        let rows = tb.len();
        let (ds1, ds2) = (&mut ds1[..rows * b], &mut ds2[..rows * u2]);
        ds1.par_chunks_mut(b)
            .zip(ds2.par_chunks_mut(u2))
            .zip(hb.par_chunks(d).zip(dhb.par_chunks_mut(d)))
            .zip(tb.par_iter().zip(lb.par_iter()))
            .for_each(|(((g1, g2), (hr, dhr)), (&t, &l))| {
                let row = HashRow::new(hr, e1, e2, sh, d);
                // p_t = e1[r]·f_q·c0 for t = qB + r.
                let c0 = (row.m1 + row.m2 - l).exp() * scale;
                // F[k] = Σ_{q<k} f_q.
                let mut fpre = Vec::with_capacity(sh.blocks + 1);
                let mut acc = T::zero();
                fpre.push(acc);
                for f in &row.f {
                    acc += *f;
                    fpre.push(acc);
                }
                for (r, g) in g1.iter_mut().enumerate() {
                    // Blocks q with qB + r < V.
                    let nq = (vocab - r).div_ceil(b);
                    *g = c0 * row.e1[r] * fpre[nq];
                }
                g2.fill(T::zero());
                for q in 0..sh.blocks {
                    g2[q % b] += c0 * row.f[q] * row.prefix[sh.count(q)];
                }
                let (i1, i2) = hash_index(t, b);
                g1[i1] -= scale;
                g2[i2] -= scale;
                for (g, er) in g1.iter().zip(e1.chunks_exact(d)) {
                    axpy(dhr, *g, er);
                }
                for (g, er) in g2.iter().zip(e2.chunks_exact(d)) {
                    axpy(dhr, *g, er);
                }
            });
        let (ds1, ds2) = (&*ds1, &*ds2);
        de1.par_chunks_mut(d).enumerate().for_each(|(r, der)| {
            for (i, hr) in hb.chunks_exact(d).enumerate() {
                axpy(der, ds1[i * b + r], hr);
            }
        });
        de2[..u2 * d]
            .par_chunks_mut(d)
            .enumerate()
            .for_each(|(r, der)| {
                for (i, hr) in hb.chunks_exact(d).enumerate() {
                    axpy(der, ds2[i * u2 + r], hr);
                }
            });
    }
}
