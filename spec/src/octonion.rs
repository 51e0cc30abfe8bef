//! The octonion multiplication table of SPEC §2.2: z_i = Σ_j s(i, j) · w_{i XOR j} · x_j.

/// s(i, j) for output part i (row) and input part j (column). This is the Cayley–Dickson octonion
/// product (a,b)(c,d) = (ac − d·b*, a*·d + c·b) written as signs on the XOR-indexed basis; the
/// tests in this module derive it again from that construction.
pub const SIGNS: [[i8; 8]; 8] = [
    [1, -1, -1, -1, -1, -1, -1, -1],
    [1, 1, 1, -1, 1, -1, -1, 1],
    [1, -1, 1, 1, 1, 1, -1, -1],
    [1, 1, -1, 1, 1, -1, 1, -1],
    [1, -1, -1, -1, 1, 1, 1, 1],
    [1, 1, -1, 1, -1, 1, -1, 1],
    [1, 1, 1, -1, -1, 1, 1, -1],
    [1, -1, 1, 1, -1, -1, 1, 1],
];

/// The octonion product of scalar octonions with the table above.
pub fn multiply(w: &[f64; 8], x: &[f64; 8]) -> [f64; 8] {
    let mut y = [0.0; 8];
    for (i, yi) in y.iter_mut().enumerate() {
        for j in 0..8 {
            *yi += f64::from(SIGNS[i][j]) * w[i ^ j] * x[j];
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cayley–Dickson doubling over f64 vectors of length 1, 2, 4, 8.
    fn cd_conj(x: &[f64]) -> Vec<f64> {
        let mut c: Vec<f64> = x.iter().map(|v| -v).collect();
        c[0] = x[0];
        c
    }
    fn cd_mul(x: &[f64], y: &[f64]) -> Vec<f64> {
        if x.len() == 1 {
            return vec![x[0] * y[0]];
        }
        let h = x.len() / 2;
        let (a, b) = x.split_at(h);
        let (c, d) = y.split_at(h);
        let ac = cd_mul(a, c);
        let dbs = cd_mul(d, &cd_conj(b));
        let asd = cd_mul(&cd_conj(a), d);
        let cb = cd_mul(c, b);
        let mut out: Vec<f64> = ac.iter().zip(&dbs).map(|(p, q)| p - q).collect();
        out.extend(asd.iter().zip(&cb).map(|(p, q)| p + q));
        out
    }

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 11) as f64) / ((1u64 << 53) as f64) * 2.0 - 1.0
        }
        fn oct(&mut self) -> [f64; 8] {
            std::array::from_fn(|_| self.next())
        }
    }

    fn norm(x: &[f64; 8]) -> f64 {
        x.iter().map(|v| v * v).sum::<f64>().sqrt()
    }

    #[test]
    fn table_is_the_cayley_dickson_product() {
        let mut r = Rng(7);
        for _ in 0..100 {
            let (w, x) = (r.oct(), r.oct());
            let want = cd_mul(&w, &x);
            let got = multiply(&w, &x);
            for k in 0..8 {
                assert!((want[k] - got[k]).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn norm_is_multiplicative_alternative_not_associative() {
        let mut r = Rng(11);
        let mut worst_assoc: f64 = 0.0;
        for _ in 0..100 {
            let (w, x, z) = (r.oct(), r.oct(), r.oct());
            let p = multiply(&w, &x);
            assert!((norm(&p) - norm(&w) * norm(&x)).abs() < 1e-12);
            // Left alternative: (ww)x = w(wx); right: (xw)w = x(ww).
            let l1 = multiply(&multiply(&w, &w), &x);
            let l2 = multiply(&w, &multiply(&w, &x));
            let r1 = multiply(&multiply(&x, &w), &w);
            let r2 = multiply(&x, &multiply(&w, &w));
            for k in 0..8 {
                assert!((l1[k] - l2[k]).abs() < 1e-12);
                assert!((r1[k] - r2[k]).abs() < 1e-12);
            }
            let a1 = multiply(&multiply(&w, &x), &z);
            let a2 = multiply(&w, &multiply(&x, &z));
            for k in 0..8 {
                worst_assoc = worst_assoc.max((a1[k] - a2[k]).abs());
            }
        }
        assert!(worst_assoc > 1e-3, "octonions must not be associative");
    }

    #[test]
    fn imaginary_units_square_to_minus_one() {
        for i in 1..8 {
            let mut e = [0.0; 8];
            e[i] = 1.0;
            let sq = multiply(&e, &e);
            let mut want = [0.0; 8];
            want[0] = -1.0;
            assert_eq!(sq, want, "e_{i}^2");
        }
        // e_0 is the identity on both sides.
        let mut one = [0.0; 8];
        one[0] = 1.0;
        let x: [f64; 8] = std::array::from_fn(|k| k as f64 - 3.5);
        assert_eq!(multiply(&one, &x), x);
        assert_eq!(multiply(&x, &one), x);
    }
}
