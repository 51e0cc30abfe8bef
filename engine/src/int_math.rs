//! Integer kernels of SPEC §2.6: dot products of i16 codes into i32 sums (matrices in a panel
//! layout), and the unnormalized Walsh–Hadamard transform over
//! i32 parts.
//!
//! Integer sums are exact (SPEC §2.6 bounds every sum below 2^31), so their order cannot change a
//! bit: the wasm32 versions (`simd`, `i32x4.dot_i16x8_s`: eight multiply-adds per instruction)
//! and the portable loops agree by construction, and wrapping arithmetic on both makes even an
//! out-of-bound sum the same on both.

/// Where entry (r, c) of a [rows_p, cols_p] matrix (rows_p a multiple of 4, cols_p of 4) lives
/// in the panel layout of [`CodeMatrix`].
#[inline]
pub fn panel_index(rows_p: usize, cols_p: usize, r: usize, c: usize) -> usize {
    let panel = c / (2 * PANEL_PAIRS);
    let kp = panel_pairs(cols_p, c);
    let base = panel * rows_p * 2 * PANEL_PAIRS;
    let k = (c % (2 * PANEL_PAIRS)) / 2;
    base + ((r / 4) * kp + k) * 8 + 2 * (r % 4) + c % 2
}

/// Column pairs of the panel that holds column c of a matrix of cols_p columns (16, or fewer in
/// the last panel): a row group's vectors of that panel lie this many vectors apart.
#[inline]
pub fn panel_pairs(cols_p: usize, c: usize) -> usize {
    (cols_p / 2 - c / (2 * PANEL_PAIRS) * PANEL_PAIRS).min(PANEL_PAIRS)
}

/// out[r] = Σ_c W[r][c]·x[c] (wrapping) for r < out.len() (a multiple of 4, ≤ rows_p), W a
/// [rows_p, cols_p] matrix in the panel layout of [`CodeMatrix`], x its cols_p codes.
pub fn panel_matvec(w: &[i16], rows_p: usize, cols_p: usize, x: &[i16], out: &mut [i32]) {
    let groups = out.len() / 4;
    assert!(
        w.len() == rows_p * cols_p
            && x.len() == cols_p
            && rows_p.is_multiple_of(4)
            && cols_p.is_multiple_of(4)
            && out.len().is_multiple_of(4)
            && groups * 4 <= rows_p
    );
    #[cfg(target_arch = "wasm32")]
    {
        simd::panel_matvec(w, rows_p, cols_p, x, out);
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        out.fill(0);
        let mut base = 0;
        for p in 0..cols_p.div_ceil(2 * PANEL_PAIRS) {
            let kp = (cols_p / 2 - p * PANEL_PAIRS).min(PANEL_PAIRS);
            for g in 0..groups {
                for k in 0..kp {
                    let v = &w[base + (g * kp + k) * 8..][..8];
                    let c = 2 * (p * PANEL_PAIRS + k);
                    for l in 0..4 {
                        let s = (i32::from(v[2 * l]) * i32::from(x[c]))
                            .wrapping_add(i32::from(v[2 * l + 1]) * i32::from(x[c + 1]));
                        out[4 * g + l] = out[4 * g + l].wrapping_add(s);
                    }
                }
            }
            base += rows_p * 2 * kp;
        }
    }
}

