#!/usr/bin/env bash
# Trains the canister's default model (configs/tinystories-hadamard-hash.toml) on the GPU machine,
# from the repository root, with .gpu/ carried (trainer/gpu/build.sh, plus .gpu/books: the
# children's books prepared with `--val` TinyStories valid.txt, train.bin xz-compressed to fit the
# device tool's 64 MiB, and .gpu/packer). TinyStories train-00 is 979K tokens, so the run first
# reads the books (BOOK_STEPS steps), then resumes on TinyStories to STEPS; both phases evaluate on
# TinyStories valid.txt, and the run keeps best/, the checkpoint of the lowest validation loss.
# Writes to $OUT: the packed blob of best/, best/ itself (no optimizer state), metrics.csv, the
# loss curve and logs (samples: `packer run` on the blob, anywhere).
set -euo pipefail
out=${OUT:-/tmp/train-default}
steps=${STEPS:-16000}
book_steps=${BOOK_STEPS:-12000}
run=/tmp/walsh-run
config=configs/tinystories-hadamard-hash.toml
mkdir -p "$out" /tmp/books
cp .gpu/books/{train.json,val.bin,val.json,tokenizer.json} /tmp/books/
python3 -c 'import lzma, shutil, sys
with lzma.open(sys.argv[1]) as f, open(sys.argv[2], "wb") as g: shutil.copyfileobj(f, g)' \
    .gpu/books/train.bin.xz /tmp/books/train.bin
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
common=(--config "$config" --device cuda --out "$run"
    --set "steps=$steps" --set eval_every=500 --set checkpoint_every=2000 --set log_every=100)
start=$(date +%s)
# A deadline (DEADLINE seconds of training in all) stops a phase as Ctrl-C would, with a checkpoint,
# so that the device tool's 10-minute limit still leaves time to pack what was trained.
deadline=$((start + ${DEADLINE:-500}))
left() { local l=$((deadline - $(date +%s))); echo $((l > 1 ? l : 1)); }
{
    timeout -s INT "$(left)" .gpu/trainer train "${common[@]}" --set data=/tmp/books \
        --stop-after "$book_steps" || [ $? = 124 ]
    timeout -s INT "$(left)" .gpu/trainer train "${common[@]}" --set data=.gpu/ts \
        --resume "$run/checkpoint" || [ $? = 124 ]
} 2>&1 | tee "$out/train.log"
echo "training wall time: $(($(date +%s) - start)) s" | tee -a "$out/train.log"
.gpu/trainer plot "$run"
.gpu/trainer eval "$run/best" --data .gpu/ts/val.bin --device cuda | tee "$out/eval.txt"
.gpu/packer pack "$run/best" -o "$out/walsh-default.walsh" --embeddings int8
.gpu/packer eval "$out/walsh-default.walsh" .gpu/ts/valid.txt | tee -a "$out/eval.txt"
cp "$run/metrics.csv" "$run/loss.png" "$out/"
tar -C "$run" -cf "$out/best.tar" best/config.json best/model.safetensors best/tokenizer.json best/train_state.json
tail -n 3 "$out/train.log"
cat "$out/eval.txt"
