//! The CPU backend: the reference ops of [`crate::ops`] over `Vec<T>`, parallel with rayon.
//! `CpuBackend<f32>` trains; `CpuBackend<f64>` is what the whole-model gradient checks run.
//!
//! Every reduction here runs in a fixed order (per-chunk partial sums collected, then added in
//! chunk order), so a step is reproducible bit for bit whatever rayon's scheduling.

use super::{AdamW, Backend, BackendResult, EmbRef, LinearRef, MixRef};
use crate::ops::attention::{AttnDims, attention_backward, attention_forward};
use crate::ops::cross_entropy::{
    cross_entropy_backward, cross_entropy_forward, hash_cross_entropy_backward,
    hash_cross_entropy_forward,
};
use crate::ops::embedding::{
    embedding_backward, embedding_forward, hash_embedding_backward, hash_embedding_forward,
    hash_index,
};
use crate::ops::{
    Real, algebra_linear, cast, distill, dot, head_mixing, rmsnorm, rope, swiglu, ternary,
};
use rayon::prelude::*;
use std::marker::PhantomData;
use std::ops::Range;

pub struct CpuBackend<T> {
    _elem: PhantomData<T>,
}

impl<T> Default for CpuBackend<T> {
    fn default() -> Self {
        CpuBackend { _elem: PhantomData }
    }
}

impl<T> CpuBackend<T> {
    pub fn new() -> Self {
        Self::default()
    }
}

/// Elements per rayon task of the elementwise ops.
const ELEMS_PER_TASK: usize = 1 << 15;

/// Disjoint mutable views of `buf`: the layout never overlaps tensors, so a failure is a bug.
fn disjoint<T, const N: usize>(buf: &mut [T], ranges: [Range<usize>; N]) -> [&mut [T]; N] {
    buf.get_disjoint_mut(ranges)
        .expect("parameter ranges of one op are disjoint and in bounds")
}

impl<T: Real> Backend for CpuBackend<T> {
    type Elem = T;
    type Buf = Vec<T>;
    type Tokens = Vec<u32>;

    fn describe(&self) -> String {
        format!(
            "cpu ({}, {} threads)",
            std::any::type_name::<T>(),
            rayon::current_num_threads()
        )
    }

    fn zeros(&self, len: usize) -> BackendResult<Vec<T>> {
        Ok(vec![T::zero(); len])
    }
    fn upload(&self, host: &[T]) -> BackendResult<Vec<T>> {
        Ok(host.to_vec())
    }
    fn download(&self, buf: &Vec<T>) -> BackendResult<Vec<T>> {
        Ok(buf.clone())
    }
    fn upload_tokens(&self, tokens: &[u32]) -> BackendResult<Vec<u32>> {
        Ok(tokens.to_vec())
    }
    fn fill_zero(&self, buf: &mut Vec<T>) -> BackendResult<()> {
        buf.par_chunks_mut(ELEMS_PER_TASK)
            .for_each(|c| c.fill(T::zero()));
        Ok(())
    }
    fn add_assign(&self, dst: &mut Vec<T>, src: &Vec<T>) -> BackendResult<()> {
        assert_eq!(dst.len(), src.len());
        dst.par_chunks_mut(ELEMS_PER_TASK)
            .zip(src.par_chunks(ELEMS_PER_TASK))
            .for_each(|(d, s)| d.iter_mut().zip(s).for_each(|(d, s)| *d += *s));
        Ok(())
    }
    fn add(&self, out: &mut Vec<T>, a: &Vec<T>, b: &Vec<T>) -> BackendResult<()> {
        assert_eq!((out.len(), a.len()), (b.len(), b.len()));
        out.par_chunks_mut(ELEMS_PER_TASK)
            .zip(
                a.par_chunks(ELEMS_PER_TASK)
                    .zip(b.par_chunks(ELEMS_PER_TASK)),
            )
            .for_each(|(o, (a, b))| {
                for ((o, a), b) in o.iter_mut().zip(a).zip(b) {
                    *o = *a + *b;
                }
            });
        Ok(())
    }

