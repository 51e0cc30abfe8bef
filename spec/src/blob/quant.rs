//! Integer rows (SPEC §4.1): int8 / int6 / int4 codes with an f16 scale per row, optionally
//! after rotating each row by the orthonormal Walsh–Hadamard transform in blocks.
//!
//! Rotation spreads a row's outliers over its whole block, so the per-row scale (set by the
//! largest magnitude) wastes fewer levels on the rest: PR #586 of OpenAI's parameter-golf
//! challenge. The block is the largest power of two dividing the row length (the whole row for
//! D = 512): the larger the block, the more an outlier is spread, and the transform costs only
//! D·log2(block) additions, once per row at load or once per token for a head that absorbs it.

use super::DType;
use crate::hadamard::fht_parts;
use half::f16;

/// A tensor of integer rows as stored: what the engine's integer head uses directly.
///
/// Row r holds `codes[r·cols .. (r+1)·cols]` and `scales[r]`. Its values are
/// `y_c = codes[r·cols + c] · scales[r]` (f32 products) when `rotation_block` is None; when it is
/// `Some(b)`, the values are x = H_b·y applied to each block of b consecutive columns, with H_b the
/// orthonormal Sylvester Walsh–Hadamard matrix, H_b[i][k] = (−1)^popcount(i AND k) / √b —
/// symmetric and its own inverse. So a dot product with a row is `x·h = y·(H_b h)`: a head can
/// transform the hidden state once per token (blockwise) and use the codes directly.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantRows {
    pub rows: usize,
    pub cols: usize,
    /// Bits a code: 8, 6 or 4 (codes are in −2^(bits−1) .. 2^(bits−1) − 1).
    pub bits: u32,
    pub codes: Vec<i8>,
    pub scales: Vec<f32>,
    pub rotation_block: Option<usize>,
}

/// The rotation block for rows of `cols` values: the largest power of two dividing `cols`.
pub fn rotation_block(cols: usize) -> usize {
    if cols == 0 {
        1
    } else {
        cols & cols.wrapping_neg()
    }
}

/// Bytes a row of `cols` codes of `bits` bits takes (rows start on a byte boundary).
pub fn row_bytes(cols: usize, bits: u32) -> usize {
    (bits as usize * cols).div_ceil(8)
}

/// The orthonormal blockwise FHT of a row in place (its own inverse).
pub fn rotate_row(row: &mut [f32], block: usize) {
    if block > 1 {
        for b in row.chunks_exact_mut(block) {
            fht_parts(b, block);
        }
    }
}

/// A problem found while decoding: the row whose scale is not finite, or whose padding bits are
/// not zero (or bytes of the wrong length).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantError {
    NotFiniteScale {
        row: usize,
    },
    NonZeroPadding {
        row: usize,
    },
    /// The bytes are not the dtype's length for the shape, or the dtype holds no integer rows.
    Length,
}

/// Integer rows read in place from a tensor's bytes: one row's codes decoded at a time, so that a
/// reader (the engine building its tables, the blob validator) never holds a full-size copy.
#[derive(Debug, Clone, Copy)]
pub struct QuantRowsRef<'a> {
    pub rows: usize,
    pub cols: usize,
    /// Bits a code: 8, 6 or 4.
    pub bits: u32,
    pub rotation_block: Option<usize>,
    packed: &'a [u8],
    scales: &'a [u8],
}

impl<'a> QuantRowsRef<'a> {
    /// The rows of `dtype` (one with [`DType::quant`]) and shape `[.., cols]` in `bytes`, or None
    /// when `bytes.len()` is not `dtype.byte_len(shape)` or the dtype holds no integer rows.
    pub fn new(dtype: DType, bytes: &'a [u8], shape: &[usize]) -> Option<Self> {
        let (bits, rotated) = dtype.quant()?;
        let cols = shape.last().copied().unwrap_or(1).max(1);
        let rows = shape.iter().product::<usize>() / cols;
        if bytes.len() as u64 != dtype.byte_len(shape) {
            return None;
        }
        let (packed, scales) = bytes.split_at(rows * row_bytes(cols, bits));
        Some(QuantRowsRef {
            rows,
            cols,
            bits,
            rotation_block: rotated.then(|| rotation_block(cols)),
            packed,
            scales,
        })
    }

