//! AlgebraLinear of SPEC §2.2 on ternary weights, computed as SPEC §2.6 defines it for inference:
//! the input (after α and, for hadamard, the FHT across parts) becomes i16 codes with one scale,
//! every block product is an exact integer dot product, and the output is scaled back to f32.
//!
//! Weights are held as i16 in the kernels' layout (`int_math::CodeMatrix`), made at load over
//! parts padded to m_p = m rounded up to 4 (`i32x4.dot_i16x8_s` takes two codes of x, a column
//! pair, against four rows, and the tiles run an even number of pairs) and n_p = n rounded up to
//! 4 (the integer FHT moves four lanes at a time); the padding is zero, so it adds
//! nothing. Dense: one matrix. Hadamard: the A blocks as one block-diagonal matrix (part g of the
//! output from part g of the input). Octonion: the product z_i = Σ_j s_ij·W_{i⊕j}·u_j runs as 32
//! block products instead of 64 (`octonion_product`): 16 combined blocks (entries in [−2, 2])
//! made at load, each run against two combinations of the input's parts — the same exact integer
//! sums as the 64 signed block products.

use crate::int_math::CodeMatrix;
use crate::math::{dequant, mul, mul_absmax, scratch};
use crate::octonion_product;
use crate::part_fht;
use crate::profile::{Laps, Phase};
use crate::quant::{ACT_LIMIT, OCTONION_ACT_LIMIT, absmax, encode, scales};
use walsh_spec::config::Algebra;

#[derive(Debug, Clone)]
pub struct TernaryLinear {
    algebra: Algebra,
    in_dim: usize,
    out_dim: usize,
    /// Part sizes (m in, n out) and their padded strides.
    m: usize,
    n: usize,
    mp: usize,
    np: usize,
    /// Wq in the kernels' layout (see the module's comment): for octonion the 16 combined blocks.
    w: CodeMatrix,
    alpha: Vec<f32>,
    /// γ·β (SPEC §2.2: γ is folded into β in a blob).
    beta: Vec<f32>,
}

/// Reusable buffers, so that a forward pass allocates nothing per row.
#[derive(Debug, Default)]
pub struct TernaryScratch {
    u: Vec<f32>,
    codes: Vec<i16>,
    z: Vec<i32>,
    /// Octonion: the 32 input combinations and their 32 products.
    combos: Vec<i16>,
    products: Vec<i32>,
}

/// The input codes' limit L of SPEC §2.6 for an algebra.
fn input_limit(algebra: Algebra) -> i32 {
    if algebra == Algebra::Octonion {
        OCTONION_ACT_LIMIT
    } else {
        ACT_LIMIT
    }
}

/// 1/√32 as the f32 FHT uses it.
fn r32() -> f32 {
    1.0 / 32f32.sqrt()
}

impl TernaryLinear {
    /// From Wq ([A, n, m] row-major, values in {−1, 0, 1}), α (in_dim) and γ·β (out_dim).
    pub fn new(
        algebra: Algebra,
        in_dim: usize,
        out_dim: usize,
        wq: &[i8],
        alpha: Vec<f32>,
        beta: Vec<f32>,
    ) -> Self {
        let a = algebra.dim();
        let (m, n) = (in_dim / a, out_dim / a);
        let (mp, np) = (m.div_ceil(4) * 4, n.div_ceil(4) * 4);
        // Octonion: the 16 combined blocks; hadamard: the 32 blocks; dense: one.
        let w = if algebra == Algebra::Octonion {
            CodeMatrix::from_blocks(&octonion_product::combine_weights(wq, n, m), 16, n, m)
        } else {
            let w: Vec<i16> = wq[..a * n * m].iter().map(|v| i16::from(*v)).collect();
            CodeMatrix::from_blocks(&w, a, n, m)
        };
        TernaryLinear {
            algebra,
            in_dim,
            out_dim,
            m,
            n,
            mp,
            np,
            w,
            alpha,
            beta,
        }
    }

