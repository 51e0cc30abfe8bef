//! Exports the engine's whole path (load a blob, generate) from a wasm32 module so that
//! `tests/tests/wasm_imports.rs` sees every import the engine pulls in. Memory in and out is passed
//! as (pointer, length) pairs in linear memory.

use std::cell::RefCell;
use walsh_canister::{Engine, SamplingParams};

thread_local! {
    static ENGINE: RefCell<Option<Engine>> = const { RefCell::new(None) };
    static OUTPUT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Allocates `len` bytes for the host to write a blob or prompt into.
#[unsafe(no_mangle)]
pub extern "C" fn probe_alloc(len: usize) -> *mut u8 {
    let mut v = vec![0u8; len];
    let p = v.as_mut_ptr();
    std::mem::forget(v);
    p
}

/// Loads the blob at (ptr, len); 0 on success, 1 if it is invalid.
///
/// # Safety
/// (ptr, len) must be a region returned by `probe_alloc` and filled by the host.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn probe_load(ptr: *mut u8, len: usize) -> i32 {
    let bytes = unsafe { Vec::from_raw_parts(ptr, len, len) };
    match Engine::load(&bytes) {
        Ok(e) => {
            ENGINE.with(|c| *c.borrow_mut() = Some(e));
            0
        }
        Err(_) => 1,
    }
}

/// Generates from the prompt at (ptr, len) with the given sampling; returns the output length
/// (read it with `probe_output`), or −1 on error.
///
/// # Safety
/// (ptr, len) must be a region returned by `probe_alloc` and filled by the host.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn probe_generate(
    ptr: *mut u8,
    len: usize,
    max_tokens: u32,
    temperature: f32,
    top_k: u32,
    top_p: f32,
    seed: u64,
) -> i32 {
    let bytes = unsafe { Vec::from_raw_parts(ptr, len, len) };
    let prompt = String::from_utf8_lossy(&bytes);
    let params = SamplingParams {
        temperature,
        top_k: top_k as usize,
        top_p,
        seed,
    };
    ENGINE.with(|c| match c.borrow().as_ref() {
        Some(engine) => {
            match engine.generate(&prompt, max_tokens as usize, params, &[], |_| true) {
                Ok(out) => {
                    let ids: Vec<u8> = out.tokens.iter().flat_map(|t| t.to_le_bytes()).collect();
                    OUTPUT.with(|o| *o.borrow_mut() = ids);
                    OUTPUT.with(|o| o.borrow().len() as i32)
                }
                Err(_) => -1,
            }
        }
        None => -1,
    })
}

/// Pointer to the last output (generated token ids, u32 little-endian).
#[unsafe(no_mangle)]
pub extern "C" fn probe_output() -> *const u8 {
    OUTPUT.with(|o| o.borrow().as_ptr())
}
