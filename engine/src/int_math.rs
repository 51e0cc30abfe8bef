//! Integer kernels of SPEC §2.6: dot products of i16 codes into i32 sums, and the unnormalized
//! Walsh–Hadamard transform over i32 parts.
//!
//! Integer sums are exact (SPEC §2.6 bounds every sum below 2^31), so their order cannot change a
//! bit: the wasm32 versions (`simd`, `i32x4.dot_i16x8_s`: eight multiply-adds per instruction)
//! and the portable loops agree by construction, and wrapping arithmetic on both makes even an
//! out-of-bound sum the same on both.

/// Σ a_i·b_i (wrapping).
#[inline]
pub fn dot(a: &[i16], b: &[i16]) -> i32 {
    a.iter().zip(b).fold(0i32, |s, (x, y)| {
        s.wrapping_add(i32::from(*x) * i32::from(*y))
    })
}

/// out[r] = Σ_c w[r·stride + c]·x[c] for c < x.len(): the rows of a row-major i16 matrix whose
/// rows start `stride` (≥ x.len()) codes apart against the codes x.
pub fn matvec(w: &[i16], stride: usize, x: &[i16], out: &mut [i32]) {
    let cols = x.len();
    #[cfg(target_arch = "wasm32")]
    if simd::matvec(w, stride, x, out) {
        return;
    }
    for (r, o) in out.iter_mut().enumerate() {
        *o = dot(&w[r * stride..r * stride + cols], x);
    }
}

/// The Walsh–Hadamard transform over `parts` (a power of two) equal parts of x, without the
/// 1/√parts factor: x_g ← Σ_j (−1)^popcount(g AND j) x_j, exact in i32 (wrapping).
pub fn fht(x: &mut [i32], parts: usize) {
    let width = x.len() / parts;
    debug_assert!(parts.is_power_of_two() && width * parts == x.len());
    #[cfg(target_arch = "wasm32")]
    if width.is_multiple_of(4) {
        simd::fht(x, parts);
        return;
    }
    let mut h = 1;
    while h < parts {
        for block in (0..parts).step_by(2 * h) {
            for j in block..block + h {
                let (lo, hi) = x.split_at_mut((j + h) * width);
                for (a, b) in lo[j * width..(j + 1) * width]
                    .iter_mut()
                    .zip(&mut hi[..width])
                {
                    let (s, d) = (a.wrapping_add(*b), a.wrapping_sub(*b));
                    *a = s;
                    *b = d;
                }
            }
        }
        h *= 2;
    }
}

/// An i16 matrix as the kernels read it: row-major, rows padded to a multiple of 4 and columns
/// to a multiple of 8, with zeros (so that `matvec` runs four whole rows of whole chunks of eight
/// codes at a time).
#[derive(Debug, Clone)]
pub struct CodeMatrix {
    rows: usize,
    cols: usize,
    rows_p: usize,
    cols_p: usize,
    data: Vec<i16>,
}

impl CodeMatrix {
    /// From a row-major [rows, cols] matrix.
    pub fn from_dense(w: &[i16], rows: usize, cols: usize) -> Self {
        let (rows_p, cols_p) = (rows.div_ceil(4) * 4, cols.div_ceil(8) * 8);
        let mut data = vec![0i16; rows_p * cols_p];
        for (dst, src) in data
            .chunks_exact_mut(cols_p)
            .zip(w.chunks_exact(cols.max(1)))
        {
            dst[..cols].copy_from_slice(src);
        }
        CodeMatrix {
            rows,
            cols,
            rows_p,
            cols_p,
            data,
        }
    }

