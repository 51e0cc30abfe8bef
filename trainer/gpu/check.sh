#!/usr/bin/env bash
# Runs on the GPU machine, from the repository root, with .gpu/ carried (trainer/gpu/build.sh):
# the CUDA backend against the CPU backend (trainer/tests/cuda.rs), then the GPU's measured ceilings
# (`trainer bench --ceilings`: memory bandwidth, bf16 and TF32 GEMM rates) and `trainer bench` of the
# three seed configs (GEMM modes in $MODES, default "bf16 tf32"; attention kernels in $ATTENTIONS,
# default "tc" (tensor cores, the default there) and "cores"). Logs go to $OUT (the device tool's) or
# /tmp/gpu-check; the last lines printed are the summary. Exit status: the tests'.
set -uo pipefail
out=${OUT:-/tmp/gpu-check}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$out/gpu.txt"
.gpu/cuda-tests --test-threads=1 --nocapture 2>&1 | tee "$out/tests.log"
tests=${PIPESTATUS[0]}
{
# The GPU's measured ceilings (memory bandwidth, bf16 and TF32 GEMM rates) for the floors.
echo "== ceilings"
.gpu/trainer bench --ceilings --device cuda --matmul tf32
for c in tinystories-hadamard-hash tinystories-hadamard tinystories-octonion; do
    for m in ${MODES:-bf16 tf32}; do
        # Attention on tensor cores (the default) and on CUDA cores (WALSH_ATTENTION=cores).
        for a in ${ATTENTIONS:-tc cores}; do
            echo "== $c --matmul $m, attention on $a"
            WALSH_ATTENTION=$a .gpu/trainer bench --config "configs/$c.toml" --device cuda \
                --matmul "$m" --steps 10
        done
    done
done
} 2>&1 | tee "$out/bench.log"
# PROFILE=1 (or 2): every kernel's GPU time in one step of $PROFILE_CONFIG (default the hash model)
# in matmul mode $PROFILE_MATMUL (default tf32; Nsight Compute, one metric), summed by kernel name,
# largest first.
if [ "${PROFILE:-0}" != 0 ] && command -v ncu >/dev/null; then
    timeout 240 ncu --csv --page raw --metrics gpu__time_duration.sum \
        .gpu/trainer bench --config "configs/${PROFILE_CONFIG:-tinystories-hadamard-hash}.toml" --device cuda \
        --matmul "${PROFILE_MATMUL:-tf32}" --steps 1 >"$out/ncu.csv" 2>"$out/ncu.err" || echo "ncu failed: $(tail -n 3 "$out/ncu.err")"
    python3 - "$out/ncu.csv" <<'PY' | tee "$out/kernels.txt"
import csv, collections, sys
rows = [r for r in csv.reader(open(sys.argv[1])) if r]
head = next(i for i, r in enumerate(rows) if "Kernel Name" in r)
cols = rows[head]
k, t = cols.index("Kernel Name"), cols.index("gpu__time_duration.sum")
unit = rows[head + 1][t]
total, calls = collections.Counter(), collections.Counter()
for r in rows[head + 2:]:
    try:
        total[r[k].split("(")[0]] += float(r[t].replace(",", ""))
        calls[r[k].split("(")[0]] += 1
    except (ValueError, IndexError):
        pass
s = sum(total.values())
print(f"kernel GPU time over the whole bench run (warmup, timed and split steps), {unit}: total {s:.0f}")
for name, v in total.most_common(25):
    print(f"{name[:90]:90} {v:12.0f} {100 * v / s:5.1f}% {calls[name]:6d}")
PY
fi
# PROFILE=2 as well: Nsight Compute's speed-of-light, compute, memory, occupancy and launch
# sections for one launch of each of the heaviest kernels (what bounds each).
if [ "${PROFILE:-0}" = 2 ] && command -v ncu >/dev/null; then
    for k in flash_backward_kv flash_backward_q flash_forward expand_hadamard fold_hadamard; do
        timeout 120 ncu -k "regex:^$k" --launch-skip 8 --launch-count 1 \
            --section SpeedOfLight --section ComputeWorkloadAnalysis \
            --section MemoryWorkloadAnalysis --section Occupancy --section LaunchStats \
            .gpu/trainer bench --config configs/tinystories-hadamard-hash.toml --device cuda \
            --steps 1 >/tmp/ncu-k.txt 2>&1 || echo "ncu $k failed"
        { echo "==== $k"; cat /tmp/ncu-k.txt; } >>"$out/ncu-sections.txt"
        grep -E "Duration|Throughput|Achieved Occupancy|Registers Per|Issue Slots Busy|Mem Busy|L1/TEX Hit" \
            /tmp/ncu-k.txt | sed "s/^/$k: /" | head -n 14
    done
fi
echo "== summary"
grep -E "^test |test result" "$out/tests.log"
grep -E "^== |tokens/s|^ceilings|^memory|GEMM " "$out/bench.log"
exit "$tests"
