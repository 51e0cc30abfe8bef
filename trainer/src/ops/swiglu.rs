//! The SwiGLU nonlinearity of the MLP (SPEC §2.3): out = silu(a) ⊙ b with silu(a) = a/(1+e^{−a}),
//! a the gate projection and b the up projection. Elementwise; nothing is saved but the inputs.

use super::Real;
use rayon::prelude::*;

const CHUNK: usize = 8192;

#[inline]
fn sigmoid<T: Real>(a: T) -> T {
    T::one() / (T::one() + (-a).exp())
}

/// out = silu(gate) ⊙ up.
pub fn swiglu_forward<T: Real>(out: &mut [T], gate: &[T], up: &[T]) {
    assert_eq!((gate.len(), up.len()), (out.len(), out.len()));
    out.par_chunks_mut(CHUNK)
        .zip(gate.par_chunks(CHUNK))
        .zip(up.par_chunks(CHUNK))
        .for_each(|((oc, gc), uc)| {
            for ((o, a), b) in oc.iter_mut().zip(gc).zip(uc) {
                *o = *a * sigmoid(*a) * *b;
            }
        });
}

/// dgate += dy ⊙ b ⊙ σ(a)(1 + a(1 − σ(a))); dup += dy ⊙ silu(a).
pub fn swiglu_backward<T: Real>(dgate: &mut [T], dup: &mut [T], dout: &[T], gate: &[T], up: &[T]) {
    let len = dout.len();
    assert_eq!(
        (dgate.len(), dup.len(), gate.len(), up.len()),
        (len, len, len, len)
    );
    dgate
        .par_chunks_mut(CHUNK)
        .zip(dup.par_chunks_mut(CHUNK))
        .zip(dout.par_chunks(CHUNK))
        .zip(gate.par_chunks(CHUNK).zip(up.par_chunks(CHUNK)))
        .for_each(|(((dgc, duc), dyc), (gc, uc))| {
            for ((((dg, du), dy), a), b) in dgc.iter_mut().zip(duc).zip(dyc).zip(gc).zip(uc) {
                let s = sigmoid(*a);
                *dg += *dy * *b * s * (T::one() + *a * (T::one() - s));
                *du += *dy * *a * s;
            }
        });
}
