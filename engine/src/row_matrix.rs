//! The embedding tables' codes as the head reads them: row-major i16 rows, so that one kernel
//! call holds a whole stretch of x (up to 512 codes, 64 vectors) in registers and streams rows
//! past it.
//!
//! Why not `int_math::CodeMatrix`'s panels: a panel keeps only 16 column pairs of x (one pair
//! splatted per register) and must add each row group's partial sums into memory once per panel,
//! 16 times per row group of a 512-wide table, and reload x's splats every call. Here a register
//! holds 8 codes of x, a row's 64 products of a 512-wide table chain on the wasm stack, and four
//! rows' lane sums are reduced and stored once: 5 wasm instructions per `i32x4.dot_i16x8_s` and
//! about 4 % on top for the reduction, the stores and x's loads (docs/BENCHMARKS.md). The sums
//! are exact integers (SPEC §2.6), so the result is the panels' to the bit.

use crate::math::dequant;

/// Vectors (8 codes each) of x a kernel call holds: 512 codes.
const MAX_CHUNK_VECTORS: usize = 64;

/// Columns are padded to a multiple of this (zeros), so that every chunk is a multiple of four
/// vectors: the kernels exist for 4, 8, …, 64 vectors.
const COL_ALIGN: usize = 32;

/// A [rows, cols] i16 matrix: rows padded to a multiple of 4, columns to a multiple of 32, both
/// with zeros. The columns are cut into chunks of at most 64 vectors (balanced, each a multiple
/// of 4 vectors); chunk j holds every row's stretch of it, one row after another.
#[derive(Debug, Clone)]
pub struct RowMatrix {
    rows: usize,
    cols: usize,
    rows_p: usize,
    cols_p: usize,
    /// (first vector, vectors) of each column chunk.
    chunks: Vec<(usize, usize)>,
    data: Vec<i16>,
}

impl RowMatrix {
    /// Row by row: `fill(r, row)` writes row r's `cols` codes (so that a caller decoding a table
    /// never holds a second full-size copy of it).
    pub fn try_from_rows<E>(
        rows: usize,
        cols: usize,
        mut fill: impl FnMut(usize, &mut [i16]) -> Result<(), E>,
    ) -> Result<Self, E> {
        let (rows_p, cols_p) = (rows.div_ceil(4) * 4, cols.div_ceil(COL_ALIGN) * COL_ALIGN);
        let units = cols_p / COL_ALIGN;
        let n = (cols_p / 8).div_ceil(MAX_CHUNK_VECTORS).max(1);
        let mut chunks = Vec::with_capacity(n);
        let mut v0 = 0;
        for j in 0..n {
            let nv = 4 * (units / n + usize::from(j < units % n));
            if nv > 0 {
                chunks.push((v0, nv));
            }
            v0 += nv;
        }
        let mut m = RowMatrix {
            rows,
            cols,
            rows_p,
            cols_p,
            chunks,
            data: vec![0i16; rows_p * cols_p],
        };
        let mut row = vec![0i16; cols];
        for r in 0..rows {
            fill(r, &mut row)?;
            for &(v0, nv) in &m.chunks {
                let (c0, c1) = (8 * v0, (8 * (v0 + nv)).min(cols));
                if c0 < c1 {
                    let at = rows_p * 8 * v0 + r * 8 * nv;
                    m.data[at..at + c1 - c0].copy_from_slice(&row[c0..c1]);
                }
            }
        }
        Ok(m)
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Rows padded to a multiple of 4: the length `matvec`'s output needs.
    pub fn rows_padded(&self) -> usize {
        self.rows_p
    }

    /// Columns padded to a multiple of 32: the length `matvec`'s input needs (zeros past cols).
    pub fn cols_padded(&self) -> usize {
        self.cols_p
    }

    /// The codes of row r (its `cols` entries), in column order.
    pub fn row(&self, r: usize) -> impl Iterator<Item = &i16> + '_ {
        self.chunks.iter().flat_map(move |&(v0, nv)| {
            let (c0, c1) = (8 * v0, (8 * (v0 + nv)).min(self.cols));
            let at = self.rows_p * 8 * v0 + r * 8 * nv;
            self.data[at..at + c1.saturating_sub(c0)].iter()
        })
    }

