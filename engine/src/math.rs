//! Small numeric kernels of the engine. Every sum runs in a fixed order and transcendental
//! functions come from `libm`, so native and wasm32 builds compute the same bits (SPEC §5.2).
//!
//! On wasm32 the kernels (`dot`, `fht32`, the elementwise ones, exp) have explicit simd128
//! versions (`simd` below) that perform exactly the portable versions' f32 operations in the
//! same order — eight accumulators as two f32x4 vectors, the same reduction tree, no fused
//! multiply-add — so they change instruction counts, never bits. (The weight products are
//! integer: `int_math`.) The canister tests
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
    #[cfg(target_arch = "wasm32")]
    let done = simd::scale_mul(x, inv, g, out);
    #[cfg(not(target_arch = "wasm32"))]
    let done = 0;
    for ((o, v), w) in out.iter_mut().zip(x).zip(g).skip(done) {
        *o = v * inv * w;
    }
}

/// silu(a) = a / (1 + e(−a)) with e = [`exp_spec`].
#[inline]
pub fn silu(a: f32) -> f32 {
    a / (1.0 + exp_spec(-a))
}

/// SwiGLU's middle: g ← silu(g) · u elementwise.
pub fn swiglu(g: &mut [f32], u: &[f32]) {
    let n = g.len().min(u.len());
    #[cfg(target_arch = "wasm32")]
    let done = {
        let m = n / 4 * 4;
        simd::swiglu(&mut g[..m], &u[..m]);
        m
    };
    #[cfg(not(target_arch = "wasm32"))]
    let done = 0;
    g[done..n]
        .iter_mut()
        .zip(&u[done..n])
        .for_each(|(g, u)| *g = silu(*g) * u);
}

/// e^x as SPEC §2.5 defines it for the engine (softmax and SiLU): x clamped to [−87, 88],
/// k = round_ties_even(x·log2 e), r = (x − k·ln2_hi) − k·ln2_lo, e^r by Cephes' degree-6
/// polynomial (Horner, f32, no fused multiply-add), times 2^k built from the exponent bits.
/// Relative error ≤ 2^−22 against e^x on [−87, 88] (tested on a 2^−12 grid: worst 7.9e−8); the same bits on every target.
#[inline]
pub fn exp_spec(x: f32) -> f32 {
    let x = if x < EXP_LO { EXP_LO } else { x };
    let x = if x > EXP_HI { EXP_HI } else { x };
    let k = (x * LOG2E).round_ties_even();
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let p =
        ((((EXP_P[0] * r + EXP_P[1]) * r + EXP_P[2]) * r + EXP_P[3]) * r + EXP_P[4]) * r + EXP_P[5];
    let y = (p * (r * r) + r) + 1.0;
    // k ∈ [−126, 127] after the clamp, so 2^k is a normal float; `as` saturates (NaN → 0) like
    // wasm's i32x4.trunc_sat_f32x4_s.
    y * f32::from_bits((((k as i32) + 127) as u32) << 23)
}

const EXP_LO: f32 = -87.0;
const EXP_HI: f32 = 88.0;
const LOG2E: f32 = core::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4; // 355/512: k·LN2_HI is exact for |k| ≤ 127
const LN2_LO: f32 = -2.121_944_4e-4;
const EXP_P: [f32; 6] = [
    1.987_569_1e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    0.5, // Cephes: 5.0000001201e-1, which rounds to 0.5 in f32
];

/// Elementwise kernels: each output entry is one or two f32 operations of its inputs, so the
/// wasm32 lanes and the portable loop give the same bits.
///
/// out[i] = a[i] · b[i].
pub fn mul(a: &[f32], b: &[f32], out: &mut [f32]) {
    let n = out.len();
    assert!(a.len() >= n && b.len() >= n);
    #[cfg(target_arch = "wasm32")]
    let done = simd::binary(&a[..n], &b[..n], out, core::arch::wasm32::f32x4_mul);
    #[cfg(not(target_arch = "wasm32"))]
    let done = 0;
    for i in done..n {
        out[i] = a[i] * b[i];
    }
}