    fn quantize(
        &self,
        eff: &mut Vec<T>,
        params: &Vec<T>,
        ternary: &[Range<usize>],
        quantize: bool,
    ) -> BackendResult<()> {
        eff.copy_from_slice(params);
        for r in ternary {
            ternary::ternary_forward(&mut eff[r.clone()], &params[r.clone()], quantize);
        }
        Ok(())
    }

    fn embed_forward(
        &self,
        out: &mut Vec<T>,
        tokens: &Vec<u32>,
        eff: &Vec<T>,
        emb: &EmbRef,
    ) -> BackendResult<()> {
        match emb {
            EmbRef::Standard { table, d, .. } => {
                embedding_forward(out, tokens, &eff[table.clone()], *d)
            }
            EmbRef::Hash {
                e1, e2, buckets, d, ..
            } => hash_embedding_forward(
                out,
                tokens,
                &eff[e1.clone()],
                &eff[e2.clone()],
                *buckets,
                *d,
            ),
        }
        Ok(())
    }
    fn embed_backward(
        &self,
        grads: &mut Vec<T>,
        dout: &Vec<T>,
        tokens: &Vec<u32>,
        emb: &EmbRef,
    ) -> BackendResult<()> {
        match emb {
            EmbRef::Standard { table, d, .. } => {
                embedding_backward(&mut grads[table.clone()], dout, tokens, *d)
            }
            EmbRef::Hash {
                e1, e2, buckets, d, ..
            } => {
                let [g1, g2] = disjoint(grads, [e1.clone(), e2.clone()]);
                hash_embedding_backward(g1, g2, dout, tokens, *buckets, *d)
            }
        }
        Ok(())
    }

    fn rmsnorm_forward(
        &self,
        out: &mut Vec<T>,
        rstd: &mut Vec<T>,
        inp: &Vec<T>,
        eff: &Vec<T>,
        gain: Range<usize>,
    ) -> BackendResult<()> {
        rmsnorm::rmsnorm_forward(out, rstd, inp, &eff[gain]);
        Ok(())
    }
    fn rmsnorm_backward(
        &self,
        dinp: &mut Vec<T>,
        grads: &mut Vec<T>,
        dout: &Vec<T>,
        inp: &Vec<T>,
        rstd: &Vec<T>,
        eff: &Vec<T>,
        gain: Range<usize>,
    ) -> BackendResult<()> {
        rmsnorm::rmsnorm_backward(dinp, &mut grads[gain.clone()], dout, inp, rstd, &eff[gain]);
        Ok(())
    }

    fn linear_forward(
        &self,
        out: &mut Vec<T>,
        u: &mut Vec<T>,
        z: &mut Vec<T>,
        inp: &Vec<T>,
        eff: &Vec<T>,
        lin: &LinearRef,
    ) -> BackendResult<()> {
        algebra_linear::algebra_linear_forward(
            out,
            u,
            z,
            inp,
            &eff[lin.weight.clone()],
            &eff[lin.alpha.clone()],
            &eff[lin.beta.clone()],
            lin.dims,
        );
        Ok(())
    }
    fn linear_backward(
        &self,
        dinp: &mut Vec<T>,
        grads: &mut Vec<T>,
        dout: &Vec<T>,
        inp: &Vec<T>,
        u: &Vec<T>,
        z: &Vec<T>,
        eff: &Vec<T>,
        lin: &LinearRef,
        accumulate: bool,
    ) -> BackendResult<()> {
        if !accumulate {
            dinp.fill(T::zero());
        }
        let [dw, da, db] = disjoint(
            grads,
            [lin.weight.clone(), lin.alpha.clone(), lin.beta.clone()],
        );
        algebra_linear::algebra_linear_backward(
            dinp,
            dw,
            da,
            db,
            dout,
            inp,
            u,
            z,
            &eff[lin.weight.clone()],
            &eff[lin.alpha.clone()],
            &eff[lin.beta.clone()],
            lin.dims,
        );
        Ok(())
    }

