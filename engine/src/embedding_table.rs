//! An embedding table as the engine holds it (SPEC §2.6): one i16 code per value, in the
//! head kernel's layout (`RowMatrix`, so that the head's dot products need no widening),
//! and an f32 scale per row. A table the blob stores as integer rows (int8 / int6 / int4,
//! rotated or not) keeps its codes as they are; an f32 or f16 table is coded at load, each row as
//! Q(E[r], 127). Built row by row from the blob's bytes, so no full-size f32 copy is ever made.
//!
//! The same table serves the input (one row, decoded) and the tied output head (integer dot
//! products against the codes of h). When the rows are Walsh–Hadamard rotated (SPEC §4.1) the head
//! absorbs the rotation — ℓ_r = x_r·h = y_r·(H h), blockwise, so h is transformed once per token
//! and the stored codes are used directly — and only the one input row a token needs is
//! un-rotated.

use crate::math::scratch;
use crate::quant::{EMB_LIMIT, act_limit, quantize};
use crate::row_matrix::RowMatrix;
use walsh_spec::blob::quant::{QuantError, QuantRowsRef, rotate_row};

#[derive(Debug, Clone)]
pub struct EmbeddingTable {
    cols: usize,
    /// The codes, in the kernels' layout.
    codes: RowMatrix,
    scales: Vec<f32>,
    /// The largest magnitude a code can have: 127 for a float table coded at load, 2^(b−1) for
    /// b-bit integer rows (two's complement allows −2^(b−1)). Sets the head's activation limit.
    code_bound: i32,
    /// Some(B) when row r's values are H_B·(codes · scale_r) in blocks of B (SPEC §4.1).
    rotation: Option<usize>,
}

/// Buffers of [`EmbeddingTable::logits`] and [`EmbeddingTable::add_row`].
#[derive(Debug, Default)]
pub struct HeadScratch {
    codes: Vec<i16>,
    dots: Vec<i32>,
    /// The rotated hidden state (head) or a decoded rotated row (input).
    values: Vec<f32>,
}

impl EmbeddingTable {
    /// From a row-major [rows, cols] f32 table (tests and tools; the engine loads
    /// [`EmbeddingTable::from_float_rows`] straight from the blob).
    pub fn new(values: &[f32], cols: usize) -> Self {
        let rows = values.len() / cols.max(1);
        let built: Result<Self, std::convert::Infallible> =
            Self::from_float_rows(rows, cols, |r, out| {
                out.copy_from_slice(&values[r * cols..(r + 1) * cols]);
                Ok(())
            });
        let Ok(table) = built;
        table
    }

    /// An f32 / f16 table, one row at a time: `row(r, out)` writes row r's `cols` values, which
    /// become (codes, s_r) = Q(row, 127).
    pub fn from_float_rows<E>(
        rows: usize,
        cols: usize,
        mut row: impl FnMut(usize, &mut [f32]) -> Result<(), E>,
    ) -> Result<Self, E> {
        let mut values = vec![0f32; cols];
        let mut scales = Vec::with_capacity(rows);
        let codes = RowMatrix::try_from_rows(rows, cols, |r, dst| {
            row(r, &mut values)?;
            scales.push(quantize(&values, EMB_LIMIT, dst));
            Ok(())
        })?;
        Ok(EmbeddingTable {
            cols,
            codes,
            scales,
            code_bound: EMB_LIMIT,
            rotation: None,
        })
    }

    /// Integer rows as the blob stores them (SPEC §4.1): the codes and scales as they are.
    pub fn from_quant_rows(q: &QuantRowsRef<'_>) -> Result<Self, QuantError> {
        let scales = (0..q.rows)
            .map(|r| q.scale(r))
            .collect::<Result<Vec<f32>, _>>()?;
        let mut row = vec![0i8; q.cols];
        let codes = RowMatrix::try_from_rows(q.rows, q.cols, |r, dst| {
            q.codes_into(r, &mut row)?;
            dst.iter_mut()
                .zip(&row)
                .for_each(|(d, c)| *d = i16::from(*c));
            Ok(())
        })?;
        Ok(EmbeddingTable {
            cols: q.cols,
            codes,
            scales,
            code_bound: 1 << (q.bits - 1),
            // A block of one is no rotation.
            rotation: q.rotation_block.filter(|&b| b > 1),
        })
    }

