//! The octonion product of SPEC §2.2 on integer codes (§2.6) in 32 block products instead of 64.
//!
//! z_i = Σ_j s_ij·W_{i⊕j}·c_j is a bilinear map of the weight octonion (W_0..W_7) and the input
//! octonion (c_0..c_7), so any exact bilinear algorithm for the octonion product of numbers
//! computes it with blocks in place of numbers: each of the algorithm's multiplications
//! (a combination of weights) × (a combination of inputs) becomes one block product, a matrix of
//! small integers times a vector of codes. This one is SPEC §2.2's Cayley–Dickson form over
//! quaternion halves w = (a, b), x = (c, d):
//!
//!   z = (a·c − d·b*, a*·d + c·b),
//!
//! four quaternion products, each computed with the eight multiplications of Howell and Lafon's
//! algorithm (1975) instead of sixteen. With the SPEC's table, the quaternion product of halves
//! p·q is Hamilton's q∘p, and for Hamilton's p∘q the algorithm is
//!
//! ```text
//! t0 = (p3 − p2)(q2 − q3)  t1 = (p0 + p1)(q0 + q1)  t2 = (p0 − p1)(q2 + q3)  t3 = (p2 + p3)(q0 − q1)
//! t4 = (p3 − p1)(q1 − q2)  t5 = (p3 + p1)(q1 + q2)  t6 = (p0 + p2)(q0 − q3)  t7 = (p0 − p2)(q0 + q3)
//! t8 = t5 + t6 + t7,  t9 = (t4 + t8) / 2
//! r = (t0 + t9 − t5,  t1 + t9 − t8,  t2 + t9 − t7,  t3 + t9 − t6)
//! ```
//!
//! Every combination adds or subtracts two entries, so a weight combination is a matrix of
//! codes in [−2, 2] (made once at load) and an input combination a sum of two codes, which fits
//! an i16 because octonion linears quantize their input to 15 bits (SPEC §2.6,
//! `quant::OCTONION_ACT_LIMIT`). t4 + t8 is even (t9 = r0 − t0 + t5 is an integer), so the
//! halving is an exact arithmetic shift. The weight combinations of a*·d are those of a·c up to
//! sign, and those of c·b those of d·b*: 16 combined blocks serve the 32 products, the signs moved
//! to the inputs. The same integers as the 64 signed block products, so the same bits; the tests
//! check the tables against SPEC's sign table and the whole against i64 sums.

use crate::quant::code;

/// A combination of two of the eight parts: (part, sign, part, sign).
pub type Pair = (usize, i8, usize, i8);

/// The 16 combined weight blocks: block q = sign·W_part + sign·W_part. Blocks 0..8 are the weight
/// sides of a·c (a = W_0..W_3), blocks 8..16 those of d·b* (b = W_4..W_7), in the algorithm's
/// order t0..t7.
pub const WEIGHTS: [Pair; 16] = [
    (2, 1, 3, -1),
    (0, 1, 1, 1),
    (2, 1, 3, 1),
    (0, 1, 1, -1),
    (1, 1, 2, -1),
    (1, 1, 2, 1),
    (0, 1, 3, -1),
    (0, 1, 3, 1),
    (6, 1, 7, -1),
    (4, 1, 5, -1),
    (4, 1, 5, 1),
    (6, -1, 7, -1),
    (5, 1, 7, -1),
    (5, -1, 7, -1),
    (4, 1, 6, -1),
    (4, 1, 6, 1),
];

/// The 32 input combinations: product r multiplies block r mod 16 with input combination r.
/// Products 0..16 are a·c's and d·b*'s t0..t7; products 16..32 are a*·d's and c·b's, product
/// 16 + q being the one that uses block q (its t index in [`BOTTOM`]).
pub const INPUTS: [Pair; 32] = [
    (2, -1, 3, 1),
    (0, 1, 1, 1),
    (0, 1, 1, -1),
    (2, 1, 3, 1),
    (1, -1, 3, 1),
    (1, 1, 3, 1),
    (0, 1, 2, 1),
    (0, 1, 2, -1),
    (6, 1, 7, -1),
    (4, 1, 5, 1),
    (6, 1, 7, 1),
    (4, 1, 5, -1),
    (5, 1, 6, -1),
    (5, 1, 6, 1),
    (4, 1, 7, -1),
    (4, 1, 7, 1),
    (6, 1, 7, -1),
    (6, 1, 7, 1),
    (4, -1, 5, 1),
    (4, 1, 5, 1),
    (5, 1, 7, -1),
    (5, -1, 7, -1),
    (4, 1, 6, -1),
    (4, 1, 6, 1),
    (2, -1, 3, 1),
    (2, 1, 3, 1),
    (0, 1, 1, 1),
    (0, -1, 1, 1),
    (1, -1, 2, 1),
    (1, -1, 2, -1),
    (0, 1, 3, 1),
    (0, 1, 3, -1),
];

