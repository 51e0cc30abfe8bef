//! The Walsh–Hadamard transform across the 32 parts of a hadamard linear (SPEC §2.2, §2.6),
//! fused with the elementwise work on either side of it:
//!
//! - [`input`]: u = FHT(α ⊙ x) (orthonormal, f32) into the padded part layout, and max |u|;
//! - [`output`]: y = (f32(FHT(z)) · β) · c from the integer block products z (unnormalized FHT,
//!   exact in i32).
//!
//! The portable versions are the definitions, pass after pass. On wasm32 each 4-column slice of
//! the 32 parts is loaded once into 32 registers, transformed there with the same butterflies in
//! the same order (so the same bits), and stored once: a pass over the parts instead of the eight
//! or so that the separate kernels make, each with its own loads, stores and loop.

use crate::int_math;
use crate::math::{dequant, fht32, mul};
use crate::quant::absmax;

/// Parts of a hadamard linear.
pub const PARTS: usize = 32;

/// u[g·mp + c] = FHT(α ⊙ x)[g·m + c] for the 32 parts of x and α (32·m values each, part g at
/// g·m), zeros at c ≥ m; u.len() = 32·mp. Returns max |u_i| (NaN ignored), as `quant::absmax`
/// computes it.
pub fn input(x: &[f32], alpha: &[f32], m: usize, mp: usize, u: &mut [f32]) -> f32 {
    assert!(x.len() == PARTS * m && alpha.len() == PARTS * m && mp >= m && u.len() == PARTS * mp);
    #[cfg(target_arch = "wasm32")]
    if mp.is_multiple_of(4) {
        return simd::input(x, alpha, m, mp, u);
    }
    u.fill(0.0);
    for ((up, xp), al) in u
        .chunks_exact_mut(mp)
        .zip(x.chunks_exact(m))
        .zip(alpha.chunks_exact(m))
    {
        mul(xp, al, &mut up[..m]);
    }
    fht32(u);
    absmax(u)
}

/// y[g·n + r] = (f32(Z[g·np + r]) · β[g·n + r]) · c for r < n, where Z is the unnormalized FHT of
/// z across its 32 parts (part g at g·np, np a multiple of 4). z is used as scratch.
pub fn output(z: &mut [i32], np: usize, n: usize, beta: &[f32], c: f32, y: &mut [f32]) {
    assert!(z.len() == PARTS * np && np >= n && beta.len() == PARTS * n && y.len() == PARTS * n);
    #[cfg(target_arch = "wasm32")]
    if np.is_multiple_of(4) {
        simd::output(z, np, n, beta, c, y);
        return;
    }
    int_math::fht(z, PARTS);
    for ((yp, zp), bp) in y
        .chunks_exact_mut(n)
        .zip(z.chunks_exact(np))
        .zip(beta.chunks_exact(n))
    {
        dequant(zp, bp, c, yp);
    }
}

/// Head mixing's output (SPEC §2.6): y[g·n + r] = (U[g·np + r] · s) · β[r] for r < n, where U
/// = `fht32` (the orthonormal f32 FHT across the 32 parts) of v, v[g·np + r] = f32(t[g·np + r])
/// · rs[g·n + r] (zero in the pads). u is scratch.
#[allow(clippy::too_many_arguments)]
pub fn mix_output(
    t: &[i32],
    np: usize,
    n: usize,
    rs: &[f32],
    s: f32,
    beta: &[f32],
    u: &mut Vec<f32>,
    y: &mut [f32],
) {
    assert!(
        t.len() == PARTS * np
            && np >= n
            && rs.len() == PARTS * n
            && beta.len() >= n
            && y.len() == PARTS * n
    );
    #[cfg(target_arch = "wasm32")]
    if n.is_multiple_of(4) {
        simd::mix_output(t, np, n, rs, s, beta, y);
        return;
    }
    u.clear();
    u.resize(PARTS * np, 0.0);
    for ((up, tp), rp) in u
        .chunks_exact_mut(np)
        .zip(t.chunks_exact(np))
        .zip(rs.chunks_exact(n))
    {
        dequant(tp, rp, 1.0, &mut up[..n]);
    }
    fht32(u);
    for (yp, up) in y.chunks_exact_mut(n).zip(u.chunks_exact(np)) {
        for ((y, z), b) in yp.iter_mut().zip(up).zip(beta) {
            *y = (z * s) * b;
        }
    }
}

