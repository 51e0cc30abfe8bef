#!/usr/bin/env bash
# Trains a seed config on the GPU machine, from the repository root, with .gpu/ carried
# (trainer/gpu/build.sh: the CUDA trainer, the packer, TinyStories and the children's books
# prepared in TinyStories' frequency numbering, the books' train.bin xz-compressed to fit the
# device tool's 64 MiB). TinyStories train-00 is 979K tokens, so the run first reads the books
# (BOOK_STEPS steps), then resumes on TinyStories to STEPS; both phases evaluate on TinyStories
# valid.txt (every 500 steps on the books, every TS_EVAL_EVERY = 100 on TinyStories, which the
# larger models overfit within a few hundred steps), and the run keeps best/, the checkpoint of
# the lowest validation loss, which it
# evaluates (trainer eval), packs (--embeddings $EMBEDDINGS, default int8) and evaluates again as
# a blob (packer eval). Writes to $OUT: the blob (in 15 MB parts NAME.walsh.partNN when larger:
# the device tool returns files of at most 16 MiB; `cat NAME.walsh.part* > NAME.walsh`), best/
# without optimizer state when small enough, metrics.csv, the loss curve and logs.
#   CONFIG=configs/tinystories-hadamard-hash.toml (default) STEPS=15000 BOOK_STEPS=11000
#   DEADLINE=510 (seconds of training in all) MATMUL=bf16 trainer/gpu/train.sh
set -euo pipefail
out=${OUT:-/tmp/walsh-train}
steps=${STEPS:-15000}
book_steps=${BOOK_STEPS:-11000}
run=${RUN:-/tmp/walsh-run}
config=${CONFIG:-configs/tinystories-hadamard-hash.toml}
name=$(basename "$config" .toml)
mkdir -p "$out" /tmp/books
cp .gpu/books/{train.json,val.bin,val.json,tokenizer.json} /tmp/books/
python3 -c 'import lzma, shutil, sys
with lzma.open(sys.argv[1]) as f, open(sys.argv[2], "wb") as g: shutil.copyfileobj(f, g)' \
    .gpu/books/train.bin.xz /tmp/books/train.bin
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
fi
device=${DEVICE:-cuda}
# MATMUL: the CUDA GEMM mode (tf32, bf16 or f32); the trainer's default when unset.
matmul=()
if [ -n "${MATMUL:-}" ]; then matmul=(--matmul "$MATMUL"); fi
common=(--config "$config" --device "$device" "${matmul[@]}" --out "$run"
    --set "steps=$steps" --set eval_every=500 --set checkpoint_every=2000 --set log_every=100)
# SETS="key=value …": more overrides (a quick CPU rehearsal: DEVICE=cpu STEPS=4 BOOK_STEPS=2
# SETS="batch_size=2 seq_len=64 eval_every=2 eval_batches=1").
for kv in ${SETS:-}; do common+=(--set "$kv"); done
start=$(date +%s)
# A deadline (DEADLINE seconds of training in all) stops a phase as Ctrl-C would, with a checkpoint,
# so that the device tool's 10-minute limit still leaves time to pack what was trained.
deadline=$((start + ${DEADLINE:-510}))
left() { local l=$((deadline - $(date +%s))); echo $((l > 1 ? l : 1)); }
{
    timeout -s INT "$(left)" .gpu/trainer train "${common[@]}" --set data=/tmp/books \
        --stop-after "$book_steps" || [ $? = 124 ]
    timeout -s INT "$(left)" .gpu/trainer train "${common[@]}" --set data=.gpu/ts \
        --set "eval_every=${TS_EVAL_EVERY:-100}" --resume "$run/checkpoint" || [ $? = 124 ]
} 2>&1 | tee "$out/train.log"
echo "training wall time: $(($(date +%s) - start)) s" | tee -a "$out/train.log"
.gpu/trainer plot "$run"
.gpu/trainer eval "$run/best" --data .gpu/ts/val.bin --device "$device" "${matmul[@]}" | tee "$out/eval.txt"
blob=/tmp/$name.walsh
.gpu/packer pack "$run/best" -o "$blob" --embeddings "${EMBEDDINGS:-int8}"
.gpu/packer eval "$blob" .gpu/ts/valid.txt | tee -a "$out/eval.txt"
if [ "$(stat -c %s "$blob")" -gt 15000000 ]; then
    split -b 15000000 -d "$blob" "$out/$name.walsh.part"
else
    cp "$blob" "$out/"
fi
cp "$run/metrics.csv" "$run/loss.png" "$out/"
if [ "$(stat -c %s "$run/best/model.safetensors")" -lt 15000000 ]; then
    tar -C "$run" -cf "$out/best.tar" best/config.json best/model.safetensors best/tokenizer.json \
        best/train_state.json
fi
tail -n 3 "$out/train.log"
cat "$out/eval.txt"