    fn rope_forward(
        &self,
        out: &mut Vec<T>,
        inp: &Vec<T>,
        cos: &Vec<T>,
        sin: &Vec<T>,
        seq_len: usize,
        d: usize,
        head_dim: usize,
    ) -> BackendResult<()> {
        rope::rope_forward(out, inp, cos, sin, seq_len, d, head_dim);
        Ok(())
    }
    fn rope_backward(
        &self,
        dinp: &mut Vec<T>,
        dout: &Vec<T>,
        cos: &Vec<T>,
        sin: &Vec<T>,
        seq_len: usize,
        d: usize,
        head_dim: usize,
        accumulate: bool,
    ) -> BackendResult<()> {
        if !accumulate {
            dinp.fill(T::zero());
        }
        rope::rope_backward(dinp, dout, cos, sin, seq_len, d, head_dim);
        Ok(())
    }

    fn attention_forward(
        &self,
        out: &mut Vec<T>,
        att: &mut Vec<T>,
        q: &Vec<T>,
        k: &Vec<T>,
        v: &Vec<T>,
        dims: AttnDims,
    ) -> BackendResult<()> {
        attention_forward(out, att, q, k, v, dims);
        Ok(())
    }
    fn attention_backward(
        &self,
        dq: &mut Vec<T>,
        dk: &mut Vec<T>,
        dv: &mut Vec<T>,
        dout: &Vec<T>,
        _out: &Vec<T>,
        q: &Vec<T>,
        k: &Vec<T>,
        v: &Vec<T>,
        att: &Vec<T>,
        dims: AttnDims,
    ) -> BackendResult<()> {
        attention_backward(dq, dk, dv, dout, q, k, v, att, dims);
        Ok(())
    }

    fn mix_forward(
        &self,
        out: &mut Vec<T>,
        u: &mut Vec<T>,
        z: &mut Vec<T>,
        inp: &Vec<T>,
        eff: &Vec<T>,
        mix: &MixRef,
    ) -> BackendResult<()> {
        head_mixing::head_mixing_forward(
            out,
            u,
            z,
            inp,
            &eff[mix.weight.clone()],
            &eff[mix.beta.clone()],
            mix.dims,
        );
        Ok(())
    }
    fn mix_backward(
        &self,
        dinp: &mut Vec<T>,
        grads: &mut Vec<T>,
        dout: &Vec<T>,
        u: &Vec<T>,
        z: &Vec<T>,
        eff: &Vec<T>,
        mix: &MixRef,
        accumulate: bool,
    ) -> BackendResult<()> {
        if !accumulate {
            dinp.fill(T::zero());
        }
        let [dw, db] = disjoint(grads, [mix.weight.clone(), mix.beta.clone()]);
        head_mixing::head_mixing_backward(
            dinp,
            dw,
            db,
            dout,
            u,
            z,
            &eff[mix.weight.clone()],
            &eff[mix.beta.clone()],
            mix.dims,
        );
        Ok(())
    }

    fn swiglu_forward(&self, out: &mut Vec<T>, gate: &Vec<T>, up: &Vec<T>) -> BackendResult<()> {
        swiglu::swiglu_forward(out, gate, up);
        Ok(())
    }
    fn swiglu_backward(
        &self,
        dgate: &mut Vec<T>,
        dup: &mut Vec<T>,
        dout: &Vec<T>,
        gate: &Vec<T>,
        up: &Vec<T>,
        accumulate: bool,
    ) -> BackendResult<()> {
        if !accumulate {
            dgate.fill(T::zero());
            dup.fill(T::zero());
        }
        swiglu::swiglu_backward(dgate, dup, dout, gate, up);
        Ok(())
    }