/// A block-diagonal product: out[b·rows_p + r] = Σ_c W_b[r][c]·x[b·cols_p + c] (wrapping) for
/// `blocks` [rows_p, cols_p] blocks one after another in `w`, each in the panel layout of
/// [`CodeMatrix`] (rows_p a multiple of 4, cols_p of 4). In wasm one call does every block, a
/// kernel call a block or tile.
pub fn block_products(
    w: &[i16],
    blocks: usize,
    rows_p: usize,
    cols_p: usize,
    x: &[i16],
    out: &mut [i32],
) {
    assert!(
        w.len() == blocks * rows_p * cols_p
            && x.len() == blocks * cols_p
            && out.len() == blocks * rows_p
    );
    #[cfg(target_arch = "wasm32")]
    simd::tiles(w, blocks, rows_p, cols_p, x, out, rows_p / 4);
    #[cfg(not(target_arch = "wasm32"))]
    if rows_p > 0 && cols_p > 0 {
        for ((wb, xb), ob) in w
            .chunks_exact(rows_p * cols_p)
            .zip(x.chunks_exact(cols_p))
            .zip(out.chunks_exact_mut(rows_p))
        {
            panel_matvec(wb, rows_p, cols_p, xb, ob);
        }
    } else {
        out.fill(0);
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

/// Column pairs per panel of a [`CodeMatrix`]: a kernel call (a tile) keeps up to one and a half
/// panels of x's codes in registers (≤ 24 splatted pairs) for up to 12 row groups.
pub const PANEL_PAIRS: usize = 16;

/// A block-diagonal i16 matrix as the kernels read it: `blocks` blocks of [rows, cols] (one block:
/// a plain matrix), block b multiplying the codes x[b·cols_p..(b+1)·cols_p]. Rows are padded to a
/// multiple of 4 and columns to a multiple of 4 (an even number of column pairs), with zeros.
///
/// Layout (made for `i32x4.dot_i16x8_s`, whose lanes each add two products): within a block,
/// columns are cut into panels of [`PANEL_PAIRS`] pairs; a panel holds its row groups (four rows)
/// one after another, and a row group one vector per column pair k: the four rows' two codes of
/// that pair, [r0 c, r0 c+1, r1 c, r1 c+1, …, r3 c+1]. Against x's pair k splatted to all lanes,
/// one dot product adds two columns to four rows at once, so the sums come out with the rows in
/// the lanes — no horizontal reduction — and a kernel call (`simd::tile`) runs up to 12 row
/// groups with every weight address a constant offset from its pointer arguments.
#[derive(Debug, Clone)]
pub struct CodeMatrix {
    blocks: usize,
    rows: usize,
    cols: usize,
    rows_p: usize,
    cols_p: usize,
    data: Vec<i16>,
    /// The kernel calls of `matvec_blocks` for blocks of several tiles, made with the matrix.
    #[cfg(target_arch = "wasm32")]
    plan: Option<simd::TilePlan>,
}

impl CodeMatrix {
    /// From a row-major [rows, cols] matrix.
    pub fn from_dense(w: &[i16], rows: usize, cols: usize) -> Self {
        Self::from_blocks(w, 1, rows, cols)
    }

    /// From `blocks` row-major [rows, cols] blocks, one after another.
    pub fn from_blocks(w: &[i16], blocks: usize, rows: usize, cols: usize) -> Self {
        let (rows_p, cols_p) = (rows.div_ceil(4) * 4, cols.div_ceil(4) * 4);
        let mut m = CodeMatrix {
            blocks,
            rows,
            cols,
            rows_p,
            cols_p,
            data: vec![0i16; blocks * rows_p * cols_p],
            #[cfg(target_arch = "wasm32")]
            plan: simd::plan(blocks, rows_p, cols_p),
        };
        if cols > 0 {
            for (i, row) in w.chunks_exact(cols).take(blocks * rows).enumerate() {
                m.set_row(i / rows, i % rows, row);
            }
        }
        m
    }

    /// Writes row r of block b (its `cols` codes) into the panel layout: pair by pair, each
    /// pair's two codes side by side, a row group's vectors 8 codes apart.
    fn set_row(&mut self, b: usize, r: usize, row: &[i16]) {
        let (g, lane) = (r / 4, r % 4);
        let mut base = b * self.rows_p * self.cols_p;
        for (p, panel) in row.chunks(2 * PANEL_PAIRS).enumerate() {
            let kp = (self.cols_p / 2 - p * PANEL_PAIRS).min(PANEL_PAIRS);
            let start = base + g * kp * 8 + 2 * lane;
            for (k, pair) in panel.chunks(2).enumerate() {
                let i = start + k * 8;
                self.data[i..i + pair.len()].copy_from_slice(pair);
            }
            base += self.rows_p * 2 * kp;
        }
    }

    /// Where entry (r, c) of block b lives in `data`.
    #[inline]
    fn index(&self, b: usize, r: usize, c: usize) -> usize {
        b * self.rows_p * self.cols_p + panel_index(self.rows_p, self.cols_p, r, c)
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Rows of a block padded to a multiple of 4: the length `matvec`'s output needs.
    pub fn rows_padded(&self) -> usize {
        self.rows_p
    }

    /// Columns of a block padded to a multiple of 4: the length `matvec`'s input needs (zeros
    /// past `cols`).
    pub fn cols_padded(&self) -> usize {
        self.cols_p
    }

    /// The codes of row `row` of the first block (its first `cols` entries), in column order.
    pub fn row(&self, row: usize) -> impl Iterator<Item = &i16> + '_ {
        (0..self.cols).map(move |c| &self.data[self.index(0, row, c)])
    }

    /// out[r] = Σ_c W[r][c]·x[c] (wrapping) for rows 0..need rounded up to a multiple of 4, of a
    /// one-block matrix; x.len() = cols_padded() (zeros past cols), out.len() = rows_padded().
    pub fn matvec(&self, x: &[i16], out: &mut [i32], need: usize) {
        assert!(
            self.blocks == 1
                && x.len() == self.cols_p
                && need <= self.rows_p
                && out.len() == self.rows_p
        );
        self.block_matvec(0, x, &mut out[..need.div_ceil(4) * 4]);
    }

    /// Every block: out[b·rows_p + r] = Σ_c W_b[r][c]·x[b·cols_p + c] (wrapping); x.len() =
    /// blocks·cols_padded(), out.len() = blocks·rows_padded().
    pub fn matvec_blocks(&self, x: &[i16], out: &mut [i32]) {
        #[cfg(target_arch = "wasm32")]
        if let Some(plan) = &self.plan {
            plan.run(&self.data, x, out);
            return;
        }
        block_products(&self.data, self.blocks, self.rows_p, self.cols_p, x, out);
    }

    /// Block b's rows 0..out.len() (a multiple of 4) against x (cols_p codes).
    fn block_matvec(&self, b: usize, x: &[i16], out: &mut [i32]) {
        let size = self.rows_p * self.cols_p;
        panel_matvec(
            &self.data[b * size..(b + 1) * size],
            self.rows_p,
            self.cols_p,
            x,
            out,
        );
    }

    pub fn heap_bytes(&self) -> usize {
        2 * self.data.len()
    }
}

/// Positions per block of attention's weighted sum of values (one panel of the values' matrix):
/// 32 products of codes ≤ 2,047 and ≤ 32,767 stay below 2^31 (SPEC §2.6), so each block's sums
/// are exact in i32.
pub const PAIR_BLOCK: usize = 32;

#[cfg(target_arch = "wasm32")]
pub(crate) mod simd {
    use core::arch::wasm32::*;
    use seq_macro::seq;

    /// out = (or += unless FIRST) v.
    #[inline(always)]
    unsafe fn put<const FIRST: bool>(out: *mut v128, v: v128) {
        // SAFETY: the caller's out is one vector.
        unsafe {
            v128_store(
                out,
                if FIRST {
                    v
                } else {
                    i32x4_add(v128_load(out), v)
                },
            )
        }
    }

    /// `super::panel_matvec` (its sizes asserted there): the first out.len() / 4 row groups of
    /// one block, in tiles.
    pub fn panel_matvec(block: &[i16], rows_p: usize, cols_p: usize, x: &[i16], out: &mut [i32]) {
        tiles(block, 1, rows_p, cols_p, x, out, out.len() / 4);
    }

    /// A tile of a block: G row groups (≤ 12) and P column pairs (≤ 24) in one call, x's P pairs
    /// splatted once, each row group's sum kept in a register and stored (FIRST) or added to out
    /// once. Its pairs are the first min(P, 16) of a panel, whose group N starts at w0 + N·kp0,
    /// then the P − 16 of the next (last) panel, group N at w1 + N·kp1 — [`super::CodeMatrix`]'s
    /// layout. The groups and pairs are written out for every g < 12 and k < 24 and cut at G and
    /// P by compile-time tests, so every weight address is a constant offset from w0 or w1.
    // seq! writes the first group and pair as literal 0s (`0 * kp0`, `+ 0`).
    #[allow(clippy::erasing_op, clippy::identity_op)]
    #[inline(never)]
    unsafe fn tile<const G: usize, const P: usize, const FIRST: bool>(
        w0: *const v128,
        w1: *const v128,
        x: *const u32,
        out: *mut v128,
    ) {
        const { assert!(G <= 12 && P <= 24 && P > 0 && P.is_multiple_of(2) && (FIRST || P <= 16)) };
        // SAFETY: the caller's tile holds G groups of kp0 vectors at w0 and of kp1 at w1, x P
        // pairs, out G vectors.
        unsafe {
            let mut xs = [i32x4_splat(0); P];
            seq!(K in 0..24 {
                if K < P {
                    xs[K] = v128_load32_splat(x.add(K));
                }
            });
            let kp0 = if P < 16 { P } else { 16 };
            let kp1 = P - kp0;
            seq!(N in 0..12 {
                if N < G {
                    let mut a = i32x4_dot_i16x8(v128_load(w0.add(N * kp0)), xs[0]);
                    seq!(K in 1..16 {
                        if K < kp0 {
                            a = i32x4_add(a, i32x4_dot_i16x8(v128_load(w0.add(N * kp0 + K)), xs[K]));
                        }
                    });
                    seq!(K in 0..8 {
                        if K < kp1 {
                            let v = v128_load(w1.add(N * kp1 + K));
                            a = i32x4_add(a, i32x4_dot_i16x8(v, xs[16 + K]));
                        }
                    });
                    put::<FIRST>(out.add(N), a);
                }
            });
        }
    }

    type TileFn = unsafe fn(*const v128, *const v128, *const u32, *mut v128);

    macro_rules! by_pairs {
        ($g:literal, true) => {
            [
                tile::<$g, 2, true> as TileFn,
                tile::<$g, 4, true>,
                tile::<$g, 6, true>,
                tile::<$g, 8, true>,
                tile::<$g, 10, true>,
                tile::<$g, 12, true>,
                tile::<$g, 14, true>,
                tile::<$g, 16, true>,
                tile::<$g, 18, true>,
                tile::<$g, 20, true>,
                tile::<$g, 22, true>,
                tile::<$g, 24, true>,
            ]
        };
        ($g:literal, false) => {
            [
                tile::<$g, 2, false> as TileFn,
                tile::<$g, 4, false>,
                tile::<$g, 6, false>,
                tile::<$g, 8, false>,
                tile::<$g, 10, false>,
                tile::<$g, 12, false>,
                tile::<$g, 14, false>,
                tile::<$g, 16, false>,
            ]
        };
    }

    macro_rules! by_groups {
        ($first:tt) => {
            [
                by_pairs!(1, $first),
                by_pairs!(2, $first),
                by_pairs!(3, $first),
                by_pairs!(4, $first),
                by_pairs!(5, $first),
                by_pairs!(6, $first),
                by_pairs!(7, $first),
                by_pairs!(8, $first),
                by_pairs!(9, $first),
                by_pairs!(10, $first),
                by_pairs!(11, $first),
                by_pairs!(12, $first),
            ]
        };
    }

    /// Storing tiles: [row groups − 1][pairs / 2 − 1].
    const TILES: [[TileFn; 12]; 12] = by_groups!(true);
    /// Adding tiles (a wide block's panels after its first): [row groups − 1][pairs / 2 − 1].
    const ADD_TILES: [[TileFn; 8]; 12] = by_groups!(false);

    /// Row groups 0..need of each of `blocks` blocks (out: `rows_p / 4` vectors a block, the
    /// first `need` of each written), in tiles of at most 12 row groups: a block of at most 24
    /// column pairs one tile a row chunk (both its panels), a wider one a tile a panel (16 pairs,
    /// the last fewer), the first storing and the rest adding. The hadamard linears' 32 small
    /// blocks are one tile each; the octonion product's combined blocks and attention's keys a
    /// few.
    pub fn tiles(
        data: &[i16],
        blocks: usize,
        rows_p: usize,
        cols_p: usize,
        x: &[i16],
        out: &mut [i32],
        need: usize,
    ) {
        let (groups, pairs) = (rows_p / 4, cols_p / 2);
        assert!(
            data.len() == blocks * rows_p * cols_p
                && x.len() == blocks * cols_p
                && need <= groups
                && out.len() >= blocks.saturating_sub(1) * rows_p + 4 * need
                && rows_p.is_multiple_of(4)
                && cols_p.is_multiple_of(4)
        );
        if need == 0 {
            return;
        }
        if pairs == 0 {
            out.fill(0);
            return;
        }
        let (wp, xp) = (data.as_ptr() as *const v128, x.as_ptr() as *const u32);
        let op = out.as_mut_ptr() as *mut v128;
        for_each_tile(blocks, groups, pairs, need, |f, w0, w1, x, o| {
            // SAFETY: `for_each_tile`'s calls stay inside the asserted lengths (w1 is only read
            // when the tile has more than 16 pairs, then inside the block).
            unsafe { f(wp.add(w0), wp.wrapping_add(w1), xp.add(x), op.add(o)) }
        });
    }

    /// The kernel calls of [`tiles`] for the whole of each block, made once (a [`TilePlan`]),
    /// for blocks of more than one tile; None for blocks of one (up to 12 row groups and 24
    /// pairs: [`tiles`] runs those with one kernel for all blocks, fewer instructions a call than
    /// reading a plan's).
    pub fn plan(blocks: usize, rows_p: usize, cols_p: usize) -> Option<TilePlan> {
        let (groups, pairs) = (rows_p / 4, cols_p / 2);
        if groups <= 12 && pairs <= 24 {
            return None;
        }
        let mut calls = Vec::new();
        for_each_tile(blocks, groups, pairs, groups, |f, w0, w1, x, out| {
            calls.push(TileCall { f, w0, w1, x, out })
        });
        Some(TilePlan {
            calls,
            lens: (blocks * rows_p * cols_p, blocks * cols_p, blocks * rows_p),
        })
    }

    /// One kernel call of a block-diagonal product: the kernel and its arguments as offsets (w0
    /// and w1 in vectors from the matrix's codes, x in pairs, out in vectors).
    #[derive(Clone, Copy, Debug)]
    pub struct TileCall {
        f: TileFn,
        w0: usize,
        w1: usize,
        x: usize,
        out: usize,
    }

    /// Every kernel call of a block-diagonal product of one shape, in [`tiles`]' order, made when
    /// the matrix is: running it costs a call a tile, where [`tiles`] also works out each tile
    /// (its size, the kernel, the offsets) at every product.
    #[derive(Clone, Debug)]
    pub struct TilePlan {
        calls: Vec<TileCall>,
        /// The lengths of the codes, x and out the calls were made for.
        lens: (usize, usize, usize),
    }

    impl TilePlan {
        /// out = the block-diagonal product of `data` (the matrix the plan was made for) and x.
        pub fn run(&self, data: &[i16], x: &[i16], out: &mut [i32]) {
            assert!(self.lens == (data.len(), x.len(), out.len()));
            let (wp, xp) = (data.as_ptr() as *const v128, x.as_ptr() as *const u32);
            let op = out.as_mut_ptr() as *mut v128;
            for c in &self.calls {
                // SAFETY: the calls were made for these lengths (asserted), as in `tiles`.
                unsafe {
                    (c.f)(
                        wp.add(c.w0),
                        wp.wrapping_add(c.w1),
                        xp.add(c.x),
                        op.add(c.out),
                    )
                }
            }
        }
    }

    /// Calls `visit(kernel, w0, w1, x, out)` (offsets as in [`TileCall`]) for each tile of
    /// [`tiles`]: `blocks` blocks of `groups` row groups and `pairs` column pairs (both > 0), row
    /// groups 0..need (> 0) of each.
    #[inline(always)]
    fn for_each_tile(
        blocks: usize,
        groups: usize,
        pairs: usize,
        need: usize,
        mut visit: impl FnMut(TileFn, usize, usize, usize, usize),
    ) {
        if need <= 12 && pairs <= 24 {
            // One tile a block (the hadamard linears' blocks, attention's blocks of values): the
            // kernel picked once.
            let f = TILES[need - 1][pairs / 2 - 1];
            let kp0 = pairs.min(16);
            for b in 0..blocks {
                let wb = b * groups * pairs;
                visit(f, wb, wb + groups * kp0, b * pairs, b * groups);
            }
            return;
        }
        for b in 0..blocks {
            // Block b holds groups·pairs vectors from wb, panels of 16 pairs, each panel its
            // groups one after another (kp vectors each); x pairs pairs from xb, out need ≤
            // groups vectors from ob. Row chunks g0..g0+g ⊆ 0..need.
            let (wb, xb, ob) = (b * groups * pairs, b * pairs, b * groups);
            let mut g0 = 0;
            while g0 < need {
                let g = (need - g0).min(12);
                if pairs <= 24 {
                    let kp0 = pairs.min(16);
                    let kp1 = pairs - kp0;
                    let f = TILES[g - 1][pairs / 2 - 1];
                    visit(f, wb + g0 * kp0, wb + groups * 16 + g0 * kp1, xb, ob + g0);
                } else {
                    let mut p0 = 0;
                    while p0 < pairs {
                        let kp = (pairs - p0).min(16);
                        // Panels before p0 are full: groups·p0 vectors.
                        let w = wb + groups * p0 + g0 * kp;
                        let f = if p0 == 0 {
                            TILES[g - 1][kp / 2 - 1]
                        } else {
                            ADD_TILES[g - 1][kp / 2 - 1]
                        };
                        visit(f, w, w, xb + p0, ob + g0);
                        p0 += kp;
                    }
                }
                g0 += g;
            }
        }
    }

    /// `super::fht` for a part width that is a multiple of 4.
    pub fn fht(x: &mut [i32], parts: usize) {
        let width = x.len() / parts;
        assert!(width.is_multiple_of(4) && width * parts == x.len());
        // SAFETY: x holds parts·width i32, width a multiple of 4 (asserted).
        unsafe {
            butterflies(
                x.as_mut_ptr() as *mut v128,
                width / 4,
                parts,
                i32x4_add,
                i32x4_sub,
            )
        };
    }

    /// The butterflies of an unnormalized Walsh–Hadamard transform across `parts` equal parts of
    /// `width` vectors of four 32-bit lanes at x, in `walsh_spec::hadamard::fht_parts`'s order
    /// (stages h = 1, 2, 4, …; within one, blocks and positions ascending): (a, b) ← (add(a, b),
    /// sub(a, b)). The i32 transform here and the f32 one of `math` (whose order fixes its bits)
    /// are this loop with their lane operations.
    ///
    /// # Safety
    /// x must hold parts·width vectors.
    #[inline(always)]
    pub(crate) unsafe fn butterflies(
        x: *mut v128,
        width: usize,
        parts: usize,
        add: fn(v128, v128) -> v128,
        sub: fn(v128, v128) -> v128,
    ) {
        let mut h = 1;
        while h < parts {
            let mut block = 0;
            while block < parts {
                for j in block..block + h {
                    for c in 0..width {
                        // SAFETY: (j + h)·width + c < parts·width, which the caller holds.
                        unsafe {
                            let pa = x.add(j * width + c);
                            let pb = x.add((j + h) * width + c);
                            let (a, b) = (v128_load(pa), v128_load(pb));
                            v128_store(pa, add(a, b));
                            v128_store(pb, sub(a, b));
                        }
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
                assert!(p.row(r).eq(&w[r * cols..(r + 1) * cols]));
            }
        }
    }

    #[test]
    fn block_diagonal_matvec_matches_i64_sums() {
        for (blocks, rows, cols) in [
            (1, 4, 8),
            (32, 16, 16),
            (32, 43, 16),
            (32, 16, 43),
            (3, 5, 70),
        ] {
            let w = codes(blocks * rows * cols, 7, 3, 1);
            let p = CodeMatrix::from_blocks(&w, blocks, rows, cols);
            let (rp, cp) = (p.rows_padded(), p.cols_padded());
            let mut x = vec![0i16; blocks * cp];
            for b in 0..blocks {
                for c in 0..cols {
                    x[b * cp + c] = ((b * 131 + c * 17) % 65_535) as i16;
                }
            }
            let mut out = vec![7; blocks * rp];
            p.matvec_blocks(&x, &mut out);
            for b in 0..blocks {
                for r in 0..rp {
                    let want: i64 = if r < rows {
                        (0..cols)
                            .map(|c| {
                                i64::from(w[(b * rows + r) * cols + c]) * i64::from(x[b * cp + c])
                            })
                            .sum()
                    } else {
                        0
                    };
                    assert_eq!(
                        i64::from(out[b * rp + r]),
                        want,
                        "{blocks}x{rows}x{cols} {b} {r}"
                    );
                }
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
