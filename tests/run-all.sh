#!/usr/bin/env bash
# Every test of the project, on a machine that has only the Rust toolchain. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# What the build needs beyond a bare toolchain: the canister's wasm target, the linters.
rustup target add wasm32-unknown-unknown
rustup component add rustfmt clippy

cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
# The CUDA backend builds without a GPU or CUDA toolkit (its libraries load at run time); its
# tests run only on a GPU machine (trainer/gpu/check.sh), but here it must at least compile.
cargo clippy -p walsh-trainer --features cuda --all-targets -- -D warnings
cargo test --workspace