    /// Row by row: `fill(r, row)` writes row r's `cols` codes (so that a caller decoding a
    /// table never holds a second full-size copy of it).
    pub fn try_from_rows<E>(
        rows: usize,
        cols: usize,
        mut fill: impl FnMut(usize, &mut [i16]) -> Result<(), E>,
    ) -> Result<Self, E> {
        let (rows_p, cols_p) = (rows.div_ceil(4) * 4, cols.div_ceil(8) * 8);
        let mut data = vec![0i16; rows_p * cols_p];
        if cols > 0 {
            for (r, dst) in data.chunks_exact_mut(cols_p).take(rows).enumerate() {
                fill(r, &mut dst[..cols])?;
            }
        }
        Ok(CodeMatrix {
            rows,
            cols,
            rows_p,
            cols_p,
            data,
        })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Rows padded to a multiple of 4: the length `matvec`'s output needs.
    pub fn rows_padded(&self) -> usize {
        self.rows_p
    }

    /// Columns padded to a multiple of 8: the length `matvec`'s input needs (zeros past `cols`).
    pub fn cols_padded(&self) -> usize {
        self.cols_p
    }

    /// The codes of row `row` (its first `cols` entries).
    pub fn row(&self, row: usize) -> &[i16] {
        &self.data[row * self.cols_p..row * self.cols_p + self.cols]
    }

    /// out[r] = Σ_c W[r][c]·x[c] (wrapping) for rows 0..need rounded up to a multiple of 4;
    /// x.len() = cols_padded() (zeros past cols), out.len() = rows_padded().
    pub fn matvec(&self, x: &[i16], out: &mut [i32], need: usize) {
        assert!(x.len() == self.cols_p && need <= self.rows_p && out.len() == self.rows_p);
        let rows = need.div_ceil(4) * 4;
        matvec(&self.data, self.cols_p, x, &mut out[..rows]);
    }

    pub fn heap_bytes(&self) -> usize {
        2 * self.data.len()
    }
}

/// Positions per block of [`pairs_weighted`]: 32 products of codes ≤ 2,047 and ≤ 32,767 stay
/// below 2^31 (SPEC §2.6), so each block's sums are exact in i32.
pub const PAIR_BLOCK: usize = 32;

/// acc[j] = Σ_blocks f32(Σ_{p in block} w[p]·v_p[j]) (blocks of [`PAIR_BLOCK`] positions, their
/// f32 sums in increasing block order) for j < dims, with the values stored in pairs of
/// positions: v[(q·dims + j)·2 + (p mod 2)] holds v_p[j] for p = 2q + p mod 2. w.len() is a
/// multiple of PAIR_BLOCK (zeros past the positions that count); dims a multiple of 4.
pub fn pairs_weighted(v: &[i16], dims: usize, w: &[i16], acc: &mut [f32]) {
    assert!(
        w.len().is_multiple_of(PAIR_BLOCK)
            && dims.is_multiple_of(4)
            && acc.len() == dims
            && v.len() >= w.len() * dims
    );
    acc.fill(0.0);
    #[cfg(target_arch = "wasm32")]
    if simd::pairs_weighted(v, dims, w, acc) {
        return;
    }
    let mut part = vec![0i32; dims];
    for (b, wb) in w.chunks_exact(PAIR_BLOCK).enumerate() {
        part.fill(0);
        for (k, wp) in wb.iter().enumerate() {
            let p = b * PAIR_BLOCK + k;
            let (q, odd) = (p / 2, p % 2);
            for (j, s) in part.iter_mut().enumerate() {
                *s = s.wrapping_add(i32::from(*wp) * i32::from(v[(q * dims + j) * 2 + odd]));
            }
        }
        acc.iter_mut().zip(&part).for_each(|(a, s)| *a += *s as f32);
    }
}

#[cfg(target_arch = "wasm32")]
mod simd {
    use core::arch::wasm32::*;

    /// [Σ a, Σ b, Σ c, Σ d] of four i32x4 vectors' lanes.
    #[inline(always)]
    fn reduce4(a: v128, b: v128, c: v128, d: v128) -> v128 {
        let p = i32x4_add(
            i32x4_shuffle::<0, 4, 1, 5>(a, b),
            i32x4_shuffle::<2, 6, 3, 7>(a, b),
        );
        let q = i32x4_add(
            i32x4_shuffle::<0, 4, 1, 5>(c, d),
            i32x4_shuffle::<2, 6, 3, 7>(c, d),
        );
        i32x4_add(
            i32x4_shuffle::<0, 1, 4, 5>(p, q),
            i32x4_shuffle::<2, 3, 6, 7>(p, q),
        )
    }

    /// 4·G rows of CH chunks against x, into out[0..G] (or added to it unless FIRST), lanes =
    /// rows. Row r starts at w + r·stride vectors, `stride` a run-time value: LLVM then keeps one
    /// address per row and folds each chunk's offset into its load (with compile-time row
    /// offsets, or row pointers that a loop advances, it computes every address with an
    /// `i32.add`: three more instructions per load). Not inlined, so that w and x are
    /// parameters. Measured: G = 1 (LLVM unrolls it); with G = 4 LLVM keeps a loop over the
    /// groups and loses the folding (+7 % instructions per token).
    #[inline(never)]
    unsafe fn rows<const G: usize, const CH: usize, const FIRST: bool>(
        w: *const v128,
        stride: usize,
        x: *const v128,
        out: *mut v128,
    ) {
        let mut xs = [i32x4_splat(0); CH];
        for (c, xc) in xs.iter_mut().enumerate() {
            // SAFETY: x holds CH chunks.
            *xc = unsafe { v128_load(x.add(c)) };
        }
        for g in 0..G {
            let mut s = [i32x4_splat(0); 4];
            for (r, sr) in s.iter_mut().enumerate() {
                // SAFETY: the caller's 4·G rows of CH chunks start stride vectors apart from w.
                unsafe {
                    let p = w.add((4 * g + r) * stride);
                    let mut a = i32x4_dot_i16x8(v128_load(p), xs[0]);
                    for (c, xc) in xs.iter().enumerate().skip(1) {
                        a = i32x4_add(a, i32x4_dot_i16x8(v128_load(p.add(c)), *xc));
                    }
                    *sr = a;
                }
            }
            let v = reduce4(s[0], s[1], s[2], s[3]);
            // SAFETY: out holds G vectors.
            unsafe {
                let o = out.add(g);
                v128_store(o, if FIRST { v } else { i32x4_add(v128_load(o), v) });
            }
        }
    }

