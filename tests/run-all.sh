#!/usr/bin/env bash
# Every test of the project. CI runs exactly this. Needs the Rust toolchain (rustup) and access to
# crates.io; where Node.js and npm are on PATH it also runs the icp-cli build test (icp-cli comes
# only from npm), and says so either way.
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
if command -v npm >/dev/null; then
  cargo test -p walsh-tests --test icp_build -- --ignored
else
  echo "not run: tests/tests/icp_build.rs (icp build through icp.yaml) needs Node.js and npm, which are not on PATH"
fi