    /// y = γβ ⊙ concat(z) for one input row x (len in_dim) into y (len out_dim).
    pub fn forward_row(&self, x: &[f32], y: &mut [f32], s: &mut TernaryScratch) {
        let mut laps = Laps::resume();
        let a = self.algebra.dim();
        let (m, n, mp, np) = (self.m, self.n, self.mp, self.np);
        // The scratch keeps the largest size any linear asked for (`math::scratch`): a layer's
        // linears alternate between D and F wide, and a growing `resize` is a `memory.fill`.
        let u = scratch(&mut s.u, a * mp);
        // u = α ⊙ x in the padded layout (pads 0), for hadamard then the FHT across parts
        // (column by column the same butterflies as on the unpadded parts: the same bits).
        let max = if self.algebra == Algebra::Hadamard {
            part_fht::input(x, &self.alpha, m, mp, u)
        } else if m == mp {
            // No pads: the padded layout is x's, one pass.
            mul_absmax(x, &self.alpha, u)
        } else {
            for ((up, xp), al) in u
                .chunks_exact_mut(mp)
                .zip(x.chunks_exact(m))
                .zip(self.alpha.chunks_exact(m))
            {
                mul(xp, al, &mut up[..m]);
                up[m..].fill(0.0);
            }
            absmax(u)
        };
        let limit = input_limit(self.algebra);
        let Some((inv, scale)) = scales(max, limit) else {
            // u = 0 (or not finite): every product is 0.
            y.fill(0.0);
            return;
        };
        if self.algebra == Algebra::Octonion {
            // The codes and their 32 combinations in one pass.
            let combos = scratch(&mut s.combos, 32 * mp);
            octonion_product::encode_combinations(u, inv, limit, mp, combos);
            laps.lap(Phase::LinearIn);
            let products = scratch(&mut s.products, 32 * np);
            let (top, bottom) = products.split_at_mut(16 * np);
            self.w.matvec_blocks(&combos[..16 * mp], top);
            self.w.matvec_blocks(&combos[16 * mp..], bottom);
            // The output combination and the dequantization in one pass (counted as products).
            octonion_product::combine_products_dequant(products, np, n, &self.beta, scale, y);
            laps.lap(Phase::Linear);
            return;
        }
        let codes = scratch(&mut s.codes, a * mp);
        encode(u, inv, limit, codes);
        laps.lap(Phase::LinearIn);
        let z = scratch(&mut s.z, a * np);
        self.w.matvec_blocks(codes, z);
        laps.lap(Phase::Linear);
        if self.algebra == Algebra::Hadamard {
            part_fht::output(z, np, n, &self.beta, scale * r32(), y);
        } else {
            for ((yp, zp), bp) in y
                .chunks_exact_mut(n)
                .zip(z.chunks_exact(np))
                .zip(self.beta.chunks_exact(n))
            {
                dequant(zp, bp, scale, yp);
            }
        }
        laps.lap(Phase::LinearOut);
    }

    /// The same for `rows` rows of a row-major [rows, in_dim] input.
    pub fn forward(&self, x: &[f32], y: &mut [f32], s: &mut TernaryScratch) {
        for (xr, yr) in x
            .chunks_exact(self.in_dim)
            .zip(y.chunks_exact_mut(self.out_dim))
        {
            self.forward_row(xr, yr, s);
        }
    }

    /// Heap bytes of the weights and scales.
    pub fn heap_bytes(&self) -> usize {
        self.w.heap_bytes() + 4 * (self.alpha.len() + self.beta.len())
    }

