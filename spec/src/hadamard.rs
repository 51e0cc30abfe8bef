//! The fast Walsh–Hadamard transform (Sylvester order, orthonormal) over the algebra's part index:
//! one implementation, used by the engine (f32) and by the trainer's reference ops (f32 and f64).

use std::ops::{Add, MulAssign, Sub};

/// The numbers the transform runs on.
pub trait FhtScalar: Copy + Add<Output = Self> + Sub<Output = Self> + MulAssign {
    /// 1/√n in this type, computed as the engine always has: √ in the type itself, then 1/x.
    fn inv_sqrt(n: usize) -> Self;
}

impl FhtScalar for f32 {
    fn inv_sqrt(n: usize) -> Self {
        1.0 / (n as f32).sqrt()
    }
}

impl FhtScalar for f64 {
    fn inv_sqrt(n: usize) -> Self {
        1.0 / (n as f64).sqrt()
    }
}

/// In place, orthonormal FHT over `parts` equal slices of `x` (x.len() = parts · width, parts a
/// power of two): x_g ← parts^{−1/2} Σ_j (−1)^{popcount(g AND j)} x_j, elementwise in the slices.
/// Symmetric and its own inverse. Butterflies in a fixed order, so every target computes the same
/// bits.
pub fn fht_parts<T: FhtScalar>(x: &mut [T], parts: usize) {
    debug_assert!(parts.is_power_of_two());
    debug_assert_eq!(x.len() % parts, 0);
    let width = x.len() / parts;
    let mut h = 1;
    while h < parts {
        for block in (0..parts).step_by(2 * h) {
            for j in block..block + h {
                let (lo, hi) = x.split_at_mut((j + h) * width);
                let a = &mut lo[j * width..(j + 1) * width];
                let b = &mut hi[..width];
                for (p, q) in a.iter_mut().zip(b.iter_mut()) {
                    let (s, d) = (*p + *q, *p - *q);
                    *p = s;
                    *q = d;
                }
            }
        }
        h *= 2;
    }
    let scale = T::inv_sqrt(parts);
    for v in x.iter_mut() {
        *v *= scale;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sylvester(n: usize, g: usize, j: usize) -> f64 {
        let sign = if (g & j).count_ones().is_multiple_of(2) {
            1.0
        } else {
            -1.0
        };
        sign / (n as f64).sqrt()
    }

    #[test]
    fn matches_the_sylvester_matrix() {
        for &(parts, width) in &[(1, 3), (2, 1), (8, 5), (32, 7)] {
            let x: Vec<f32> = (0..parts * width)
                .map(|k| ((k * 37 % 101) as f32 - 50.0) / 17.0)
                .collect();
            let mut y = x.clone();
            fht_parts(&mut y, parts);
            for g in 0..parts {
                for c in 0..width {
                    let want: f64 = (0..parts)
                        .map(|j| sylvester(parts, g, j) * f64::from(x[j * width + c]))
                        .sum();
                    assert!((want - f64::from(y[g * width + c])).abs() < 1e-5);
                }
            }
        }
    }

    #[test]
    fn h32_squared_is_identity() {
        let x: Vec<f32> = (0..32 * 4).map(|k| (k as f32).sin()).collect();
        let mut y = x.clone();
        fht_parts(&mut y, 32);
        fht_parts(&mut y, 32);
        for (a, b) in x.iter().zip(&y) {
            assert!((a - b).abs() < 1e-5);
        }
        // And as matrices, in f64: H·H = I.
        for i in 0..32 {
            for k in 0..32 {
                let s: f64 = (0..32)
                    .map(|j| sylvester(32, i, j) * sylvester(32, j, k))
                    .sum();
                let want = if i == k { 1.0 } else { 0.0 };
                assert!((s - want).abs() < 1e-12);
            }
        }
    }
}
