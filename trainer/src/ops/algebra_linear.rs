//! AlgebraLinear(in → out) of SPEC §2.2 over `rows` input rows: dense, octonion and hadamard.
//!
//! The forward takes the *effective* weight `weff` of [`super::ternary::ternary_forward`] (γ·Wq,
//! or the latent W itself with the identity quantizer), so y = β ⊙ concat(z) with z computed
//! from weff equals SPEC's y = γ·β ⊙ concat(z(Wq)). By the STE the gradient of weff is the
//! gradient of the latent weight, so the backward accumulates it straight into `dweight`.

use super::{Real, axpy, dot, rows_per_task};
use rayon::prelude::*;
use walsh_spec::config::Algebra;
use walsh_spec::octonion::SIGNS;

/// The shape of one AlgebraLinear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinearDims {
    pub algebra: Algebra,
    pub in_dim: usize,
    pub out_dim: usize,
}

impl LinearDims {
    pub fn new(algebra: Algebra, in_dim: usize, out_dim: usize) -> Self {
        let a = algebra.dim();
        assert!(
            in_dim.is_multiple_of(a) && out_dim.is_multiple_of(a),
            "AlgebraLinear {in_dim} → {out_dim} is not divisible by A = {a}"
        );
        LinearDims {
            algebra,
            in_dim,
            out_dim,
        }
    }
    /// A, the number of parts.
    pub fn parts(&self) -> usize {
        self.algebra.dim()
    }
    /// m = in/A.
    pub fn m(&self) -> usize {
        self.in_dim / self.parts()
    }
    /// n = out/A.
    pub fn n(&self) -> usize {
        self.out_dim / self.parts()
    }
    /// Elements of the weight [A, n, m].
    pub fn weight_len(&self) -> usize {
        self.parts() * self.n() * self.m()
    }
}

/// The orthonormal fast Walsh–Hadamard transform over the part index, as the engine runs it
/// (SPEC §2.2): one implementation for every stage.
pub use walsh_spec::hadamard::fht_parts;

/// The part map of one row: z (A·n) from u (A·m). Dense and hadamard are block-diagonal
/// (z_g = W[g] u_g; hadamard's transforms happen around it), octonion is
/// z_i = Σ_j s(i, j) W[i XOR j] u_j.
pub(crate) fn parts_forward<T: Real>(
    z: &mut [T],
    u: &[T],
    w: &[T],
    octonion: bool,
    a: usize,
    n: usize,
    m: usize,
) {
    let block = |k: usize| &w[k * n * m..(k + 1) * n * m];
    for (i, zi) in z.chunks_exact_mut(n).enumerate() {
        if octonion {
            for (r, zr) in zi.iter_mut().enumerate() {
                let mut acc = T::zero();
                for (j, &s) in SIGNS[i].iter().enumerate() {
                    let d = dot(&block(i ^ j)[r * m..(r + 1) * m], &u[j * m..(j + 1) * m]);
                    if s > 0 {
                        acc += d;
                    } else {
                        acc -= d;
                    }
                }
                *zr = acc;
            }
        } else {
            let (wb, ui) = (block(i), &u[i * m..(i + 1) * m]);
            for (r, zr) in zi.iter_mut().enumerate() {
                *zr = dot(&wb[r * m..(r + 1) * m], ui);
            }
        }
    }
    debug_assert_eq!(z.len(), a * n);
}