    /// out[r] = Σ_c W[r][c]·x[c] (wrapping) for rows 0..need rounded up to a multiple of 4;
    /// x.len() = cols_padded() (zeros past cols), out.len() = rows_padded().
    pub fn matvec(&self, x: &[i16], out: &mut [i32], need: usize) {
        assert!(x.len() == self.cols_p && need <= self.rows_p && out.len() == self.rows_p);
        let groups = need.div_ceil(4);
        self.sums_from(x, 0, &mut out[..4 * groups]);
    }

    /// The tied logits of SPEC §2.6: out[r] = (f32(Σ_c W[r][c]·x[c]) · scales[r]) · k for the
    /// first out.len() ≤ rows() rows (scales at least that long); `dots` (rows_padded() long) is
    /// scratch. A table of one column chunk (up to 512 wide) dequantizes in its kernel's store,
    /// saving a pass over the rows; the last rows short of a group of four, and wider tables,
    /// go through `dots`.
    pub fn logits(&self, x: &[i16], scales: &[f32], k: f32, dots: &mut [i32], out: &mut [f32]) {
        let rows = out.len();
        assert!(
            x.len() == self.cols_p
                && rows <= self.rows
                && scales.len() >= rows
                && dots.len() == self.rows_p
        );
        #[cfg_attr(not(target_arch = "wasm32"), allow(unused_mut))]
        let mut done = 0;
        #[cfg(target_arch = "wasm32")]
        if let [(v0, nv)] = self.chunks[..] {
            done = rows / 4 * 4;
            let w = &self.data[self.rows_p * 8 * v0..][..self.rows_p * 8 * nv];
            // SAFETY: f32 and u32 have the same size and alignment; the kernel writes f32 bits.
            let bits =
                unsafe { core::slice::from_raw_parts_mut(out.as_mut_ptr() as *mut u32, done) };
            simd::chunk(
                w,
                nv,
                &x[8 * v0..8 * (v0 + nv)],
                bits,
                simd::Mode::Dequant(scales, k),
            );
        }
        if done < rows {
            let dots = &mut dots[done..rows.div_ceil(4) * 4];
            self.sums_from(x, done, dots);
            dequant(dots, &scales[done..], k, &mut out[done..]);
        }
    }

    /// out[i] = row (first + i)'s sum, out.len() a multiple of 4 (first too).
    fn sums_from(&self, x: &[i16], first: usize, out: &mut [i32]) {
        debug_assert!(first.is_multiple_of(4));
        if self.chunks.is_empty() {
            out.fill(0);
        }
        // The first chunk stores its sums (no pass zeroing `out` first: the IC charges a
        // `memory.fill` by the byte), the others add theirs.
        for (j, &(v0, nv)) in self.chunks.iter().enumerate() {
            let w = &self.data[self.rows_p * 8 * v0 + first * 8 * nv..][..out.len() * 8 * nv];
            let xc = &x[8 * v0..8 * (v0 + nv)];
            #[cfg(target_arch = "wasm32")]
            {
                // SAFETY: i32 and u32 have the same size and alignment.
                let bits = unsafe {
                    core::slice::from_raw_parts_mut(out.as_mut_ptr() as *mut u32, out.len())
                };
                let mode = if j == 0 {
                    simd::Mode::Store
                } else {
                    simd::Mode::Add
                };
                simd::chunk(w, nv, xc, bits, mode);
            }
            #[cfg(not(target_arch = "wasm32"))]
            for (r, o) in out.iter_mut().enumerate() {
                let row = &w[r * 8 * nv..(r + 1) * 8 * nv];
                let s = row.iter().zip(xc).fold(0i32, |s, (a, b)| {
                    s.wrapping_add(i32::from(*a) * i32::from(*b))
                });
                *o = if j == 0 { s } else { o.wrapping_add(s) };
            }
        }
    }

