#!/usr/bin/env bash
# Writes a few small valid blobs into corpus/blob_parse/ as seeds for `cargo fuzz run blob_parse`.
# Run from anywhere; needs the main workspace's `packer` (built here if missing).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$here/corpus/blob_parse"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$out"
(cd "$root" && cargo build -q -p walsh-packer)
packer="$root/target/debug/packer"
cat > "$tmp/tokenizer.json" <<'JSON'
{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],"normalizer":null,"pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true},"post_processor":null,"decoder":{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":true,"use_regex":true},"model":{"type":"BPE","dropout":null,"unk_token":null,"continuing_subword_prefix":"","end_of_word_suffix":"","fuse_unk":false,"byte_fallback":false,"ignore_merges":false,"vocab":{"a":0,"b":1,"c":2,"ab":3},"merges":[["a","b"]]}}
JSON
common=(--tokenizer "$tmp/tokenizer.json" --set eos_token_id=0 --set block_size=4 --set n_layer=1)
# name | overrides | pack flags
seed() {
  local name="$1" sets="$2" flags="$3"
  # shellcheck disable=SC2086
  "$packer" init --config "$root/configs/tiny.toml" -o "$tmp/$name" "${common[@]}" $sets
  # shellcheck disable=SC2086
  "$packer" pack "$tmp/$name" -o "$out/$name.walsh" $flags
}
seed dense "--set algebra=dense --set vocab_size=16 --set n_embd=2 --set n_head=1 --set head_mixing=false --set embedding=standard" "--packing 4x --embeddings f32"
seed octonion "--set algebra=octonion --set vocab_size=32 --set n_embd=16 --set n_head=8 --set head_mixing=true --set embedding=standard" "--packing 16x --embeddings int8"
seed hadamard "--set algebra=hadamard --set vocab_size=128 --set n_embd=64 --set n_head=32 --set head_mixing=true --set embedding=hash --set hash_buckets=7" "--packing 16x --embeddings f16"
# Format 2's newer encodings: base-3 ternary, int6 and rotated int4 rows (the compact tokenizer is
# in every seed: the packer writes it whenever it can).
seed dense5x "--set algebra=dense --set vocab_size=16 --set n_embd=2 --set n_head=1 --set head_mixing=false --set embedding=standard" "--packing 5x --embeddings int6"
seed hash5x "--set algebra=hadamard --set vocab_size=128 --set n_embd=64 --set n_head=32 --set head_mixing=true --set embedding=hash --set hash_buckets=7" "--packing 5x --embeddings int4 --rotate"
ls -l "$out"
