//! Token embeddings (SPEC §2.4): standard e(t) = E[t], and hash e(t) = E1[t mod B] + E2[⌊t/B⌋ mod B]
//! (B = `hash_buckets`). Forward gathers rows; backward scatter-adds into the tables.

use super::{Real, rows_per_task};
use rayon::prelude::*;

/// The two bucket rows of token t: (t mod B, ⌊t/B⌋ mod B).
#[inline]
pub fn hash_index(token: u32, buckets: usize) -> (usize, usize) {
    let t = token as usize;
    (t % buckets, (t / buckets) % buckets)
}

/// out [N, d] = E[tokens] for E [V, d].
pub fn embedding_forward<T: Real>(out: &mut [T], tokens: &[u32], table: &[T], d: usize) {
    assert_eq!(out.len(), tokens.len() * d);
    let per = rows_per_task(d);
    out.par_chunks_mut(per * d)
        .zip(tokens.par_chunks(per))
        .for_each(|(oc, tc)| {
            for (row, &t) in oc.chunks_exact_mut(d).zip(tc) {
                let t = t as usize;
                row.copy_from_slice(&table[t * d..(t + 1) * d]);
            }
        });
}

/// dE[tokens[i]] += dout[i].
pub fn embedding_backward<T: Real>(dtable: &mut [T], dout: &[T], tokens: &[u32], d: usize) {
    assert_eq!(dout.len(), tokens.len() * d);
    for (g, &t) in dout.chunks_exact(d).zip(tokens) {
        let t = t as usize;
        for (o, v) in dtable[t * d..(t + 1) * d].iter_mut().zip(g) {
            *o += *v;
        }
    }
}

/// out [N, d] = E1[t mod B] + E2[⌊t/B⌋ mod B] for E1, E2 [B, d].
pub fn hash_embedding_forward<T: Real>(
    out: &mut [T],
    tokens: &[u32],
    e1: &[T],
    e2: &[T],
    buckets: usize,
    d: usize,
) {
    assert_eq!(out.len(), tokens.len() * d);
    assert_eq!((e1.len(), e2.len()), (buckets * d, buckets * d));
    let per = rows_per_task(d);
    out.par_chunks_mut(per * d)
        .zip(tokens.par_chunks(per))
        .for_each(|(oc, tc)| {
            for (row, &t) in oc.chunks_exact_mut(d).zip(tc) {
                let (i1, i2) = hash_index(t, buckets);
                for ((o, x), y) in row
                    .iter_mut()
                    .zip(&e1[i1 * d..(i1 + 1) * d])
                    .zip(&e2[i2 * d..(i2 + 1) * d])
                {
                    *o = *x + *y;
                }
            }
        });
}

/// dE1[t mod B] += dout, dE2[⌊t/B⌋ mod B] += dout.
pub fn hash_embedding_backward<T: Real>(
    de1: &mut [T],
    de2: &mut [T],
    dout: &[T],
    tokens: &[u32],
    buckets: usize,
    d: usize,
) {
    assert_eq!(dout.len(), tokens.len() * d);
    assert_eq!((de1.len(), de2.len()), (buckets * d, buckets * d));
    for (g, &t) in dout.chunks_exact(d).zip(tokens) {
        let (i1, i2) = hash_index(t, buckets);
        for (o, v) in de1[i1 * d..(i1 + 1) * d].iter_mut().zip(g) {
            *o += *v;
        }
        for (o, v) in de2[i2 * d..(i2 + 1) * d].iter_mut().zip(g) {
            *o += *v;
        }
    }
}
