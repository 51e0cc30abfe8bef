//! SHA-256 whose whole state is plain data (eight words, a length, a partial block), so that an
//! upload's running hash lives in stable memory between calls and across upgrades. The `sha2`
//! crate's hasher cannot be serialized; its compression function (`compress256`) is public.

use candid::{CandidType, Deserialize};
use sha2::compress256;
use sha2::digest::generic_array::GenericArray;

const H0: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

#[derive(Debug, Clone, PartialEq, Eq, CandidType, Deserialize)]
pub struct Sha256State {
    state: Vec<u32>,
    /// Bytes hashed so far.
    len: u64,
    /// The bytes of the block not yet complete (fewer than 64).
    #[serde(with = "serde_bytes")]
    pending: Vec<u8>,
}

impl Default for Sha256State {
    fn default() -> Self {
        Sha256State {
            state: H0.to_vec(),
            len: 0,
            pending: Vec::new(),
        }
    }
}

impl Sha256State {
    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    fn words(&self) -> [u32; 8] {
        let mut w = H0;
        if self.state.len() == 8 {
            w.copy_from_slice(&self.state);
        }
        w
    }

    fn compress(words: &mut [u32; 8], data: &[u8]) {
        let blocks: Vec<GenericArray<u8, _>> = data
            .chunks_exact(64)
            .map(GenericArray::clone_from_slice)
            .collect();
        compress256(words, &blocks);
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        let mut words = self.words();
        if !self.pending.is_empty() {
            let take = (64 - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() == 64 {
                Self::compress(&mut words, &self.pending);
                self.pending.clear();
            }
        }
        let whole = data.len() / 64 * 64;
        // In slices of 64 KiB: the block array is a copy.
        for part in data[..whole].chunks(64 * 1024) {
            Self::compress(&mut words, part);
        }
        self.pending.extend_from_slice(&data[whole..]);
        self.state = words.to_vec();
    }

    /// The digest of what was hashed so far (the state itself is left as it is).
    pub fn finish(&self) -> [u8; 32] {
        let mut words = self.words();
        let mut tail = self.pending.clone();
        tail.push(0x80);
        while tail.len() % 64 != 56 {
            tail.push(0);
        }
        tail.extend_from_slice(&(self.len.wrapping_mul(8)).to_be_bytes());
        Self::compress(&mut words, &tail);
        let mut out = [0u8; 32];
        for (o, w) in out.chunks_exact_mut(4).zip(words) {
            o.copy_from_slice(&w.to_be_bytes());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn equals_sha2_for_every_split() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        for len in [0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 1000] {
            let want: [u8; 32] = Sha256::digest(&data[..len]).into();
            for split in [0, 1, 3, 63, 64, 100, 500] {
                let mut s = Sha256State::default();
                let mut rest = &data[..len];
                while !rest.is_empty() {
                    let n = split.clamp(1, rest.len());
                    s.update(&rest[..n]);
                    rest = &rest[n..];
                }
                assert_eq!(s.finish(), want, "len {len} split {split}");
                assert_eq!(s.len(), len as u64);
            }
        }
    }
}