#[cfg(target_arch = "wasm32")]
mod simd {
    use super::PARTS;
    use core::arch::wasm32::*;

    /// [e with g = 0, …, e with g = 31]: written out, so that every index is a constant (LLVM
    /// does not unroll loops this long, and would keep the 32 vectors in memory).
    macro_rules! parts_array {
        ($g:ident => $e:expr) => {
            [
                {
                    let $g = 0;
                    $e
                },
                {
                    let $g = 1;
                    $e
                },
                {
                    let $g = 2;
                    $e
                },
                {
                    let $g = 3;
                    $e
                },
                {
                    let $g = 4;
                    $e
                },
                {
                    let $g = 5;
                    $e
                },
                {
                    let $g = 6;
                    $e
                },
                {
                    let $g = 7;
                    $e
                },
                {
                    let $g = 8;
                    $e
                },
                {
                    let $g = 9;
                    $e
                },
                {
                    let $g = 10;
                    $e
                },
                {
                    let $g = 11;
                    $e
                },
                {
                    let $g = 12;
                    $e
                },
                {
                    let $g = 13;
                    $e
                },
                {
                    let $g = 14;
                    $e
                },
                {
                    let $g = 15;
                    $e
                },
                {
                    let $g = 16;
                    $e
                },
                {
                    let $g = 17;
                    $e
                },
                {
                    let $g = 18;
                    $e
                },
                {
                    let $g = 19;
                    $e
                },
                {
                    let $g = 20;
                    $e
                },
                {
                    let $g = 21;
                    $e
                },
                {
                    let $g = 22;
                    $e
                },
                {
                    let $g = 23;
                    $e
                },
                {
                    let $g = 24;
                    $e
                },
                {
                    let $g = 25;
                    $e
                },
                {
                    let $g = 26;
                    $e
                },
                {
                    let $g = 27;
                    $e
                },
                {
                    let $g = 28;
                    $e
                },
                {
                    let $g = 29;
                    $e
                },
                {
                    let $g = 30;
                    $e
                },
                {
                    let $g = 31;
                    $e
                },
            ]
        };
    }

    /// s with g = 0, …, 31, written out (see `parts_array`).
    macro_rules! parts_do {
        ($g:ident => $s:expr) => {{
            let $g = 0;
            $s;
        }
        {
            let $g = 1;
            $s;
        }
        {
            let $g = 2;
            $s;
        }
        {
            let $g = 3;
            $s;
        }
        {
            let $g = 4;
            $s;
        }
        {
            let $g = 5;
            $s;
        }
        {
            let $g = 6;
            $s;
        }
        {
            let $g = 7;
            $s;
        }
        {
            let $g = 8;
            $s;
        }
        {
            let $g = 9;
            $s;
        }
        {
            let $g = 10;
            $s;
        }
        {
            let $g = 11;
            $s;
        }
        {
            let $g = 12;
            $s;
        }
        {
            let $g = 13;
            $s;
        }
        {
            let $g = 14;
            $s;
        }
        {
            let $g = 15;
            $s;
        }
        {
            let $g = 16;
            $s;
        }
        {
            let $g = 17;
            $s;
        }
        {
            let $g = 18;
            $s;
        }
        {
            let $g = 19;
            $s;
        }
        {
            let $g = 20;
            $s;
        }
        {
            let $g = 21;
            $s;
        }
        {
            let $g = 22;
            $s;
        }
        {
            let $g = 23;
            $s;
        }
        {
            let $g = 24;
            $s;
        }
        {
            let $g = 25;
            $s;
        }
        {
            let $g = 26;
            $s;
        }
        {
            let $g = 27;
            $s;
        }
        {
            let $g = 28;
            $s;
        }
        {
            let $g = 29;
            $s;
        }
        {
            let $g = 30;
            $s;
        }
        {
            let $g = 31;
            $s;
        }};
    }

