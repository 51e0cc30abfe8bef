#!/usr/bin/env bash
# The whole local flow for a user with dfx (https://internetcomputer.org/docs/building-apps/getting-started/install):
# start a local replica, deploy the walsh canister (it serves its embedded default model at once),
# optionally upload a model blob in chunks, and ask it for text.
#   deploy/local.sh [--blob model.walsh] [PROMPT] [MAX_TOKENS]
# The upload here uses plain `dfx canister call`s (chunks as Candid blob literals); it is the
# same upload protocol an operator's client uses (see deploy/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
blob=""
if [ "${1:-}" = "--blob" ]; then blob="$2"; shift 2; fi
prompt="${1:-Once upon a time}"
max_tokens="${2:-100}"
chunk_size=1900000

command -v dfx >/dev/null || { echo "error: dfx is not installed (sh -ci \"\$(curl -fsSL https://internetcomputer.org/install.sh)\")" >&2; exit 1; }

if ! dfx ping >/dev/null 2>&1; then
  dfx start --background --clean
fi
dfx deploy walsh

# Candid blob literal of a file: "\xx\xx…".
candid_blob() { printf 'blob "%s"' "$(od -An -v -tx1 "$1" | tr -d ' \n' | sed 's/../\\&/g')"; }

if [ -n "$blob" ]; then
  [ -f "$blob" ] || { echo "error: $blob not found" >&2; exit 1; }
  size=$(wc -c <"$blob")
  sha=$(sha256sum "$blob" | cut -d' ' -f1)
  sha_blob=$(printf '%s' "$sha" | sed 's/../\\&/g')
  echo "uploading $blob ($size bytes, sha256 $sha)"
  dfx canister call walsh upload_begin "(record { total_size = $size : nat64; sha256 = blob \"$sha_blob\"; chunk_size = $chunk_size : nat32 })"
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  split -b "$chunk_size" -d -a 5 "$blob" "$tmp/chunk."
  i=0
  for f in "$tmp"/chunk.*; do
    { printf '(record { index = %d : nat32; data = ' "$i"; candid_blob "$f"; printf ' })'; } >"$tmp/arg"
    dfx canister call walsh upload_chunk --argument-file "$tmp/arg" >/dev/null
    i=$((i + 1)); echo "  chunk $i sent"
  done
  dfx canister call walsh upload_commit
fi

dfx canister call walsh model_info
escaped=$(printf '%s' "$prompt" | sed 's/\\/\\\\/g; s/"/\\"/g')
dfx canister call walsh generate "(\"$escaped\", $max_tokens : nat32)"
