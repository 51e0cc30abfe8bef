//! Keys and values of every layer for the positions seen so far, allocated once per generation
//! for the whole context (block_size positions), as the integer codes of SPEC §2.6: each head's
//! key and value at each position is Q(·, 2047) with its own scale.
//!
//! Layouts, per (layer, head), made for the wasm kernels of `int_math`, both in the panel layout of
//! `CodeMatrix` (`panel_matvec`): keys as a [positions, head size] matrix (four positions' scores
//! a dot product), values as a [head size, positions] matrix (four dimensions of the weighted sum
//! a dot product), whose panels are the blocks of 32 positions whose sums are exact in i32.
//! Positions are padded to a multiple of 32 and head sizes to a multiple of 8, with zeros.

use crate::int_math::{PAIR_BLOCK, PANEL_PAIRS, panel_index, panel_pairs};
use crate::quant::{KV_LIMIT, quantize};

#[derive(Debug)]
pub struct KvCache {
    k: Vec<i16>,
    k_scale: Vec<f32>,
    v: Vec<i16>,
    v_scale: Vec<f32>,
    n_head: usize,
    head_dim: usize,
    /// Head size padded to a multiple of 8.
    hdp: usize,
    /// Positions padded to a multiple of PAIR_BLOCK.
    cap_p: usize,
    capacity: usize,
    len: usize,
    /// One head's codes, before they are scattered into the layouts (only the first head_dim
    /// are ever written: the pads stay zero).
    tmp: Vec<i16>,
}

impl KvCache {
    pub fn new(n_layer: usize, capacity: usize, dim: usize, n_head: usize) -> Self {
        let (head_dim, hdp, cap_p) = KvCache::shape(capacity, dim, n_head);
        let heads = n_layer * n_head;
        KvCache {
            k: vec![0; heads * cap_p * hdp],
            k_scale: vec![0.0; heads * cap_p],
            v: vec![0; heads * cap_p * hdp],
            v_scale: vec![0.0; heads * cap_p],
            n_head,
            head_dim,
            hdp,
            cap_p,
            capacity,
            len: 0,
            tmp: vec![0; hdp],
        }
    }

    /// Whether this cache is the one [`KvCache::new`] makes for these sizes.
    pub fn has_shape(&self, n_layer: usize, capacity: usize, dim: usize, n_head: usize) -> bool {
        let (head_dim, hdp, cap_p) = KvCache::shape(capacity, dim, n_head);
        (
            self.n_head,
            self.head_dim,
            self.hdp,
            self.cap_p,
            self.capacity,
        ) == (n_head, head_dim, hdp, cap_p, capacity)
            && self.k.len() == n_layer * n_head * cap_p * hdp
    }

    /// (head_dim, head_dim padded, capacity padded) of a cache of these sizes.
    fn shape(capacity: usize, dim: usize, n_head: usize) -> (usize, usize, usize) {
        let head_dim = dim / n_head.max(1);
        (
            head_dim,
            head_dim.div_ceil(8) * 8,
            capacity.div_ceil(PAIR_BLOCK) * PAIR_BLOCK,
        )
    }

    /// Heap bytes of a cache of this shape (for the load-time heap estimate).
    pub fn bytes_for(n_layer: usize, capacity: usize, dim: usize, n_head: usize) -> u64 {
        let hd = (dim / n_head.max(1)) as u64;
        let hdp = hd.div_ceil(8) * 8;
        let cap_p = (capacity as u64).div_ceil(PAIR_BLOCK as u64) * PAIR_BLOCK as u64;
        let heads = n_layer as u64 * n_head as u64;
        heads
            .saturating_mul(cap_p)
            .saturating_mul(2 * 2 * hdp + 2 * 4)
    }