    /// The reference keeps nothing in `saved` (`cross_entropy_saved_len` is 0): its backward
    /// recomputes the logits.
    fn cross_entropy_forward(
        &self,
        lse: &mut Vec<T>,
        _saved: &mut Vec<T>,
        h: &Vec<T>,
        targets: &Vec<u32>,
        eff: &Vec<T>,
        emb: &EmbRef,
    ) -> BackendResult<f64> {
        let loss = match emb {
            EmbRef::Standard { table, d, .. } => {
                cross_entropy_forward(lse, h, targets, &eff[table.clone()], *d)
            }
            EmbRef::Hash {
                e1,
                e2,
                buckets,
                vocab,
                d,
            } => hash_cross_entropy_forward(
                lse,
                h,
                targets,
                &eff[e1.clone()],
                &eff[e2.clone()],
                *buckets,
                *vocab,
                *d,
            ),
        };
        Ok(loss.to_f64().unwrap_or(f64::NAN))
    }
    fn cross_entropy_backward(
        &self,
        dh: &mut Vec<T>,
        grads: &mut Vec<T>,
        dloss: f64,
        h: &Vec<T>,
        targets: &Vec<u32>,
        lse: &Vec<T>,
        _saved: &mut Vec<T>,
        eff: &Vec<T>,
        emb: &EmbRef,
    ) -> BackendResult<()> {
        match emb {
            EmbRef::Standard { table, d, .. } => cross_entropy_backward(
                dh,
                &mut grads[table.clone()],
                cast(dloss),
                h,
                targets,
                lse,
                &eff[table.clone()],
                *d,
            ),
            EmbRef::Hash {
                e1,
                e2,
                buckets,
                vocab,
                d,
            } => {
                let [g1, g2] = disjoint(grads, [e1.clone(), e2.clone()]);
                hash_cross_entropy_backward(
                    dh,
                    g1,
                    g2,
                    cast(dloss),
                    h,
                    targets,
                    lse,
                    &eff[e1.clone()],
                    &eff[e2.clone()],
                    *buckets,
                    *vocab,
                    *d,
                )
            }
        }
        Ok(())
    }
    fn another(&self) -> BackendResult<Self> {
        Ok(Self::new())
    }
    fn download_tokens(&self, tokens: &Vec<u32>) -> BackendResult<Vec<u32>> {
        Ok(tokens.clone())
    }
    fn distill_targets(
        &self,
        idx: &mut Vec<u32>,
        q: &mut Vec<T>,
        logits: &mut Vec<T>,
        vocab: usize,
        k: usize,
        tau: f64,
    ) -> BackendResult<()> {
        distill::distill_targets(idx, q, logits, vocab, k, cast(tau));
        Ok(())
    }
    fn distill_forward(
        &self,
        lse: &mut Vec<T>,
        h: &Vec<T>,
        idx: &Vec<u32>,
        q: &Vec<T>,
        k: usize,
        tau: f64,
        eff: &Vec<T>,
        emb: &EmbRef,
    ) -> BackendResult<f64> {
        let (table, d) = standard_table(emb, "distill forward")?;
        let loss = distill::distill_forward(lse, h, idx, q, &eff[table], d, k, cast(tau));
        Ok(loss.to_f64().unwrap_or(f64::NAN))
    }
    fn distill_backward(
        &self,
        dh: &mut Vec<T>,
        grads: &mut Vec<T>,
        dloss: f64,
        h: &Vec<T>,
        idx: &Vec<u32>,
        q: &Vec<T>,
        lse: &Vec<T>,
        k: usize,
        tau: f64,
        eff: &Vec<T>,
        emb: &EmbRef,
    ) -> BackendResult<()> {
        let (table, d) = standard_table(emb, "distill backward")?;
        distill::distill_backward(
            dh,
            &mut grads[table.clone()],
            cast(dloss),
            h,
            idx,
            q,
            lse,
            &eff[table],
            d,
            k,
            cast(tau),
        );
        Ok(())
    }
    fn logits(
        &self,
        out: &mut Vec<T>,
        h: &Vec<T>,
        eff: &Vec<T>,
        emb: &EmbRef,
    ) -> BackendResult<()> {
        let (vocab, d) = match emb {
            EmbRef::Standard { vocab, d, .. } | EmbRef::Hash { vocab, d, .. } => (*vocab, *d),
        };
        assert_eq!(out.len(), h.len() / d * vocab);
        out.par_chunks_mut(vocab)
            .zip(h.par_chunks(d))
            .for_each(|(lr, hr)| match emb {
                EmbRef::Standard { table, .. } => {
                    for (l, er) in lr.iter_mut().zip(eff[table.clone()].chunks_exact(d)) {
                        *l = dot(er, hr);
                    }
                }
                EmbRef::Hash {
                    e1, e2, buckets, ..
                } => {
                    let score = |table: &Range<usize>| -> Vec<T> {
                        eff[table.clone()]
                            .chunks_exact(d)
                            .map(|er| dot(er, hr))
                            .collect()
                    };
                    let (s1, s2) = (score(e1), score(e2));
                    for (t, l) in lr.iter_mut().enumerate() {
                        let (i1, i2) = hash_index(t as u32, *buckets);
                        *l = s1[i1] + s2[i2];
                    }
                }
            });
        Ok(())
    }

