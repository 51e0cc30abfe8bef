//! The upload state machine: `begin` → `chunk`… (any order, idempotent) → `commit` | `abort`.
//! Pure logic over a [`BlobStore`], so every transition is tested natively; the canister runs it
//! over stable memory. One upload at a time; it survives upgrades (its state is in stable memory).

use candid::{CandidType, Deserialize};
use sha2::{Digest, Sha256};
use std::ops::Range;
pub use walsh_interface::UploadError;
use walsh_spec::upload::{MAX_BLOB_SIZE, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE, chunk_count, chunk_range};

/// Where upload bytes go: one of two slots in stable memory (the other holds the active blob).
pub trait BlobStore {
    /// Makes `slot` able to hold `size` bytes.
    fn reserve(&mut self, slot: u8, size: u64) -> Result<(), String>;
    fn write(&mut self, slot: u8, offset: u64, data: &[u8]);
    fn read(&self, slot: u8, offset: u64, len: u64) -> Vec<u8>;
}

#[derive(Debug, Clone, PartialEq, Eq, CandidType, Deserialize)]
pub struct UploadSession {
    pub slot: u8,
    pub total_size: u64,
    pub sha256: Vec<u8>,
    pub chunk_size: u32,
    pub received: Vec<bool>,
    pub started_at_ns: u64,
}

fn hex(b: &[u8]) -> String {
    walsh_spec::blob::hex(b)
}

