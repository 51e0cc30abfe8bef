//! AlgebraLinear of SPEC §2.2 on ternary weights: dense, octonion and hadamard.

use crate::math::{fht32, matvec};
use walsh_spec::config::Algebra;
use walsh_spec::octonion::SIGNS;

#[derive(Debug, Clone)]
pub struct AlgebraLinear {
    pub algebra: Algebra,
    pub in_dim: usize,
    pub out_dim: usize,
    /// Wq as f32 values in {−1, 0, 1}, [A, n, m] row-major.
    pub weight: Vec<f32>,
    pub alpha: Vec<f32>,
    /// γ·β (SPEC §2.2: γ is folded into β in a blob).
    pub beta: Vec<f32>,
}

/// Reusable buffers, so a forward pass allocates nothing per row.
#[derive(Debug, Default)]
pub struct LinearScratch {
    u: Vec<f32>,
    z: Vec<f32>,
    t: Vec<f32>,
}

impl AlgebraLinear {
    fn block(&self, k: usize) -> &[f32] {
        let a = self.algebra.dim();
        let size = (self.out_dim / a) * (self.in_dim / a);
        &self.weight[k * size..(k + 1) * size]
    }

    /// y = γβ ⊙ concat(z) for one input row x (len in_dim) into y (len out_dim).
    pub fn forward_row(&self, x: &[f32], y: &mut [f32], s: &mut LinearScratch) {
        let a = self.algebra.dim();
        let (m, n) = (self.in_dim / a, self.out_dim / a);
        s.u.clear();
        s.u.extend(x.iter().zip(&self.alpha).map(|(v, al)| v * al));
        match self.algebra {
            Algebra::Dense => matvec(self.block(0), &s.u, y),
            Algebra::Octonion => {
                s.t.resize(n, 0.0);
                for (i, zi) in y.chunks_exact_mut(n).enumerate() {
                    zi.fill(0.0);
                    for (j, &sign) in SIGNS[i].iter().enumerate() {
                        matvec(self.block(i ^ j), &s.u[j * m..(j + 1) * m], &mut s.t);
                        if sign > 0 {
                            zi.iter_mut().zip(&s.t).for_each(|(z, t)| *z += t);
                        } else {
                            zi.iter_mut().zip(&s.t).for_each(|(z, t)| *z -= t);
                        }
                    }
                }
            }
            Algebra::Hadamard => {
                fht32(&mut s.u);
                s.z.resize(self.out_dim, 0.0);
                for g in 0..32 {
                    matvec(
                        self.block(g),
                        &s.u[g * m..(g + 1) * m],
                        &mut s.z[g * n..(g + 1) * n],
                    );
                }
                fht32(&mut s.z);
                y.copy_from_slice(&s.z);
            }
        }
        y.iter_mut().zip(&self.beta).for_each(|(v, b)| *v *= b);
    }

    /// The same for `rows` rows of a row-major [rows, in_dim] input.
    pub fn forward(&self, x: &[f32], y: &mut [f32], s: &mut LinearScratch) {
        for (xr, yr) in x
            .chunks_exact(self.in_dim)
            .zip(y.chunks_exact_mut(self.out_dim))
        {
            self.forward_row(xr, yr, s);
        }
    }
}