    /// The five butterfly stages h = 1, 2, 4, 8, 16 over 32 registers, as
    /// `walsh_spec::hadamard::fht_parts` runs them: (v_j, v_j+h) ← (v_j + v_j+h, v_j − v_j+h).
    /// (Within a stage the butterflies are independent; the stages' order fixes the f32 bits.)
    #[inline(always)]
    fn fht(
        mut v: [v128; PARTS],
        add: fn(v128, v128) -> v128,
        sub: fn(v128, v128) -> v128,
    ) -> [v128; PARTS] {
        macro_rules! bf {
            ($a:literal, $b:literal) => {{
                let (x, y) = (v[$a], v[$b]);
                v[$a] = add(x, y);
                v[$b] = sub(x, y);
            }};
        }
        bf!(0, 1);
        bf!(2, 3);
        bf!(4, 5);
        bf!(6, 7);
        bf!(8, 9);
        bf!(10, 11);
        bf!(12, 13);
        bf!(14, 15);
        bf!(16, 17);
        bf!(18, 19);
        bf!(20, 21);
        bf!(22, 23);
        bf!(24, 25);
        bf!(26, 27);
        bf!(28, 29);
        bf!(30, 31);
        bf!(0, 2);
        bf!(1, 3);
        bf!(4, 6);
        bf!(5, 7);
        bf!(8, 10);
        bf!(9, 11);
        bf!(12, 14);
        bf!(13, 15);
        bf!(16, 18);
        bf!(17, 19);
        bf!(20, 22);
        bf!(21, 23);
        bf!(24, 26);
        bf!(25, 27);
        bf!(28, 30);
        bf!(29, 31);
        bf!(0, 4);
        bf!(1, 5);
        bf!(2, 6);
        bf!(3, 7);
        bf!(8, 12);
        bf!(9, 13);
        bf!(10, 14);
        bf!(11, 15);
        bf!(16, 20);
        bf!(17, 21);
        bf!(18, 22);
        bf!(19, 23);
        bf!(24, 28);
        bf!(25, 29);
        bf!(26, 30);
        bf!(27, 31);
        bf!(0, 8);
        bf!(1, 9);
        bf!(2, 10);
        bf!(3, 11);
        bf!(4, 12);
        bf!(5, 13);
        bf!(6, 14);
        bf!(7, 15);
        bf!(16, 24);
        bf!(17, 25);
        bf!(18, 26);
        bf!(19, 27);
        bf!(20, 28);
        bf!(21, 29);
        bf!(22, 30);
        bf!(23, 31);
        bf!(0, 16);
        bf!(1, 17);
        bf!(2, 18);
        bf!(3, 19);
        bf!(4, 20);
        bf!(5, 21);
        bf!(6, 22);
        bf!(7, 23);
        bf!(8, 24);
        bf!(9, 25);
        bf!(10, 26);
        bf!(11, 27);
        bf!(12, 28);
        bf!(13, 29);
        bf!(14, 30);
        bf!(15, 31);
        v
    }

    /// The first k ≤ 3 values from p in lanes 0..k, zeros above (a part's last, partial column
    /// slice, whose neighbour in memory is the next part or the end of the row).
    #[inline(always)]
    unsafe fn load_lanes(p: *const f32, k: usize) -> v128 {
        // SAFETY: the caller's p holds k values.
        unsafe {
            let v = v128_load32_zero(p as *const u32);
            let v = if k > 1 {
                v128_load32_lane::<1>(v, p.add(1) as *const u32)
            } else {
                v
            };
            if k > 2 {
                v128_load32_lane::<2>(v, p.add(2) as *const u32)
            } else {
                v
            }
        }
    }