/// The transpose of [`parts_forward`] for one row: du (A·m, overwritten) from dz (A·n).
pub(crate) fn parts_backward_input<T: Real>(
    du: &mut [T],
    dz: &[T],
    w: &[T],
    octonion: bool,
    a: usize,
    n: usize,
    m: usize,
) {
    du.fill(T::zero());
    let block = |k: usize| &w[k * n * m..(k + 1) * n * m];
    for i in 0..a {
        let dzi = &dz[i * n..(i + 1) * n];
        if octonion {
            for (j, &s) in SIGNS[i].iter().enumerate() {
                let wb = block(i ^ j);
                let duj = &mut du[j * m..(j + 1) * m];
                for (r, &g) in dzi.iter().enumerate() {
                    let g = if s > 0 { g } else { -g };
                    axpy(duj, g, &wb[r * m..(r + 1) * m]);
                }
            }
        } else {
            let wb = block(i);
            let dui = &mut du[i * m..(i + 1) * m];
            for (r, &g) in dzi.iter().enumerate() {
                axpy(dui, g, &wb[r * m..(r + 1) * m]);
            }
        }
    }
}

/// dW += Σ_rows (∂z/∂W)ᵀ dz for the part map, over `rows` rows of dz [rows, A·n] and u
/// [rows, A·m]. Parallel over chunks of weight rows, each reusing an input row across its rows.
pub(crate) fn parts_backward_weight<T: Real>(
    dw: &mut [T],
    dz: &[T],
    u: &[T],
    octonion: bool,
    a: usize,
    n: usize,
    m: usize,
) {
    const WROWS: usize = 16;
    let (out, inp) = (a * n, a * m);
    let rows = dz.len().checked_div(out).unwrap_or(0);
    dw.par_chunks_mut(WROWS * m)
        .enumerate()
        .for_each(|(c, chunk)| {
            let g0 = c * WROWS;
            for b in 0..rows {
                let (dzb, ub) = (&dz[b * out..(b + 1) * out], &u[b * inp..(b + 1) * inp]);
                for (l, dwr) in chunk.chunks_exact_mut(m).enumerate() {
                    let g = g0 + l;
                    let (k, r) = (g / n, g % n);
                    if octonion {
                        // W[k] feeds z_i from u_{i XOR k} with sign s(i, i XOR k), for every i.
                        for (i, signs) in SIGNS.iter().enumerate() {
                            let j = i ^ k;
                            let s = dzb[i * n + r];
                            let s = if signs[j] > 0 { s } else { -s };
                            axpy(dwr, s, &ub[j * m..(j + 1) * m]);
                        }
                    } else {
                        axpy(dwr, dzb[k * n + r], &ub[k * m..(k + 1) * m]);
                    }
                }
            }
        });
}

/// Forward over `rows` rows of `inp` [rows, in] into `out` [rows, out]. Saves `u` [rows, in]
/// (α ⊙ x, for hadamard after H32) and `z` [rows, out] (the output before β).
#[allow(clippy::too_many_arguments)]
pub fn algebra_linear_forward<T: Real>(
    out: &mut [T],
    u: &mut [T],
    z: &mut [T],
    inp: &[T],
    weff: &[T],
    alpha: &[T],
    beta: &[T],
    dims: LinearDims,
) {
    let (a, n, m) = (dims.parts(), dims.n(), dims.m());
    let (di, dout) = (dims.in_dim, dims.out_dim);
    let rows = inp.len() / di;
    assert_eq!(inp.len(), rows * di);
    assert_eq!(out.len(), rows * dout);
    assert_eq!(u.len(), rows * di);
    assert_eq!(z.len(), rows * dout);
    assert_eq!(weff.len(), dims.weight_len());
    assert_eq!((alpha.len(), beta.len()), (di, dout));
    let octonion = dims.algebra == Algebra::Octonion;
    let hadamard = dims.algebra == Algebra::Hadamard;
    let per = rows_per_task(di + dout);
    out.par_chunks_mut(per * dout)
        .zip(u.par_chunks_mut(per * di))
        .zip(z.par_chunks_mut(per * dout))
        .zip(inp.par_chunks(per * di))
        .for_each(|(((oc, uc), zc), xc)| {
            for (((yr, ur), zr), xr) in oc
                .chunks_exact_mut(dout)
                .zip(uc.chunks_exact_mut(di))
                .zip(zc.chunks_exact_mut(dout))
                .zip(xc.chunks_exact(di))
            {
                for ((uv, xv), al) in ur.iter_mut().zip(xr).zip(alpha) {
                    *uv = *xv * *al;
                }
                if hadamard {
                    fht_parts(ur, a);
                }
                parts_forward(zr, ur, weff, octonion, a, n, m);
                if hadamard {
                    fht_parts(zr, a);
                }
                for ((yv, zv), bv) in yr.iter_mut().zip(zr.iter()).zip(beta) {
                    *yv = *zv * *bv;
                }
            }
        });
}

