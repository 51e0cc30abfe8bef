//! getrandom's custom backend for wasm32 (see `.cargo/config.toml`). The `tokenizers` crate's hash
//! maps (ahash with `runtime-rng`) ask for random seeds, and ahash panics if they are refused. A
//! query has no synchronous source of entropy on the IC, and nothing in the engine needs secrecy
//! from these seeds — generation is deterministic by design — so the bytes come from SplitMix64
//! over a counter: distinct across requests, the same on every replica.

use std::cell::RefCell;
use walsh_spec::sampler::SplitMix64;

thread_local! {
    static STREAM: RefCell<SplitMix64> = RefCell::new(SplitMix64::new(0x5741_4C53_4842_4C42));
}

/// # Safety
/// getrandom calls this with `dest` valid for writes of `len` bytes.
#[unsafe(no_mangle)]
unsafe extern "Rust" fn __getrandom_v03_custom(
    dest: *mut u8,
    len: usize,
) -> Result<(), getrandom::Error> {
    let buf = unsafe { std::slice::from_raw_parts_mut(dest, len) };
    STREAM.with(|s| {
        let mut s = s.borrow_mut();
        for chunk in buf.chunks_mut(8) {
            let bytes = s.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    });
    Ok(())
}
