//! The arithmetic of chunked uploads and downloads, shared by the canister (which checks it) and
//! `packer upload` / `packer download` (which plan by it): limits, chunk counts, byte ranges.

use std::ops::Range;

/// Largest chunk: an ingress message is at most 2 MiB (2,097,152 bytes) including the Candid
/// envelope and the request's own fields; 1,900,000 bytes leaves ~190 KB of headroom.
pub const MAX_CHUNK_SIZE: u32 = 1_900_000;
/// Smallest chunk: anything smaller only multiplies update calls.
pub const MIN_CHUNK_SIZE: u32 = 1024;
/// Largest blob: what `upload_commit` can read from stable memory, validate and load within an
/// update's 40e9 instructions with a margin. Measured in the IC emulation harness
/// (`commit_cost_is_linear_and_small` in tests/tests/integration/upload.rs): about 1.9e9 instructions of fixed
/// cost (the GPT-2 tokenizer, the cost calibration) and 85 a byte, so about 24e9 at 256 MiB. The
/// blob is also read into the heap beside the model being replaced.
pub const MAX_BLOB_SIZE: u64 = 256 << 20;
/// Most chunks of one upload: the canister keeps one bit per chunk and replies with the missing
/// ones as ranges, so replies stay small (a 256 MiB blob needs chunks of at least 64 KiB).
pub const MAX_CHUNKS: u32 = 4096;
/// Largest `download_chunk` reply: a reply is limited to 2 MiB, like a message.
pub const MAX_DOWNLOAD_CHUNK: u32 = 1_900_000;

/// Chunks of `chunk_size` bytes that cover `total_size` bytes (the last may be short).
pub fn chunk_count(total_size: u64, chunk_size: u32) -> u64 {
    total_size.div_ceil(u64::from(chunk_size.max(1)))
}

/// The byte range of chunk `index`, or `None` past the last chunk.
pub fn chunk_range(total_size: u64, chunk_size: u32, index: u64) -> Option<Range<u64>> {
    if index >= chunk_count(total_size, chunk_size) {
        return None;
    }
    let start = index * u64::from(chunk_size);
    let end = start.saturating_add(u64::from(chunk_size)).min(total_size);
    Some(start..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_blob_exactly_once() {
        for (total, chunk) in [
            (1, 1024),
            (1024, 1024),
            (1025, 1024),
            (3_423_904, 1_900_000),
        ] {
            let n = chunk_count(total, chunk);
            let mut next = 0;
            for i in 0..n {
                let r = chunk_range(total, chunk, i).unwrap();
                assert_eq!(r.start, next);
                assert!(r.end > r.start && r.end - r.start <= u64::from(chunk));
                next = r.end;
            }
            assert_eq!(next, total);
            assert_eq!(chunk_range(total, chunk, n), None);
        }
        assert_eq!(chunk_count(0, 1024), 0);
    }
}