    type RowsFn = unsafe fn(*const v128, usize, *const v128, *mut v128);

    macro_rules! rows_table {
        ($g:literal, $first:literal) => {
            [
                rows::<$g, 1, $first> as RowsFn,
                rows::<$g, 2, $first>,
                rows::<$g, 3, $first>,
                rows::<$g, 4, $first>,
                rows::<$g, 5, $first>,
                rows::<$g, 6, $first>,
                rows::<$g, 7, $first>,
                rows::<$g, 8, $first>,
                rows::<$g, 9, $first>,
                rows::<$g, 10, $first>,
                rows::<$g, 11, $first>,
                rows::<$g, 12, $first>,
                rows::<$g, 13, $first>,
                rows::<$g, 14, $first>,
                rows::<$g, 15, $first>,
                rows::<$g, 16, $first>,
            ]
        };
    }

    /// [FIRST][chunks − 1], column blocks of at most 16 chunks.
    const ROWS: [[RowsFn; 16]; 2] = [rows_table!(1, false), rows_table!(1, true)];

    /// `super::matvec` for x.len() a positive multiple of 8 and stride a multiple of 8: four
    /// rows a call per column block of up to 16 chunks; the last out.len() mod 4 rows one by one.
    pub fn matvec(w: &[i16], stride: usize, x: &[i16], out: &mut [i32]) -> bool {
        let (rows, cols) = (out.len(), x.len());
        if rows == 0 || !cols.is_multiple_of(8) || !stride.is_multiple_of(8) || stride < cols {
            return false;
        }
        assert!(w.len() >= (rows - 1) * stride + cols);
        let (chunks, sv) = (cols / 8, stride / 8);
        let (wp, xp) = (w.as_ptr() as *const v128, x.as_ptr() as *const v128);
        let op = out.as_mut_ptr() as *mut v128;
        let mut r = 0;
        while r + 4 <= rows {
            let mut b = 0;
            while b < chunks {
                let cb = (chunks - b).min(16);
                let f = ROWS[usize::from(b == 0)][cb - 1];
                // SAFETY: rows r..r+4, chunks b..b+cb lie inside w (asserted); x holds `chunks`
                // chunks; out holds rows r..r+4 (r + 4 ≤ rows).
                unsafe { f(wp.add(r * sv + b), sv, xp.add(b), op.add(r / 4)) };
                b += cb;
            }
            r += 4;
        }
        for (rr, o) in out.iter_mut().enumerate().skip(r) {
            *o = super::dot(&w[rr * stride..rr * stride + cols], x);
        }
        true
    }

    /// One block of 32 positions (16 pairs) of `super::pairs_weighted` for dims = 4·VECS:
    /// acc[k] (f32x4, dims 4k..4k+4) += f32(the block's exact i32 sums).
    #[inline(never)]
    unsafe fn pairs_block<const VECS: usize>(v: *const v128, w: *const i32, acc: *mut v128) {
        let mut s = [i32x4_splat(0); VECS];
        for q in 0..16 {
            // SAFETY: the block holds 16 pairs of VECS vectors from v and 16 weight pairs from w.
            unsafe {
                let pair = i32x4_splat(*w.add(q));
                for (k, sk) in s.iter_mut().enumerate() {
                    *sk = i32x4_add(*sk, i32x4_dot_i16x8(v128_load(v.add(q * VECS + k)), pair));
                }
            }
        }
        for (k, sk) in s.iter().enumerate() {
            // SAFETY: acc holds VECS vectors.
            unsafe {
                let p = acc.add(k);
                v128_store(p, f32x4_add(v128_load(p), f32x4_convert_i32x4(*sk)));
            }
        }
    }

    /// `super::pairs_weighted` in wasm for the head sizes it has kernels for; false otherwise.
    pub fn pairs_weighted(v: &[i16], dims: usize, w: &[i16], acc: &mut [f32]) -> bool {
        type PairsFn = unsafe fn(*const v128, *const i32, *mut v128);
        let f: PairsFn = match dims / 4 {
            2 => pairs_block::<2>,
            4 => pairs_block::<4>,
            6 => pairs_block::<6>,
            8 => pairs_block::<8>,
            12 => pairs_block::<12>,
            16 => pairs_block::<16>,
            _ => return false,
        };
        let vecs = dims / 4;
        let (vp, wp, ap) = (
            v.as_ptr() as *const v128,
            w.as_ptr() as *const i32,
            acc.as_mut_ptr() as *mut v128,
        );
        for b in 0..w.len() / super::PAIR_BLOCK {
            // SAFETY: block b's 16 pairs of `vecs` vectors lie inside v (asserted by the caller:
            // v.len() ≥ w.len()·dims), its 16 weight pairs inside w, acc holds `vecs` vectors.
            unsafe { f(vp.add(b * 16 * vecs), wp.add(b * 16), ap) };
        }
        true
    }

