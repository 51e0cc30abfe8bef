#!/usr/bin/env bash
# Every test of the project. CI runs exactly this. Needs the Rust toolchain (rustup) and access to
# crates.io; where Node.js and npm are on PATH it also runs the icp-cli build test (icp-cli comes
# only from npm), and says so either way; where Debian's chromium is installed or apt-get can
# install it, the story page's browser test (and says so either way).
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
# The story page in headless Chromium (tests/tests/browser.rs): Debian's `chromium`, installed
# here with apt-get where it can be (CI); the test builds the in-browser engine (web/build.sh,
# which installs wasm-bindgen-cli into target/ the first time). WALSH_SKIP_BROWSER=1 skips it.
if [ -z "${WALSH_SKIP_BROWSER:-}" ] && [ -z "${WALSH_CHROMIUM:-}" ] && ! command -v chromium >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "apt-get could not install chromium"
  elif command -v apt-get >/dev/null && sudo -n true 2>/dev/null; then
    (sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "apt-get could not install chromium"
  fi
fi
if [ -n "${WALSH_SKIP_BROWSER:-}" ]; then
  echo "not run: tests/tests/browser.rs (the story page in headless Chromium): WALSH_SKIP_BROWSER is set"
elif [ -n "${WALSH_CHROMIUM:-}" ] || command -v chromium >/dev/null; then
  cargo test -p walsh-tests --test browser -- --ignored --nocapture
else
  echo "not run: tests/tests/browser.rs (the story page in headless Chromium) needs Debian's chromium (apt-get install chromium), which is not installed and could not be installed here"
fi
