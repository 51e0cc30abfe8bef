//! Head mixing of SPEC §2.3 as §2.6 computes it: each group of A head outputs (A·hd values) is
//! one AlgebraLinear with full-precision weights W_h [A, hd, hd]; the weights are held as Q(row,
//! 2047) per row with the row's scale, the group's input (after the FHT for hadamard) as
//! Q(·, L_m), L_m = min(32767, ⌊(2^31 − 1)/(2047·hd)⌋), one scale per group; every block product
//! is an exact integer dot product, scaled back to f32 by its rows' scales, and the blocks are
//! combined in f32 (octonion: signs, j increasing; hadamard: the f32 FHT).

use crate::int_math::CodeMatrix;
use crate::math::{add_assign, dequant, scratch, sub_assign};
use crate::part_fht;
use crate::quant::{KV_LIMIT, act_limit, encode, quantize, scales};
use walsh_spec::config::Algebra;
use walsh_spec::octonion::SIGNS;

#[derive(Debug, Clone)]
pub struct HeadMixing {
    algebra: Algebra,
    hd: usize,
    /// Head size padded to a multiple of 8 (the parts' stride in the codes).
    hdp: usize,
    weights: Weights,
    /// Scale of each row of each block, [A, hd].
    row_scales: Vec<f32>,
    beta: Vec<f32>,
    /// Ones, α of `part_fht::input` (head mixing has none).
    ones: Vec<f32>,
}

/// The blocks' codes in the kernels' layout, as each algebra combines them.
#[derive(Debug, Clone)]
enum Weights {
    /// The one [hd, hd] block.
    Dense(CodeMatrix),
    /// W_0..W_7, their products combined in f32 with the octonion signs.
    Octonion(Vec<CodeMatrix>),
    /// The 32 blocks as one block-diagonal matrix (one kernel call a group), between FHTs.
    Hadamard(CodeMatrix),
}

/// Buffers of [`HeadMixing::forward`].
#[derive(Debug, Default)]
pub struct MixScratch {
    u: Vec<f32>,
    codes: Vec<i16>,
    t: Vec<i32>,
    v: Vec<f32>,
    z: Vec<f32>,
}

impl HeadMixing {
    /// From `mix.weight` [A, hd, hd] and `mix.beta` [hd].
    pub fn new(algebra: Algebra, hd: usize, weight: &[f32], beta: Vec<f32>) -> Self {
        let a = algebra.dim();
        let mut row_scales = Vec::with_capacity(a * hd);
        let mut codes = vec![0i16; hd];
        let mut all = Vec::with_capacity(a * hd * hd);
        for row in weight[..a * hd * hd].chunks_exact(hd) {
            row_scales.push(quantize(row, KV_LIMIT, &mut codes));
            all.extend_from_slice(&codes);
        }
        let weights = match algebra {
            Algebra::Hadamard => Weights::Hadamard(CodeMatrix::from_blocks(&all, a, hd, hd)),
            Algebra::Dense => Weights::Dense(CodeMatrix::from_dense(&all, hd, hd)),
            Algebra::Octonion => Weights::Octonion(
                all.chunks_exact(hd * hd)
                    .map(|b| CodeMatrix::from_dense(b, hd, hd))
                    .collect(),
            ),
        };
        HeadMixing {
            algebra,
            hd,
            // `CodeMatrix`'s padded columns.
            hdp: hd.div_ceil(4) * 4,
            weights,
            row_scales,
            beta,
            ones: vec![1.0; a * hd],
        }
    }

    /// The product of block b (number k) and input part j, scaled by block k's row scales, into
    /// s.v (hd).
    fn product(&self, b: &CodeMatrix, k: usize, j: usize, s: &mut MixScratch) {
        let (hd, hdp) = (self.hd, self.hdp);
        s.t.resize(b.rows_padded(), 0);
        b.matvec(&s.codes[j * hdp..(j + 1) * hdp], &mut s.t, hd);
        s.v.resize(hd, 0.0);
        dequant(&s.t, &self.row_scales[k * hd..(k + 1) * hd], 1.0, &mut s.v);
    }

