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
    if cols.is_multiple_of(8) && cols > 0 && stride >= cols {
        simd::matvec(w, stride, x, out);
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

/// An i16 matrix in the layout the wasm kernels read with constant offsets: rows padded to a
/// multiple of 4 and columns to a multiple of 8 (with zeros), cut into panels of 16 rows (the last
/// ones of 4), each panel into column blocks of up to 8 chunks of 8 codes, stored group of 4 rows
/// by group, chunk by chunk, row by row. A kernel call takes one panel's column block from a
/// single base pointer (LLVM folds constant offsets into wasm loads only from a function's
/// parameters, not from a pointer that a loop advances).
#[derive(Debug, Clone)]
pub struct PanelMatrix {
    rows: usize,
    cols: usize,
    rows_p: usize,
    cols_p: usize,
    data: Vec<i16>,
}

/// Rows of a panel starting at padded row r0 of rows_p.
#[inline]
fn panel_height(r0: usize, rows_p: usize) -> usize {
    if rows_p - r0 >= 16 { 16 } else { 4 }
}

impl PanelMatrix {
    /// From a row-major [rows, cols] matrix.
    pub fn from_dense(w: &[i16], rows: usize, cols: usize) -> Self {
        let (rows_p, cols_p) = (rows.div_ceil(4) * 4, cols.div_ceil(8) * 8);
        let chunks = cols_p / 8;
        let mut data = Vec::with_capacity(rows_p * cols_p);
        let mut r0 = 0;
        while r0 < rows_p {
            let h = panel_height(r0, rows_p);
            for b in (0..chunks).step_by(8) {
                for g in 0..h / 4 {
                    for c in b..(b + 8).min(chunks) {
                        for r in 0..4 {
                            let row = r0 + 4 * g + r;
                            for k in 0..8 {
                                let col = 8 * c + k;
                                data.push(if row < rows && col < cols {
                                    w[row * cols + col]
                                } else {
                                    0
                                });
                            }
                        }
                    }
                }
            }
            r0 += h;
        }
        PanelMatrix {
            rows,
            cols,
            rows_p,
            cols_p,
            data,
        }
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

    /// Index in `data` of row `row`'s chunk `c` (8 codes).
    fn chunk_index(&self, row: usize, c: usize) -> usize {
        let chunks = self.cols_p / 8;
        // Panels above are full 16-row panels, except when the matrix ends in 4-row ones.
        let full = self.rows_p / 16 * 16;
        let (r0, h) = if row < full {
            (row / 16 * 16, 16)
        } else {
            (full + (row - full) / 4 * 4, 4)
        };
        let (b, cb) = (c / 8 * 8, (chunks - c / 8 * 8).min(8));
        let (g, r) = ((row - r0) / 4, (row - r0) % 4);
        r0 * self.cols_p + (b * h + (g * cb + (c - b)) * 4 + r) * 8
    }

    /// The codes of row `row` (its first `cols` entries).
    pub fn row(&self, row: usize, out: &mut [i16]) {
        for (c, o) in out[..self.cols].chunks_mut(8).enumerate() {
            let i = self.chunk_index(row, c);
            o.copy_from_slice(&self.data[i..i + o.len()]);
        }
    }

    /// out[r] = Σ_c W[r][c]·x[c] (wrapping) for every row r of the panels that cover rows
    /// 0..need; x.len() = cols_padded() (zeros past cols), out.len() ≥ need rounded up to its
    /// panel (rows_padded() always does).
    pub fn matvec(&self, x: &[i16], out: &mut [i32], need: usize) {
        assert!(x.len() == self.cols_p && need <= self.rows_p);
        #[cfg(target_arch = "wasm32")]
        {
            simd::panel_matvec(self, x, out, need);
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let chunks = self.cols_p / 8;
            let mut i = 0;
            let mut r0 = 0;
            while r0 < need {
                let h = panel_height(r0, self.rows_p);
                out[r0..r0 + h].fill(0);
                for b in (0..chunks).step_by(8) {
                    for g in 0..h / 4 {
                        for c in b..(b + 8).min(chunks) {
                            for r in 0..4 {
                                let o = &mut out[r0 + 4 * g + r];
                                *o =
                                    o.wrapping_add(dot(&self.data[i..i + 8], &x[8 * c..8 * c + 8]));
                                i += 8;
                            }
                        }
                    }
                }
                r0 += h;
            }
        }
    }

    pub fn heap_bytes(&self) -> usize {
        2 * self.data.len()
    }
}

/// out[r] = Σ_c W[r][c]·x[c] for the out.len() rows (a multiple of 4) of a matrix stored in
/// groups of 4 rows, each group chunk by chunk (`chunks` chunks of 8 codes), row by row: the
/// layout of one 4-row panel of [`PanelMatrix`], repeated (the attention's keys of one head).
pub fn groups_matvec(w: &[i16], chunks: usize, x: &[i16], out: &mut [i32]) {
    let groups = out.len() / 4;
    assert!(out.len() == 4 * groups && x.len() == 8 * chunks && w.len() >= groups * chunks * 32);
    #[cfg(target_arch = "wasm32")]
    {
        simd::groups_matvec(w, chunks, x, out);
    }
    #[cfg(not(target_arch = "wasm32"))]
    for g in 0..groups {
        for r in 0..4 {
            out[4 * g + r] = (0..chunks).fold(0i32, |s, c| {
                let i = ((g * chunks + c) * 4 + r) * 8;
                s.wrapping_add(dot(&w[i..i + 8], &x[8 * c..8 * c + 8]))
            });
        }
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

    #[inline(always)]
    unsafe fn ld(p: *const i16) -> v128 {
        unsafe { v128_load(p as *const v128) }
    }

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

    #[inline(always)]
    fn hsum(a: v128) -> i32 {
        let b = i32x4_add(a, i32x4_shuffle::<2, 3, 0, 1>(a, a));
        let c = i32x4_add(b, i32x4_shuffle::<1, 0, 3, 2>(b, b));
        i32x4_extract_lane::<0>(c)
    }

    /// Four rows against x, `CH` chunks of eight codes known at compile time (fully unrolled, so
    /// every weight load takes a constant offset from one row pointer).
    #[inline(always)]
    unsafe fn rows4_fixed<const CH: usize>(p: *const i16, stride: usize, xs: &[v128; CH]) -> v128 {
        let z = i32x4_splat(0);
        let (mut a0, mut a1, mut a2, mut a3) = (z, z, z, z);
        // SAFETY (whole block): the caller guarantees four rows of CH·8 codes from p.
        unsafe {
            let (p0, p1, p2, p3) = (p, p.add(stride), p.add(2 * stride), p.add(3 * stride));
            for (c, xv) in xs.iter().enumerate() {
                a0 = i32x4_add(a0, i32x4_dot_i16x8(ld(p0.add(8 * c)), *xv));
                a1 = i32x4_add(a1, i32x4_dot_i16x8(ld(p1.add(8 * c)), *xv));
                a2 = i32x4_add(a2, i32x4_dot_i16x8(ld(p2.add(8 * c)), *xv));
                a3 = i32x4_add(a3, i32x4_dot_i16x8(ld(p3.add(8 * c)), *xv));
            }
        }
        reduce4(a0, a1, a2, a3)
    }

    fn matvec_fixed<const CH: usize>(w: &[i16], stride: usize, x: &[i16], out: &mut [i32]) {
        let rows = out.len();
        let mut xs = [i32x4_splat(0); CH];
        for (c, v) in xs.iter_mut().enumerate() {
            // SAFETY: x.len() = 8·CH.
            *v = unsafe { ld(x.as_ptr().add(8 * c)) };
        }
        let mut r = 0;
        while r + 4 <= rows {
            // SAFETY: rows r..r+4 end at (r+3)·stride + 8·CH ≤ w.len() (checked by the caller).
            unsafe {
                let v = rows4_fixed::<CH>(w.as_ptr().add(r * stride), stride, &xs);
                v128_store(out.as_mut_ptr().add(r) as *mut v128, v);
            }
            r += 4;
        }
        for rr in r..rows {
            let mut a = i32x4_splat(0);
            for (c, xv) in xs.iter().enumerate() {
                // SAFETY: row rr's 8·CH codes are inside w.
                unsafe {
                    a = i32x4_add(
                        a,
                        i32x4_dot_i16x8(ld(w.as_ptr().add(rr * stride + 8 * c)), *xv),
                    )
                };
            }
            out[rr] = hsum(a);
        }
    }

    fn matvec_any(w: &[i16], stride: usize, x: &[i16], out: &mut [i32]) {
        let (rows, cols) = (out.len(), x.len());
        let px = x.as_ptr();
        let z = i32x4_splat(0);
        let mut r = 0;
        while r + 4 <= rows {
            // SAFETY: as in matvec_fixed, with cols a multiple of 8.
            unsafe {
                let p0 = w.as_ptr().add(r * stride);
                let (p1, p2, p3) = (p0.add(stride), p0.add(2 * stride), p0.add(3 * stride));
                let (mut a0, mut a1, mut a2, mut a3) = (z, z, z, z);
                let mut c = 0;
                while c + 16 <= cols {
                    let (x0, x1) = (ld(px.add(c)), ld(px.add(c + 8)));
                    a0 = i32x4_add(
                        i32x4_add(a0, i32x4_dot_i16x8(ld(p0.add(c)), x0)),
                        i32x4_dot_i16x8(ld(p0.add(c + 8)), x1),
                    );
                    a1 = i32x4_add(
                        i32x4_add(a1, i32x4_dot_i16x8(ld(p1.add(c)), x0)),
                        i32x4_dot_i16x8(ld(p1.add(c + 8)), x1),
                    );
                    a2 = i32x4_add(
                        i32x4_add(a2, i32x4_dot_i16x8(ld(p2.add(c)), x0)),
                        i32x4_dot_i16x8(ld(p2.add(c + 8)), x1),
                    );
                    a3 = i32x4_add(
                        i32x4_add(a3, i32x4_dot_i16x8(ld(p3.add(c)), x0)),
                        i32x4_dot_i16x8(ld(p3.add(c + 8)), x1),
                    );
                    c += 16;
                }
                if c < cols {
                    let x0 = ld(px.add(c));
                    a0 = i32x4_add(a0, i32x4_dot_i16x8(ld(p0.add(c)), x0));
                    a1 = i32x4_add(a1, i32x4_dot_i16x8(ld(p1.add(c)), x0));
                    a2 = i32x4_add(a2, i32x4_dot_i16x8(ld(p2.add(c)), x0));
                    a3 = i32x4_add(a3, i32x4_dot_i16x8(ld(p3.add(c)), x0));
                }
                v128_store(
                    out.as_mut_ptr().add(r) as *mut v128,
                    reduce4(a0, a1, a2, a3),
                );
            }
            r += 4;
        }
        for rr in r..rows {
            let mut a = z;
            let mut c = 0;
            while c < cols {
                // SAFETY: row rr's cols codes are inside w.
                unsafe {
                    a = i32x4_add(
                        a,
                        i32x4_dot_i16x8(ld(w.as_ptr().add(rr * stride + c)), ld(px.add(c))),
                    )
                };
                c += 8;
            }
            out[rr] = hsum(a);
        }
    }

    /// `super::matvec` for x.len() a positive multiple of 8.
    pub fn matvec(w: &[i16], stride: usize, x: &[i16], out: &mut [i32]) {
        let (rows, cols) = (out.len(), x.len());
        if rows == 0 {
            return;
        }
        assert!(cols.is_multiple_of(8) && stride >= cols && w.len() >= (rows - 1) * stride + cols);
        match cols / 8 {
            1 => matvec_fixed::<1>(w, stride, x, out),
            2 => matvec_fixed::<2>(w, stride, x, out),
            3 => matvec_fixed::<3>(w, stride, x, out),
            4 => matvec_fixed::<4>(w, stride, x, out),
            6 => matvec_fixed::<6>(w, stride, x, out),
            8 => matvec_fixed::<8>(w, stride, x, out),
            _ => matvec_any(w, stride, x, out),
        }
    }

    /// One column block of CH chunks of a panel of G groups (4·G rows) from w, against x (CH
    /// chunks): acc[g] = (or +=, unless FIRST) the sums of group g's rows (lanes = rows). Not
    /// inlined, and every address is ONE constant offset from a parameter (`w.add(k)` with k a
    /// constant once unrolled): only then does LLVM fold the offsets into the wasm loads (from a
    /// pointer that a loop advances, or through two `add`s, it computes each address with an
    /// `i32.add`, three more instructions per load).
    #[inline(never)]
    unsafe fn block<const G: usize, const CH: usize, const FIRST: bool>(
        w: *const v128,
        x: *const v128,
        acc: *mut v128,
    ) {
        let mut xs = [i32x4_splat(0); CH];
        for (c, xc) in xs.iter_mut().enumerate() {
            // SAFETY: x holds CH chunks.
            *xc = unsafe { v128_load(x.add(c)) };
        }
        for g in 0..G {
            let mut s = [i32x4_splat(0); 4];
            for (r, sr) in s.iter_mut().enumerate() {
                // SAFETY: group g's CH·4 vectors follow the previous groups' from w.
                let mut a = unsafe { i32x4_dot_i16x8(v128_load(w.add(g * CH * 4 + r)), xs[0]) };
                for (c, xc) in xs.iter().enumerate().skip(1) {
                    a = i32x4_add(a, unsafe {
                        i32x4_dot_i16x8(v128_load(w.add(g * CH * 4 + 4 * c + r)), *xc)
                    });
                }
                *sr = a;
            }
            let v = reduce4(s[0], s[1], s[2], s[3]);
            // SAFETY: acc holds G vectors.
            unsafe {
                let p = acc.add(g);
                v128_store(p, if FIRST { v } else { i32x4_add(v128_load(p), v) });
            }
        }
    }

    type BlockFn = unsafe fn(*const v128, *const v128, *mut v128);

    macro_rules! blocks {
        ($g:literal, $first:literal) => {
            [
                block::<$g, 1, $first> as BlockFn,
                block::<$g, 2, $first>,
                block::<$g, 3, $first>,
                block::<$g, 4, $first>,
                block::<$g, 5, $first>,
                block::<$g, 6, $first>,
                block::<$g, 7, $first>,
                block::<$g, 8, $first>,
            ]
        };
    }

    /// `PanelMatrix::matvec` in wasm.
    pub fn panel_matvec(m: &super::PanelMatrix, x: &[i16], out: &mut [i32], need: usize) {
        const B16: [[BlockFn; 8]; 2] = [blocks!(4, false), blocks!(4, true)];
        const B4: [[BlockFn; 8]; 2] = [blocks!(1, false), blocks!(1, true)];
        let chunks = m.cols_p / 8;
        let w = m.data.as_ptr() as *const v128;
        let xp = x.as_ptr() as *const v128;
        let mut off = 0;
        let mut r0 = 0;
        while r0 < need {
            let h = super::panel_height(r0, m.rows_p);
            assert!(out.len() >= r0 + h && m.data.len() >= (off + h / 4 * chunks * 4) * 8);
            let mut acc = [i32x4_splat(0); 4];
            let table = if h == 16 { &B16 } else { &B4 };
            let mut b = 0;
            while b < chunks {
                let cb = (chunks - b).min(8);
                // SAFETY: this block's h/4·cb·4 vectors lie inside data (asserted for the whole
                // panel above); x holds `chunks` chunks; acc holds 4 vectors ≥ h/4.
                unsafe {
                    table[usize::from(b == 0)][cb - 1](w.add(off), xp.add(b), acc.as_mut_ptr())
                };
                off += h / 4 * cb * 4;
                b += cb;
            }
            for (g, a) in acc.iter().take(h / 4).enumerate() {
                // SAFETY: out holds rows r0..r0 + h (asserted).
                unsafe { v128_store(out.as_mut_ptr().add(r0 + 4 * g) as *mut v128, *a) };
            }
            r0 += h;
        }
    }

    /// `super::groups_matvec` in wasm: four groups (16 rows) a call where the chunks allow.
    pub fn groups_matvec(w: &[i16], chunks: usize, x: &[i16], out: &mut [i32]) {
        const B16: [BlockFn; 8] = blocks!(4, true);
        const B4: [BlockFn; 8] = blocks!(1, true);
        const B4ADD: [BlockFn; 8] = blocks!(1, false);
        let groups = out.len() / 4;
        let wp = w.as_ptr() as *const v128;
        let xp = x.as_ptr() as *const v128;
        let op = out.as_mut_ptr() as *mut v128;
        let mut g = 0;
        // SAFETY (whole function): groups_matvec asserted that w holds groups·chunks·4 vectors,
        // x `chunks` chunks and out 4·groups entries; every call reads inside those.
        unsafe {
            if chunks <= 8 {
                while g + 4 <= groups {
                    B16[chunks - 1](wp.add(g * chunks * 4), xp, op.add(g));
                    g += 4;
                }
                while g < groups {
                    B4[chunks - 1](wp.add(g * chunks * 4), xp, op.add(g));
                    g += 1;
                }
            } else {
                while g < groups {
                    let mut b = 0;
                    while b < chunks {
                        let cb = (chunks - b).min(8);
                        let table = if b == 0 { &B4 } else { &B4ADD };
                        table[cb - 1](wp.add((g * chunks + b) * 4), xp.add(b), op.add(g));
                        b += cb;
                    }
                    g += 1;
                }
            }
        }
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
    fn panel_matvec_matches_i64_sums_and_rows_round_trip() {
        for (rows, cols) in [
            (1, 1),
            (4, 8),
            (5, 16),
            (16, 16),
            (44, 16),
            (16, 48),
            (37, 70),
            (20, 130),
            (64, 512),
        ] {
            let w = codes(rows * cols, 5, 23, 11);
            let p = PanelMatrix::from_dense(&w, rows, cols);
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
            let mut row = vec![0; cols];
            for r in 0..rows {
                p.row(r, &mut row);
                assert_eq!(&row[..], &w[r * cols..(r + 1) * cols]);
            }
        }
    }

    #[test]
    fn groups_matvec_matches_i64_sums() {
        for (groups, chunks) in [(1, 1), (3, 2), (4, 2), (9, 2), (5, 8), (6, 11)] {
            // Keys ≤ 2,047 and queries within SPEC §2.6's bound for 88 terms.
            let w = codes(groups * chunks * 32, 7, 4_001, 2_000);
            let x = codes(chunks * 8, 3, 20_000, 10_000);
            let mut out = vec![0; 4 * groups];
            groups_matvec(&w, chunks, &x, &mut out);
            for g in 0..groups {
                for r in 0..4 {
                    let want: i64 = (0..chunks * 8)
                        .map(|k| {
                            let (c, e) = (k / 8, k % 8);
                            i64::from(w[((g * chunks + c) * 4 + r) * 8 + e]) * i64::from(x[k])
                        })
                        .sum();
                    assert_eq!(i64::from(out[4 * g + r]), want);
                }
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
