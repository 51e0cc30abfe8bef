#!/usr/bin/env bash
# Every test of the project, on a machine that has only the Rust toolchain. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# What the build needs beyond a bare toolchain: the canister's wasm target, the linters.
rustup target add wasm32-unknown-unknown
rustup component add rustfmt clippy

cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