/// out[i] = a[i] · b[i] (as [`mul`]) and max |out_i| with NaN ignored (as `quant::absmax`), in
/// one pass.
pub fn mul_absmax(a: &[f32], b: &[f32], out: &mut [f32]) -> f32 {
    let n = out.len();
    assert!(a.len() >= n && b.len() >= n);
    #[cfg(target_arch = "wasm32")]
    let (mut m, done) = simd::mul_absmax(&a[..n], &b[..n], out);
    #[cfg(not(target_arch = "wasm32"))]
    let (mut m, done) = (0f32, 0);
    for i in done..n {
        out[i] = a[i] * b[i];
        let v = out[i].abs();
        if v > m {
            m = v;
        }
    }
    m
}

/// a[i] ← a[i] + b[i].
pub fn add_assign(a: &mut [f32], b: &[f32]) {
    let n = a.len();
    assert!(b.len() >= n);
    #[cfg(target_arch = "wasm32")]
    let done = simd::binary_assign(a, &b[..n], core::arch::wasm32::f32x4_add);
    #[cfg(not(target_arch = "wasm32"))]
    let done = 0;
    for i in done..n {
        a[i] += b[i];
    }
}

/// a[i] ← a[i] − b[i] (in IEEE arithmetic the same bits as a[i] + (−b[i])).
pub fn sub_assign(a: &mut [f32], b: &[f32]) {
    let n = a.len();
    assert!(b.len() >= n);
    #[cfg(target_arch = "wasm32")]
    let done = simd::binary_assign(a, &b[..n], core::arch::wasm32::f32x4_sub);
    #[cfg(not(target_arch = "wasm32"))]
    let done = 0;
    for i in done..n {
        a[i] -= b[i];
    }
}

/// y[i] = (f32(z[i]) · v[i]) · c: integer sums back to f32 (SPEC §2.6).
pub fn dequant(z: &[i32], v: &[f32], c: f32, y: &mut [f32]) {
    let n = y.len();
    assert!(z.len() >= n && v.len() >= n);
    #[cfg(target_arch = "wasm32")]
    let done = simd::dequant(&z[..n], &v[..n], c, y);
    #[cfg(not(target_arch = "wasm32"))]
    let done = 0;
    for i in done..n {
        y[i] = (z[i] as f32 * v[i]) * c;
    }
}

/// The first n entries of v, growing v (zero-filled, once) but never shrinking it. Scratch that
/// alternates between sizes (a layer's linears: D wide, then F) is then never zero-filled again:
/// `Vec::resize` growing by k bytes is a `memory.fill`, which the IC charges 100 instructions
/// plus one a byte. Callers overwrite what they read.
pub fn scratch<T: Copy + Default>(v: &mut Vec<T>, n: usize) -> &mut [T] {
    if v.len() < n {
        v.resize(n, T::default());
    }
    &mut v[..n]
}

/// out[j] = ((Σ_b f32(sums[b·width + j])) · c) · d for j < out.len() (≤ width): the blocks'
/// integer sums to f32 and added in increasing b (f32), then two products — attention's output
/// from its blocks of values (SPEC §2.6). One pass, four values a step in wasm.
pub fn block_sums(sums: &[i32], width: usize, c: f32, d: f32, out: &mut [f32]) {
    let n = out.len();
    assert!(n <= width && width > 0 && !sums.is_empty() && sums.len().is_multiple_of(width));
    #[cfg(target_arch = "wasm32")]
    let done = simd::block_sums(sums, width, c, d, out);
    #[cfg(not(target_arch = "wasm32"))]
    let done = 0;
    for (j, o) in out.iter_mut().enumerate().skip(done) {
        let mut a = sums[j] as f32;
        for block in sums.chunks_exact(width).skip(1) {
            a += block[j] as f32;
        }
        *o = (a * c) * d;
    }
}

/// RoPE on one head (SPEC §2.3) with the pair-duplicated tables of its position: cos =
/// (c_0, c_0, c_1, c_1, …) and sin = (−s_0, s_0, −s_1, s_1, …): x[2i] ← x[2i]·c_i + x[2i+1]·(−s_i),
/// x[2i+1] ← x[2i+1]·c_i + x[2i]·s_i — the same bits as a·cos − b·sin and a·sin + b·cos.
pub fn rope(x: &mut [f32], cos: &[f32], sin: &[f32]) {
    let n = x.len();
    assert!(n.is_multiple_of(2) && cos.len() >= n && sin.len() >= n);
    #[cfg(target_arch = "wasm32")]
    let done = simd::rope(x, cos, sin);
    #[cfg(not(target_arch = "wasm32"))]
    let done = 0;
    for i in (done..n).step_by(2) {
        let (a, b) = (x[i], x[i + 1]);
        x[i] = a * cos[i] + b * sin[i];
        x[i + 1] = b * cos[i + 1] + a * sin[i + 1];
    }
}