impl UploadSession {
    pub fn begin(
        slot: u8,
        total_size: u64,
        sha256: Vec<u8>,
        chunk_size: u32,
        now_ns: u64,
        store: &mut dyn BlobStore,
    ) -> Result<Self, UploadError> {
        if total_size == 0 || total_size > MAX_BLOB_SIZE {
            return Err(UploadError::BadSize(total_size));
        }
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size) {
            return Err(UploadError::BadChunkSize(chunk_size));
        }
        if sha256.len() != 32 {
            return Err(UploadError::BadSha(sha256.len()));
        }
        store
            .reserve(slot, total_size)
            .map_err(UploadError::Storage)?;
        let chunks = chunk_count(total_size, chunk_size) as usize;
        Ok(UploadSession {
            slot,
            total_size,
            sha256,
            chunk_size,
            received: vec![false; chunks],
            started_at_ns: now_ns,
        })
    }

    pub fn chunks(&self) -> u32 {
        self.received.len() as u32
    }

    /// The byte range chunk `index` covers (the last chunk may be short).
    pub fn range(&self, index: u32) -> Result<Range<u64>, UploadError> {
        chunk_range(self.total_size, self.chunk_size, u64::from(index)).ok_or(
            UploadError::BadIndex {
                index,
                chunks: self.chunks(),
            },
        )
    }

    /// Stores a chunk. Sending a chunk again overwrites it (retries are harmless); what was
    /// sent is judged as a whole by the SHA-256 at commit.
    pub fn chunk(
        &mut self,
        index: u32,
        data: &[u8],
        store: &mut dyn BlobStore,
    ) -> Result<(), UploadError> {
        let range = self.range(index)?;
        let expected = range.end - range.start;
        if data.len() as u64 != expected {
            return Err(UploadError::BadChunkLen {
                index,
                expected,
                got: data.len() as u64,
            });
        }
        store.write(self.slot, range.start, data);
        self.received[index as usize] = true;
        Ok(())
    }

    pub fn missing(&self) -> Vec<u32> {
        (0..self.chunks())
            .filter(|&i| !self.received[i as usize])
            .collect()
    }

    pub fn received_count(&self) -> u32 {
        self.received.iter().filter(|r| **r).count() as u32
    }

    /// Checks completeness and the SHA-256, and returns the blob's bytes for the engine to
    /// validate. The session stays as it is: the caller ends it once the model is live.
    pub fn assemble(&self, store: &dyn BlobStore) -> Result<Vec<u8>, UploadError> {
        let missing = self.missing();
        if let Some(&first) = missing.first() {
            return Err(UploadError::Incomplete {
                missing: missing.len() as u32,
                chunks: self.chunks(),
                first,
            });
        }
        let bytes = store.read(self.slot, 0, self.total_size);
        let digest = Sha256::digest(&bytes);
        if digest.as_slice() != self.sha256.as_slice() {
            return Err(UploadError::ShaMismatch {
                declared: hex(&self.sha256),
                received: hex(&digest),
            });
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct MemStore {
        slots: [Vec<u8>; 2],
    }

    impl BlobStore for MemStore {
        fn reserve(&mut self, slot: u8, size: u64) -> Result<(), String> {
            self.slots[slot as usize].resize(size as usize, 0);
            Ok(())
        }
        fn write(&mut self, slot: u8, offset: u64, data: &[u8]) {
            let o = offset as usize;
            self.slots[slot as usize][o..o + data.len()].copy_from_slice(data);
        }
        fn read(&self, slot: u8, offset: u64, len: u64) -> Vec<u8> {
            self.slots[slot as usize][offset as usize..(offset + len) as usize].to_vec()
        }
    }

    fn blob(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn chunks_in_any_order_with_duplicates() {
        let data = blob(5000);
        let sha = Sha256::digest(&data).to_vec();
        let mut store = MemStore::default();
        let mut s = UploadSession::begin(1, 5000, sha, 1024, 7, &mut store).unwrap();
        assert_eq!(s.chunks(), 5);
        assert_eq!(s.range(4).unwrap(), 4096..5000);
        for i in [3u32, 0, 4, 3, 1] {
            let r = s.range(i).unwrap();
            s.chunk(i, &data[r.start as usize..r.end as usize], &mut store)
                .unwrap();
        }
        assert_eq!(s.missing(), vec![2]);
        assert!(matches!(
            s.assemble(&store),
            Err(UploadError::Incomplete {
                missing: 1,
                first: 2,
                ..
            })
        ));
        s.chunk(2, &data[2048..3072], &mut store).unwrap();
        assert_eq!(s.assemble(&store).unwrap(), data);
    }

    #[test]
    fn refuses_bad_requests() {
        let mut store = MemStore::default();
        let sha = vec![0u8; 32];
        assert_eq!(
            UploadSession::begin(1, 0, sha.clone(), 1024, 0, &mut store),
            Err(UploadError::BadSize(0))
        );
        assert_eq!(
            UploadSession::begin(1, 10, sha.clone(), MAX_CHUNK_SIZE + 1, 0, &mut store),
            Err(UploadError::BadChunkSize(MAX_CHUNK_SIZE + 1))
        );
        assert_eq!(
            UploadSession::begin(1, 10, vec![1, 2], 1024, 0, &mut store),
            Err(UploadError::BadSha(2))
        );
        let mut s = UploadSession::begin(1, 3000, sha, 1024, 0, &mut store).unwrap();
        assert_eq!(
            s.chunk(3, &[0; 10], &mut store),
            Err(UploadError::BadIndex {
                index: 3,
                chunks: 3
            })
        );
        assert_eq!(
            s.chunk(2, &[0; 1024], &mut store),
            Err(UploadError::BadChunkLen {
                index: 2,
                expected: 952,
                got: 1024
            })
        );
    }

    #[test]
    fn corrupted_chunk_fails_the_checksum() {
        let data = blob(3000);
        let sha = Sha256::digest(&data).to_vec();
        let mut store = MemStore::default();
        let mut s = UploadSession::begin(0, 3000, sha, 1024, 0, &mut store).unwrap();
        for i in 0..3u32 {
            let r = s.range(i).unwrap();
            let mut c = data[r.start as usize..r.end as usize].to_vec();
            if i == 1 {
                c[5] ^= 1;
            }
            s.chunk(i, &c, &mut store).unwrap();
        }
        let e = s.assemble(&store).unwrap_err();
        assert!(matches!(e, UploadError::ShaMismatch { .. }), "{e}");
    }
}
