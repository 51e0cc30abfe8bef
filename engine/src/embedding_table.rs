//! An embedding table as the engine holds it (SPEC §2.6): each row quantized at load to int8
//! codes Q(E[r], 127) with its own scale, kept as i16 (so the head's dot products need no
//! widening) with the row length padded to a multiple of 8. The same table serves the input
//! (a row, decoded) and the tied output head (integer dot products against the codes of h).

use crate::int_math::CodeMatrix;
use crate::quant::{EMB_LIMIT, act_limit, quantize};

#[derive(Debug, Clone)]
pub struct EmbeddingTable {
    cols: usize,
    /// The codes, in the kernels' panel layout.
    codes: CodeMatrix,
    scales: Vec<f32>,
}

/// Buffers of [`EmbeddingTable::logits`].
#[derive(Debug, Default)]
pub struct HeadScratch {
    codes: Vec<i16>,
    dots: Vec<i32>,
}

impl EmbeddingTable {
    /// From a row-major [rows, cols] f32 table (the blob's tensor decoded).
    pub fn new(values: &[f32], cols: usize) -> Self {
        let rows = values.len() / cols.max(1);
        let mut dense = vec![0i16; rows * cols];
        let mut scales = Vec::with_capacity(rows);
        for (row, out) in values.chunks_exact(cols).zip(dense.chunks_exact_mut(cols)) {
            scales.push(quantize(row, EMB_LIMIT, out));
        }
        EmbeddingTable {
            cols,
            codes: CodeMatrix::from_dense(&dense, rows, cols),
            scales,
        }
    }

    pub fn rows(&self) -> usize {
        self.codes.rows()
    }

    /// out[i] = code[r][i] · scale[r].
    pub fn row_into(&self, r: usize, out: &mut [f32]) {
        let s = self.scales[r];
        out.iter_mut()
            .zip(self.codes.row(r))
            .for_each(|(o, c)| *o = f32::from(*c) * s);
    }

    /// out[i] += code[r][i] · scale[r].
    pub fn add_row(&self, r: usize, out: &mut [f32]) {
        let s = self.scales[r];
        out.iter_mut()
            .zip(self.codes.row(r))
            .for_each(|(o, c)| *o += f32::from(*c) * s);
    }

    /// The activation limit of the head: exact i32 sums of `cols` products against int8 codes.
    pub fn head_limit(&self) -> i32 {
        act_limit(self.cols, EMB_LIMIT)
    }

    /// ℓ_r = (f32(Σ_i code[r][i]·q_i) · scale[r]) · s for the first out.len() rows, where
    /// (q, s) = Q(h, head_limit) (SPEC §2.6).
    pub fn logits(&self, h: &[f32], out: &mut [f32], b: &mut HeadScratch) {
        let rows = out.len();
        b.codes.clear();
        b.codes.resize(self.codes.cols_padded(), 0);
        let s = quantize(h, self.head_limit(), &mut b.codes);
        b.dots.resize(self.codes.rows_padded(), 0);
        self.codes.matvec(&b.codes, &mut b.dots, rows);
        for ((o, d), sc) in out.iter_mut().zip(&b.dots).zip(&self.scales) {
            *o = (*d as f32 * sc) * s;
        }
    }

    pub fn heap_bytes(&self) -> usize {
        self.codes.heap_bytes() + 4 * self.scales.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logits_are_the_exact_integer_products_scaled() {
        let (rows, cols) = (11, 20);
        let e: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 13 % 29) as f32 - 14.0) / 7.0)
            .collect();
        let t = EmbeddingTable::new(&e, cols);
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
}
