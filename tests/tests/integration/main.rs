//! The workspace's integration tests as one test binary, each former test file a module: one
//! compile and one link instead of nine (CI's build time, docs/BENCHMARKS.md "CI's time"), and
//! one build of the canister's wasm shared by all. Run one file's tests with its module as the
//! filter, e.g. `cargo test -p walsh-tests --test integration upload::`. The PocketIC scenarios
//! stay a binary of their own (`--features pocket-ic --test canister_pocket_ic`).

mod browser;
mod canister;
mod http;
mod icp_build;
mod malformed_blobs;
mod pipeline;
mod reference;
mod upload;
mod wasm_imports;
