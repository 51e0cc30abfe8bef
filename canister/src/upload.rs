//! The upload state machine: `begin` → `chunk`… (any order, idempotent) → `commit` | `abort`.
//! Pure logic over a [`BlobStore`], so every transition is tested natively; the canister runs it
//! over stable memory. One upload at a time; it survives upgrades (its state is in stable memory).

use crate::hash::Sha256State;
use candid::{CandidType, Deserialize};
use std::ops::Range;
pub use walsh_interface::UploadError;
use walsh_interface::{ChunkRange, UploadStatus};
use walsh_spec::upload::{
    MAX_BLOB_SIZE, MAX_CHUNK_SIZE, MAX_CHUNKS, MIN_CHUNK_SIZE, chunk_count, chunk_range,
};

/// Bytes one call may hash beyond the chunk it brought (catching up with chunks that arrived out
/// of order, or re-hashing after a chunk was changed): about 5 billion instructions, an eighth of
/// an update's limit.
pub const HASH_BYTES_PER_CALL: u64 = 32 << 20;

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
    /// One bit per chunk (at most [`MAX_CHUNKS`]).
    #[serde(with = "serde_bytes")]
    received: Vec<u8>,
    received_count: u32,
    pub started_at_ns: u64,
    /// Chunks `0..hashed_chunks` are in `hash`, in order: each byte is hashed once, as it
    /// arrives (or as soon as the chunks before it have), not all at once at commit.
    hashed_chunks: u32,
    hash: Sha256State,
    /// SHA-256 of the blob's content (all but its last 32 bytes: what its own trailing checksum
    /// covers), taken from the running hash as it passed that point.
    content_sha256: Option<Vec<u8>>,
}

fn hex(b: &[u8]) -> String {
    walsh_spec::blob::hex(b)
}

