#!/usr/bin/env bash
# Runs on the GPU machine, from the repository root, with .gpu/ carried (trainer/gpu/build.sh):
# the CUDA backend against the CPU backend (trainer/tests/cuda.rs), then `trainer bench` of the
# three seed configs (GEMM modes in $MODES, default "tf32"; "tf32 f32" for both). Logs go to $OUT (the device tool's) or
# /tmp/gpu-check; the last lines printed are the summary. Exit status: the tests'.
set -uo pipefail
out=${OUT:-/tmp/gpu-check}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$out/gpu.txt"
.gpu/cuda-tests --test-threads=1 --nocapture 2>&1 | tee "$out/tests.log"
tests=${PIPESTATUS[0]}
for c in tinystories-hadamard-hash tinystories-hadamard tinystories-octonion; do
    for m in ${MODES:-tf32}; do
        echo "== $c --matmul $m"
        .gpu/trainer bench --config "configs/$c.toml" --device cuda --matmul "$m" --steps 10
    done
done 2>&1 | tee "$out/bench.log"
echo "== summary"
grep -E "^test |test result" "$out/tests.log"
grep -E "^== |tokens/s" "$out/bench.log"
exit "$tests"