/// [`rope`] on every head of a row (heads of cos.len() values each), in one pass.
pub fn rope_heads(x: &mut [f32], cos: &[f32], sin: &[f32]) {
    let hd = cos.len();
    assert!(hd > 0 && sin.len() == hd && x.len().is_multiple_of(hd));
    #[cfg(target_arch = "wasm32")]
    if hd.is_multiple_of(4) {
        simd::rope_heads(x, cos, sin);
        return;
    }
    for head in x.chunks_exact_mut(hd) {
        rope(head, cos, sin);
    }
}

/// `dequant(z, v, c, y)` and the largest of y_0..y_{valid−1} (−∞ for none; NaN ignored), in one
/// pass. y.len() is `valid` rounded up to a multiple of 4 (z and v at least as long): the entries
/// past `valid` (attention's pads) may be computed, for whole vectors in wasm, but never count.
pub fn dequant_max(z: &[i32], v: &[f32], c: f32, y: &mut [f32], valid: usize) -> f32 {
    let n = y.len();
    assert!(n == valid.div_ceil(4) * 4 && z.len() >= n && v.len() >= n);
    #[cfg(target_arch = "wasm32")]
    let (m, done) = simd::dequant_max(&z[..n], &v[..n], c, y, valid);
    #[cfg(not(target_arch = "wasm32"))]
    let (m, done) = (f32::NEG_INFINITY, 0);
    let mut m = m;
    for i in done..valid {
        y[i] = (z[i] as f32 * v[i]) * c;
        if y[i] > m {
            m = y[i];
        }
    }
    m
}

/// Softmax's numerators times the values' scales, in one pass: with e_i = e(x_i − max),
/// x_i ← e_i · v_i for i < valid; returns (Σ e_i in increasing i, in f32; max |x_i| after, NaN
/// ignored, as `quant::absmax`). x.len() is `valid` rounded up to a multiple of 4 (v at least as
/// long); the entries past `valid` become 0 and count in neither (in wasm the last vector's
/// sum adds their +0.0, which leaves a sum ≥ e(0) = 1 as it is).
pub fn softmax_weights(x: &mut [f32], max: f32, v: &[f32], valid: usize) -> (f32, f32) {
    let n = x.len();
    assert!(n == valid.div_ceil(4) * 4 && v.len() >= n);
    #[cfg(target_arch = "wasm32")]
    let (sum, amax, done) = simd::softmax_weights(x, max, &v[..n], valid);
    #[cfg(not(target_arch = "wasm32"))]
    let (sum, amax, done) = (0f32, 0f32, 0);
    let (mut sum, mut amax) = (sum, amax);
    for i in done..valid {
        let e = exp_spec(x[i] - max);
        sum += e;
        x[i] = e * v[i];
        let a = x[i].abs();
        if a > amax {
            amax = a;
        }
    }
    x[valid.max(done)..].fill(0.0);
    (sum, amax)
}

#[cfg(target_arch = "wasm32")]
mod simd {
    use core::arch::wasm32::*;

    /// `super::mul_absmax` on the first ⌊n/4⌋·4 entries: (their max |out_i|, how many).
    pub fn mul_absmax(a: &[f32], b: &[f32], out: &mut [f32]) -> (f32, usize) {
        let n = out.len() / 4 * 4;
        assert!(a.len() >= n && b.len() >= n);
        let mut m = f32x4_splat(0.0);
        let (pa, pb, po) = (a.as_ptr(), b.as_ptr(), out.as_mut_ptr());
        let mut i = 0;
        while i < n {
            // SAFETY: i + 4 ≤ n ≤ the three lengths. pmax(m, y) = if m < y { y } else { m }:
            // NaN ignored, as quant::absmax.
            unsafe {
                let y = f32x4_mul(ld(pa.add(i)), ld(pb.add(i)));
                m = f32x4_pmax(m, f32x4_abs(y));
                v128_store(po.add(i) as *mut v128, y);
            }
            i += 4;
        }
        let c = f32x4_pmax(m, i32x4_shuffle::<2, 3, 0, 1>(m, m));
        let d = f32x4_pmax(c, i32x4_shuffle::<1, 0, 3, 2>(c, c));
        (f32x4_extract_lane::<0>(d), n)
    }