    pub fn rows(&self) -> usize {
        self.codes.rows()
    }

    /// The rotation block B when the rows are stored rotated.
    pub fn rotation(&self) -> Option<usize> {
        self.rotation
    }

    /// out = row r's values: y_i = code[r][i] · scale[r] (f32 products), then, for a rotated
    /// table, the orthonormal FHT of each block of B (SPEC §4.1's f32 transform).
    pub fn row_into(&self, r: usize, out: &mut [f32]) {
        let s = self.scales[r];
        out.iter_mut()
            .zip(self.codes.row(r))
            .for_each(|(o, c)| *o = f32::from(*c) * s);
        if let Some(b) = self.rotation {
            rotate_row(out, b);
        }
    }

    /// out += row r's values (as [`EmbeddingTable::row_into`] computes them).
    pub fn add_row(&self, r: usize, out: &mut [f32], b: &mut HeadScratch) {
        if self.rotation.is_some() {
            b.values.resize(self.cols, 0.0);
            self.row_into(r, &mut b.values);
            out.iter_mut().zip(&b.values).for_each(|(o, v)| *o += v);
            return;
        }
        let s = self.scales[r];
        out.iter_mut()
            .zip(self.codes.row(r))
            .for_each(|(o, c)| *o += f32::from(*c) * s);
    }

    /// The activation limit of the head: exact i32 sums of `cols` products against codes of at
    /// most `code_bound` (32,767 for every D ≤ 512; SPEC §2.6).
    pub fn head_limit(&self) -> i32 {
        act_limit(self.cols, self.code_bound)
    }

    /// ℓ_r = (f32(Σ_i code[r][i]·q_i) · scale[r]) · s for the first out.len() rows, where
    /// (q, s) = Q(h, head_limit), or Q(H_B h, head_limit) for a rotated table (SPEC §2.6).
    pub fn logits(&self, h: &[f32], out: &mut [f32], b: &mut HeadScratch) {
        let rows = out.len();
        // Scratch of the largest size asked (`math::scratch`: no zero-fill a call); quantize
        // writes the first h.len() codes, the pads are zeroed here.
        let codes = scratch(&mut b.codes, self.codes.cols_padded());
        codes[h.len()..].fill(0);
        let s = match self.rotation {
            None => quantize(h, self.head_limit(), codes),
            Some(block) => {
                b.values.clear();
                b.values.extend_from_slice(h);
                rotate_row(&mut b.values, block);
                quantize(&b.values, self.head_limit(), codes)
            }
        };
        // ℓ_r = (f32(dot_r) · scale_r) · s.
        let dots = scratch(&mut b.dots, self.codes.rows_padded());
        self.codes
            .logits(codes, &self.scales, s, dots, &mut out[..rows]);
    }