    /// The mixed outputs of one position's heads: x and y hold n_head·hd values (groups of A).
    pub fn forward(&self, x: &[f32], y: &mut [f32], s: &mut MixScratch) {
        match &self.weights {
            Weights::Hadamard(w) => self.forward_hadamard(w, x, y, s),
            Weights::Dense(w) => self.forward_blocks(x, y, s, |m, s| {
                m.product(w, 0, 0, s);
                s.z.copy_from_slice(&s.v);
            }),
            Weights::Octonion(blocks) => self.forward_blocks(x, y, s, |m, s| {
                let hd = m.hd;
                for (i, signs) in SIGNS.iter().enumerate() {
                    for (j, &sign) in signs.iter().enumerate() {
                        m.product(&blocks[i ^ j], i ^ j, j, s);
                        let zi = &mut s.z[i * hd..(i + 1) * hd];
                        // z_i + (−v) as SPEC §2.6 writes it: a subtraction is the same bits.
                        if sign > 0 {
                            add_assign(zi, &s.v);
                        } else {
                            sub_assign(zi, &s.v);
                        }
                    }
                }
            }),
        }
    }

    /// Hadamard: û = FHT(x) (×1: exact) and its codes, the 32 block products in one call, then
    /// the scaled products' f32 FHT, s and β fused (part_fht).
    fn forward_hadamard(&self, w: &CodeMatrix, x: &[f32], y: &mut [f32], s: &mut MixScratch) {
        let (a, hd, hdp) = (self.algebra.dim(), self.hd, self.hdp);
        let np = w.rows_padded();
        for (xg, yg) in x.chunks_exact(a * hd).zip(y.chunks_exact_mut(a * hd)) {
            let m = part_fht::input(xg, &self.ones, hd, hdp, scratch(&mut s.u, a * hdp));
            s.codes.resize(a * hdp, 0);
            let l = act_limit(hd, KV_LIMIT);
            let scale = match scales(m, l) {
                Some((inv, scale)) => {
                    encode(&s.u[..a * hdp], inv, l, &mut s.codes);
                    scale
                }
                None => {
                    s.codes.fill(0);
                    0.0
                }
            };
            s.t.resize(a * np, 0);
            w.matvec_blocks(&s.codes, &mut s.t);
            part_fht::mix_output(
                &s.t,
                np,
                hd,
                &self.row_scales,
                scale,
                &self.beta,
                &mut s.v,
                yg,
            );
        }
    }

    /// Dense and octonion: each group's codes, then `combine` writes the A parts' f32 sums of
    /// scaled block products into s.z (A·hd), scaled here by the group's s and β.
    fn forward_blocks(
        &self,
        x: &[f32],
        y: &mut [f32],
        s: &mut MixScratch,
        combine: impl Fn(&Self, &mut MixScratch),
    ) {
        let (a, hd, hdp) = (self.algebra.dim(), self.hd, self.hdp);
        for (xg, yg) in x.chunks_exact(a * hd).zip(y.chunks_exact_mut(a * hd)) {
            s.u.clear();
            s.u.resize(a * hdp, 0.0);
            for (up, xp) in s.u.chunks_exact_mut(hdp).zip(xg.chunks_exact(hd)) {
                up[..hd].copy_from_slice(xp);
            }
            s.codes.resize(a * hdp, 0);
            let scale = quantize(&s.u, act_limit(hd, KV_LIMIT), &mut s.codes);
            s.z.clear();
            s.z.resize(a * hd, 0.0);
            combine(self, s);
            // y = (z · s) · β_h for every part.
            for (yp, zp) in yg.chunks_exact_mut(hd).zip(s.z.chunks_exact(hd)) {
                for ((y, z), b) in yp.iter_mut().zip(zp).zip(&self.beta) {
                    *y = (z * scale) * b;
                }
            }
        }
    }

    pub fn heap_bytes(&self) -> usize {
        let weights = match &self.weights {
            Weights::Dense(w) | Weights::Hadamard(w) => w.heap_bytes(),
            Weights::Octonion(blocks) => blocks.iter().map(CodeMatrix::heap_bytes).sum(),
        };
        weights + 4 * self.ones.len() + 4 * (self.row_scales.len() + self.beta.len())
    }
}
