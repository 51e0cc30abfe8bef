//! Ternary weights (SPEC §4): at 2 bits, the `4x` byte layout and the `16x` SIMD tile layout
//! (codes 00 = 0, 01 = +1, 10 = −1, 11 invalid); at 1.6 bits, the `5x` base-3 layout (five trits a
//! byte, digits 0 = 0, 1 = +1, 2 = −1).

/// The 2-bit code of a ternary value.
pub fn encode(v: i8) -> u8 {
    match v {
        1 => 0b01,
        -1 => 0b10,
        _ => 0b00,
    }
}

/// The value of a 2-bit code, or None for the invalid code 11.
pub fn decode(code: u8) -> Option<i8> {
    match code & 0b11 {
        0b00 => Some(0),
        0b01 => Some(1),
        0b10 => Some(-1),
        _ => None,
    }
}

/// Bytes of a `4x` tensor of `numel` weights.
pub fn packed4x_len(numel: usize) -> usize {
    numel.div_ceil(4)
}

/// Bytes of a `16x` tensor of shape [a, n, m].
pub fn packed16x_len(a: usize, n: usize, m: usize) -> usize {
    16 * a * n.div_ceil(4) * m.div_ceil(16)
}

pub fn pack4x(values: &[i8]) -> Vec<u8> {
    let mut out = vec![0u8; packed4x_len(values.len())];
    for (e, &v) in values.iter().enumerate() {
        out[e / 4] |= encode(v) << (2 * (e % 4));
    }
    out
}

/// Where element (row r, column c) of a block lives in the 16x layout: (u32 word index within the
/// block, bit shift).
fn tile_position(r: usize, c: usize, col_groups: usize) -> (usize, usize) {
    let tile = (r / 4) * col_groups + c / 16;
    (tile * 4 + r % 4, 2 * (c % 16))
}

/// Packs [a, n, m] row-major values into 4×16 tiles of u32 words, little-endian bytes.
pub fn pack16x(values: &[i8], a: usize, n: usize, m: usize) -> Vec<u8> {
    let col_groups = m.div_ceil(16);
    let words_per_block = 4 * n.div_ceil(4) * col_groups;
    let mut words = vec![0u32; a * words_per_block];
    for k in 0..a {
        for r in 0..n {
            for c in 0..m {
                let (w, shift) = tile_position(r, c, col_groups);
                let v = values[(k * n + r) * m + c];
                words[k * words_per_block + w] |= u32::from(encode(v)) << shift;
            }
        }
    }
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// Bytes of a `5x` tensor of `numel` weights.
pub fn packed5x_len(numel: usize) -> usize {
    numel.div_ceil(5)
}

/// Element e goes to byte ⌊e/5⌋ as base-3 digit e mod 5 (the least significant digit first):
/// byte = Σ d_i·3^i, at most 242. Unused digits of the last byte are 0.
pub fn pack5x(values: &[i8]) -> Vec<u8> {
    values
        .chunks(5)
        .map(|c| c.iter().rev().fold(0u8, |acc, &v| acc * 3 + encode(v)))
        .collect()
}

/// The five trits of every byte value 0..=242, computed once at compile time.
const TRITS: [[i8; 5]; 243] = {
    let mut t = [[0i8; 5]; 243];
    let mut b = 0;
    while b < 243 {
        let mut v = b;
        let mut i = 0;
        while i < 5 {
            t[b][i] = match v % 3 {
                1 => 1,
                2 => -1,
                _ => 0,
            };
            v /= 3;
            i += 1;
        }
        b += 1;
    }
    t
};

/// Unpacks a `5x` tensor of `numel` weights; `bytes.len()` must be `packed5x_len(numel)`.
pub fn unpack5x(bytes: &[u8], numel: usize) -> Result<Vec<i8>, UnpackError> {
    let mut out = Vec::with_capacity(numel + 4);
    for (i, &b) in bytes.iter().enumerate() {
        let trits = TRITS
            .get(usize::from(b))
            .ok_or(UnpackError::InvalidByte { byte: i, value: b })?;
        out.extend_from_slice(trits);
    }
    // The last byte's unused digits are padding, and must be 0.
    if out[numel.min(out.len())..].iter().any(|&t| t != 0) {
        return Err(UnpackError::NonZeroPadding {
            byte: bytes.len() - 1,
        });
    }
    out.truncate(numel);
    Ok(out)
}

/// A problem found while unpacking: the index of the weight with the invalid code 11, of a
/// padding position whose code is not 00, or of a `5x` byte above 242.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnpackError {
    InvalidCode { element: usize },
    NonZeroPadding { byte: usize },
    InvalidByte { byte: usize, value: u8 },
}

/// Unpacks a `4x` tensor of `numel` weights; `bytes.len()` must be `packed4x_len(numel)`.
pub fn unpack4x(bytes: &[u8], numel: usize) -> Result<Vec<i8>, UnpackError> {
    let mut out = Vec::with_capacity(numel);
    for e in 0..numel {
        let code = (bytes[e / 4] >> (2 * (e % 4))) & 0b11;
        out.push(decode(code).ok_or(UnpackError::InvalidCode { element: e })?);
    }
    if !numel.is_multiple_of(4) {
        let last = bytes.len() - 1;
        if bytes[last] >> (2 * (numel % 4)) != 0 {
            return Err(UnpackError::NonZeroPadding { byte: last });
        }
    }
    Ok(out)
}

