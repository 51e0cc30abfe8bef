//! RoPE (SPEC §2.3) on q or k [B, T, H·hd]: per head, pairs (2i, 2i+1) rotated by the angle
//! p·θ^(−2i/hd) at position p (the row's index within its sequence).

use super::{Real, cast};
use rayon::prelude::*;

/// cos and sin tables [T, hd/2], computed in f64 with libm like the engine, then rounded to `T`.
pub fn rope_table<T: Real>(block_size: usize, head_dim: usize, theta: f64) -> (Vec<T>, Vec<T>) {
    let half = head_dim / 2;
    let mut cos = Vec::with_capacity(block_size * half);
    let mut sin = Vec::with_capacity(block_size * half);
    for p in 0..block_size {
        for i in 0..half {
            let inv_freq = libm::pow(theta, -((2 * i) as f64) / head_dim as f64);
            let angle = p as f64 * inv_freq;
            cos.push(cast(libm::cos(angle)));
            sin.push(cast(libm::sin(angle)));
        }
    }
    (cos, sin)
}

/// Rotates one row's heads by the angles of one position (by their negatives if `inverse`),
/// accumulating into `out` (`acc`) or writing it.
#[inline]
fn rotate<T: Real>(
    out: &mut [T],
    inp: &[T],
    cos: &[T],
    sin: &[T],
    hd: usize,
    inverse: bool,
    acc: bool,
) {
    let half = hd / 2;
    for (oh, xh) in out.chunks_exact_mut(hd).zip(inp.chunks_exact(hd)) {
        for i in 0..half {
            let (a, b) = (xh[2 * i], xh[2 * i + 1]);
            let (c, s) = (cos[i], if inverse { -sin[i] } else { sin[i] });
            let (ya, yb) = (a * c - b * s, a * s + b * c);
            if acc {
                oh[2 * i] += ya;
                oh[2 * i + 1] += yb;
            } else {
                oh[2 * i] = ya;
                oh[2 * i + 1] = yb;
            }
        }
    }
}

/// out = RoPE(inp) over `inp` [B, T, d] (d = H·hd, T = `seq_len`): row r is at position
/// r mod T. `cos`/`sin` come from [`rope_table`] with at least T positions.
pub fn rope_forward<T: Real>(
    out: &mut [T],
    inp: &[T],
    cos: &[T],
    sin: &[T],
    seq_len: usize,
    d: usize,
    head_dim: usize,
) {
    rope_apply(out, inp, cos, sin, seq_len, d, head_dim, false, false);
}

/// Backward: dinp += RoPE⁻¹(dout) (the rotation is orthogonal, its transpose rotates by −angle).
pub fn rope_backward<T: Real>(
    dinp: &mut [T],
    dout: &[T],
    cos: &[T],
    sin: &[T],
    seq_len: usize,
    d: usize,
    head_dim: usize,
) {
    rope_apply(dinp, dout, cos, sin, seq_len, d, head_dim, true, true);
}

#[allow(clippy::too_many_arguments)]
fn rope_apply<T: Real>(
    out: &mut [T],
    inp: &[T],
    cos: &[T],
    sin: &[T],
    seq_len: usize,
    d: usize,
    head_dim: usize,
    inverse: bool,
    acc: bool,
) {
    assert_eq!(out.len(), inp.len());
    assert!(head_dim.is_multiple_of(2) && d.is_multiple_of(head_dim));
    assert!(inp.len().is_multiple_of(seq_len * d));
    let half = head_dim / 2;
    assert!(cos.len() >= seq_len * half && sin.len() >= seq_len * half);
    out.par_chunks_mut(seq_len * d)
        .zip(inp.par_chunks(seq_len * d))
        .for_each(|(os, xs)| {
            for (p, (yr, xr)) in os.chunks_exact_mut(d).zip(xs.chunks_exact(d)).enumerate() {
                let (c, s) = (
                    &cos[p * half..(p + 1) * half],
                    &sin[p * half..(p + 1) * half],
                );
                rotate(yr, xr, c, s, head_dim, inverse, acc);
            }
        });
}
