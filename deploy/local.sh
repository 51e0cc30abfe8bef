#!/usr/bin/env bash
# The local flow for a user with dfx (https://internetcomputer.org/docs/building-apps/getting-started/install):
# start a local replica, deploy the walsh canister (with its embedded default model), ask it for text.
#   deploy/local.sh [PROMPT] [MAX_TOKENS]
set -euo pipefail
cd "$(dirname "$0")/.."
prompt="${1:-Once upon a time}"
max_tokens="${2:-100}"

command -v dfx >/dev/null || { echo "error: dfx is not installed (sh -ci \"\$(curl -fsSL https://internetcomputer.org/install.sh)\")" >&2; exit 1; }

if ! dfx ping >/dev/null 2>&1; then
  dfx start --background --clean
fi
dfx deploy walsh
dfx canister call walsh model_info
# Candid text escaping of the prompt: backslashes and double quotes.
escaped=$(printf '%s' "$prompt" | sed 's/\\/\\\\/g; s/"/\\"/g')
dfx canister call walsh generate "(\"$escaped\", $max_tokens : nat32)"