    /// out_i = (x_i · s) · g_i on the first ⌊n/4⌋·4 entries (n the shortest length); returns
    /// how many.
    pub fn scale_mul(x: &[f32], s: f32, g: &[f32], out: &mut [f32]) -> usize {
        let n = x.len().min(g.len()).min(out.len()) / 4 * 4;
        let sv = f32x4_splat(s);
        let (px, pg, po) = (x.as_ptr(), g.as_ptr(), out.as_mut_ptr());
        let mut i = 0;
        while i < n {
            // SAFETY: i + 4 ≤ n ≤ the three lengths.
            unsafe {
                let y = f32x4_mul(f32x4_mul(ld(px.add(i)), sv), ld(pg.add(i)));
                v128_store(po.add(i) as *mut v128, y);
            }
            i += 4;
        }
        n
    }

    /// Lanes l of a vector holding entries 4k..4k+4 that lie below `valid` (all ones) and past
    /// it (zeros), for the last vector 4k < valid < 4k + 4.
    fn valid_lanes(valid: usize) -> v128 {
        i32x4_lt(i32x4(0, 1, 2, 3), i32x4_splat((valid % 4) as i32))
    }

    /// `super::dequant_max` on whole vectors (y.len() a multiple of 4): (the max over the first
    /// `valid`, how many entries done).
    pub fn dequant_max(z: &[i32], v: &[f32], c: f32, y: &mut [f32], valid: usize) -> (f32, usize) {
        let n = y.len();
        let full = valid / 4 * 4;
        assert!(z.len() >= n && v.len() >= n && n.is_multiple_of(4) && full <= n);
        let cv = f32x4_splat(c);
        let mut m = f32x4_splat(f32::NEG_INFINITY);
        let (pz, pv, py) = (z.as_ptr(), v.as_ptr(), y.as_mut_ptr());
        // SAFETY (both blocks): i + 4 ≤ n ≤ the three lengths.
        let at = |i: usize| unsafe {
            f32x4_mul(
                f32x4_mul(
                    f32x4_convert_i32x4(v128_load(pz.add(i) as *const v128)),
                    ld(pv.add(i)),
                ),
                cv,
            )
        };
        let mut i = 0;
        while i < full {
            let out = at(i);
            // pmax(m, a) = if m < a { a } else { m }.
            m = f32x4_pmax(m, out);
            unsafe { v128_store(py.add(i) as *mut v128, out) };
            i += 4;
        }
        if full < n {
            // The last vector: its pads become −∞, which pmax never takes.
            let out = at(full);
            let counted = v128_bitselect(out, f32x4_splat(f32::NEG_INFINITY), valid_lanes(valid));
            m = f32x4_pmax(m, counted);
            unsafe { v128_store(py.add(full) as *mut v128, out) };
        }
        let a = f32x4_pmax(m, i32x4_shuffle::<2, 3, 0, 1>(m, m));
        let b = f32x4_pmax(a, i32x4_shuffle::<1, 0, 3, 2>(a, a));
        (f32x4_extract_lane::<0>(b), n)
    }

