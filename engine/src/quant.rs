//! The absmax integer quantization of SPEC §2.6, Q(x, L): a vector x becomes integer codes in
//! [−L, L] and one f32 scale, x ≈ codes · scale. The engine feeds every weight product with such
//! codes so that the products run as exact integer dot products (`i32x4.dot_i16x8_s` in wasm);
//! the definition is f32 arithmetic in a fixed order, so native and wasm32 compute the same codes.

/// The largest code of an activation: codes fit an i16 and 2·L² < 2^31, so one
/// `i32x4.dot_i16x8_s` lane never overflows even for two maximal products.
pub const ACT_LIMIT: i32 = 32_767;

/// The largest code of an octonion linear's input (SPEC §2.6): 15 bits, so that the sum of two
/// codes fits an i16 (`octonion_product` adds pairs of codes before its products).
pub const OCTONION_ACT_LIMIT: i32 = 16_383;

/// The largest code of an embedding row (int8, as the blob's int8 embeddings store them).
pub const EMB_LIMIT: i32 = 127;

/// The largest code of an attention key or value (12 bits: fine enough that the scores move by
/// far less than their f32 rounding matters to softmax, coarse enough that a query of 15 bits
/// times a key of head size up to 64 cannot overflow an i32 sum).
pub const KV_LIMIT: i32 = 2_047;

/// The activation limit for dot products of `terms` terms against codes of at most `other`:
/// the largest L ≤ 32,767 with terms · L · other ≤ 2^31 − 1, so that every such integer sum is
/// exact in i32 (SPEC §2.6). At least 1.
pub fn act_limit(terms: usize, other: i32) -> i32 {
    let bound = (i32::MAX as u64) / ((terms.max(1) as u64) * (other.max(1) as u64));
    bound.clamp(1, ACT_LIMIT as u64) as i32
}

/// Q(x, L) of SPEC §2.6 into `codes[..x.len()]`; returns the scale m / L (0 when m = max|x| is
/// 0 or not finite, with every code 0). With inv = L / m (f32), code_i = clamp(round-half-even(x_i
/// · inv), −L, L) (NaN → 0).
pub fn quantize(x: &[f32], limit: i32, codes: &mut [i16]) -> f32 {
    let codes = &mut codes[..x.len()];
    match scales(absmax(x), limit) {
        Some((inv, scale)) => {
            encode(x, inv, limit, codes);
            scale
        }
        None => {
            codes.fill(0);
            0.0
        }
    }
}

/// (inv = L / m, scale = m / L) for a maximum m, or None when m is 0 or not finite.
#[inline]
pub fn scales(m: f32, limit: i32) -> Option<(f32, f32)> {
    let l = limit as f32;
    (m > 0.0 && m.is_finite()).then(|| (l / m, m / l))
}

/// codes[i] = clamp(round-half-even(x_i · inv), −L, L) for i < x.len().
pub fn encode(x: &[f32], inv: f32, limit: i32, codes: &mut [i16]) {
    let codes = &mut codes[..x.len()];
    #[cfg(target_arch = "wasm32")]
    let done = simd::codes(x, inv, limit, codes);
    #[cfg(not(target_arch = "wasm32"))]
    let done = 0;
    for (c, v) in codes[done..].iter_mut().zip(&x[done..]) {
        *c = code(*v, inv, limit);
    }
}

/// One code: clamp(round-half-even(v · inv), −L, L); `as i32` saturates and maps NaN to 0, like
/// wasm's `i32x4.trunc_sat_f32x4_s`.
#[inline]
pub(crate) fn code(v: f32, inv: f32, limit: i32) -> i16 {
    ((v * inv).round_ties_even() as i32).clamp(-limit, limit) as i16
}

/// max |x_i| with NaN ignored (compare-and-select, so the order of the lanes cannot matter).
pub fn absmax(x: &[f32]) -> f32 {
    #[cfg(target_arch = "wasm32")]
    let (mut m, done) = simd::absmax(x);
    #[cfg(not(target_arch = "wasm32"))]
    let (mut m, done) = (0f32, 0);
    for v in &x[done..] {
        let a = v.abs();
        if a > m {
            m = a;
        }
    }
    m
}

#[cfg(target_arch = "wasm32")]
pub(crate) mod simd {
    use core::arch::wasm32::*;

    /// Four codes of [`super::code`] in i32 lanes: s = splat(inv), hi = splat(L), lo = splat(−L).
    #[inline(always)]
    pub fn code4(v: v128, s: v128, hi: v128, lo: v128) -> v128 {
        let c = i32x4_trunc_sat_f32x4(f32x4_nearest(f32x4_mul(v, s)));
        i32x4_max(i32x4_min(c, hi), lo)
    }

    /// (max |x_i| over the first ⌊len/4⌋·4 entries, how many).
    pub fn absmax(x: &[f32]) -> (f32, usize) {
        let n = x.len() / 4 * 4;
        let mut m = f32x4_splat(0.0);
        let p = x.as_ptr();
        let mut i = 0;
        while i < n {
            // SAFETY: i + 4 ≤ n ≤ x.len(). pmax(m, a) = if m < a { a } else { m }: NaN ignored.
            unsafe { m = f32x4_pmax(m, f32x4_abs(v128_load(p.add(i) as *const v128))) };
            i += 4;
        }
        let a = f32x4_pmax(m, i32x4_shuffle::<2, 3, 0, 1>(m, m));
        let b = f32x4_pmax(a, i32x4_shuffle::<1, 0, 3, 2>(a, a));
        (f32x4_extract_lane::<0>(b), n)
    }

