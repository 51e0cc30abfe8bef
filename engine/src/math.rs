//! Small numeric kernels of the engine. Every sum runs in a fixed order and transcendental
//! functions come from `libm`, so native and wasm32 builds compute the same bits (SPEC §5.2).
//!
//! On wasm32 the hot kernels (`dot`, `matvec`, `matvec_strided`, `weighted_rows`, `fht32`) have
//! explicit simd128 versions (`simd` below) that perform exactly the portable versions' f32
//! operations in the same order — eight accumulators as two f32x4 vectors, the same reduction
//! tree, no fused multiply-add — so they change instruction counts, never bits. The canister tests
//! check that wasm generates the same tokens as the native engine.

use walsh_spec::hadamard::fht_parts;

/// Dot product with eight independent accumulators (vectorizes to two f32x4 lanes without any
/// reassociation, so the result does not depend on the target's vector width).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "wasm32")]
    if a.len() == b.len() && a.len().is_multiple_of(8) {
        return simd::dot8(a, b);
    }
    dot_portable(a, b)
}

/// The definition of [`dot`]: lane l of eight accumulates a[8i+l]·b[8i+l] in increasing i, then
/// ((acc0+acc4) + (acc1+acc5)) + ((acc2+acc6) + (acc3+acc7)) + the sequential tail.
#[inline]
pub fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0f32; 8];
    let (ac, ar) = a.as_chunks::<8>();
    let (bc, br) = b.as_chunks::<8>();
    for (x, y) in ac.iter().zip(bc) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut tail = 0f32;
    for (x, y) in ar.iter().zip(br) {
        tail += x * y;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// out[r] = dot(w[r·cols .. (r+1)·cols], x) for every row r of a row-major matrix.
pub fn matvec(w: &[f32], x: &[f32], out: &mut [f32]) {
    matvec_strided(w, x.len(), x, out);
}

/// out[r] = dot(w[r·stride .. r·stride + x.len()], x): rows of a matrix whose rows start
/// `stride` (≥ x.len()) floats apart (the keys of one head in the KV cache).
pub fn matvec_strided(w: &[f32], stride: usize, x: &[f32], out: &mut [f32]) {
    let cols = x.len();
    #[cfg(target_arch = "wasm32")]
    if cols.is_multiple_of(8) && cols > 0 && stride >= cols {
        simd::matvec_strided(w, stride, x, out);
        return;
    }
    for (r, o) in out.iter_mut().enumerate() {
        *o = dot_portable(&w[r * stride..r * stride + cols], x);
    }
}

/// out[j] = Σ_p w[p]·v[p·stride + j], summed in increasing p from 0 (the attention's weighted sum
/// of the values of one head).
pub fn weighted_rows(w: &[f32], v: &[f32], stride: usize, out: &mut [f32]) {
    #[cfg(target_arch = "wasm32")]
    if out.len().is_multiple_of(4) && stride >= out.len() {
        simd::weighted_rows(w, v, stride, out);
        return;
    }
    out.fill(0.0);
    let n = out.len();
    for (p, wp) in w.iter().enumerate() {
        let row = &v[p * stride..p * stride + n];
        out.iter_mut().zip(row).for_each(|(o, x)| *o += wp * x);
    }
}

/// The orthonormal FHT over 32 parts (SPEC §2.2), the same bits as `walsh_spec::hadamard::fht_parts`.
pub fn fht32(x: &mut [f32]) {
    #[cfg(target_arch = "wasm32")]
    if x.len().is_multiple_of(128) {
        simd::fht(x, 32);
        return;
    }
    fht_parts(x, 32);
}

/// RMSNorm(x) = x / sqrt(mean(x²) + 1e−6) ⊙ g.
pub fn rmsnorm(x: &[f32], g: &[f32], out: &mut [f32]) {
    let ms = dot(x, x) / x.len() as f32;
    let inv = 1.0 / (ms + 1e-6).sqrt();
    for ((o, v), w) in out.iter_mut().zip(x).zip(g) {
        *o = v * inv * w;
    }
}

#[inline]
pub fn silu(a: f32) -> f32 {
    a / (1.0 + libm::expf(-a))
}

/// In-place softmax with the maximum subtracted first.
pub fn softmax(x: &mut [f32]) {
    // `>` instead of f32::max (a libm call in wasm): the same maximum up to the sign of a zero,
    // and x − (+0) = x − (−0) except for x = −0, where exp gives 1 either way.
    let max = x
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    let mut sum = 0f32;
    for v in x.iter_mut() {
        *v = libm::expf(*v - max);
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

#[cfg(target_arch = "wasm32")]
mod simd {
    use core::arch::wasm32::*;

    #[inline(always)]
    unsafe fn ld(p: *const f32) -> v128 {
        unsafe { v128_load(p as *const v128) }
    }

    #[inline(always)]
    fn madd(acc: v128, a: v128, b: v128) -> v128 {
        f32x4_add(acc, f32x4_mul(a, b))
    }

    /// `dot_portable` for a.len() = b.len() a multiple of 8 (empty tail: + 0.0).
    pub fn dot8(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len();
        assert!(b.len() == n && n.is_multiple_of(8));
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut lo = f32x4_splat(0.0);
        let mut hi = f32x4_splat(0.0);
        let mut i = 0;
        while i < n {
            // SAFETY: i + 8 ≤ n, the length of both slices.
            unsafe {
                lo = madd(lo, ld(pa.add(i)), ld(pb.add(i)));
                hi = madd(hi, ld(pa.add(i + 4)), ld(pb.add(i + 4)));
            }
            i += 8;
        }
        let s = f32x4_add(lo, hi);
        ((f32x4_extract_lane::<0>(s) + f32x4_extract_lane::<1>(s))
            + (f32x4_extract_lane::<2>(s) + f32x4_extract_lane::<3>(s)))
            + 0.0
    }

    /// `matvec_strided` for x.len() a positive multiple of 8, four rows at a time; each row's
    /// value is that of `dot_portable`, the reduction of four rows done in two shuffle rounds.
    pub fn matvec_strided(w: &[f32], stride: usize, x: &[f32], out: &mut [f32]) {
        let cols = x.len();
        let rows = out.len();
        if rows == 0 {
            return;
        }
        assert!(cols.is_multiple_of(8) && stride >= cols && w.len() >= (rows - 1) * stride + cols);
        let px = x.as_ptr();
        let z = f32x4_splat(0.0);
        let mut r = 0;
        while r + 4 <= rows {
            // SAFETY: rows r..r+4 end at (r+3)·stride + cols ≤ (rows−1)·stride + cols ≤ w.len();
            // the store writes out[r..r+4].
            unsafe {
                let p0 = w.as_ptr().add(r * stride);
                let p1 = p0.add(stride);
                let p2 = p1.add(stride);
                let p3 = p2.add(stride);
                let (mut a0, mut b0, mut a1, mut b1) = (z, z, z, z);
                let (mut a2, mut b2, mut a3, mut b3) = (z, z, z, z);
                let mut i = 0;
                while i < cols {
                    let xl = ld(px.add(i));
                    let xh = ld(px.add(i + 4));
                    a0 = madd(a0, ld(p0.add(i)), xl);
                    b0 = madd(b0, ld(p0.add(i + 4)), xh);
                    a1 = madd(a1, ld(p1.add(i)), xl);
                    b1 = madd(b1, ld(p1.add(i + 4)), xh);
                    a2 = madd(a2, ld(p2.add(i)), xl);
                    b2 = madd(b2, ld(p2.add(i + 4)), xh);
                    a3 = madd(a3, ld(p3.add(i)), xl);
                    b3 = madd(b3, ld(p3.add(i + 4)), xh);
                    i += 8;
                }
                let (s0, s1) = (f32x4_add(a0, b0), f32x4_add(a1, b1));
                let (s2, s3) = (f32x4_add(a2, b2), f32x4_add(a3, b3));
                let p = f32x4_add(
                    i32x4_shuffle::<0, 2, 4, 6>(s0, s1),
                    i32x4_shuffle::<1, 3, 5, 7>(s0, s1),
                );
                let q = f32x4_add(
                    i32x4_shuffle::<0, 2, 4, 6>(s2, s3),
                    i32x4_shuffle::<1, 3, 5, 7>(s2, s3),
                );
                let res = f32x4_add(
                    i32x4_shuffle::<0, 2, 4, 6>(p, q),
                    i32x4_shuffle::<1, 3, 5, 7>(p, q),
                );
                v128_store(out.as_mut_ptr().add(r) as *mut v128, f32x4_add(res, z));
            }
            r += 4;
        }
        for (rr, o) in out.iter_mut().enumerate().skip(r) {
            *o = dot8(&w[rr * stride..rr * stride + cols], x);
        }
    }

    /// `weighted_rows` for out.len() a multiple of 4: each lane sums in increasing p from 0.
    pub fn weighted_rows(w: &[f32], v: &[f32], stride: usize, out: &mut [f32]) {
        let n = out.len();
        let rows = w.len();
        if rows == 0 {
            out.fill(0.0);
            return;
        }
        assert!(n.is_multiple_of(4) && stride >= n && v.len() >= (rows - 1) * stride + n);
        let z = f32x4_splat(0.0);
        let pv = v.as_ptr();
        let mut c = 0;
        while c + 16 <= n {
            let (mut o0, mut o1, mut o2, mut o3) = (z, z, z, z);
            for (p, &wp) in w.iter().enumerate() {
                let s = f32x4_splat(wp);
                // SAFETY: p·stride + c + 16 ≤ (rows−1)·stride + n ≤ v.len().
                unsafe {
                    let row = pv.add(p * stride + c);
                    o0 = f32x4_add(o0, f32x4_mul(s, ld(row)));
                    o1 = f32x4_add(o1, f32x4_mul(s, ld(row.add(4))));
                    o2 = f32x4_add(o2, f32x4_mul(s, ld(row.add(8))));
                    o3 = f32x4_add(o3, f32x4_mul(s, ld(row.add(12))));
                }
            }
            // SAFETY: c + 16 ≤ n.
            unsafe {
                let po = out.as_mut_ptr().add(c) as *mut v128;
                v128_store(po, o0);
                v128_store(po.add(1), o1);
                v128_store(po.add(2), o2);
                v128_store(po.add(3), o3);
            }
            c += 16;
        }
        while c + 4 <= n {
            let mut o0 = z;
            for (p, &wp) in w.iter().enumerate() {
                // SAFETY: as above with c + 4 ≤ n.
                unsafe {
                    o0 = f32x4_add(o0, f32x4_mul(f32x4_splat(wp), ld(pv.add(p * stride + c))));
                }
            }
            // SAFETY: c + 4 ≤ n.
            unsafe { v128_store(out.as_mut_ptr().add(c) as *mut v128, o0) };
            c += 4;
        }
    }

    /// `fht_parts(x, parts)` for a width (x.len() / parts) that is a multiple of 4: the same
    /// butterflies in the same order, four lanes at a time, then the same scale.
    pub fn fht(x: &mut [f32], parts: usize) {
        let width = x.len() / parts;
        assert!(width.is_multiple_of(4) && width * parts == x.len());
        let px = x.as_mut_ptr();
        let mut h = 1;
        while h < parts {
            let mut block = 0;
            while block < parts {
                for j in block..block + h {
                    let mut c = 0;
                    while c < width {
                        // SAFETY: (j + h)·width + c + 4 ≤ parts·width = x.len().
                        unsafe {
                            let pa = px.add(j * width + c);
                            let pb = px.add((j + h) * width + c);
                            let a = ld(pa);
                            let b = ld(pb);
                            v128_store(pa as *mut v128, f32x4_add(a, b));
                            v128_store(pb as *mut v128, f32x4_sub(a, b));
                        }
                        c += 4;
                    }
                }
                block += 2 * h;
            }
            h *= 2;
        }
        let scale = f32x4_splat(1.0 / (parts as f32).sqrt());
        let mut i = 0;
        while i < x.len() {
            // SAFETY: i + 4 ≤ x.len() (a multiple of 4).
            unsafe {
                let p = px.add(i);
                v128_store(p as *mut v128, f32x4_mul(ld(p), scale));
            }
            i += 4;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize, a: usize, b: usize, off: f32, div: f32) -> Vec<f32> {
        (0..len).map(|i| ((i * a % b) as f32 - off) / div).collect()
    }

    #[test]
    fn dot_matches_f64() {
        for len in [0, 1, 7, 8, 9, 63, 64, 100] {
            let a = data(len, 13, 17, 8.0, 3.0);
            let b = data(len, 7, 11, 5.0, 7.0);
            let want: f64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| f64::from(*x) * f64::from(*y))
                .sum();
            assert!((f64::from(dot(&a, &b)) - want).abs() < 1e-4 * (1.0 + want.abs()));
        }
    }

    #[test]
    fn matvec_strided_matches_f64_and_dot() {
        for (rows, cols, stride) in [(0, 8, 8), (1, 16, 16), (5, 16, 40), (9, 24, 24), (7, 5, 9)] {
            let w = data(rows * stride + cols, 5, 23, 11.0, 4.0);
            let x = data(cols, 3, 7, 3.0, 2.0);
            let mut out = vec![0.0; rows];
            matvec_strided(&w, stride, &x, &mut out);
            for (r, o) in out.iter().enumerate() {
                let row = &w[r * stride..r * stride + cols];
                let want: f64 = row
                    .iter()
                    .zip(&x)
                    .map(|(a, b)| f64::from(*a) * f64::from(*b))
                    .sum();
                assert!((f64::from(*o) - want).abs() < 1e-4 * (1.0 + want.abs()));
                assert_eq!(o.to_bits(), dot(row, &x).to_bits());
            }
        }
    }

    #[test]
    fn weighted_rows_matches_f64() {
        for (rows, n, stride) in [(0, 4, 4), (1, 16, 16), (6, 16, 48), (3, 20, 20), (4, 3, 5)] {
            let w = data(rows, 3, 7, 2.0, 5.0);
            let v = data(rows * stride + n, 5, 13, 6.0, 3.0);
            let mut out = vec![7.0; n];
            weighted_rows(&w, &v, stride, &mut out);
            for (j, o) in out.iter().enumerate() {
                let want: f64 = (0..rows)
                    .map(|p| f64::from(w[p]) * f64::from(v[p * stride + j]))
                    .sum();
                assert!((f64::from(*o) - want).abs() < 1e-4 * (1.0 + want.abs()));
            }
        }
    }

    #[test]
    fn fht32_matches_fht_parts() {
        for width in [1, 4, 16] {
            let x = data(32 * width, 7, 19, 9.0, 5.0);
            let (mut a, mut b) = (x.clone(), x);
            fht32(&mut a);
            fht_parts(&mut b, 32);
            assert_eq!(a, b);
        }
    }

    #[test]
    fn softmax_sums_to_one_and_survives_large_values() {
        let mut x = vec![1000.0, 999.0, -1e30, 0.0];
        softmax(&mut x);
        assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(x[0] > x[1] && x[2] == 0.0);
    }
}