    /// Multiply-adds per row (the padded products actually run).
    pub fn macs(&self) -> usize {
        let products = match self.algebra {
            Algebra::Octonion => 32,
            a => a.dim(),
        };
        products * self.np * self.mp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use walsh_spec::octonion::SIGNS;

    // Index loops on purpose: they read like the SPEC's formulas.
    #[allow(clippy::needless_range_loop)]
    /// SPEC §2.6 in f64 for one row: codes of u (computed as the SPEC says, in f32), exact
    /// integer block products in i64, then the f32 output scaling.
    fn reference(l: &TernaryLinear, wq: &[i8], x: &[f32]) -> Vec<f32> {
        let a = l.algebra.dim();
        let (m, n) = (l.m, l.n);
        let mut u: Vec<f32> = x.iter().zip(&l.alpha).map(|(v, al)| v * al).collect();
        if l.algebra == Algebra::Hadamard {
            walsh_spec::hadamard::fht_parts(&mut u, 32);
        }
        let mut codes = vec![0i16; u.len()];
        let scale = crate::quant::quantize(&u, input_limit(l.algebra), &mut codes);
        let prod = |k: usize, j: usize| -> Vec<i64> {
            (0..n)
                .map(|r| {
                    (0..m)
                        .map(|c| i64::from(wq[(k * n + r) * m + c]) * i64::from(codes[j * m + c]))
                        .sum()
                })
                .collect()
        };
        let mut z = vec![0i64; a * n];
        match l.algebra {
            Algebra::Dense => z = prod(0, 0),
            Algebra::Octonion => {
                for i in 0..8 {
                    for j in 0..8 {
                        let t = prod(i ^ j, j);
                        for r in 0..n {
                            z[i * n + r] += i64::from(SIGNS[i][j]) * t[r];
                        }
                    }
                }
            }
            Algebra::Hadamard => {
                let v: Vec<Vec<i64>> = (0..32).map(|g| prod(g, g)).collect();
                for i in 0..32usize {
                    for g in 0..32usize {
                        let s: i64 = if (i & g).count_ones() % 2 == 0 { 1 } else { -1 };
                        for r in 0..n {
                            z[i * n + r] += s * v[g][r];
                        }
                    }
                }
            }
        }
        let c = if l.algebra == Algebra::Hadamard {
            scale * r32()
        } else {
            scale
        };
        z.iter()
            .zip(&l.beta)
            .map(|(z, b)| (*z as i32 as f32 * b) * c)
            .collect()
    }

    #[test]
    fn every_algebra_matches_the_integer_reference_bit_for_bit() {
        for (algebra, inp, out) in [
            (Algebra::Dense, 24, 20),
            (Algebra::Dense, 13, 7),
            (Algebra::Octonion, 64, 40),
            (Algebra::Octonion, 8 * 21, 8 * 3),
            (Algebra::Octonion, 8 * 86, 8 * 32),
            (Algebra::Octonion, 8 * 32, 8 * 86),
            (Algebra::Hadamard, 32 * 16, 32 * 16),
            (Algebra::Hadamard, 32 * 43, 32 * 5),
        ] {
            let a = algebra.dim();
            let numel = a * (out / a) * (inp / a);
            let wq: Vec<i8> = (0..numel)
                .map(|i| ((i * 7 + i / 5) % 3) as i8 - 1)
                .collect();
            let alpha: Vec<f32> = (0..inp).map(|i| 0.5 + (i % 7) as f32 / 8.0).collect();
            let beta: Vec<f32> = (0..out).map(|i| 0.25 + (i % 5) as f32 / 16.0).collect();
            let l = TernaryLinear::new(algebra, inp, out, &wq, alpha, beta);
            let x: Vec<f32> = (0..inp)
                .map(|i| ((i * 31 % 97) as f32 - 48.5) / 9.0)
                .collect();
            let mut y = vec![f32::NAN; out];
            l.forward_row(&x, &mut y, &mut TernaryScratch::default());
            let want = reference(&l, &wq, &x);
            assert_eq!(
                y.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "{algebra:?} {inp}→{out}"
            );
        }
    }

    #[test]
    fn zero_input_gives_zero_output() {
        let l = TernaryLinear::new(Algebra::Dense, 8, 4, &[1; 32], vec![1.0; 8], vec![1.0; 4]);
        let mut y = vec![f32::NAN; 4];
        l.forward_row(&[0.0; 8], &mut y, &mut TernaryScratch::default());
        assert_eq!(y, [0.0; 4]);
    }
}