    /// Lanes 0..k (k ≤ 3) of v to p.
    #[inline(always)]
    unsafe fn store_lanes(v: v128, p: *mut f32, k: usize) {
        // SAFETY: the caller's p has room for k values.
        unsafe {
            v128_store32_lane::<0>(v, p as *mut u32);
            if k > 1 {
                v128_store32_lane::<1>(v, p.add(1) as *mut u32);
            }
            if k > 2 {
                v128_store32_lane::<2>(v, p.add(2) as *mut u32);
            }
        }
    }

    pub fn input(x: &[f32], alpha: &[f32], m: usize, mp: usize, u: &mut [f32]) -> f32 {
        assert!(
            x.len() == PARTS * m
                && alpha.len() == PARTS * m
                && u.len() == PARTS * mp
                && mp.is_multiple_of(4)
                && mp >= m
        );
        let r = f32x4_splat(1.0 / (PARTS as f32).sqrt());
        let mut mx = f32x4_splat(0.0);
        let (px, pa, pu) = (x.as_ptr(), alpha.as_ptr(), u.as_mut_ptr());
        let full = m / 4 * 4;
        // The pads past the last whole slice to zero first (the partial slice below then writes
        // its columns over the first of them): vector stores, not a `memory.fill` a part.
        let mut c = full;
        while c < mp {
            parts_do!(g => {
                // SAFETY: g·mp + c + 4 ≤ 32·mp = u.len() (mp a multiple of 4).
                unsafe { v128_store(pu.add(g * mp + c) as *mut v128, f32x4_splat(0.0)) }
            });
            c += 4;
        }
        let mut c = 0;
        while c < full {
            // SAFETY: part g's columns c..c+4 lie inside x and α (c + 4 ≤ m), and inside u.
            unsafe {
                let (xc, ac, uc) = (px.add(c), pa.add(c), pu.add(c));
                let v = parts_array!(g => f32x4_mul(
                    v128_load(xc.add(g * m) as *const v128),
                    v128_load(ac.add(g * m) as *const v128)
                ));
                let v = fht(v, f32x4_add, f32x4_sub);
                parts_do!(g => {
                    let y = f32x4_mul(v[g], r);
                    // pmax(m, a) = if m < a { a } else { m }: NaN ignored, as quant::absmax.
                    mx = f32x4_pmax(mx, f32x4_abs(y));
                    v128_store(uc.add(g * mp) as *mut v128, y)
                });
            }
            c += 4;
        }
        let k = m - full;
        if k > 0 {
            // The partial slice: its k columns in lanes 0..k, zeros above (whose products, FHT
            // and scale stay 0: pads, and no effect on the max).
            // SAFETY: part g's columns full..m lie inside x and α; u has full + 4 ≤ mp.
            unsafe {
                let (xc, ac, uc) = (px.add(full), pa.add(full), pu.add(full));
                let v = parts_array!(g => f32x4_mul(
                    load_lanes(xc.add(g * m), k),
                    load_lanes(ac.add(g * m), k)
                ));
                let v = fht(v, f32x4_add, f32x4_sub);
                parts_do!(g => {
                    let y = f32x4_mul(v[g], r);
                    mx = f32x4_pmax(mx, f32x4_abs(y));
                    v128_store(uc.add(g * mp) as *mut v128, y)
                });
            }
        }
        let a = f32x4_pmax(mx, i32x4_shuffle::<2, 3, 0, 1>(mx, mx));
        let b = f32x4_pmax(a, i32x4_shuffle::<1, 0, 3, 2>(a, a));
        f32x4_extract_lane::<0>(b)
    }

