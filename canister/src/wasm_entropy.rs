//! getrandom's custom backend for wasm32 (see `.cargo/config.toml`). The `tokenizers` crate links
//! getrandom for hash-map seeds and training code the engine never runs; the IC offers no
//! synchronous entropy to a query, and generation must be deterministic anyway, so requests for
//! entropy are refused rather than faked.

/// # Safety
/// Called by getrandom with a valid buffer; we never write to it.
#[unsafe(no_mangle)]
unsafe extern "Rust" fn __getrandom_v03_custom(
    _dest: *mut u8,
    _len: usize,
) -> Result<(), getrandom::Error> {
    Err(getrandom::Error::UNSUPPORTED)
}
