#!/usr/bin/env bash
# Rebuilds web/page/vendor/icp-sdk-core.js: DFINITY's @icp-sdk/core (HttpAgent, Actor, IDL) as
# one minified ES module, so that the page needs no build step of its own and the canister embeds
# plain files. Run it after changing the versions in web/vendor/package.json (npm, esbuild).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$here/package.json" "$here/package-lock.json" "$here/entry.js" "$work/"
(cd "$work" && npm ci --no-audit --no-fund >/dev/null \
  && node node_modules/esbuild/install.js >/dev/null \
  && node_modules/.bin/esbuild entry.js --bundle --format=esm --minify --platform=browser \
       --target=es2020 --legal-comments=eof --outfile=icp-sdk-core.js)
cp "$work/icp-sdk-core.js" "$here/../page/vendor/icp-sdk-core.js"
echo "wrote web/page/vendor/icp-sdk-core.js ($(wc -c <"$here/../page/vendor/icp-sdk-core.js") bytes)"