    /// The codes of the first ⌊len/4⌋·4 entries (eight a step, then four); returns how many.
    pub fn codes(x: &[f32], inv: f32, limit: i32, codes: &mut [i16]) -> usize {
        let n = x.len() / 8 * 8;
        let s = f32x4_splat(inv);
        let (hi, lo) = (i32x4_splat(limit), i32x4_splat(-limit));
        let (px, pc) = (x.as_ptr(), codes.as_mut_ptr());
        let q = |v: v128| code4(v, s, hi, lo);
        let mut i = 0;
        while i < n {
            // SAFETY: i + 8 ≤ n ≤ x.len() = codes.len() (the caller's slices).
            unsafe {
                let a = q(v128_load(px.add(i) as *const v128));
                let b = q(v128_load(px.add(i + 4) as *const v128));
                v128_store(pc.add(i) as *mut v128, i16x8_narrow_i32x4(a, b));
            }
            i += 8;
        }
        if x.len() - n >= 4 {
            // SAFETY: n + 4 ≤ x.len() = codes.len().
            unsafe {
                let a = q(v128_load(px.add(n) as *const v128));
                v128_store64_lane::<0>(i16x8_narrow_i32x4(a, a), pc.add(n) as *mut u64);
            }
            return n + 4;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition in f64 over the f32 inputs, with the f32 roundings the SPEC names.
    fn reference(x: &[f32], limit: i32) -> (Vec<i16>, f32) {
        let m = x
            .iter()
            .fold(0f32, |m, v| if v.abs() > m { v.abs() } else { m });
        if m == 0.0 || !m.is_finite() {
            return (vec![0; x.len()], 0.0);
        }
        let inv = limit as f32 / m;
        let codes = x
            .iter()
            .map(|&v| {
                let t = f64::from(v * inv);
                let r = t.round();
                // Half-way cases go to the even neighbour.
                let r = if (t - t.trunc()).abs() == 0.5 && r % 2.0 != 0.0 {
                    r - t.signum()
                } else {
                    r
                };
                r.clamp(-f64::from(limit), f64::from(limit)) as i16
            })
            .collect();
        (codes, m / limit as f32)
    }

    #[test]
    fn quantize_matches_its_definition_and_error_bound() {
        for (len, limit) in [
            (0, 7),
            (1, 127),
            (5, 32_767),
            (8, 2_047),
            (37, 32_767),
            (512, 127),
        ] {
            let x: Vec<f32> = (0..len)
                .map(|i| ((i * 7919 % 211) as f32 - 105.3) / 13.0)
                .collect();
            let mut codes = vec![99i16; len + 3];
            let scale = quantize(&x, limit, &mut codes);
            let (want, want_scale) = reference(&x, limit);
            assert_eq!(&codes[..len], &want[..]);
            assert_eq!(&codes[len..], &[99, 99, 99], "wrote past x.len()");
            assert_eq!(scale.to_bits(), want_scale.to_bits());
            for (c, v) in codes.iter().zip(&x) {
                // |x − code·scale| ≤ scale/2 (plus f32 rounding).
                let err = (f64::from(*c) * f64::from(scale) - f64::from(*v)).abs();
                assert!(err <= f64::from(scale) * 0.5001, "{v} → {c}·{scale}");
            }
        }
    }

    #[test]
    fn quantize_rounds_half_to_even_and_hits_the_limit() {
        // m = 4, L = 8: inv = 2; 0.25·2 = 0.5 → 0, 0.75·2 = 1.5 → 2, −1.25·2 = −2.5 → −2.
        let mut c = [0i16; 5];
        let s = quantize(&[0.25, 0.75, -1.25, 4.0, -4.0], 8, &mut c);
        assert_eq!(c, [0, 2, -2, 8, -8]);
        assert_eq!(s, 0.5);
    }

    #[test]
    fn quantize_of_zero_or_non_finite_is_zero() {
        let mut c = [5i16; 3];
        assert_eq!(quantize(&[0.0, -0.0, 0.0], 127, &mut c), 0.0);
        assert_eq!(c, [0; 3]);
        let mut c = [5i16; 3];
        assert_eq!(quantize(&[1.0, f32::INFINITY, 2.0], 127, &mut c), 0.0);
        assert_eq!(c, [0; 3]);
        // NaN entries are ignored by the maximum and coded 0.
        let mut c = [5i16; 3];
        let s = quantize(&[1.0, f32::NAN, -2.0], 2, &mut c);
        assert_eq!((c, s), ([1, 0, -2], 1.0));
    }

    #[test]
    fn act_limit_keeps_sums_exact() {
        assert_eq!(act_limit(512, 1), ACT_LIMIT);
        assert_eq!(act_limit(512, EMB_LIMIT), 32_767);
        assert_eq!(act_limit(768, EMB_LIMIT), 22_017);
        assert_eq!(act_limit(64, KV_LIMIT), 16_392);
        for (terms, other) in [
            (1, 1),
            (517, 127),
            (16_384, 127),
            (65_536, 2_047),
            (1 << 24, 127),
        ] {
            let l = act_limit(terms, other);
            assert!(l >= 1);
            assert!(l == 1 || (terms as u64) * (l as u64) * (other as u64) <= i32::MAX as u64);
        }
    }
}
