#!/usr/bin/env bash
# Builds the walsh canister's wasm: cargo for wasm32 (release), then ic-wasm to shrink it and to add
# the `candid:service` metadata that dfx, icp-cli and dashboards read.
#   deploy/build-canister.sh [OUTPUT.wasm]       (default: target/walsh.wasm)
# dfx.json and icp.yaml both call this script, so both tools deploy the same canister.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/target/walsh.wasm}"
target_dir="${CARGO_TARGET_DIR:-$root/target}"

if command -v rustup >/dev/null; then
  rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || true
fi

find_ic_wasm() {
  if [ -n "${IC_WASM:-}" ]; then echo "$IC_WASM"; return; fi
  if command -v ic-wasm >/dev/null; then command -v ic-wasm; return; fi
  for p in "$root/node_modules/@icp-sdk/ic-wasm-linux-x64/bin/ic-wasm" \
           "$root/target/icp-tools/node_modules/@icp-sdk/ic-wasm-linux-x64/bin/ic-wasm"; do
    if [ -x "$p" ]; then echo "$p"; return; fi
  done
}
ic_wasm="$(find_ic_wasm || true)"
if [ -z "$ic_wasm" ]; then
  echo "error: ic-wasm not found. Install it with 'npm install -g @icp-sdk/ic-wasm-linux-x64' (or the package for your platform) or 'cargo install ic-wasm'." >&2
  exit 1
fi

(cd "$root" && CARGO_TARGET_DIR="$target_dir" cargo build --release --locked \
  --target wasm32-unknown-unknown -p walsh-canister)
raw="$target_dir/wasm32-unknown-unknown/release/walsh_canister.wasm"
mkdir -p "$(dirname "$out")"
"$ic_wasm" "$raw" -o "$out" shrink
"$ic_wasm" "$out" -o "$out" metadata candid:service -f "$root/candid/walsh.did" -v public
echo "built $out ($(wc -c <"$out") bytes)"