    /// Positions filled.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn bytes(&self) -> usize {
        2 * (self.k.len() + self.v.len()) + 4 * (self.k_scale.len() + self.v_scale.len())
    }

    /// Marks n more positions filled (after `write` stored them).
    pub fn advance(&mut self, n: usize) {
        self.len += n;
    }

    pub(crate) fn head_dim_padded(&self) -> usize {
        self.hdp
    }

    /// Positions of the cache padded to a multiple of `PAIR_BLOCK` (the rows of a head's keys).
    pub(crate) fn positions_padded(&self) -> usize {
        self.cap_p
    }

    fn head_index(&self, l: usize, h: usize) -> usize {
        l * self.n_head + h
    }

    /// Stores the keys and values (all heads, `dim` entries each, after RoPE for keys) of layer
    /// `l` at position `p`.
    pub fn write(&mut self, l: usize, p: usize, k: &[f32], v: &[f32]) {
        let (hd, hdp, cap_p) = (self.head_dim, self.hdp, self.cap_p);
        for h in 0..self.n_head {
            let head = self.head_index(l, h);
            let base = head * cap_p * hdp;
            // Keys: row p of the head's panel-layout matrix.
            let s = quantize(&k[h * hd..(h + 1) * hd], KV_LIMIT, &mut self.tmp);
            self.k_scale[head * cap_p + p] = s;
            // Pair by pair: a pair's two codes sit side by side, and within a panel the pairs
            // lie 8 codes apart (one vector each), so one `panel_index` a panel places them all.
            let key = &mut self.k[base..base + cap_p * hdp];
            for (c0, codes) in (0..hdp)
                .step_by(2 * PANEL_PAIRS)
                .zip(self.tmp.chunks(2 * PANEL_PAIRS))
            {
                let first = panel_index(cap_p, hdp, p, c0);
                #[cfg(target_arch = "wasm32")]
                if codes.len().is_multiple_of(8) {
                    simd::place_pairs(codes, &mut key[first..first + 4 * codes.len() - 6]);
                    continue;
                }
                for (kk, pair) in codes.chunks_exact(2).enumerate() {
                    key[first + 8 * kk..first + 8 * kk + 2].copy_from_slice(pair);
                }
            }
            // Values: column p of the head's [head size, positions] panel-layout matrix. Row j's
            // code lies (j / 4)·kp·8 + 2·(j mod 4) after row 0's, kp the pairs of p's panel.
            let s = quantize(&v[h * hd..(h + 1) * hd], KV_LIMIT, &mut self.tmp);
            self.v_scale[head * cap_p + p] = s;
            let first = base + panel_index(hdp, cap_p, 0, p);
            let kp = panel_pairs(cap_p, p);
            #[cfg(target_arch = "wasm32")]
            if hd.is_multiple_of(8) {
                let end = first + (hd / 4 - 1) * kp * 8 + 7;
                simd::place_column(&self.tmp[..hd], kp, &mut self.v[first..end]);
                continue;
            }
            for (g, codes) in self.tmp[..hd].chunks(4).enumerate() {
                let at = first + g * kp * 8;
                for (lane, code) in codes.iter().enumerate() {
                    self.v[at + 2 * lane] = *code;
                }
            }
        }
    }

    /// Head h of layer l: (key codes, key scales, value codes, value scales) for all padded
    /// positions.
    pub(crate) fn head(&self, l: usize, h: usize) -> (&[i16], &[f32], &[i16], &[f32]) {
        let head = self.head_index(l, h);
        let (codes, scales) = (
            head * self.cap_p * self.hdp..(head + 1) * self.cap_p * self.hdp,
            head * self.cap_p..(head + 1) * self.cap_p,
        );
        (
            &self.k[codes.clone()],
            &self.k_scale[scales.clone()],
            &self.v[codes],
            &self.v_scale[scales],
        )
    }
}

#[cfg(target_arch = "wasm32")]
mod simd {
    use core::arch::wasm32::*;

    /// Key codes (a multiple of 8, pairs side by side) to pairs 8 codes apart from dst[0]: eight
    /// codes a load, their four pairs stored as 32-bit lanes.
    pub fn place_pairs(codes: &[i16], dst: &mut [i16]) {
        assert!(codes.len().is_multiple_of(8) && dst.len() >= 4 * codes.len() - 6);
        let (src, out) = (codes.as_ptr(), dst.as_mut_ptr());
        for q in 0..codes.len() / 8 {
            // SAFETY: codes 8q..8q+8 lie in codes; pair 4q + l goes to dst[8·(4q + l)..][..2],
            // inside dst (asserted: the last pair ends at 4·len − 6).
            unsafe {
                let v = v128_load(src.add(8 * q) as *const v128);
                let o = out.add(32 * q);
                v128_store32_lane::<0>(v, o as *mut u32);
                v128_store32_lane::<1>(v, o.add(8) as *mut u32);
                v128_store32_lane::<2>(v, o.add(16) as *mut u32);
                v128_store32_lane::<3>(v, o.add(24) as *mut u32);
            }
        }
    }