    pub fn heap_bytes(&self) -> usize {
        self.codes.heap_bytes() + 4 * self.scales.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use walsh_spec::blob::DType;
    use walsh_spec::blob::quant::encode_rows;

    fn table_values(rows: usize, cols: usize) -> Vec<f32> {
        (0..rows * cols)
            .map(|i| {
                // An outlier per row: what rotation spreads.
                let base = ((i * 13 % 29) as f32 - 14.0) / 70.0;
                if i % cols == (i / cols) % cols {
                    base * 9.0
                } else {
                    base
                }
            })
            .collect()
    }

    fn hidden(cols: usize) -> Vec<f32> {
        (0..cols)
            .map(|i| ((i * 7 % 17) as f32 - 8.0) / 3.0)
            .collect()
    }

    /// H_B[i][k] = (−1)^popcount(i AND k) / √B, applied blockwise in f64.
    fn sylvester(y: &[f64], block: usize) -> Vec<f64> {
        (0..y.len())
            .map(|c| {
                let (base, i) = (c / block * block, c % block);
                (0..block)
                    .map(|k| {
                        let sign = if (i & k).count_ones() % 2 == 0 {
                            1.0
                        } else {
                            -1.0
                        };
                        sign / (block as f64).sqrt() * y[base + k]
                    })
                    .sum()
            })
            .collect()
    }

    /// IEEE binary16 → f64, from the format (1 sign, 5 exponent, 10 fraction bits; finite only).
    fn f16_to_f64(bits: u16) -> f64 {
        let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
        let (exp, frac) = (i32::from((bits >> 10) & 0x1f), f64::from(bits & 0x3ff));
        match exp {
            0 => sign * frac * 2f64.powi(-24),
            _ => sign * (1.0 + frac / 1024.0) * 2f64.powi(exp - 15),
        }
    }

    /// The stored table decoded in f64 from its bytes as SPEC §4.1 says: y = code · scale, then
    /// x = H_B y blockwise for the rotated dtypes. Returns (x, y).
    fn decoded(bytes: &[u8], dtype: DType, rows: usize, cols: usize) -> (Vec<f64>, Vec<f64>) {
        let (bits, rotated) = dtype.quant().unwrap();
        let rb = (bits as usize * cols).div_ceil(8);
        let mut x = Vec::new();
        let mut y = Vec::new();
        for r in 0..rows {
            let o = rows * rb + 2 * r;
            let scale = f16_to_f64(u16::from_le_bytes([bytes[o], bytes[o + 1]]));
            let row: Vec<f64> = (0..cols)
                .map(|c| {
                    // Bits b·c .. b·c + b − 1 of the row, LSB first, two's complement.
                    let mut v = 0i32;
                    for k in 0..bits as usize {
                        let bit = bits as usize * c + k;
                        v |= i32::from((bytes[r * rb + bit / 8] >> (bit % 8)) & 1) << k;
                    }
                    if v >= 1 << (bits - 1) {
                        v -= 1 << bits;
                    }
                    f64::from(v) * scale
                })
                .collect();
            x.extend(if rotated {
                sylvester(&row, cols & cols.wrapping_neg())
            } else {
                row.clone()
            });
            y.extend(row);
        }
        (x, y)
    }

    /// Every integer dtype, rotated or not: input rows and logits against f64 loops over the
    /// decoded tensor, and the logits bit for bit against SPEC §2.6's order of operations.
    #[test]
    fn integer_tables_against_the_decoded_tensor() {
        for &(rows, cols) in &[(11, 64), (9, 24), (5, 7)] {
            let e = table_values(rows, cols);
            let h = hidden(cols);
            for dtype in [
                DType::Int8,
                DType::Int6,
                DType::Int4,
                DType::Int8Rot,
                DType::Int6Rot,
                DType::Int4Rot,
            ] {
                let bytes = encode_rows(&e, cols, dtype).unwrap();
                let q = QuantRowsRef::new(dtype, &bytes, &[rows, cols]).unwrap();
                let t = EmbeddingTable::from_quant_rows(&q).unwrap();
                let (bits, rotated) = dtype.quant().unwrap();
                let block = cols & cols.wrapping_neg();
                assert_eq!(t.rotation(), (rotated && block > 1).then_some(block));
                assert_eq!(t.code_bound, 1 << (bits - 1));
                let (x, y) = decoded(&bytes, dtype, rows, cols);
                // Input rows: the decoded values, rotation undone (f32 transform vs f64).
                let mut row = vec![0.0; cols];
                let mut acc = vec![1.0; cols];
                let mut scratch = HeadScratch::default();
                for r in 0..rows {
                    t.row_into(r, &mut row);
                    t.add_row(r, &mut acc, &mut scratch);
                    for c in 0..cols {
                        let want = x[r * cols + c];
                        assert!((f64::from(row[c]) - want).abs() < 1e-5, "{dtype:?} {r} {c}");
                        acc[c] -= row[c];
                    }
                }
                assert!(
                    acc.iter().all(|v| (v - 1.0).abs() < 1e-5),
                    "{dtype:?} add_row"
                );
                // Logits: x·h in f64 (the rotation, if any, on the table side), within the
                // rounding of h's codes: each of the cols terms moves by ≤ |y_i| · step/2.
                let mut out = vec![0.0; rows];
                t.logits(&h, &mut out, &mut scratch);
                let hr: Vec<f64> = if rotated {
                    sylvester(&h.iter().map(|v| f64::from(*v)).collect::<Vec<_>>(), block)
                } else {
                    h.iter().map(|v| f64::from(*v)).collect()
                };
                let step = hr.iter().fold(0f64, |m, v| m.max(v.abs())) / f64::from(t.head_limit());
                for r in 0..rows {
                    let exact: f64 = (0..cols).map(|c| x[r * cols + c] * f64::from(h[c])).sum();
                    let bound: f64 = (0..cols)
                        .map(|c| y[r * cols + c].abs() * step * 0.51 + 1e-6 * exact.abs())
                        .sum::<f64>()
                        + 1e-5;
                    assert!(
                        (f64::from(out[r]) - exact).abs() <= bound,
                        "{dtype:?} {rows}x{cols} row {r}: {} vs {exact} (bound {bound})",
                        out[r]
                    );
                }
                // Bit for bit: (q, s) = Q(ĥ, L) with ĥ = the f32 FHT of h for rotated rows, and
                // ℓ_r = (f32(Σ code·q) · scale_r) · s.
                let mut hh = h.clone();
                if rotated {
                    rotate_row(&mut hh, block);
                }
                let mut hq = vec![0i16; cols];
                let sh = quantize(&hh, t.head_limit(), &mut hq);
                let mut codes = vec![0i8; cols];
                for (r, got) in out.iter().enumerate() {
                    q.codes_into(r, &mut codes).unwrap();
                    let dot: i64 = codes
                        .iter()
                        .zip(&hq)
                        .map(|(a, b)| i64::from(*a) * i64::from(*b))
                        .sum();
                    let want = (dot as f32 * q.scale(r).unwrap()) * sh;
                    assert_eq!(got.to_bits(), want.to_bits(), "{dtype:?} row {r}");
                }
            }
        }
    }

    #[test]
    fn float_tables_are_coded_at_load() {
        let (rows, cols) = (11, 20);
        let e: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 13 % 29) as f32 - 14.0) / 7.0)
            .collect();
        let t = EmbeddingTable::new(&e, cols);
        assert_eq!(t.rotation(), None);
        assert_eq!(t.head_limit(), act_limit(cols, 127));
        let h: Vec<f32> = (0..cols).map(|i| (i as f32 - 9.5) / 3.0).collect();
        let mut out = vec![0.0; rows];
        t.logits(&h, &mut out, &mut HeadScratch::default());
        let mut hq = vec![0i16; cols];
        let sh = quantize(&h, t.head_limit(), &mut hq);
        for r in 0..rows {
            let mut rq = vec![0i16; cols];
            let sr = quantize(&e[r * cols..(r + 1) * cols], 127, &mut rq);
            let dot: i64 = rq
                .iter()
                .zip(&hq)
                .map(|(a, b)| i64::from(*a) * i64::from(*b))
                .sum();
            assert_eq!(out[r].to_bits(), ((dot as f32 * sr) * sh).to_bits());
            // And close to the f64 product of the unquantized values.
            let exact: f64 = (0..cols)
                .map(|i| f64::from(e[r * cols + i]) * f64::from(h[i]))
                .sum();
            assert!((f64::from(out[r]) - exact).abs() < 0.02 * (1.0 + exact.abs()));
        }
        // Rows decode to their codes times the scale, within half a step of the input.
        let mut row = vec![0.0; cols];
        t.row_into(3, &mut row);
        for (i, v) in row.iter().enumerate() {
            assert!((v - e[3 * cols + i]).abs() <= t.scales[3] * 0.5001);
        }
    }

    /// The head's activation limit keeps every sum exact: 32,767 up to D = 512 for any code
    /// width, then ⌊(2^31 − 1) / (bound · D)⌋.
    #[test]
    fn head_limits_per_code_width() {
        for (bound, d, want) in [
            (127, 512, 32_767),
            (128, 512, 32_767),
            (127, 768, 22_017),
            (128, 768, 21_845),
            (32, 768, 32_767),
            (8, 4096, 32_767),
            (32, 4096, 16_383),
        ] {
            assert_eq!(act_limit(d, bound), want, "{bound} {d}");
            assert!(d as i64 * i64::from(bound) * i64::from(want) <= i64::from(i32::MAX));
        }
    }
}