/// What a commit hands to the engine: the blob and its content's SHA-256 (None for a blob too
/// short to have one: the engine refuses it before looking for a checksum).
pub struct Assembled {
    pub bytes: Vec<u8>,
    pub content_sha256: Option<[u8; 32]>,
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
        let chunks = chunk_count(total_size, chunk_size);
        if chunks > u64::from(MAX_CHUNKS) {
            return Err(UploadError::TooManyChunks { chunks, chunk_size });
        }
        if sha256.len() != 32 {
            return Err(UploadError::BadSha(sha256.len() as u64));
        }
        store
            .reserve(slot, total_size)
            .map_err(UploadError::Storage)?;
        Ok(UploadSession {
            slot,
            total_size,
            sha256,
            chunk_size,
            received: vec![0; (chunks as usize).div_ceil(8)],
            received_count: 0,
            started_at_ns: now_ns,
            hashed_chunks: 0,
            hash: Sha256State::default(),
            content_sha256: None,
        })
    }

    pub fn chunks(&self) -> u32 {
        chunk_count(self.total_size, self.chunk_size) as u32
    }

    fn is_received(&self, index: u32) -> bool {
        self.received[index as usize / 8] & (1 << (index % 8)) != 0
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
    /// sent is judged as a whole by the SHA-256 at commit. A chunk that changes bytes already
    /// hashed restarts the running hash.
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
        if index < self.hashed_chunks
            && store.read(self.slot, range.start, expected).as_slice() != data
        {
            self.hashed_chunks = 0;
            self.hash = Sha256State::default();
            self.content_sha256 = None;
        }
        store.write(self.slot, range.start, data);
        if !self.is_received(index) {
            self.received[index as usize / 8] |= 1 << (index % 8);
            self.received_count += 1;
        }
        if index == self.hashed_chunks {
            self.hash_chunk(range.start, data);
        }
        self.advance_hash(store, HASH_BYTES_PER_CALL);
        Ok(())
    }

    /// Hashes the next chunk in order (which starts at byte `start`).
    fn hash_chunk(&mut self, start: u64, data: &[u8]) {
        let content_end = self.total_size.saturating_sub(32);
        let end = start + data.len() as u64;
        if self.content_sha256.is_none() && self.total_size >= 32 && content_end <= end {
            let split = (content_end - start) as usize;
            self.hash.update(&data[..split]);
            self.content_sha256 = Some(self.hash.finish().to_vec());
            self.hash.update(&data[split..]);
        } else {
            self.hash.update(data);
        }
        self.hashed_chunks += 1;
    }

    /// Hashes received chunks in order, at most about `budget` bytes.
    fn advance_hash(&mut self, store: &dyn BlobStore, budget: u64) {
        let mut spent = 0u64;
        while self.hashed_chunks < self.chunks()
            && self.is_received(self.hashed_chunks)
            && spent < budget
        {
            let Ok(r) = self.range(self.hashed_chunks) else {
                return;
            };
            let bytes = store.read(self.slot, r.start, r.end - r.start);
            spent += bytes.len() as u64;
            self.hash_chunk(r.start, &bytes);
        }
    }

    /// Bytes hashed so far.
    pub fn hashed_bytes(&self) -> u64 {
        self.hash.len()
    }

    /// The missing chunks as ranges.
    pub fn missing(&self) -> Vec<ChunkRange> {
        let mut out: Vec<ChunkRange> = Vec::new();
        for i in (0..self.chunks()).filter(|&i| !self.is_received(i)) {
            match out.last_mut() {
                Some(r) if r.end == i => r.end = i + 1,
                _ => out.push(ChunkRange {
                    start: i,
                    end: i + 1,
                }),
            }
        }
        out
    }

    pub fn status(&self) -> UploadStatus {
        UploadStatus {
            total_size: self.total_size,
            chunk_size: self.chunk_size,
            chunks: self.chunks(),
            received: self.received_count,
            missing: self.missing(),
            sha256: hex(&self.sha256),
            started_at_ns: self.started_at_ns,
            hashed_bytes: self.hashed_bytes(),
        }
    }

    /// Checks completeness and the SHA-256 (finishing the running hash, at most
    /// [`HASH_BYTES_PER_CALL`] bytes of it per call: `Hashing` asks to call again), and returns
    /// the blob's bytes for the engine to validate. The session stays as it is: the caller ends
    /// it once the model is live.
    pub fn assemble(&mut self, store: &dyn BlobStore) -> Result<Assembled, UploadError> {
        if let Some(first) = self.missing().first() {
            return Err(UploadError::Incomplete {
                missing: self.chunks() - self.received_count,
                chunks: self.chunks(),
                first: first.start,
            });
        }
        self.advance_hash(store, HASH_BYTES_PER_CALL);
        if self.hashed_chunks < self.chunks() {
            return Err(UploadError::Hashing {
                hashed: self.hashed_bytes(),
                total: self.total_size,
            });
        }
        let digest = self.hash.finish();
        if digest.as_slice() != self.sha256.as_slice() {
            return Err(UploadError::ShaMismatch {
                declared: hex(&self.sha256),
                received: hex(&digest),
            });
        }
        Ok(Assembled {
            bytes: store.read(self.slot, 0, self.total_size),
            content_sha256: self
                .content_sha256
                .as_ref()
                .and_then(|d| <[u8; 32]>::try_from(d.as_slice()).ok()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

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
        assert_eq!(s.missing(), vec![ChunkRange { start: 2, end: 3 }]);
        assert!(matches!(
            s.assemble(&store).err(),
            Some(UploadError::Incomplete {
                missing: 1,
                first: 2,
                ..
            })
        ));
        s.chunk(2, &data[2048..3072], &mut store).unwrap();
        // Chunks 0 and 1 were hashed as they came; 2, 3 and 4 once 2 arrived.
        assert_eq!(s.hashed_bytes(), 5000);
        let a = s.assemble(&store).unwrap();
        assert_eq!(a.bytes, data);
        let content: [u8; 32] = Sha256::digest(&data[..5000 - 32]).into();
        assert_eq!(a.content_sha256, Some(content));
    }

    #[test]
    fn a_changed_chunk_restarts_the_hash_and_commit_hashes_in_bounded_parts() {
        let data = blob(5000);
        let sha = Sha256::digest(&data).to_vec();
        let mut store = MemStore::default();
        let mut s = UploadSession::begin(1, 5000, sha, 1024, 7, &mut store).unwrap();
        for i in 0..5u32 {
            let r = s.range(i).unwrap();
            let mut c = data[r.start as usize..r.end as usize].to_vec();
            if i == 1 {
                c[0] ^= 1;
            }
            s.chunk(i, &c, &mut store).unwrap();
        }
        assert_eq!(s.hashed_bytes(), 5000);
        // The same bytes again: nothing to re-hash.
        s.chunk(3, &data[3072..4096], &mut store).unwrap();
        assert_eq!(s.hashed_bytes(), 5000);
        // Chunk 1 corrected: the hash restarts from 0 and catches up at once (small blob).
        s.chunk(1, &data[1024..2048], &mut store).unwrap();
        assert_eq!(s.hashed_bytes(), 5000);
        assert_eq!(s.assemble(&store).unwrap().bytes, data);
        // A budget smaller than the blob: the commit asks to be called again.
        s.hashed_chunks = 0;
        s.hash = Sha256State::default();
        s.content_sha256 = None;
        s.advance_hash(&store, 1);
        assert_eq!(s.hashed_bytes(), 1024);
        assert_eq!(s.missing(), vec![]);
    }

    #[test]
    fn chunk_counts_are_bounded() {
        let mut store = MemStore::default();
        let e = UploadSession::begin(1, MAX_BLOB_SIZE, vec![0; 32], MIN_CHUNK_SIZE, 0, &mut store)
            .unwrap_err();
        assert!(matches!(e, UploadError::TooManyChunks { .. }), "{e}");
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
        let e = s.assemble(&store).err().unwrap();
        assert!(matches!(e, UploadError::ShaMismatch { .. }), "{e}");
    }
}