/// For a*·d (t0..t7, then c·b's t0..t7): the block, and so the product 16 + block, of each t.
pub const BOTTOM: [usize; 16] = [0, 3, 2, 1, 4, 5, 7, 6, 8, 10, 9, 11, 12, 13, 15, 14];

/// Integer lanes the output combination runs on: i32 (portable) or four i32 in a v128 (wasm32),
/// all wrapping.
pub trait Lanes: Copy {
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    /// Exact halving of an even value (arithmetic shift right by one).
    fn half(self) -> Self;
}

impl Lanes for i32 {
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        self.wrapping_add(o)
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        self.wrapping_sub(o)
    }
    #[inline(always)]
    fn half(self) -> Self {
        self >> 1
    }
}

/// One quaternion product from its eight multiplications t0..t7 (see the module's comment).
#[inline(always)]
pub fn quaternion<L: Lanes>(t: [L; 8]) -> [L; 4] {
    let t8 = t[5].add(t[6]).add(t[7]);
    let t9 = t[4].add(t8).half();
    [
        t[0].add(t9).sub(t[5]),
        t[1].add(t9).sub(t8),
        t[2].add(t9).sub(t[7]),
        t[3].add(t9).sub(t[6]),
    ]
}

/// The octonion from its 32 products (t[r] = product r, in [`INPUTS`]' order): z_0..3 = a·c −
/// d·b*, z_4..7 = a*·d + c·b.
#[inline(always)]
pub fn octonion<L: Lanes>(t: &[L; 32]) -> [L; 8] {
    let ac = quaternion(core::array::from_fn(|r| t[r]));
    let db = quaternion(core::array::from_fn(|r| t[8 + r]));
    let ad = quaternion(core::array::from_fn(|r| t[16 + BOTTOM[r]]));
    let cb = quaternion(core::array::from_fn(|r| t[16 + BOTTOM[8 + r]]));
    [
        ac[0].sub(db[0]),
        ac[1].sub(db[1]),
        ac[2].sub(db[2]),
        ac[3].sub(db[3]),
        ad[0].add(cb[0]),
        ad[1].add(cb[1]),
        ad[2].add(cb[2]),
        ad[3].add(cb[3]),
    ]
}

/// The 16 combined blocks from Wq ([8, n, m] row-major, entries in {−1, 0, 1}): [16, n, m]
/// row-major, entries in [−2, 2].
pub fn combine_weights(wq: &[i8], n: usize, m: usize) -> Vec<i16> {
    let size = n * m;
    let block = |k: usize| &wq[k * size..(k + 1) * size];
    let mut out = Vec::with_capacity(16 * size);
    for &(a, sa, b, sb) in &WEIGHTS {
        out.extend(
            block(a)
                .iter()
                .zip(block(b))
                .map(|(x, y)| i16::from(sa) * i16::from(*x) + i16::from(sb) * i16::from(*y)),
        );
    }
    out
}

/// out (32 parts of `width` codes) = the input combinations of the codes of u (8 parts of
/// `width` values), code_i = clamp(round-half-even(u_i · inv), −L, L) as `quant::encode` writes
/// them: the codes stay in registers. Codes within ±16,383 give sums within ±32,766: no i16 wraps.
pub fn encode_combinations(u: &[f32], inv: f32, limit: i32, width: usize, out: &mut [i16]) {
    assert!(u.len() == 8 * width && out.len() == 32 * width && limit <= 16_383);
    #[cfg(target_arch = "wasm32")]
    let done = simd::encode_combinations(u, inv, limit, width, out);
    #[cfg(not(target_arch = "wasm32"))]
    let done = 0;
    for col in done..width {
        let c: [i16; 8] = core::array::from_fn(|j| code(u[j * width + col], inv, limit));
        for (r, &(a, sa, b, sb)) in INPUTS.iter().enumerate() {
            out[r * width + col] = i16::from(sa) * c[a] + i16::from(sb) * c[b];
        }
    }
}