    pub fn heap_bytes(&self) -> usize {
        2 * self.data.len() + 16 * self.chunks.len()
    }
}

#[cfg(target_arch = "wasm32")]
mod simd {
    use core::arch::wasm32::*;
    use seq_macro::seq;

    /// One row's NV products as four lanes of partial sums: a chain of `local.get w;
    /// v128.load offset=…; local.get x_k; i32x4.dot_i16x8_s; i32x4.add`. Written out for every
    /// k < 64 and cut at NV by a compile-time test (a loop of 64 steps stays rolled).
    #[inline(always)]
    unsafe fn row<const NV: usize>(w: *const v128, xs: &[v128; NV]) -> v128 {
        // SAFETY: the caller's row holds NV vectors at w.
        unsafe {
            let mut a = i32x4_dot_i16x8(v128_load(w), xs[0]);
            seq!(K in 1..64 {
                if K < NV {
                    a = i32x4_add(a, i32x4_dot_i16x8(v128_load(w.add(K)), xs[K]));
                }
            });
            a
        }
    }

    /// What a kernel does with four rows' sums.
    const ADD: u8 = 0;
    const STORE: u8 = 1;
    /// Store the logits (f32(sum_r) · scale_r) · k (SPEC §2.6's tied logits) instead of the sums.
    const DEQUANT: u8 = 2;

    /// Four rows (NV vectors each, one after another at w): each row's four lanes summed, the
    /// four sums added to out (ADD), stored (STORE: the first column chunk), or dequantized with
    /// the rows' four scales at `scales` and k and stored as f32 (DEQUANT: a one-chunk table).
    #[inline(always)]
    unsafe fn group<const NV: usize, const MODE: u8>(
        w: *const v128,
        xs: &[v128; NV],
        out: *mut v128,
        scales: *const v128,
        k: v128,
    ) {
        // SAFETY: the caller's four rows start at w; out is one vector; for DEQUANT scales too.
        unsafe {
            let a = row::<NV>(w, xs);
            let b = row::<NV>(w.add(NV), xs);
            let c = row::<NV>(w.add(2 * NV), xs);
            let d = row::<NV>(w.add(3 * NV), xs);
            // (a0+a2, b0+b2, a1+a3, b1+b3), the same for c and d, then the halves added.
            let ab = i32x4_add(
                i32x4_shuffle::<0, 4, 1, 5>(a, b),
                i32x4_shuffle::<2, 6, 3, 7>(a, b),
            );
            let cd = i32x4_add(
                i32x4_shuffle::<0, 4, 1, 5>(c, d),
                i32x4_shuffle::<2, 6, 3, 7>(c, d),
            );
            let s = i32x4_add(
                i32x4_shuffle::<0, 1, 4, 5>(ab, cd),
                i32x4_shuffle::<2, 3, 6, 7>(ab, cd),
            );
            match MODE {
                ADD => v128_store(out, i32x4_add(v128_load(out), s)),
                STORE => v128_store(out, s),
                _ => v128_store(
                    out,
                    f32x4_mul(f32x4_mul(f32x4_convert_i32x4(s), v128_load(scales)), k),
                ),
            }
        }
    }

