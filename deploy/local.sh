#!/usr/bin/env bash
# The whole local flow for a user with dfx (https://internetcomputer.org/docs/building-apps/getting-started/install):
# start a local replica, deploy the walsh canister (it serves its embedded default model at once),
# optionally upload a model blob with `packer upload`, read the serving blob back with
# `packer download` and compare it, and ask the canister for text.
#   deploy/local.sh [--blob model.walsh] [PROMPT] [MAX_TOKENS]
# `packer upload` / `packer download` sign as dfx's default identity (the controller that
# deployed the canister) and find the replica and the canister id the way dfx does.
set -euo pipefail
cd "$(dirname "$0")/.."
blob=""
if [ "${1:-}" = "--blob" ]; then blob="$2"; shift 2; fi
prompt="${1:-Once upon a time}"
max_tokens="${2:-100}"

command -v dfx >/dev/null || { echo "error: dfx is not installed (sh -ci \"\$(curl -fsSL https://internetcomputer.org/install.sh)\")" >&2; exit 1; }
if [ -n "$blob" ] && [ ! -f "$blob" ]; then echo "error: $blob not found" >&2; exit 1; fi

if ! dfx ping >/dev/null 2>&1; then
  dfx start --background --clean
fi
dfx deploy walsh

cargo build --release -p walsh-packer
packer=target/release/packer

if [ -n "$blob" ]; then
  "$packer" upload "$blob" --canister walsh --network local
fi

# What the canister serves, read back through download_chunk and checked against the blob that
# should be there: the uploaded one, or the default model embedded in the wasm.
expected="${blob:-models/walsh-default.walsh}"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$packer" download --canister walsh --network local -o "$tmp/serving.walsh"
cmp "$tmp/serving.walsh" "$expected"
echo "the canister serves $expected, byte for byte"

escaped=$(printf '%s' "$prompt" | sed 's/\\/\\\\/g; s/"/\\"/g')
dfx canister call walsh generate "(\"$escaped\", $max_tokens : nat32)"