/// y (8 parts of n values) = the octonion of the 32 products t (32 parts of `width` ≥ n sums,
/// `width` a multiple of 4) dequantized as SPEC §2.6 says: y_i,r = (f32(z_i,r) · β_i,r) · k, β
/// holding 8 parts of n. One pass: the octonion's sums go to f32 in registers, never to memory.
pub fn combine_products_dequant(
    t: &[i32],
    width: usize,
    n: usize,
    beta: &[f32],
    k: f32,
    y: &mut [f32],
) {
    assert!(
        t.len() == 32 * width
            && width.is_multiple_of(4)
            && n <= width
            && beta.len() == 8 * n
            && y.len() == 8 * n
    );
    #[cfg(target_arch = "wasm32")]
    let done = simd::combine_products_dequant(t, width, n, beta, k, y);
    #[cfg(not(target_arch = "wasm32"))]
    let done = 0;
    for r in done..n {
        let o = octonion::<i32>(&core::array::from_fn(|q| t[q * width + r]));
        for (i, v) in o.into_iter().enumerate() {
            y[i * n + r] = (v as f32 * beta[i * n + r]) * k;
        }
    }
}

#[cfg(target_arch = "wasm32")]
mod simd {
    use crate::quant::simd::code4;
    use core::arch::wasm32::*;

    impl super::Lanes for v128 {
        #[inline(always)]
        fn add(self, o: Self) -> Self {
            i32x4_add(self, o)
        }
        #[inline(always)]
        fn sub(self, o: Self) -> Self {
            i32x4_sub(self, o)
        }
        #[inline(always)]
        fn half(self) -> Self {
            i32x4_shr(self, 1)
        }
    }

    /// Input combination r of the 8 parts' vectors x (eight codes each, or four in the low half).
    #[inline(always)]
    fn combination(x: &[v128; 8], r: usize) -> v128 {
        let (a, sa, b, sb) = super::INPUTS[r];
        match (sa, sb) {
            (1, 1) => i16x8_add(x[a], x[b]),
            (1, _) => i16x8_sub(x[a], x[b]),
            (_, 1) => i16x8_sub(x[b], x[a]),
            _ => i16x8_sub(i16x8_neg(x[a]), x[b]),
        }
    }

    /// `super::encode_combinations` for the first ⌊width/4⌋·4 columns, eight of each part a step
    /// (then four): the 8 parts' codes made in registers, the 32 combinations written out (their
    /// signs constants); returns how many columns.
    // seq! writes the first combination's offset as `0 * width`.
    #[allow(clippy::erasing_op, clippy::identity_op)]
    pub fn encode_combinations(
        u: &[f32],
        inv: f32,
        limit: i32,
        width: usize,
        out: &mut [i16],
    ) -> usize {
        let (up, op) = (u.as_ptr(), out.as_mut_ptr());
        let (s, hi, lo) = (f32x4_splat(inv), i32x4_splat(limit), i32x4_splat(-limit));
        let q = |p: *const f32| {
            // SAFETY: the callers' p + 4 lie inside u.
            code4(unsafe { v128_load(p as *const v128) }, s, hi, lo)
        };
        let full = width / 8 * 8;
        let mut i = 0;
        while i < full {
            // SAFETY: u holds 8 parts of `width` values, out 32 parts; i + 8 ≤ width.
            unsafe {
                let x: [v128; 8] = core::array::from_fn(|j| {
                    let p = up.add(j * width + i);
                    i16x8_narrow_i32x4(q(p), q(p.add(4)))
                });
                seq_macro::seq!(R in 0..32 {
                    v128_store(op.add(R * width + i) as *mut v128, combination(&x, R));
                });
            }
            i += 8;
        }
        if width - i >= 4 {
            // SAFETY: as above, i + 4 ≤ width.
            unsafe {
                let x: [v128; 8] = core::array::from_fn(|j| {
                    let c = q(up.add(j * width + i));
                    i16x8_narrow_i32x4(c, c)
                });
                seq_macro::seq!(R in 0..32 {
                    v128_store64_lane::<0>(combination(&x, R), op.add(R * width + i) as *mut u64);
                });
            }
            i += 4;
        }
        i
    }

