//! Untrusted bytes → `blob::parse` → `Engine::load`: every input must give Ok or Err, never a
//! panic, an abort or a runaway allocation.
//!
//! Each input is tried twice: as it is, and with its last 32 bytes replaced by the SHA-256 of the
//! rest. libFuzzer cannot forge a checksum, so without the second try almost every mutation would
//! stop at `ChecksumMismatch` and the checks behind it would never run.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};
use walsh_engine::Engine;
use walsh_spec::blob;

fn check(bytes: &[u8]) {
    if blob::parse(bytes).is_ok() {
        let _ = Engine::load(bytes);
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if data.len() >= 32 {
        let mut sealed = data.to_vec();
        let n = sealed.len() - 32;
        let digest = Sha256::digest(&sealed[..n]);
        if sealed[n..] != digest[..] {
            sealed[n..].copy_from_slice(&digest);
            check(&sealed);
        }
    }
});