    /// Kernels of 16, 8, 4 or 1 row groups a call: x's NV vectors loaded once into registers, the groups
    /// written out (not looped: from a pointer a loop advances, LLVM computes each load's
    /// address with an `i32.add`), so that every weight address is a constant offset from w.
    macro_rules! rows_kernel {
        ($name:ident, $($g:literal)+) => {
            #[inline(never)]
            unsafe fn $name<const NV: usize, const MODE: u8>(
                w: *const v128,
                x: *const v128,
                out: *mut v128,
                scales: *const v128,
                k: f32,
            ) {
                // SAFETY: the caller's row groups of 4·NV vectors start at w, x holds NV
                // vectors, out one vector per group (and for DEQUANT scales too).
                unsafe {
                    let mut xs = [i32x4_splat(0); NV];
                    seq!(K in 0..64 {
                        if K < NV {
                            xs[K] = v128_load(x.add(K));
                        }
                    });
                    let k = f32x4_splat(k);
                    $(group::<NV, MODE>(
                        w.add($g * 4 * NV),
                        &xs,
                        out.add($g),
                        scales.wrapping_add($g),
                        k,
                    );)+
                }
            }
        };
    }
    rows_kernel!(groups16, 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
    rows_kernel!(groups8, 0 1 2 3 4 5 6 7);
    rows_kernel!(groups4, 0 1 2 3);
    rows_kernel!(groups1, 0);

    type RowsFn = unsafe fn(*const v128, *const v128, *mut v128, *const v128, f32);

    macro_rules! by_width {
        ($f:ident, $mode:expr) => {
            [
                $f::<4, { $mode }> as RowsFn,
                $f::<8, { $mode }>,
                $f::<12, { $mode }>,
                $f::<16, { $mode }>,
                $f::<20, { $mode }>,
                $f::<24, { $mode }>,
                $f::<28, { $mode }>,
                $f::<32, { $mode }>,
                $f::<36, { $mode }>,
                $f::<40, { $mode }>,
                $f::<44, { $mode }>,
                $f::<48, { $mode }>,
                $f::<52, { $mode }>,
                $f::<56, { $mode }>,
                $f::<60, { $mode }>,
                $f::<64, { $mode }>,
            ]
        };
    }

    /// [ADD, STORE, DEQUANT][width / 4 − 1]; 8 groups a call for first chunks only (every
    /// chunk of a table up to 512 wide): x's loads then spread over 32 rows.
    const GROUPS8: [[RowsFn; 16]; 2] = [by_width!(groups8, STORE), by_width!(groups8, DEQUANT)];
    const GROUPS4: [[RowsFn; 16]; 3] = [
        by_width!(groups4, ADD),
        by_width!(groups4, STORE),
        by_width!(groups4, DEQUANT),
    ];
    const GROUPS1: [[RowsFn; 16]; 3] = [
        by_width!(groups1, ADD),
        by_width!(groups1, STORE),
        by_width!(groups1, DEQUANT),
    ];

    /// What [`chunk`] does with each row's sum.
    #[derive(Clone, Copy)]
    pub enum Mode<'a> {
        /// out[r] += sum (i32).
        Add,
        /// out[r] = sum (i32).
        Store,
        /// out[r] = (f32(sum) · scales[r]) · k, as f32 bits.
        Dequant(&'a [f32], f32),
    }

    /// For one column chunk of nv vectors (a multiple of 4, ≤ 64), w holding the chunk's rows
    /// (nv vectors each): each row's Σ_k w[r][k]·x[k] put into out as `mode` says, one 32-bit
    /// value per row (a multiple of 4 rows).
    pub fn chunk(w: &[i16], nv: usize, x: &[i16], out: &mut [u32], mode: Mode) {
        let groups = out.len() / 4;
        assert!(
            nv.is_multiple_of(4)
                && (4..=64).contains(&nv)
                && x.len() == 8 * nv
                && w.len() >= groups * 4 * 8 * nv
        );
        let (m, scales, k) = match mode {
            Mode::Add => (ADD, core::ptr::null(), 0.0),
            Mode::Store => (STORE, core::ptr::null(), 0.0),
            Mode::Dequant(scales, k) => {
                assert!(scales.len() >= out.len());
                (DEQUANT, scales.as_ptr() as *const v128, k)
            }
        };
        let mi = usize::from(m);
        let (f4, f1) = (GROUPS4[mi][nv / 4 - 1], GROUPS1[mi][nv / 4 - 1]);
        let (wp, xp) = (w.as_ptr() as *const v128, x.as_ptr() as *const v128);
        let op = out.as_mut_ptr() as *mut v128;
        let mut g = 0;
        // SAFETY (every call below): groups g..g+size of 4·nv vectors lie in w (asserted), x
        // holds nv vectors, out (and for DEQUANT scales) holds groups g..g+size.
        if m != ADD && nv == 64 {
            // 512-wide tables (the GPT-2-vocabulary models' 50,257 rows): 64 rows a call.
            while g + 16 <= groups {
                unsafe {
                    if m == STORE {
                        groups16::<64, STORE>(wp.add(g * 4 * nv), xp, op.add(g), scales, k)
                    } else {
                        groups16::<64, DEQUANT>(wp.add(g * 4 * nv), xp, op.add(g), scales.add(g), k)
                    }
                };
                g += 16;
            }
        }
        if m != ADD {
            let f8 = GROUPS8[mi - 1][nv / 4 - 1];
            while g + 8 <= groups {
                unsafe { f8(wp.add(g * 4 * nv), xp, op.add(g), scales.wrapping_add(g), k) };
                g += 8;
            }
        }
        while g + 4 <= groups {
            unsafe { f4(wp.add(g * 4 * nv), xp, op.add(g), scales.wrapping_add(g), k) };
            g += 4;
        }
        while g < groups {
            unsafe { f1(wp.add(g * 4 * nv), xp, op.add(g), scales.wrapping_add(g), k) };
            g += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matvec_matches_i64_sums_and_rows_round_trip() {
        for (rows, cols) in [
            (1, 1),
            (4, 8),
            (5, 33),
            (17, 288),
            (44, 512),
            (9, 520),
            (3, 768),
            (21, 1000),
        ] {
            let w: Vec<i16> = (0..rows * cols)
                .map(|i| ((i * 5 % 255) as i32 - 127) as i16)
                .collect();
            let m = RowMatrix::try_from_rows(rows, cols, |r, dst| {
                dst.copy_from_slice(&w[r * cols..(r + 1) * cols]);
                Ok::<(), ()>(())
            })
            .unwrap();
            assert!(m.chunks.iter().all(|&(_, nv)| nv % 4 == 0 && nv <= 64));
            assert_eq!(m.chunks.iter().map(|c| c.1).sum::<usize>(), m.cols_p / 8);
            let mut x: Vec<i16> = (0..cols)
                .map(|i| ((i * 3 % 65_000) as i32 - 32_000) as i16)
                .collect();
            x.resize(m.cols_padded(), 0);
            for need in [rows, 1] {
                let mut out = vec![7; m.rows_padded()];
                m.matvec(&x, &mut out, need);
                for r in 0..need {
                    let want: i64 = (0..cols)
                        .map(|c| i64::from(w[r * cols + c]) * i64::from(x[c]))
                        .sum();
                    assert_eq!(i64::from(out[r]), want, "{rows}x{cols} row {r}");
                }
            }
            // The tied logits: every row, and fewer rows (the hash table's s2), with the last
            // group of four short.
            let scales: Vec<f32> = (0..rows).map(|r| 0.5 + r as f32 / 7.0).collect();
            let k = 0.37f32;
            for n in [rows, rows.div_ceil(2)] {
                let mut dots = vec![7; m.rows_padded()];
                let mut out = vec![f32::NAN; n];
                m.logits(&x, &scales, k, &mut dots, &mut out);
                for r in 0..n {
                    let dot: i64 = (0..cols)
                        .map(|c| i64::from(w[r * cols + c]) * i64::from(x[c]))
                        .sum();
                    let want = (dot as i32 as f32 * scales[r]) * k;
                    assert_eq!(out[r].to_bits(), want.to_bits(), "{rows}x{cols} logit {r}");
                }
            }
            for r in 0..rows {
                assert!(
                    m.row(r).eq(&w[r * cols..(r + 1) * cols]),
                    "{rows}x{cols} row {r}"
                );
            }
        }
    }
}