    /// `super::combine_products_dequant` for the first ⌊n/4⌋·4 rows, four a step (sizes
    /// asserted there); returns how many.
    pub fn combine_products_dequant(
        t: &[i32],
        width: usize,
        n: usize,
        beta: &[f32],
        k: f32,
        y: &mut [f32],
    ) -> usize {
        let (tp, bp, yp) = (t.as_ptr() as *const v128, beta.as_ptr(), y.as_mut_ptr());
        let (vectors, full) = (width / 4, n / 4);
        let kv = f32x4_splat(k);
        for v in 0..full {
            // SAFETY: t holds 32 parts of `vectors` vectors, beta and y 8 parts of n ≥ 4·full
            // values; v < full ≤ vectors.
            unsafe {
                let o = super::octonion(&core::array::from_fn(|q| {
                    v128_load(tp.add(q * vectors + v))
                }));
                for (i, o) in o.into_iter().enumerate() {
                    let at = i * n + 4 * v;
                    let b = v128_load(bp.add(at) as *const v128);
                    let yv = f32x4_mul(f32x4_mul(f32x4_convert_i32x4(o), b), kv);
                    v128_store(yp.add(at) as *mut v128, yv);
                }
            }
        }
        4 * full
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use walsh_spec::octonion::SIGNS;

    fn coefficients(p: &Pair) -> [i64; 8] {
        let mut c = [0; 8];
        c[p.0] += i64::from(p.1);
        c[p.2] += i64::from(p.3);
        c
    }

    /// The algorithm is the octonion product: with w = e_k and x = e_j (unit octonions, as
    /// numbers), every output equals s_ij·[k = i ⊕ j], SPEC §2.2's table.
    #[test]
    #[allow(clippy::needless_range_loop)]
    fn the_tables_compute_the_spec_octonion_product() {
        for k in 0..8 {
            for j in 0..8 {
                let t: [i32; 32] = core::array::from_fn(|r| {
                    let w = coefficients(&WEIGHTS[r % 16])[k];
                    let x = coefficients(&INPUTS[r])[j];
                    (w * x) as i32
                });
                // The halving needs the whole sum; a single unit term can be odd, so check 2z
                // through doubled products.
                let t2: [i32; 32] = core::array::from_fn(|r| 2 * t[r]);
                let z = octonion::<i32>(&t2);
                for (i, zi) in z.iter().enumerate() {
                    let want = if k == i ^ j {
                        2 * i32::from(SIGNS[i][j])
                    } else {
                        0
                    };
                    assert_eq!(*zi, want, "w = e{k}, x = e{j}, output {i}");
                }
            }
        }
    }

    // Index loops on purpose: they read like the SPEC's formulas.
    #[allow(clippy::needless_range_loop)]
    /// Whole blocks: the combined blocks' products give the i64 signed block products exactly,
    /// at the extremes of the codes (±16,383) and of the weights.
    #[test]
    fn block_products_match_the_64_signed_products() {
        let (n, m) = (3, 5);
        for seed in 0..6u64 {
            let wq: Vec<i8> = (0..8 * n * m)
                .map(|i| ((i as u64 * 7 + seed * 13 + i as u64 / 3) % 3) as i8 - 1)
                .collect();
            let c: Vec<i16> = (0..8 * m)
                .map(|i| match (i as u64 + seed) % 4 {
                    0 => 16_383,
                    1 => -16_383,
                    _ => ((i as i64 * 977 + seed as i64 * 31) % 32_767 - 16_383) as i16,
                })
                .collect();
            let wc = combine_weights(&wq, n, m);
            // The codes as values with inv = 1: encoding gives them back.
            let u: Vec<f32> = c.iter().map(|&v| f32::from(v)).collect();
            let mut xc = vec![0i16; 32 * m];
            encode_combinations(&u, 1.0, 16_383, m, &mut xc);
            // t[r] rows padded to 4 for combine_products.
            let width = 4;
            let mut t = vec![0i32; 32 * width];
            for r in 0..32 {
                let blk = &wc[(r % 16) * n * m..][..n * m];
                for row in 0..n {
                    t[r * width + row] = (0..m)
                        .map(|col| i32::from(blk[row * m + col]) * i32::from(xc[r * m + col]))
                        .sum();
                }
            }
            // β = 1 and k = 1: y is f32(z), exact here (|z| < 2^24).
            let mut y = vec![0f32; 8 * n];
            combine_products_dequant(&t, width, n, &[1.0; 24], 1.0, &mut y);
            for i in 0..8 {
                for row in 0..n {
                    let want: i64 = (0..8)
                        .map(|j| {
                            let k = i ^ j;
                            let dot: i64 = (0..m)
                                .map(|col| {
                                    i64::from(wq[(k * n + row) * m + col])
                                        * i64::from(c[j * m + col])
                                })
                                .sum();
                            i64::from(SIGNS[i][j]) * dot
                        })
                        .sum();
                    assert_eq!(y[i * n + row] as i64, want, "seed {seed} {i} {row}");
                }
            }
        }
    }
}