/// Unpacks a `16x` tensor of shape [a, n, m]; `bytes.len()` must be `packed16x_len(a, n, m)`.
pub fn unpack16x(bytes: &[u8], a: usize, n: usize, m: usize) -> Result<Vec<i8>, UnpackError> {
    let col_groups = m.div_ceil(16);
    let words_per_block = 4 * n.div_ceil(4) * col_groups;
    let word = |i: usize| {
        u32::from_le_bytes([
            bytes[4 * i],
            bytes[4 * i + 1],
            bytes[4 * i + 2],
            bytes[4 * i + 3],
        ])
    };
    let mut out = vec![0i8; a * n * m];
    // Walk every code position once so padding is checked too.
    for k in 0..a {
        for rp in 0..n.div_ceil(4) * 4 {
            for cp in 0..col_groups * 16 {
                let (w, shift) = tile_position(rp, cp, col_groups);
                let wi = k * words_per_block + w;
                let code = ((word(wi) >> shift) & 0b11) as u8;
                if rp < n && cp < m {
                    let e = (k * n + rp) * m + cp;
                    out[e] = decode(code).ok_or(UnpackError::InvalidCode { element: e })?;
                } else if code != 0 {
                    return Err(UnpackError::NonZeroPadding {
                        byte: 4 * wi + shift / 8,
                    });
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(len: usize, seed: u64) -> Vec<i8> {
        let mut s = seed;
        (0..len)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 33) % 3) as i8 - 1
            })
            .collect()
    }

    #[test]
    fn round_trips_both_layouts() {
        for &(a, n, m) in &[
            (1, 1, 1),
            (8, 5, 7),
            (32, 16, 16),
            (32, 43, 16),
            (8, 171, 64),
            (1, 3, 33),
        ] {
            let v = values(a * n * m, (a * 1000 + n * 10 + m) as u64);
            let p4 = pack4x(&v);
            assert_eq!(p4.len(), packed4x_len(v.len()));
            assert_eq!(unpack4x(&p4, v.len()).unwrap(), v);
            let p5 = pack5x(&v);
            assert_eq!(p5.len(), packed5x_len(v.len()));
            assert_eq!(unpack5x(&p5, v.len()).unwrap(), v);
            let p16 = pack16x(&v, a, n, m);
            assert_eq!(p16.len(), packed16x_len(a, n, m));
            assert_eq!(unpack16x(&p16, a, n, m).unwrap(), v);
        }
    }

    #[test]
    fn sixteen_x_tile_holds_four_rows_at_one_column_per_shift() {
        // Row r, column c of block 0 of a [1, 4, 16] tensor: word r, bits 2c.
        let mut v = vec![0i8; 64];
        v[2 * 16 + 5] = -1; // row 2, column 5
        v[3 * 16 + 15] = 1; // row 3, column 15
        let p = pack16x(&v, 1, 4, 16);
        let words: Vec<u32> = p
            .chunks(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        assert_eq!(words, vec![0, 0, 0b10 << 10, 0b01 << 30]);
    }

    /// The base-3 layout against its definition, digit by digit.
    #[test]
    fn five_x_is_base_three_least_significant_first() {
        // +1, −1, 0, 0, +1 → 1 + 2·3 + 0 + 0 + 1·81 = 88; then −1 alone → 2.
        assert_eq!(pack5x(&[1, -1, 0, 0, 1, -1]), vec![88, 2]);
        assert_eq!(pack5x(&[-1; 5]), vec![242]);
        assert_eq!(
            unpack5x(&[243], 5),
            Err(UnpackError::InvalidByte {
                byte: 0,
                value: 243
            })
        );
        // 2 weights in the last byte: digits 2..4 are padding (9 = digit 2 set).
        assert_eq!(
            unpack5x(&[88, 9], 7),
            Err(UnpackError::NonZeroPadding { byte: 1 })
        );
        assert_eq!(unpack5x(&[88, 8], 7).unwrap(), vec![1, -1, 0, 0, 1, -1, -1]);
    }

    #[test]
    fn invalid_codes_and_padding_are_refused() {
        assert_eq!(
            unpack4x(&[0b11], 1),
            Err(UnpackError::InvalidCode { element: 0 })
        );
        assert_eq!(
            unpack4x(&[0b0100], 1),
            Err(UnpackError::NonZeroPadding { byte: 0 })
        );
        let mut p = pack16x(&[1, 0, -1], 1, 1, 3);
        p[1] = 0b01; // column 4 of row 0: padding
        assert!(matches!(
            unpack16x(&p, 1, 1, 3),
            Err(UnpackError::NonZeroPadding { .. })
        ));
        let mut p = pack16x(&[1, 0, -1], 1, 1, 3);
        p[0] |= 0b1100;
        assert_eq!(
            unpack16x(&p, 1, 1, 3),
            Err(UnpackError::InvalidCode { element: 1 })
        );
    }
}