    /// Value codes (a multiple of 8) down a column: code j to dst[(j / 4)·kp·8 + 2·(j mod 4)],
    /// eight codes a load, stored as 16-bit lanes.
    pub fn place_column(codes: &[i16], kp: usize, dst: &mut [i16]) {
        let n = codes.len();
        assert!(n.is_multiple_of(8) && dst.len() > (n / 4 - 1) * kp * 8 + 6);
        let (src, out) = (codes.as_ptr(), dst.as_mut_ptr());
        let group = kp * 8;
        for q in 0..n / 8 {
            // SAFETY: codes 8q..8q+8 lie in codes; groups 2q and 2q + 1 start at dst[2q·kp·8] and
            // one group later, their last code at + 6, inside dst (asserted for the last group).
            unsafe {
                let v = v128_load(src.add(8 * q) as *const v128);
                let a = out.add(2 * q * group);
                let b = a.add(group);
                v128_store16_lane::<0>(v, a as *mut u16);
                v128_store16_lane::<1>(v, a.add(2) as *mut u16);
                v128_store16_lane::<2>(v, a.add(4) as *mut u16);
                v128_store16_lane::<3>(v, a.add(6) as *mut u16);
                v128_store16_lane::<4>(v, b as *mut u16);
                v128_store16_lane::<5>(v, b.add(2) as *mut u16);
                v128_store16_lane::<6>(v, b.add(4) as *mut u16);
                v128_store16_lane::<7>(v, b.add(6) as *mut u16);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `write` places every code where `panel_index` says (its incremental addressing against
    /// the definition), for head sizes of one and of several panels, odd ones included.
    #[test]
    fn write_places_codes_at_their_panel_index() {
        for (dim, n_head) in [(64, 4), (96, 4), (512, 8), (80, 2), (40, 1)] {
            let (layers, capacity) = (2, 70);
            let mut c = KvCache::new(layers, capacity, dim, n_head);
            let (hd, hdp, cap_p) = (c.head_dim, c.hdp, c.cap_p);
            let vec_at = |l: usize, p: usize, salt: usize| -> Vec<f32> {
                (0..dim)
                    .map(|i| ((i * 31 + p * 7 + l * 3 + salt) % 97) as f32 - 48.0)
                    .collect()
            };
            for p in 0..capacity {
                for l in 0..layers {
                    c.write(l, p, &vec_at(l, p, 0), &vec_at(l, p, 1));
                }
            }
            let mut want = vec![0i16; hdp];
            for p in 0..capacity {
                for l in 0..layers {
                    for h in 0..n_head {
                        let (kc, ks, vc, vs) = c.head(l, h);
                        let k = vec_at(l, p, 0);
                        let s = quantize(&k[h * hd..(h + 1) * hd], KV_LIMIT, &mut want);
                        assert_eq!(ks[p], s);
                        for (j, w) in want[..hd].iter().enumerate() {
                            assert_eq!(
                                kc[panel_index(cap_p, hdp, p, j)],
                                *w,
                                "key {dim}/{n_head} p {p} j {j}"
                            );
                        }
                        let v = vec_at(l, p, 1);
                        let s = quantize(&v[h * hd..(h + 1) * hd], KV_LIMIT, &mut want);
                        assert_eq!(vs[p], s);
                        for (j, w) in want[..hd].iter().enumerate() {
                            assert_eq!(
                                vc[panel_index(hdp, cap_p, j, p)],
                                *w,
                                "value {dim}/{n_head} p {p} j {j}"
                            );
                        }
                    }
                }
            }
        }
    }
}