/// Backward: accumulates dinp [rows, in], dweight (the gradient of weff, which the STE passes to
/// the latent weight unchanged), dalpha [in] and dbeta [out].
#[allow(clippy::too_many_arguments)]
pub fn algebra_linear_backward<T: Real>(
    dinp: &mut [T],
    dweight: &mut [T],
    dalpha: &mut [T],
    dbeta: &mut [T],
    dout: &[T],
    inp: &[T],
    u: &[T],
    z: &[T],
    weff: &[T],
    alpha: &[T],
    beta: &[T],
    dims: LinearDims,
) {
    let (a, n, m) = (dims.parts(), dims.n(), dims.m());
    let (di, dou) = (dims.in_dim, dims.out_dim);
    let rows = inp.len() / di;
    assert_eq!(dinp.len(), rows * di);
    assert_eq!(dout.len(), rows * dou);
    assert_eq!((u.len(), z.len()), (rows * di, rows * dou));
    assert_eq!(
        (dweight.len(), weff.len()),
        (dims.weight_len(), dims.weight_len())
    );
    assert_eq!((dalpha.len(), dbeta.len()), (di, dou));
    let octonion = dims.algebra == Algebra::Octonion;
    let hadamard = dims.algebra == Algebra::Hadamard;
    // dβ += Σ_rows dy ⊙ z.
    for (dyr, zr) in dout.chunks_exact(dou).zip(z.chunks_exact(dou)) {
        for ((db, dy), zv) in dbeta.iter_mut().zip(dyr).zip(zr) {
            *db += *dy * *zv;
        }
    }
    // g = ∂L/∂(part-map output): β ⊙ dy, then H32 for hadamard (H32 is symmetric).
    let per = rows_per_task(di + dou);
    let mut g = vec![T::zero(); rows * dou];
    g.par_chunks_mut(per * dou)
        .zip(dout.par_chunks(per * dou))
        .for_each(|(gc, dc)| {
            for (gr, dr) in gc.chunks_exact_mut(dou).zip(dc.chunks_exact(dou)) {
                for ((gv, dv), bv) in gr.iter_mut().zip(dr).zip(beta) {
                    *gv = *dv * *bv;
                }
                if hadamard {
                    fht_parts(gr, a);
                }
            }
        });
    // du per row, then dx += α ⊙ du and dα += x ⊙ du.
    let mut du = vec![T::zero(); rows * di];
    du.par_chunks_mut(per * di)
        .zip(g.par_chunks(per * dou))
        .zip(dinp.par_chunks_mut(per * di))
        .for_each(|((duc, gc), dxc)| {
            for ((dur, gr), dxr) in duc
                .chunks_exact_mut(di)
                .zip(gc.chunks_exact(dou))
                .zip(dxc.chunks_exact_mut(di))
            {
                parts_backward_input(dur, gr, weff, octonion, a, n, m);
                if hadamard {
                    fht_parts(dur, a);
                }
                for ((dx, d), al) in dxr.iter_mut().zip(dur.iter()).zip(alpha) {
                    *dx += *d * *al;
                }
            }
        });
    for (dur, xr) in du.chunks_exact(di).zip(inp.chunks_exact(di)) {
        for ((da, d), x) in dalpha.iter_mut().zip(dur).zip(xr) {
            *da += *d * *x;
        }
    }
    parts_backward_weight(dweight, &g, u, octonion, a, n, m);
}
