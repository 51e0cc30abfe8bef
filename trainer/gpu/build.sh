#!/usr/bin/env bash
# Builds, on this (CPU) machine, what the GPU machine runs, into .gpu/ (git-ignored; name it in the
# device tool's `carry`): the CUDA trainer, the CUDA test binary (trainer/tests/cuda.rs), and
# TinyStories prepared with the GPT-2 tokenizer. The binaries load the CUDA libraries at run time,
# so no CUDA toolkit is needed here. Usage: trainer/gpu/build.sh [TINYSTORIES_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
data=${1:-../shared/data/tinystories}
mkdir -p .gpu
CARGO_TARGET_DIR=target/cuda cargo build --release --locked -p walsh-trainer --features cuda
strip -o .gpu/trainer target/cuda/release/trainer
# The test binary in the dev profile: the release profile's panic=abort cannot build tests.
tests=$(cargo test --locked -p walsh-trainer --features cuda --test cuda --no-run 2>&1 |
    sed -n 's/.*Executable tests\/cuda.rs (\(.*\))/\1/p')
[ -n "$tests" ] || { echo "build.sh: cargo did not report the cuda test binary" >&2; exit 1; }
strip -o .gpu/cuda-tests "$tests"
if [ ! -f .gpu/ts/train.bin ]; then
    .gpu/trainer prepare "$data/train-00.txt" --val "$data/valid.txt" -o .gpu/ts
fi
du -sh .gpu
