#!/usr/bin/env bash
# Builds, on this (CPU) machine, what the GPU machine runs, into .gpu/ (git-ignored; name it in the
# device tool's `carry`): the CUDA trainer, the CUDA test binary (trainer/tests/cuda.rs), and
# the packer, and the training data (below). The binaries load the CUDA libraries at run time,
# so no CUDA toolkit is needed here. Usage: [TEXT=1] trainer/gpu/build.sh [TINYSTORIES_DIR [BOOKS_DIR]]
set -euo pipefail
cd "$(dirname "$0")/../.."
data=${1:-../shared/data/tinystories}
books=${2:-../shared/data/children-books}
mkdir -p .gpu
CARGO_TARGET_DIR=target/cuda cargo build --release --locked -p walsh-trainer --features cuda
strip -o .gpu/trainer target/cuda/release/trainer
# The test binary in the dev profile: the release profile's panic=abort cannot build tests.
tests=$(cargo test --locked -p walsh-trainer --features cuda --test cuda --no-run 2>&1 |
    sed -n 's/.*Executable tests\/cuda.rs (\(.*\))/\1/p')
[ -n "$tests" ] || { echo "build.sh: cargo did not report the cuda test binary" >&2; exit 1; }
strip -o .gpu/cuda-tests "$tests"
# The packer, to pack what a run trained there.
cargo build --release --locked -p walsh-packer
strip -o .gpu/packer target/release/packer
# TEXT=1: the text of trainer/gpu/frontier.sh instead (docs/MODELS.md, "The frontier"): all the
# children's books and TinyStories train xz-compressed (-6: about 28 MB, which with the binaries
# and the repository fits the device tool's 64 MiB; the GPU machine's 16 cores train the tokenizer
# and tokenize them there, 13 s), valid.txt as it is. A call that also carries a teacher
# checkpoint (trainer/gpu/shrink_checkpoint.py) leaves books 04-05 out.
if [ "${TEXT:-0}" = 1 ]; then
    mkdir -p .gpu/text
    for f in "$books"/books-0*.txt "$data/train-00.txt"; do
        [ -f ".gpu/text/$(basename "$f").xz" ] || xz -T0 -6 -c "$f" >".gpu/text/$(basename "$f").xz"
    done
    cp "$data/valid.txt" .gpu/text/
    du -sh .gpu
    exit 0
fi
# TinyStories numbered by its own token frequencies (hash embeddings want that: docs/TRAINING.md),
# and the children's books (tier 1) in the same numbering, validated on TinyStories, compressed.
if [ ! -f .gpu/ts/train.bin ]; then
    .gpu/trainer prepare "$data/train-00.txt" --val "$data/valid.txt" -o .gpu/ts --frequency-order
fi
# The validation text itself, for `packer eval` of the packed model there.
cp "$data/valid.txt" .gpu/ts/valid.txt
if [ -d "$books" ] && [ ! -f .gpu/books/train.bin.xz ]; then
    .gpu/trainer prepare "$books"/books-0{1,2,3}.txt --val "$data/valid.txt" \
        --tokenizer .gpu/ts/tokenizer.json -o .gpu/books
    xz -T0 -6 .gpu/books/train.bin
fi
du -sh .gpu