    /// `super::softmax_weights` on whole vectors (x.len() a multiple of 4): (the sum of the e_i
    /// in increasing i, the max |x_i| after, how many entries done). The pads' lanes of the last
    /// vector are zeroed before the sum (adding +0.0 to a sum ≥ 1 changes no bit).
    pub fn softmax_weights(x: &mut [f32], max: f32, v: &[f32], valid: usize) -> (f32, f32, usize) {
        let n = x.len();
        assert!(v.len() >= n && n.is_multiple_of(4) && valid <= n);
        let mv = f32x4_splat(max);
        let mut amax = f32x4_splat(0.0);
        let mut sum = 0f32;
        let (px, pv) = (x.as_mut_ptr(), v.as_ptr());
        // Entries i..i+4, lanes outside `keep` zeroed (the last vector's pads).
        let mut step = |i: usize, keep: Option<v128>| {
            // SAFETY: i + 4 ≤ n ≤ both lengths.
            unsafe {
                let p = px.add(i);
                let mut e = exp4_nonpositive(f32x4_sub(ld(p), mv));
                let mut w = f32x4_mul(e, ld(pv.add(i)));
                if let Some(keep) = keep {
                    e = v128_and(e, keep);
                    w = v128_and(w, keep);
                }
                sum += f32x4_extract_lane::<0>(e);
                sum += f32x4_extract_lane::<1>(e);
                sum += f32x4_extract_lane::<2>(e);
                sum += f32x4_extract_lane::<3>(e);
                amax = f32x4_pmax(amax, f32x4_abs(w));
                v128_store(p as *mut v128, w);
            }
        };
        let full = valid / 4 * 4;
        let mut i = 0;
        while i < full {
            step(i, None);
            i += 4;
        }
        if full < n {
            step(full, Some(valid_lanes(valid)));
        }
        let a = f32x4_pmax(amax, i32x4_shuffle::<2, 3, 0, 1>(amax, amax));
        let b = f32x4_pmax(a, i32x4_shuffle::<1, 0, 3, 2>(a, a));
        (sum, f32x4_extract_lane::<0>(b), n)
    }

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

    /// out = op(a, b) lane-wise on the first ⌊len/4⌋·4 entries; returns how many.
    #[inline(always)]
    pub fn binary(a: &[f32], b: &[f32], out: &mut [f32], op: fn(v128, v128) -> v128) -> usize {
        let n = out.len() / 4 * 4;
        let (pa, pb, po) = (a.as_ptr(), b.as_ptr(), out.as_mut_ptr());
        let mut i = 0;
        while i < n {
            // SAFETY: i + 4 ≤ n ≤ the three slices' lengths.
            unsafe { v128_store(po.add(i) as *mut v128, op(ld(pa.add(i)), ld(pb.add(i)))) };
            i += 4;
        }
        n
    }

    /// a = op(a, b) lane-wise on the first ⌊len/4⌋·4 entries; returns how many.
    #[inline(always)]
    pub fn binary_assign(a: &mut [f32], b: &[f32], op: fn(v128, v128) -> v128) -> usize {
        let n = a.len() / 4 * 4;
        let (pa, pb) = (a.as_mut_ptr(), b.as_ptr());
        let mut i = 0;
        while i < n {
            // SAFETY: i + 4 ≤ n ≤ both lengths.
            unsafe { v128_store(pa.add(i) as *mut v128, op(ld(pa.add(i)), ld(pb.add(i)))) };
            i += 4;
        }
        n
    }

    /// `super::block_sums` on the first ⌊out.len()/4⌋·4 values (width a multiple of 4, or the
    /// portable loop does it all); returns how many.
    pub fn block_sums(sums: &[i32], width: usize, c: f32, d: f32, out: &mut [f32]) -> usize {
        if !width.is_multiple_of(4) {
            return 0;
        }
        let n = out.len() / 4 * 4;
        let (cv, dv) = (f32x4_splat(c), f32x4_splat(d));
        let blocks = sums.len() / width;
        let (ps, po) = (sums.as_ptr(), out.as_mut_ptr());
        let mut j = 0;
        while j < n {
            // SAFETY: j + 4 ≤ n ≤ width; block b's values j..j + 4 lie at b·width + j, inside
            // sums (blocks·width long); out holds n ≥ j + 4.
            unsafe {
                let mut a = f32x4_convert_i32x4(v128_load(ps.add(j) as *const v128));
                for b in 1..blocks {
                    let v = v128_load(ps.add(b * width + j) as *const v128);
                    a = f32x4_add(a, f32x4_convert_i32x4(v));
                }
                v128_store(po.add(j) as *mut v128, f32x4_mul(f32x4_mul(a, cv), dv));
            }
            j += 4;
        }
        n
    }

