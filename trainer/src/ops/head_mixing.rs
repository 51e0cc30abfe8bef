//! Head mixing (SPEC §2.3): the H head outputs of a row, in groups of A consecutive heads (a
//! contiguous slice of A·hd values), are mixed by the full-precision W_h [A, hd, hd] with the
//! algebra's part map and scaled by β_h [hd] (shared by all groups and all parts):
//! dense õ_0 = β_h ⊙ W_h[0] o_0; octonion õ_i = β_h ⊙ Σ_j s(i, j) W_h[i XOR j] o_j;
//! hadamard õ = β_h ⊙ H32(W_h[g] (H32 o)_g).

use super::algebra_linear::{
    fht_parts, parts_backward_input, parts_backward_weight, parts_forward,
};
use super::{Real, rows_per_task};
use rayon::prelude::*;
use walsh_spec::config::Algebra;

/// The shape of one head-mixing call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MixDims {
    pub algebra: Algebra,
    pub n_head: usize,
    pub head_dim: usize,
}

impl MixDims {
    /// Values of one group of A heads: A·hd.
    fn group(&self) -> usize {
        self.algebra.dim() * self.head_dim
    }
    fn check(&self, rows_len: usize, w: usize, beta: usize) {
        let a = self.algebra.dim();
        assert!(
            self.n_head.is_multiple_of(a),
            "H = {} not divisible by A = {a}",
            self.n_head
        );
        assert!(rows_len.is_multiple_of(self.n_head * self.head_dim));
        assert_eq!(
            (w, beta),
            (a * self.head_dim * self.head_dim, self.head_dim)
        );
    }
}

/// Forward over `inp` [rows, H·hd] into `out`; saves `u` (the input, after H32 for hadamard) and
/// `z` (the output before β_h), both [rows, H·hd].
pub fn head_mixing_forward<T: Real>(
    out: &mut [T],
    u: &mut [T],
    z: &mut [T],
    inp: &[T],
    weight: &[T],
    beta: &[T],
    dims: MixDims,
) {
    dims.check(inp.len(), weight.len(), beta.len());
    let (a, hd, g) = (dims.algebra.dim(), dims.head_dim, dims.group());
    assert_eq!(
        (out.len(), u.len(), z.len()),
        (inp.len(), inp.len(), inp.len())
    );
    let octonion = dims.algebra == Algebra::Octonion;
    let hadamard = dims.algebra == Algebra::Hadamard;
    let per = rows_per_task(2 * g);
    out.par_chunks_mut(per * g)
        .zip(u.par_chunks_mut(per * g))
        .zip(z.par_chunks_mut(per * g))
        .zip(inp.par_chunks(per * g))
        .for_each(|(((oc, uc), zc), xc)| {
            for (((yr, ur), zr), xr) in oc
                .chunks_exact_mut(g)
                .zip(uc.chunks_exact_mut(g))
                .zip(zc.chunks_exact_mut(g))
                .zip(xc.chunks_exact(g))
            {
                ur.copy_from_slice(xr);
                if hadamard {
                    fht_parts(ur, a);
                }
                parts_forward(zr, ur, weight, octonion, a, hd, hd);
                if hadamard {
                    fht_parts(zr, a);
                }
                for (c, (yv, zv)) in yr.iter_mut().zip(zr.iter()).enumerate() {
                    *yv = *zv * beta[c % hd];
                }
            }
        });
}

/// Backward: accumulates dinp [rows, H·hd], dweight [A, hd, hd] and dbeta [hd].
#[allow(clippy::too_many_arguments)]
pub fn head_mixing_backward<T: Real>(
    dinp: &mut [T],
    dweight: &mut [T],
    dbeta: &mut [T],
    dout: &[T],
    u: &[T],
    z: &[T],
    weight: &[T],
    beta: &[T],
    dims: MixDims,
) {
    dims.check(dout.len(), weight.len(), beta.len());
    let (a, hd, g) = (dims.algebra.dim(), dims.head_dim, dims.group());
    assert_eq!(
        (dinp.len(), u.len(), z.len()),
        (dout.len(), dout.len(), dout.len())
    );
    assert_eq!((dweight.len(), dbeta.len()), (weight.len(), beta.len()));
    let octonion = dims.algebra == Algebra::Octonion;
    let hadamard = dims.algebra == Algebra::Hadamard;
    for (dyr, zr) in dout.chunks_exact(hd).zip(z.chunks_exact(hd)) {
        for ((db, dy), zv) in dbeta.iter_mut().zip(dyr).zip(zr) {
            *db += *dy * *zv;
        }
    }
    let per = rows_per_task(2 * g);
    let mut gz = vec![T::zero(); dout.len()];
    gz.par_chunks_mut(per * g)
        .zip(dout.par_chunks(per * g))
        .zip(dinp.par_chunks_mut(per * g))
        .for_each(|((gc, dc), dxc)| {
            let mut du = vec![T::zero(); g];
            for ((gr, dr), dxr) in gc
                .chunks_exact_mut(g)
                .zip(dc.chunks_exact(g))
                .zip(dxc.chunks_exact_mut(g))
            {
                for (c, (gv, dv)) in gr.iter_mut().zip(dr).enumerate() {
                    *gv = *dv * beta[c % hd];
                }
                if hadamard {
                    fht_parts(gr, a);
                }
                parts_backward_input(&mut du, gr, weight, octonion, a, hd, hd);
                if hadamard {
                    fht_parts(&mut du, a);
                }
                for (dx, d) in dxr.iter_mut().zip(&du) {
                    *dx += *d;
                }
            }
        });
    parts_backward_weight(dweight, &gz, u, octonion, a, hd, hd);
}
