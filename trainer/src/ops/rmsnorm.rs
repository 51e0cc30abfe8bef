//! RMSNorm (SPEC §2.3): y = x / sqrt(mean(x²) + 1e−6) ⊙ g, over rows of length d.

use super::{Real, cast, rows_per_task};
use rayon::prelude::*;

pub const RMS_EPS: f64 = 1e-6;

/// Forward over rows of `inp` [rows, d]; saves `rstd` [rows] = 1/sqrt(mean(x²) + ε).
pub fn rmsnorm_forward<T: Real>(out: &mut [T], rstd: &mut [T], inp: &[T], gain: &[T]) {
    let d = gain.len();
    let rows = inp.len() / d;
    assert_eq!(
        (inp.len(), out.len(), rstd.len()),
        (rows * d, rows * d, rows)
    );
    let per = rows_per_task(d);
    let (eps, inv_d) = (cast::<T>(RMS_EPS), cast::<T>(1.0 / d as f64));
    out.par_chunks_mut(per * d)
        .zip(rstd.par_chunks_mut(per))
        .zip(inp.par_chunks(per * d))
        .for_each(|((oc, rc), xc)| {
            for ((yr, r), xr) in oc.chunks_exact_mut(d).zip(rc).zip(xc.chunks_exact(d)) {
                let ms = xr.iter().map(|v| *v * *v).sum::<T>() * inv_d;
                *r = T::one() / (ms + eps).sqrt();
                for ((y, x), g) in yr.iter_mut().zip(xr).zip(gain) {
                    *y = *x * *r * *g;
                }
            }
        });
}

/// Backward: dx += r·(g ⊙ dy) − r³/d · x · Σ(g ⊙ dy ⊙ x); dg += Σ_rows dy ⊙ x·r.
pub fn rmsnorm_backward<T: Real>(
    dinp: &mut [T],
    dgain: &mut [T],
    dout: &[T],
    inp: &[T],
    rstd: &[T],
    gain: &[T],
) {
    let d = gain.len();
    let rows = inp.len() / d;
    assert_eq!(
        (dinp.len(), dout.len(), rstd.len()),
        (rows * d, rows * d, rows)
    );
    assert_eq!(dgain.len(), d);
    let per = rows_per_task(d);
    let inv_d = cast::<T>(1.0 / d as f64);
    dinp.par_chunks_mut(per * d)
        .zip(dout.par_chunks(per * d))
        .zip(inp.par_chunks(per * d))
        .zip(rstd.par_chunks(per))
        .for_each(|(((dxc, dyc), xc), rc)| {
            for (((dxr, dyr), xr), r) in dxc
                .chunks_exact_mut(d)
                .zip(dyc.chunks_exact(d))
                .zip(xc.chunks_exact(d))
                .zip(rc)
            {
                let s: T = dyr
                    .iter()
                    .zip(xr)
                    .zip(gain)
                    .map(|((dy, x), g)| *dy * *g * *x)
                    .sum();
                let c = *r * *r * *r * s * inv_d;
                for (((dx, dy), x), g) in dxr.iter_mut().zip(dyr).zip(xr).zip(gain) {
                    *dx += *r * *g * *dy - c * *x;
                }
            }
        });
    for ((dyr, xr), r) in dout.chunks_exact(d).zip(inp.chunks_exact(d)).zip(rstd) {
        for ((dg, dy), x) in dgain.iter_mut().zip(dyr).zip(xr) {
            *dg += *dy * *x * *r;
        }
    }
}