    /// `super::mix_output` for n a multiple of 4 (×1.0 of `dequant` dropped: it is exact).
    pub fn mix_output(
        t: &[i32],
        np: usize,
        n: usize,
        rs: &[f32],
        s: f32,
        beta: &[f32],
        y: &mut [f32],
    ) {
        assert!(
            t.len() == PARTS * np
                && np >= n
                && n.is_multiple_of(4)
                && rs.len() == PARTS * n
                && beta.len() >= n
                && y.len() == PARTS * n
        );
        let (r32, sv) = (f32x4_splat(1.0 / (PARTS as f32).sqrt()), f32x4_splat(s));
        let (pt, pr, pb, py) = (t.as_ptr(), rs.as_ptr(), beta.as_ptr(), y.as_mut_ptr());
        let mut r = 0;
        while r < n {
            // SAFETY: part g's rows r..r+4 lie inside t (np ≥ n), rs, β and y (r + 4 ≤ n).
            unsafe {
                let (tr, rr, yr) = (pt.add(r), pr.add(r), py.add(r));
                let v = parts_array!(g => f32x4_mul(
                    f32x4_convert_i32x4(v128_load(tr.add(g * np) as *const v128)),
                    v128_load(rr.add(g * n) as *const v128)
                ));
                let v = fht(v, f32x4_add, f32x4_sub);
                let b = v128_load(pb.add(r) as *const v128);
                parts_do!(g => v128_store(
                    yr.add(g * n) as *mut v128,
                    f32x4_mul(f32x4_mul(f32x4_mul(v[g], r32), sv), b)
                ));
            }
            r += 4;
        }
    }