    /// `super::dequant` on the first ⌊len/4⌋·4 entries; returns how many.
    pub fn dequant(z: &[i32], v: &[f32], c: f32, y: &mut [f32]) -> usize {
        let n = y.len() / 4 * 4;
        let cv = f32x4_splat(c);
        let (pz, pv, py) = (z.as_ptr(), v.as_ptr(), y.as_mut_ptr());
        let mut i = 0;
        while i < n {
            // SAFETY: i + 4 ≤ n ≤ the three lengths.
            unsafe {
                let zf = f32x4_convert_i32x4(v128_load(pz.add(i) as *const v128));
                v128_store(
                    py.add(i) as *mut v128,
                    f32x4_mul(f32x4_mul(zf, ld(pv.add(i))), cv),
                );
            }
            i += 4;
        }
        n
    }

    /// `super::rope` on the first ⌊len/4⌋·4 entries; returns how many.
    /// `super::rope_heads` for a head size (cos.len()) that is a multiple of 4.
    pub fn rope_heads(x: &mut [f32], cos: &[f32], sin: &[f32]) {
        let (n, hd) = (x.len(), cos.len());
        assert!(hd.is_multiple_of(4) && sin.len() == hd && n.is_multiple_of(hd));
        let (px, pc, ps) = (x.as_mut_ptr(), cos.as_ptr(), sin.as_ptr());
        let mut h = 0;
        while h < n {
            let mut i = 0;
            while i < hd {
                // SAFETY: h + i + 4 ≤ n = x.len() and i + 4 ≤ hd, the tables' length.
                unsafe {
                    let p = px.add(h + i);
                    let v = ld(p);
                    let swapped = i32x4_shuffle::<1, 0, 3, 2>(v, v);
                    let y = f32x4_add(
                        f32x4_mul(v, ld(pc.add(i))),
                        f32x4_mul(swapped, ld(ps.add(i))),
                    );
                    v128_store(p as *mut v128, y);
                }
                i += 4;
            }
            h += hd;
        }
    }

    pub fn rope(x: &mut [f32], cos: &[f32], sin: &[f32]) -> usize {
        let n = x.len() / 4 * 4;
        let (px, pc, ps) = (x.as_mut_ptr(), cos.as_ptr(), sin.as_ptr());
        let mut i = 0;
        while i < n {
            // SAFETY: i + 4 ≤ n ≤ the three lengths.
            unsafe {
                let v = ld(px.add(i));
                let swapped = i32x4_shuffle::<1, 0, 3, 2>(v, v);
                let y = f32x4_add(
                    f32x4_mul(v, ld(pc.add(i))),
                    f32x4_mul(swapped, ld(ps.add(i))),
                );
                v128_store(px.add(i) as *mut v128, y);
            }
            i += 4;
        }
        n
    }

    /// `exp_spec` on four lanes: the same operations in the same order (pmax/pmin are the scalar
    /// code's compare-and-select clamps, nearest is round_ties_even, trunc_sat is `as i32`).
    #[inline(always)]
    fn exp4(x: v128) -> v128 {
        exp4_nonpositive(f32x4_pmin(x, f32x4_splat(super::EXP_HI)))
    }

    /// `exp4` of x ≤ 0 or NaN (softmax's x − max), for which the upper clamp changes nothing:
    /// both clamps commute (their ranges do not overlap), and pmin(x, 88) is x there.
    #[inline(always)]
    fn exp4_nonpositive(x: v128) -> v128 {
        use super::{EXP_LO, EXP_P, LN2_HI, LN2_LO, LOG2E};
        let x = f32x4_pmax(x, f32x4_splat(EXP_LO));
        let k = f32x4_nearest(f32x4_mul(x, f32x4_splat(LOG2E)));
        let r = f32x4_sub(
            f32x4_sub(x, f32x4_mul(k, f32x4_splat(LN2_HI))),
            f32x4_mul(k, f32x4_splat(LN2_LO)),
        );
        let mut p = f32x4_splat(EXP_P[0]);
        for c in &EXP_P[1..] {
            p = f32x4_add(f32x4_mul(p, r), f32x4_splat(*c));
        }
        let y = f32x4_add(
            f32x4_add(f32x4_mul(p, f32x4_mul(r, r)), r),
            f32x4_splat(1.0),
        );
        let bits = i32x4_shl(i32x4_add(i32x4_trunc_sat_f32x4(k), i32x4_splat(127)), 23);
        f32x4_mul(y, bits)
    }

