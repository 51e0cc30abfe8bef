#!/usr/bin/env bash
# Builds the walsh canister's wasm: the story page's in-browser engine (web/build.sh), cargo for
# wasm32 (release), then ic-wasm to shrink it and to add the `candid:service` metadata that dfx,
# icp-cli and dashboards read.
#   deploy/build-canister.sh [OUTPUT.wasm]       (default: target/walsh.wasm)
# dfx.json and icp.yaml both call this script, so both tools deploy the same canister (dfx writes
# target/walsh.wasm; `icp build` passes its own path, .icp/cache/artifacts/walsh).
#
# ic-wasm is taken from $IC_WASM, else from PATH, else from target/icp-tools (where the tests'
# npm install puts it), else from target/ic-wasm/bin; if none of these has it, this script
# installs it there itself with `cargo install ic-wasm` (crates.io; about two minutes, once).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/target/walsh.wasm}"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
ic_wasm_version=0.11.1

if command -v rustup >/dev/null; then
  rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || true
fi

find_ic_wasm() {
  if [ -n "${IC_WASM:-}" ]; then echo "$IC_WASM"; return; fi
  if command -v ic-wasm >/dev/null; then command -v ic-wasm; return; fi
  for p in "$root/node_modules/@icp-sdk/ic-wasm-linux-x64/bin/ic-wasm" \
           "$root/target/icp-tools/node_modules/@icp-sdk/ic-wasm-linux-x64/bin/ic-wasm" \
           "$root/target/ic-wasm/bin/ic-wasm"; do
    if [ -x "$p" ]; then echo "$p"; return; fi
  done
  return 1
}
if ! ic_wasm="$(find_ic_wasm)"; then
  echo "ic-wasm not found (IC_WASM, PATH, target/icp-tools, target/ic-wasm): installing ic-wasm $ic_wasm_version into target/ic-wasm with cargo" >&2
  cargo install ic-wasm --locked --version "$ic_wasm_version" --root "$root/target/ic-wasm" >&2
  ic_wasm="$root/target/ic-wasm/bin/ic-wasm"
fi

# The story page's in-browser engine (web/build.sh: walsh-web and wasm-bindgen's glue), which the
# canister embeds and serves at /pkg/. WALSH_NO_WEB_PKG=1 builds the canister without it (the
# page then offers only the on-chain mode and says why).
if [ -z "${WALSH_NO_WEB_PKG:-}" ]; then
  CARGO_TARGET_DIR="$target_dir" bash "$root/web/build.sh" "$target_dir/web-pkg"
  export WALSH_WEB_PKG="$target_dir/web-pkg"
else
  export WALSH_WEB_PKG=""
fi
(cd "$root" && CARGO_TARGET_DIR="$target_dir" cargo build --release --locked \
  --target wasm32-unknown-unknown -p walsh-canister)
raw="$target_dir/wasm32-unknown-unknown/release/walsh_canister.wasm"
mkdir -p "$(dirname "$out")"
"$ic_wasm" "$raw" -o "$out" shrink
"$ic_wasm" "$out" -o "$out" metadata candid:service -f "$root/candid/walsh.did" -v public
echo "built $out ($(wc -c <"$out") bytes; ic-wasm: $ic_wasm)"
