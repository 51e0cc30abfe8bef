#!/usr/bin/env bash
# Every test of the project. CI runs exactly this. Needs the Rust toolchain (rustup) and access to
# crates.io; where Node.js and npm are on PATH it also runs the icp-cli build test (icp-cli comes
# only from npm), and says so either way; where Debian's chromium is installed, the story page's
# browser test (and says so either way).
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
# The ignored tests below run through `--workspace --test integration` (every crate's integration
# binary, filtered to one module): the binaries `cargo test --workspace` just built, where `-p
# walsh-tests` would rebuild walsh-tests with other features (about 2 minutes).
if command -v npm >/dev/null; then
  cargo test --workspace --test integration -- --ignored icp_build::
else
  echo "not run: tests/tests/integration/icp_build.rs (icp build through icp.yaml) needs Node.js and npm, which are not on PATH"
fi
# The story page in headless Chromium (tests/tests/integration/browser.rs), where Debian's `chromium` is
# installed (or $WALSH_CHROMIUM names a Chromium). It builds the in-browser engine (web/build.sh,
# which installs wasm-bindgen-cli into target/ the first time: about 3 minutes of a 2-core
# machine) and adds about 8 minutes to a cold run in all (docs/BENCHMARKS.md, "Story page"), so
# it is not installed by default: WALSH_INSTALL_CHROMIUM=1 installs it with apt-get first.
if [ -n "${WALSH_INSTALL_CHROMIUM:-}" ] && [ -z "${WALSH_CHROMIUM:-}" ] && ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi
if [ -n "${WALSH_CHROMIUM:-}" ] || command -v chromium >/dev/null; then
  cargo test --workspace --test integration -- --ignored --nocapture browser::
else
  echo "not run: tests/tests/integration/browser.rs (the story page in headless Chromium) needs Debian's chromium, which is not installed (WALSH_INSTALL_CHROMIUM=1 installs it with apt-get)"
fi
