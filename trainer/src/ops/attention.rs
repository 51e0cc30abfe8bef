//! Causal softmax attention (SPEC §2.3) over B sequences × H heads: head h uses the slice
//! [h·hd, (h+1)·hd) of q, k and v [B, T, d] (q and k already rotated by RoPE); scores q·k/√hd,
//! position t sees 0..=t, softmax, weighted sum of v. The softmax is saved for the backward.

use super::{Real, axpy, cast, dot};
use rayon::prelude::*;

/// The shape of one attention call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttnDims {
    /// T, the rows of one sequence.
    pub seq_len: usize,
    pub n_head: usize,
    pub head_dim: usize,
}

impl AttnDims {
    /// d = H·hd.
    pub fn d(&self) -> usize {
        self.n_head * self.head_dim
    }
    /// Length of the saved softmax of `batch` sequences: B·H·T·T.
    pub fn att_len(&self, batch: usize) -> usize {
        batch * self.n_head * self.seq_len * self.seq_len
    }
}

/// Forward: out [B, T, d]; saves `att` [B, H, T, T] (row t holds the softmax over 0..=t, zeros
/// after t). Parallel over sequences.
pub fn attention_forward<T: Real>(
    out: &mut [T],
    att: &mut [T],
    q: &[T],
    k: &[T],
    v: &[T],
    dims: AttnDims,
) {
    let (t_len, nh, hd, d) = (dims.seq_len, dims.n_head, dims.head_dim, dims.d());
    let batch = q.len() / (t_len * d);
    let seq = t_len * d;
    assert_eq!(
        (q.len(), k.len(), v.len(), out.len()),
        (batch * seq, batch * seq, batch * seq, batch * seq)
    );
    assert_eq!(att.len(), dims.att_len(batch));
    let scale = T::one() / cast::<T>(hd as f64).sqrt();
    out.par_chunks_mut(seq)
        .zip(att.par_chunks_mut(nh * t_len * t_len))
        .enumerate()
        .for_each(|(b, (os, atts))| {
            let (qs, ks, vs) = (
                &q[b * seq..(b + 1) * seq],
                &k[b * seq..(b + 1) * seq],
                &v[b * seq..(b + 1) * seq],
            );
            os.fill(T::zero());
            for h in 0..nh {
                let head = |t: usize| t * d + h * hd..t * d + (h + 1) * hd;
                for t1 in 0..t_len {
                    let row = &mut atts[(h * t_len + t1) * t_len..(h * t_len + t1 + 1) * t_len];
                    let qh = &qs[head(t1)];
                    let mut max = T::neg_infinity();
                    for (t2, s) in row[..=t1].iter_mut().enumerate() {
                        *s = dot(qh, &ks[head(t2)]) * scale;
                        max = max.max(*s);
                    }
                    let mut sum = T::zero();
                    for s in row[..=t1].iter_mut() {
                        *s = (*s - max).exp();
                        sum += *s;
                    }
                    let inv = T::one() / sum;
                    row[..=t1].iter_mut().for_each(|s| *s *= inv);
                    row[t1 + 1..].fill(T::zero());
                    let oh = &mut os[t1 * d + h * hd..t1 * d + (h + 1) * hd];
                    for (t2, w) in row[..=t1].iter().enumerate() {
                        axpy(oh, *w, &vs[head(t2)]);
                    }
                }
            }
        });
}

/// Backward: accumulates dq, dk, dv [B, T, d] from dout [B, T, d] and the saved softmax.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward<T: Real>(
    dq: &mut [T],
    dk: &mut [T],
    dv: &mut [T],
    dout: &[T],
    q: &[T],
    k: &[T],
    v: &[T],
    att: &[T],
    dims: AttnDims,
) {
    let (t_len, nh, hd, d) = (dims.seq_len, dims.n_head, dims.head_dim, dims.d());
    let seq = t_len * d;
    let batch = q.len() / seq;
    for x in [&*dq, &*dk, &*dv] {
        assert_eq!(x.len(), batch * seq);
    }
    assert_eq!(
        (dout.len(), k.len(), v.len()),
        (batch * seq, batch * seq, batch * seq)
    );
    assert_eq!(att.len(), dims.att_len(batch));
    let scale = T::one() / cast::<T>(hd as f64).sqrt();
    dq.par_chunks_mut(seq)
        .zip(dk.par_chunks_mut(seq))
        .zip(dv.par_chunks_mut(seq))
        .enumerate()
        .for_each(|(b, ((dqs, dks), dvs))| {
            let r = b * seq..(b + 1) * seq;
            let (qs, ks, vs, dos) = (&q[r.clone()], &k[r.clone()], &v[r.clone()], &dout[r]);
            let atts = &att[b * nh * t_len * t_len..(b + 1) * nh * t_len * t_len];
            let mut datt = vec![T::zero(); t_len];
            for h in 0..nh {
                let head = |t: usize| t * d + h * hd..t * d + (h + 1) * hd;
                for t1 in 0..t_len {
                    let row = &atts[(h * t_len + t1) * t_len..(h * t_len + t1) * t_len + t1 + 1];
                    let doh = &dos[head(t1)];
                    // out = Σ att·v: ∂att = dout·v, ∂v += att·dout.
                    for (t2, w) in row.iter().enumerate() {
                        datt[t2] = dot(doh, &vs[head(t2)]);
                        axpy(&mut dvs[head(t2)], *w, doh);
                    }
                    // Softmax: ∂s = att ⊙ (∂att − Σ att·∂att); scores = q·k·scale.
                    let sum: T = row.iter().zip(&datt).map(|(w, g)| *w * *g).sum();
                    for (t2, w) in row.iter().enumerate() {
                        let ds = *w * (datt[t2] - sum) * scale;
                        axpy(&mut dqs[head(t1)], ds, &ks[head(t2)]);
                        axpy(&mut dks[head(t2)], ds, &qs[head(t1)]);
                    }
                }
            }
        });
}