    /// `super::fht` for a part width that is a multiple of 4.
    pub fn fht(x: &mut [i32], parts: usize) {
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
                            let pa = px.add(j * width + c) as *mut v128;
                            let pb = px.add((j + h) * width + c) as *mut v128;
                            let (a, b) = (v128_load(pa), v128_load(pb));
                            v128_store(pa, i32x4_add(a, b));
                            v128_store(pb, i32x4_sub(a, b));
                        }
                        c += 4;
                    }
                }
                block += 2 * h;
            }
            h *= 2;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(len: usize, a: usize, b: usize, off: i32) -> Vec<i16> {
        (0..len)
            .map(|i| ((i * a % b) as i32 - off) as i16)
            .collect()
    }

    #[test]
    fn matvec_matches_i64_sums() {
        for (rows, cols, stride) in [
            (0, 8, 8),
            (1, 16, 16),
            (5, 16, 40),
            (9, 24, 24),
            (7, 5, 9),
            (6, 64, 64),
            (3, 72, 80),
        ] {
            let w = codes(rows * stride + cols, 5, 23, 11);
            let x: Vec<i16> = codes(cols, 3, 65_000, 32_000);
            let mut out = vec![0; rows];
            matvec(&w, stride, &x, &mut out);
            for (r, o) in out.iter().enumerate() {
                let want: i64 = (0..cols)
                    .map(|c| i64::from(w[r * stride + c]) * i64::from(x[c]))
                    .sum();
                assert_eq!(i64::from(*o), want);
            }
        }
    }

    #[test]
    fn code_matrix_matvec_matches_i64_sums_and_rows_round_trip() {
        for (rows, cols) in [
            (1, 1),
            (4, 8),
            (5, 16),
            (16, 16),
            (44, 16),
            (16, 48),
            (37, 70),
            (20, 130),
            (8, 512),
        ] {
            let w = codes(rows * cols, 5, 23, 11);
            let p = CodeMatrix::from_dense(&w, rows, cols);
            let mut x: Vec<i16> = codes(cols, 3, 65_000, 32_000);
            x.resize(p.cols_padded(), 0);
            for need in [rows, 1] {
                let mut out = vec![7; p.rows_padded()];
                p.matvec(&x, &mut out, need);
                for r in 0..need {
                    let want: i64 = (0..cols)
                        .map(|c| i64::from(w[r * cols + c]) * i64::from(x[c]))
                        .sum();
                    assert_eq!(i64::from(out[r]), want, "{rows}x{cols} row {r}");
                }
            }
            for r in 0..rows {
                assert_eq!(p.row(r), &w[r * cols..(r + 1) * cols]);
            }
        }
    }

    #[test]
    fn pairs_weighted_sums_blocks_exactly() {
        for (positions, dims) in [(32, 4), (64, 16), (96, 64), (32, 20)] {
            let v = codes(positions * dims, 11, 4_095, 2_047);
            let w = codes(positions, 13, 65_535, 32_767);
            let mut acc = vec![0.0; dims];
            pairs_weighted(&v, dims, &w, &mut acc);
            for j in 0..dims {
                let mut want = 0f32;
                for b in 0..positions / PAIR_BLOCK {
                    let s: i64 = (b * PAIR_BLOCK..(b + 1) * PAIR_BLOCK)
                        .map(|p| i64::from(w[p]) * i64::from(v[((p / 2) * dims + j) * 2 + p % 2]))
                        .sum();
                    want += s as f32;
                }
                assert_eq!(acc[j].to_bits(), want.to_bits());
            }
        }
    }

    #[test]
    fn fht_is_the_unnormalized_hadamard_matrix() {
        for (parts, width) in [(1, 4), (2, 3), (8, 4), (32, 1), (32, 16)] {
            let x: Vec<i32> = (0..parts * width)
                .map(|i| (i * 37 % 101) as i32 - 50)
                .collect();
            let mut y = x.clone();
            fht(&mut y, parts);
            for g in 0..parts {
                for c in 0..width {
                    let want: i32 = (0..parts)
                        .map(|j| {
                            let s = if (g & j).count_ones() % 2 == 0 { 1 } else { -1 };
                            s * x[j * width + c]
                        })
                        .sum();
                    assert_eq!(y[g * width + c], want);
                }
            }
        }
    }
}