    /// Row r's scale (f16 → f32); not finite is an error.
    pub fn scale(&self, r: usize) -> Result<f32, QuantError> {
        let s = f16::from_le_bytes([self.scales[2 * r], self.scales[2 * r + 1]]).to_f32();
        if s.is_finite() {
            Ok(s)
        } else {
            Err(QuantError::NotFiniteScale { row: r })
        }
    }

    /// Row r's codes into `out[..cols]` (two's complement in `bits` bits); unused bits that are
    /// not zero are an error.
    pub fn codes_into(&self, r: usize, out: &mut [i8]) -> Result<(), QuantError> {
        let rb = row_bytes(self.cols, self.bits);
        let row = &self.packed[r * rb..(r + 1) * rb];
        let out = &mut out[..self.cols];
        if self.bits == 8 {
            out.iter_mut().zip(row).for_each(|(o, &b)| *o = b as i8);
            return Ok(());
        }
        let bits = self.bits;
        let mut acc = 0u32;
        let mut have = 0u32;
        let mut bytes = row.iter();
        for o in out.iter_mut() {
            while have < bits {
                acc |= u32::from(*bytes.next().unwrap_or(&0)) << have;
                have += 8;
            }
            let v = acc & ((1 << bits) - 1);
            acc >>= bits;
            have -= bits;
            // Two's complement in `bits` bits.
            *o = ((v << (8 - bits)) as u8 as i8) >> (8 - bits);
        }
        if acc != 0 || bytes.any(|&b| b != 0) {
            return Err(QuantError::NonZeroPadding { row: r });
        }
        Ok(())
    }

    /// Checks every scale and every row's padding without keeping anything.
    pub fn validate(&self) -> Result<(), QuantError> {
        for r in 0..self.rows {
            self.scale(r)?;
        }
        let mut buf = vec![0i8; self.cols];
        for r in 0..self.rows {
            self.codes_into(r, &mut buf)?;
        }
        Ok(())
    }
}

impl QuantRows {
    /// Reads integer rows of `dtype` (one with [`DType::quant`]) and shape `[.., cols]`;
    /// `bytes.len()` must be `dtype.byte_len(shape)`.
    pub fn decode(dtype: DType, bytes: &[u8], shape: &[usize]) -> Result<Self, QuantError> {
        let Some(rows) = QuantRowsRef::new(dtype, bytes, shape) else {
            return Err(QuantError::Length);
        };
        let scales = (0..rows.rows)
            .map(|r| rows.scale(r))
            .collect::<Result<Vec<f32>, _>>()?;
        let mut codes = vec![0i8; rows.rows * rows.cols];
        for (r, out) in codes.chunks_exact_mut(rows.cols).enumerate() {
            rows.codes_into(r, out)?;
        }
        Ok(QuantRows {
            rows: rows.rows,
            cols: rows.cols,
            bits: rows.bits,
            codes,
            scales,
            rotation_block: rows.rotation_block,
        })
    }

    /// Every value as f32, rotation undone: what `TensorView::to_f32` returns.
    pub fn to_f32(&self) -> Vec<f32> {
        let mut out: Vec<f32> = Vec::with_capacity(self.rows * self.cols);
        for (row, &s) in self.codes.chunks_exact(self.cols).zip(&self.scales) {
            let start = out.len();
            out.extend(row.iter().map(|&q| f32::from(q) * s));
            if let Some(b) = self.rotation_block {
                rotate_row(&mut out[start..], b);
            }
        }
        out
    }
}