    fn sum_squares(&self, buf: &Vec<T>) -> BackendResult<f64> {
        let partial: Vec<f64> = buf
            .par_chunks(ELEMS_PER_TASK)
            .map(|c| {
                c.iter()
                    .map(|v| {
                        let v = v.to_f64().unwrap_or(f64::NAN);
                        v * v
                    })
                    .sum()
            })
            .collect();
        Ok(partial.into_iter().sum())
    }

    fn adamw(
        &self,
        params: &mut Vec<T>,
        grads: &Vec<T>,
        m: &mut Vec<T>,
        v: &mut Vec<T>,
        decay: &[Range<usize>],
        grad_scale: f64,
        hp: AdamW,
    ) -> BackendResult<()> {
        let n = params.len();
        assert_eq!((grads.len(), m.len(), v.len()), (n, n, n));
        // Per-element decay flags would cost a buffer; the ranges split the buffer into runs.
        let mut runs: Vec<(Range<usize>, bool)> = Vec::new();
        let mut at = 0;
        let mut sorted = decay.to_vec();
        sorted.sort_by_key(|r| r.start);
        for r in sorted {
            if r.start > at {
                runs.push((at..r.start, false));
            }
            runs.push((r.clone(), true));
            at = r.end;
        }
        if at < n {
            runs.push((at..n, false));
        }
        let t = hp.step as i32;
        let (b1, b2) = (hp.beta1, hp.beta2);
        let c1 = 1.0 - b1.powi(t);
        let c2 = 1.0 - b2.powi(t);
        let (tb1, tb2, tlr, teps) = (cast::<T>(b1), cast::<T>(b2), cast::<T>(hp.lr), cast(hp.eps));
        let (tc1, tc2, scale) = (cast::<T>(c1), cast::<T>(c2), cast::<T>(grad_scale));
        let one = T::one();
        for (r, decays) in runs {
            let wd = cast::<T>(if decays { hp.weight_decay } else { 0.0 });
            params[r.clone()]
                .par_chunks_mut(ELEMS_PER_TASK)
                .zip(grads[r.clone()].par_chunks(ELEMS_PER_TASK))
                .zip(m[r.clone()].par_chunks_mut(ELEMS_PER_TASK))
                .zip(v[r.clone()].par_chunks_mut(ELEMS_PER_TASK))
                .for_each(|(((p, g), m), v)| {
                    for (((p, g), m), v) in p.iter_mut().zip(g).zip(m).zip(v) {
                        let g = *g * scale;
                        *m = tb1 * *m + (one - tb1) * g;
                        *v = tb2 * *v + (one - tb2) * g * g;
                        let mhat = *m / tc1;
                        let vhat = *v / tc2;
                        *p -= tlr * (mhat / (vhat.sqrt() + teps) + wd * *p);
                    }
                });
        }
        Ok(())
    }
}

/// The standard embedding's table range and width; distillation has no hash form (yet).
pub(crate) fn standard_table(
    emb: &EmbRef,
    op: &'static str,
) -> BackendResult<(Range<usize>, usize)> {
    match emb {
        EmbRef::Standard { table, d, .. } => Ok((table.clone(), *d)),
        EmbRef::Hash { .. } => Err(super::BackendError {
            backend: "cpu".into(),
            op,
            msg: "distillation needs a standard embedding (the student is a hash model)".into(),
        }),
    }
}
