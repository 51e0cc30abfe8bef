//! The packer's integration tests as one test binary, each former test file a module: one
//! compile and one link instead of three (CI's build time). Run one file's tests with its module
//! as the filter, e.g. `cargo test -p walsh-packer --test integration cli::`.

mod cli;
mod eval;
mod ic_cli;