/// Writes rows of `cols` values as `dtype` (one with [`DType::quant`]): each row rotated first
/// if the dtype says so, then scaled by an f16 scale and rounded to codes. For 8 bits the scale
/// is max|row| / 127 (int8's v1 rule); for 6 and 4 bits it is the one of 64 clipping levels
/// (max|row|·(1 − i/128) / qmax, i < 64) with the least squared error on the row: clipping a
/// few large values buys finer steps for all the others, which at 4 bits matters. Fails with the
/// index of the row's largest element when its scale overflows f16.
pub fn encode_rows(values: &[f32], cols: usize, dtype: DType) -> Result<Vec<u8>, usize> {
    let (bits, rotated) = dtype.quant().unwrap_or((8, false));
    let qmax = ((1i32 << (bits - 1)) - 1) as f32;
    let block = rotation_block(cols);
    let rows = values.len() / cols.max(1);
    let rb = row_bytes(cols, bits);
    let mut out = vec![0u8; rows * rb];
    let mut scales = Vec::with_capacity(rows);
    let mut q = vec![0i8; cols];
    for (r, orig) in values.chunks_exact(cols).enumerate() {
        let mut row = orig.to_vec();
        if rotated {
            rotate_row(&mut row, block);
        }
        let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        let overflow = || {
            let (j, _) = orig
                .iter()
                .enumerate()
                .fold((0, -1f32), |(bj, bm), (j, v)| {
                    if v.abs() > bm { (j, v.abs()) } else { (bj, bm) }
                });
            r * cols + j
        };
        let candidates = if bits == 8 { 1 } else { 64 };
        let mut best = (f64::INFINITY, f16::ZERO);
        for i in 0..candidates {
            let scale = f16::from_f32(max * (1.0 - i as f32 / 128.0) / qmax);
            if !scale.is_finite() {
                return Err(overflow());
            }
            let s = scale.to_f32();
            let err: f64 = row
                .iter()
                .map(|&v| {
                    let x = quantize(v, s, qmax);
                    f64::from(v - x * s).powi(2)
                })
                .sum();
            if err < best.0 {
                best = (err, scale);
            }
        }
        let s = best.1.to_f32();
        for (c, &v) in row.iter().enumerate() {
            q[c] = quantize(v, s, qmax) as i8;
        }
        let dst = &mut out[r * rb..(r + 1) * rb];
        if bits == 8 {
            for (d, &c) in dst.iter_mut().zip(&q) {
                *d = c as u8;
            }
        } else {
            let mask = (1u32 << bits) - 1;
            for (c, &code) in q.iter().enumerate() {
                let bit = c * bits as usize;
                let v = (code as i32 as u32) & mask;
                dst[bit / 8] |= (v << (bit % 8)) as u8;
                if bit % 8 + bits as usize > 8 {
                    dst[bit / 8 + 1] |= (v >> (8 - bit % 8)) as u8;
                }
            }
        }
        scales.push(best.1);
    }
    out.extend(scales.iter().flat_map(|s| s.to_le_bytes()));
    Ok(out)
}