    /// g ← (g / (1 + exp_spec(−g))) · u for equal lengths that are multiples of 4.
    pub fn swiglu(g: &mut [f32], u: &[f32]) {
        let n = g.len();
        assert!(u.len() == n && n.is_multiple_of(4));
        let one = f32x4_splat(1.0);
        let (pg, pu) = (g.as_mut_ptr(), u.as_ptr());
        let mut i = 0;
        while i < n {
            // SAFETY: i + 4 ≤ n, the length of both slices.
            unsafe {
                let a = ld(pg.add(i));
                let s = f32x4_div(a, f32x4_add(one, exp4(f32x4_neg(a))));
                v128_store(pg.add(i) as *mut v128, f32x4_mul(s, ld(pu.add(i))));
            }
            i += 4;
        }
    }

    /// `fht_parts(x, parts)` for a width (x.len() / parts) that is a multiple of 4: the same
    /// butterflies in the same order, four lanes at a time, then the same scale.
    pub fn fht(x: &mut [f32], parts: usize) {
        let width = x.len() / parts;
        assert!(width.is_multiple_of(4) && width * parts == x.len());
        let px = x.as_mut_ptr();
        // SAFETY: x holds parts·width f32, width a multiple of 4 (asserted).
        unsafe {
            crate::int_math::simd::butterflies(
                px as *mut v128,
                width / 4,
                parts,
                f32x4_add,
                f32x4_sub,
            )
        };
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
    fn exp_spec_is_within_its_bound() {
        // Every 2^−12 step over the clamp range, plus the ends and a few outside it.
        let mut worst = 0f64;
        let mut x = -87.0f64;
        while x <= 88.0 {
            let got = f64::from(exp_spec(x as f32));
            let want = f64::from(x as f32).exp();
            worst = worst.max((got - want).abs() / want);
            x += 1.0 / 4096.0;
        }
        assert!(worst <= 2f64.powi(-22), "worst relative error {worst:.3e}");
        assert_eq!(exp_spec(0.0), 1.0);
        assert_eq!(exp_spec(-1000.0), exp_spec(-87.0));
        assert_eq!(exp_spec(1000.0), exp_spec(88.0));
        assert!(exp_spec(f32::NAN).is_nan());
    }

    #[test]
    fn swiglu_is_silu_times_up() {
        let g0 = data(13, 5, 17, 8.0, 2.0);
        let u = data(13, 3, 11, 5.0, 3.0);
        let mut g = g0.clone();
        swiglu(&mut g, &u);
        for k in 0..13 {
            let a = f64::from(g0[k]);
            let want = a / (1.0 + (-a).exp()) * f64::from(u[k]);
            assert!((f64::from(g[k]) - want).abs() < 1e-6 * (1.0 + want.abs()));
        }
    }

    #[test]
    fn rope_rotates_pairs() {
        let x0 = data(12, 5, 13, 6.0, 3.0);
        let angles: Vec<f64> = (0..6).map(|i| 0.3 * i as f64 + 0.1).collect();
        let cos: Vec<f32> = angles.iter().flat_map(|a| [a.cos() as f32; 2]).collect();
        let sin: Vec<f32> = angles
            .iter()
            .flat_map(|a| [-(a.sin() as f32), a.sin() as f32])
            .collect();
        let mut x = x0.clone();
        rope(&mut x, &cos, &sin);
        for i in 0..6 {
            let (a, b) = (x0[2 * i], x0[2 * i + 1]);
            let (c, s) = (cos[2 * i], sin[2 * i + 1]);
            assert_eq!(x[2 * i].to_bits(), (a * c - b * s).to_bits());
            assert_eq!(x[2 * i + 1].to_bits(), (a * s + b * c).to_bits());
        }
    }

    #[test]
    fn rope_heads_is_rope_on_each_head() {
        let x0 = data(24, 7, 11, 5.0, 2.0);
        let cos = data(8, 3, 5, 2.0, 3.0);
        let sin = data(8, 5, 7, 3.0, 4.0);
        let mut x = x0.clone();
        rope_heads(&mut x, &cos, &sin);
        let mut want = x0.clone();
        for head in want.chunks_exact_mut(8) {
            rope(head, &cos, &sin);
        }
        assert_eq!(x, want);
    }

    #[test]
    fn elementwise_kernels_and_max() {
        let a = data(11, 5, 13, 6.0, 3.0);
        let b = data(11, 3, 7, 2.0, 5.0);
        let mut out = vec![0.0; 11];
        mul(&a, &b, &mut out);
        let mut d = a.clone();
        add_assign(&mut d, &b);
        let mut n = a.clone();
        sub_assign(&mut n, &b);
        let z: Vec<i32> = (0..11).map(|i| i * 1_000_003 - 5_000_000).collect();
        let mut y = vec![0.0; 11];
        dequant(&z, &b, 0.37, &mut y);
        for i in 0..11 {
            assert_eq!(out[i], a[i] * b[i]);
            assert_eq!(d[i], a[i] + b[i]);
            assert_eq!(n[i].to_bits(), (a[i] + -b[i]).to_bits());
            assert_eq!(y[i], (z[i] as f32 * b[i]) * 0.37);
        }
        // The max over the first 11 of 12 (the 12th a pad, larger than all).
        let mut z12 = z.clone();
        z12.push(i32::MAX);
        let mut b12 = b[..11].to_vec();
        b12.push(1.0);
        let mut y12 = vec![0.0; 12];
        let m = dequant_max(&z12, &b12, 0.37, &mut y12, 11);
        assert_eq!(m, y.iter().cloned().fold(f32::NEG_INFINITY, f32::max));
        assert_eq!(y12[..11], y[..]);
        let mut e: [f32; 0] = [];
        assert_eq!(dequant_max(&[], &[], 1.0, &mut e, 0), f32::NEG_INFINITY);
    }

    #[test]
    fn mul_absmax_is_mul_then_absmax() {
        let a: Vec<f32> = (0..11).map(|i| (i as f32 - 5.5) * 1.25).collect();
        let mut b: Vec<f32> = (0..11).map(|i| 0.5 + i as f32 / 3.0).collect();
        b[7] = f32::NAN;
        let mut got = vec![0.0; 11];
        let m = mul_absmax(&a, &b, &mut got);
        let mut want = vec![0.0; 11];
        mul(&a, &b, &mut want);
        assert_eq!(m, crate::quant::absmax(&want));
        assert!(
            got.iter()
                .zip(&want)
                .all(|(g, w)| g.to_bits() == w.to_bits())
        );
    }

    #[test]
    fn block_sums_add_the_blocks_in_order_then_scale() {
        for (blocks, width, n) in [(1, 16, 16), (3, 16, 13), (7, 32, 32), (2, 6, 5)] {
            let sums: Vec<i32> = (0..blocks * width)
                .map(|i| (i as i32 * 1_000_003) % 2_000_000_000)
                .collect();
            let (c, d) = (3.3e-7f32, 0.77f32);
            let mut out = vec![f32::NAN; n];
            block_sums(&sums, width, c, d, &mut out);
            for (j, o) in out.iter().enumerate() {
                let mut a = 0f32;
                for b in 0..blocks {
                    a += sums[b * width + j] as f32;
                }
                assert_eq!(o.to_bits(), ((a * c) * d).to_bits(), "{blocks}x{width} {j}");
            }
        }
    }

    #[test]
    fn softmax_weights_sum_in_order_and_survive_large_values() {
        // Five positions and three pads (one a NaN, one above the max): the pads weigh 0.
        let x0 = [1000.0, 999.0, -1e30, 0.0, 998.5, f32::NAN, 2000.0, 1.0];
        let v = [0.5, 2.0, 1.0, 3.0, -4.0, 1.0, f32::INFINITY, 1.0];
        let mut x = x0;
        let (sum, amax) = softmax_weights(&mut x, 1000.0, &v, 5);
        let e: Vec<f32> = x0[..5].iter().map(|s| exp_spec(s - 1000.0)).collect();
        assert_eq!(sum, (((e[0] + e[1]) + e[2]) + e[3]) + e[4]);
        for i in 0..5 {
            assert_eq!(x[i].to_bits(), (e[i] * v[i]).to_bits());
        }
        assert_eq!(amax, (e[4] * 4.0).max(e[1] * 2.0));
        assert_eq!(e[0], 1.0);
        // e clamps at −87 (SPEC §2.5): a value 1e30 below the maximum gets e(−87) ≈ 1.6e−38.
        assert!(e[1] > e[2] && e[2] > 0.0 && e[2] < 1e-37);
        assert_eq!(x[5..], [0.0; 3], "the pads weigh 0");
    }
}
