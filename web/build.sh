#!/usr/bin/env bash
# Builds the story page's in-browser engine: walsh-web for wasm32 (release, simd128 from
# .cargo/config.toml), then wasm-bindgen's JavaScript glue, into OUT_DIR (default target/web-pkg):
#   web/build.sh [OUT_DIR]
# OUT_DIR gets walsh_web.js and walsh_web_bg.wasm, which web/page/worker.js imports from pkg/.
#
# wasm-bindgen-cli must be the very version of the wasm-bindgen crate in Cargo.lock: it is taken
# from $WASM_BINDGEN if that is it, else from target/wasm-bindgen-cli (installed there with cargo
# the first time: crates.io, about 4 minutes on two cores, once per target directory).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/target/web-pkg}"
target_dir="${CARGO_TARGET_DIR:-$root/target}"

# The wasm-bindgen version Cargo.lock holds (the crate pins it with `=`, so there is one).
version="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$root/Cargo.lock")"
if [ -z "$version" ]; then
  echo "web/build.sh: no wasm-bindgen in Cargo.lock" >&2
  exit 1
fi

# A RUSTFLAGS in the environment replaces .cargo/config.toml's flags for wasm32 (simd128 and
# getrandom's custom backend), which this build needs.
if [ -n "${RUSTFLAGS:-}${CARGO_ENCODED_RUSTFLAGS:-}" ]; then
  echo "web/build.sh: unset RUSTFLAGS / CARGO_ENCODED_RUSTFLAGS: they would replace the wasm32 flags of .cargo/config.toml (+simd128, getrandom's custom backend)" >&2
  exit 1
fi

bindgen="${WASM_BINDGEN:-$root/target/wasm-bindgen-cli/bin/wasm-bindgen}"
if ! [ -x "$bindgen" ] || [ "$("$bindgen" --version)" != "wasm-bindgen $version" ]; then
  bindgen="$root/target/wasm-bindgen-cli/bin/wasm-bindgen"
  if ! [ -x "$bindgen" ] || [ "$("$bindgen" --version)" != "wasm-bindgen $version" ]; then
    echo "web/build.sh: installing wasm-bindgen-cli $version into target/wasm-bindgen-cli (once)" >&2
    # Not --locked: the CLI's own lock file can name a dependency release that a registry has
    # since yanked; the CLI's version, which is what must match, is fixed either way.
    cargo install wasm-bindgen-cli --version "$version" --root "$root/target/wasm-bindgen-cli" >&2
  fi
fi

rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || true
(cd "$root" && CARGO_TARGET_DIR="$target_dir" cargo build --release --locked \
  --target wasm32-unknown-unknown -p walsh-web)
mkdir -p "$out"
"$bindgen" --target web --no-typescript --out-dir "$out" \
  "$target_dir/wasm32-unknown-unknown/release/walsh_web.wasm"
echo "built $out: $(wc -c <"$out/walsh_web_bg.wasm") bytes of wasm, $(wc -c <"$out/walsh_web.js") of JavaScript glue" >&2