fn quantize(v: f32, s: f32, qmax: f32) -> f32 {
    if s > 0.0 {
        (v / s).round().clamp(-qmax, qmax)
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2
            })
            .collect()
    }

    #[test]
    fn rotation_block_is_the_largest_power_of_two_dividing_the_row() {
        assert_eq!(rotation_block(512), 512);
        assert_eq!(rotation_block(768), 256);
        assert_eq!(rotation_block(7), 1);
        assert_eq!(rotation_block(2), 2);
    }

    /// Every dtype round-trips within half a step per value, with the f64 reference of the
    /// rotation (the Sylvester matrix) for the rotated ones, and int8 matches the v1 encoder.
    #[test]
    fn encode_decode_against_the_reference() {
        for &(rows, cols) in &[(3, 512), (2, 24), (4, 7), (1, 1)] {
            let v = values(rows * cols, (rows * 1000 + cols) as u64);
            for dtype in [
                DType::Int8,
                DType::Int6,
                DType::Int4,
                DType::Int8Rot,
                DType::Int6Rot,
                DType::Int4Rot,
            ] {
                let bytes = encode_rows(&v, cols, dtype).unwrap();
                assert_eq!(bytes.len() as u64, dtype.byte_len(&[rows, cols]));
                let q = QuantRows::decode(dtype, &bytes, &[rows, cols]).unwrap();
                let (bits, rotated) = dtype.quant().unwrap();
                assert_eq!(q.bits, bits);
                let b = rotation_block(cols);
                let got = q.to_f32();
                for r in 0..rows {
                    let s = f64::from(q.scales[r]);
                    // The reference: y = codes·scale in f64, x = H_b y blockwise.
                    let y: Vec<f64> = (0..cols)
                        .map(|c| f64::from(q.codes[r * cols + c]) * s)
                        .collect();
                    let x: Vec<f64> = (0..cols)
                        .map(|c| {
                            if !rotated {
                                return y[c];
                            }
                            let (base, i) = (c / b * b, c % b);
                            (0..b)
                                .map(|k| {
                                    let sign = if (i & k).count_ones() % 2 == 0 {
                                        1.0
                                    } else {
                                        -1.0
                                    };
                                    sign / (b as f64).sqrt() * y[base + k]
                                })
                                .sum()
                        })
                        .collect();
                    for (c, xc) in x.iter().enumerate() {
                        let e = r * cols + c;
                        assert!((xc - f64::from(got[e])).abs() < 1e-6, "{dtype:?} {e}");
                    }
                    // Quantization error in the stored (rotated) domain: clipped values aside,
                    // within half a step.
                    let max = v[r * cols..(r + 1) * cols]
                        .iter()
                        .fold(0f32, |m, x| m.max(x.abs()));
                    let qmax = f64::from((1 << (bits - 1)) - 1);
                    if max > 0.0 {
                        assert!(
                            s <= f64::from(max)
                                * 1.01
                                * if rotated { (b as f64).sqrt() } else { 1.0 }
                                / qmax
                                * 1.01
                                + 1e-12
                        );
                    }
                }
                if dtype == DType::Int8 {
                    assert_eq!(bytes, super::super::encode_int8_rows(&v, cols));
                }
                // Rounding error is bounded by the step: the whole tensor's RMS error is small.
                let rms: f64 = (v
                    .iter()
                    .zip(&got)
                    .map(|(a, b)| f64::from(a - b).powi(2))
                    .sum::<f64>()
                    / v.len() as f64)
                    .sqrt();
                let tol = match bits {
                    8 => 0.002,
                    6 => 0.005,
                    _ => 0.02,
                };
                assert!(rms < tol, "{dtype:?} {rows}x{cols}: rms {rms}");
            }
        }
    }

    #[test]
    fn codes_use_their_whole_range_and_padding_is_checked() {
        // Four int6 codes fill three bytes; 7 int4 codes leave half a byte of padding.
        let v = [1.0, -1.0, 0.5, -0.25, 0.0, 1.0, -1.0];
        let bytes = encode_rows(&v, 7, DType::Int4).unwrap();
        let q = QuantRows::decode(DType::Int4, &bytes, &[1, 7]).unwrap();
        assert_eq!(q.codes, [7, -7, 4, -2, 0, 7, -7]);
        let mut bad = bytes.clone();
        bad[3] |= 0x10;
        assert_eq!(
            QuantRows::decode(DType::Int4, &bad, &[1, 7]),
            Err(QuantError::NonZeroPadding { row: 0 })
        );
        // −8 is a valid code too (two's complement).
        let mut low = bytes.clone();
        low[0] = 0x08;
        assert_eq!(
            QuantRows::decode(DType::Int4, &low, &[1, 7]).unwrap().codes[0],
            -8
        );
        let mut nan = bytes;
        nan[4..6].copy_from_slice(&f16::NAN.to_le_bytes());
        assert_eq!(
            QuantRows::decode(DType::Int4, &nan, &[1, 7]),
            Err(QuantError::NotFiniteScale { row: 0 })
        );
        let e = encode_rows(&[1.0, -9.0e6], 2, DType::Int6).unwrap_err();
        assert_eq!(e, 1);
    }
}