    pub fn output(z: &mut [i32], np: usize, n: usize, beta: &[f32], c: f32, y: &mut [f32]) {
        assert!(
            z.len() == PARTS * np
                && np.is_multiple_of(4)
                && np >= n
                && beta.len() == PARTS * n
                && y.len() == PARTS * n
        );
        let cv = f32x4_splat(c);
        let (pz, pb, py) = (z.as_ptr(), beta.as_ptr(), y.as_mut_ptr());
        let full = n / 4 * 4;
        let mut r = 0;
        while r < full {
            // SAFETY: part g's rows r..r+4 lie inside z (np ≥ n), β and y (r + 4 ≤ n).
            unsafe {
                let (zr, br, yr) = (pz.add(r), pb.add(r), py.add(r));
                let v = parts_array!(g => v128_load(zr.add(g * np) as *const v128));
                let v = fht(v, i32x4_add, i32x4_sub);
                parts_do!(g => v128_store(
                    yr.add(g * n) as *mut v128,
                    f32x4_mul(
                        f32x4_mul(
                            f32x4_convert_i32x4(v[g]),
                            v128_load(br.add(g * n) as *const v128)
                        ),
                        cv
                    )
                ));
            }
            r += 4;
        }
        let k = n - full;
        if k > 0 {
            // The partial slice: z is padded (np ≥ full + 4), β and y are not: k lanes of each.
            // SAFETY: part g's rows full..full+4 lie inside z, rows full..n inside β and y.
            unsafe {
                let (zr, br, yr) = (pz.add(full), pb.add(full), py.add(full));
                let v = parts_array!(g => v128_load(zr.add(g * np) as *const v128));
                let v = fht(v, i32x4_add, i32x4_sub);
                parts_do!(g => store_lanes(
                    f32x4_mul(
                        f32x4_mul(f32x4_convert_i32x4(v[g]), load_lanes(br.add(g * n), k)),
                        cv
                    ),
                    yr.add(g * n),
                    k
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SPEC §2.2's FHT as the Sylvester matrix in f64, against `input` (f32; within rounding).
    #[test]
    fn input_is_the_orthonormal_transform_of_alpha_x() {
        for (m, mp) in [(16, 16), (43, 48), (4, 8), (11, 16)] {
            let x: Vec<f32> = (0..PARTS * m)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
                .collect();
            let alpha: Vec<f32> = (0..PARTS * m).map(|i| 0.5 + (i % 5) as f32 / 4.0).collect();
            // NaN in the pads: input writes every entry.
            let mut u = vec![f32::NAN; PARTS * mp];
            let mx = input(&x, &alpha, m, mp, &mut u);
            let mut want_max = 0f64;
            for g in 0..PARTS {
                for c in 0..mp {
                    let want: f64 = if c < m {
                        (0..PARTS)
                            .map(|j| {
                                let s = if (g & j).count_ones() % 2 == 0 {
                                    1.0
                                } else {
                                    -1.0
                                };
                                s * f64::from(x[j * m + c]) * f64::from(alpha[j * m + c])
                            })
                            .sum::<f64>()
                            / (PARTS as f64).sqrt()
                    } else {
                        0.0
                    };
                    want_max = want_max.max(want.abs());
                    let got = f64::from(u[g * mp + c]);
                    assert!(
                        (got - want).abs() < 1e-4 * (1.0 + want.abs()),
                        "{m} {g} {c}"
                    );
                }
            }
            assert!((f64::from(mx) - want_max).abs() < 1e-4 * want_max);
        }
    }

    #[test]
    fn mix_output_is_the_f32_transform_of_the_scaled_products() {
        for (n, np) in [(16, 16), (6, 8)] {
            let t: Vec<i32> = (0..PARTS * np)
                .map(|i| {
                    if i % np < n {
                        (i * 7919 % 20_011) as i32 - 10_000
                    } else {
                        0
                    }
                })
                .collect();
            let rs: Vec<f32> = (0..PARTS * n).map(|i| 1e-3 * (1 + i % 7) as f32).collect();
            let beta: Vec<f32> = (0..n).map(|i| 0.5 + i as f32 / 8.0).collect();
            let mut y = vec![f32::NAN; PARTS * n];
            mix_output(&t, np, n, &rs, 0.25, &beta, &mut Vec::new(), &mut y);
            for g in 0..PARTS {
                for r in 0..n {
                    let want: f64 = (0..PARTS)
                        .map(|j| {
                            let sg = if (g & j).count_ones() % 2 == 0 {
                                1.0
                            } else {
                                -1.0
                            };
                            sg * f64::from(t[j * np + r] as f32 * rs[j * n + r])
                        })
                        .sum::<f64>()
                        / (PARTS as f64).sqrt()
                        * 0.25
                        * f64::from(beta[r]);
                    let got = f64::from(y[g * n + r]);
                    assert!((got - want).abs() < 1e-5 * (1.0 + want.abs()), "{g} {r}");
                }
            }
        }
    }

    #[test]
    fn output_is_the_integer_transform_scaled() {
        for (n, np) in [(16, 16), (43, 44), (5, 8)] {
            let z: Vec<i32> = (0..PARTS * np)
                .map(|i| {
                    if i % np < n {
                        (i * 7919 % 20_011) as i32 - 10_000
                    } else {
                        0
                    }
                })
                .collect();
            let beta: Vec<f32> = (0..PARTS * n)
                .map(|i| 0.25 + (i % 3) as f32 / 8.0)
                .collect();
            let c = 0.001_f32;
            let mut y = vec![f32::NAN; PARTS * n];
            output(&mut z.clone(), np, n, &beta, c, &mut y);
            for g in 0..PARTS {
                for r in 0..n {
                    let zz: i64 = (0..PARTS)
                        .map(|j| {
                            let s = if (g & j).count_ones() % 2 == 0 { 1 } else { -1 };
                            s * i64::from(z[j * np + r])
                        })
                        .sum();
                    let want = (zz as i32 as f32 * beta[g * n + r]) * c;
                    assert_eq!(y[g * n + r].to_bits(), want.to_bits(), "{n} {g} {r}");
                }
            }
        }
    }
}
