#!/usr/bin/env bash
# The frontier runs of docs/MODELS.md, on the GPU machine, from the repository root, with .gpu/
# carried (`TEXT=1 trainer/gpu/build.sh`: the CUDA trainer, the packer, and the children's books
# and TinyStories train xz-compressed, valid.txt as it is, in .gpu/text). Subcommands:
#
#   frontier.sh prepare [VOCAB]   the books and TinyStories train → a byte-level BPE of VOCAB ids
#                                 (default 4096) trained on both, /tmp/data/all (books + TinyStories)
#                                 and /tmp/data/ts (TinyStories alone), both validated on
#                                 TinyStories valid.txt. With TOKENIZER=PATH, that tokenizer instead.
#   frontier.sh corpus TEACHER COUNT [SEED]
#                                 sequence-level distillation (docs/TRAINING.md §8.1): COUNT
#                                 unconditional stories of the checkpoint TEACHER (temperature 1,
#                                 whole stories only, seeds SEED…, default 1000) into
#                                 /tmp/text/teacher.txt, then /tmp/data/ts-teacher: TinyStories
#                                 train and those stories, /tmp/data/all's tokenizer. Not yet run.
#   frontier.sh train NAME CONFIG BOOK_STEPS STEPS BOOK_END END [KEY=VALUE…]
#                                 the two-phase recipe of trainer/gpu/train.sh: BOOK_STEPS steps on
#                                 /tmp/data/all, then TinyStories (PHASE2=DIR: that prepared data,
#                                 e.g. /tmp/data/ts-teacher) to STEPS (evaluated every 100
#                                 steps; best/ kept), each phase stopped as by Ctrl-C at the epoch
#                                 second BOOK_END / END at the latest; then `trainer eval` of best/,
#                                 `packer pack` (int8 embeddings), `packer eval` of the blob on
#                                 valid.txt and a greedy 200-token `packer run`, into /tmp/res/NAME.
#   frontier.sh collect           /tmp/res → $OUT: results.tar (logs, metrics, evaluations,
#                                 samples, blobs, the tokenizer) and NAME.ckpt.tar for each run's
#                                 best/ f32 checkpoint (parts NAME.ckpt.tar.partNN over 15 MB).
set -euo pipefail
cmd=${1:?usage: frontier.sh prepare|train|collect …}
shift
# GPU_DIR: where the binaries and the text are (.gpu; another carried folder when the device
# tool sends a checkout other than this one).
G=${GPU_DIR:-.gpu}
T=$G/trainer
P=$G/packer
case "$cmd" in
prepare)
    vocab=${1:-4096}
    mkdir -p /tmp/text /tmp/data
    for f in $G/text/*.xz; do
        python3 -c 'import lzma, shutil, sys
with lzma.open(sys.argv[1]) as f, open(sys.argv[2], "wb") as g: shutil.copyfileobj(f, g)' \
            "$f" "/tmp/text/$(basename "$f" .xz)" &
    done
    wait
    tok=(--train-tokenizer "$vocab")
    if [ -n "${TOKENIZER:-}" ]; then tok=(--tokenizer "$TOKENIZER"); fi
    # Books first, TinyStories last: the windows are drawn uniformly over the file.
    $T prepare /tmp/text/books-0*.txt /tmp/text/train-00.txt --val $G/text/valid.txt \
        "${tok[@]}" -o /tmp/data/all
    $T prepare /tmp/text/train-00.txt --val $G/text/valid.txt \
        --tokenizer /tmp/data/all/tokenizer.json -o /tmp/data/ts
    ;;
corpus)
    teacher=$1 count=$2 seed=${3:-1000}
    $T sample "$teacher" --device cuda --count "$count" --batch-size 256 --max-tokens 255 \
        --complete-only --seed "$seed" -o /tmp/text/teacher.txt --overwrite
    $T prepare /tmp/text/train-00.txt /tmp/text/teacher.txt --val $G/text/valid.txt \
        --tokenizer /tmp/data/all/tokenizer.json -o /tmp/data/ts-teacher
    ;;
train)
    name=$1 config=$2 book_steps=$3 steps=$4 book_end=$5 end=$6
    shift 6
    run=/tmp/runs/$name res=/tmp/res/$name
    mkdir -p "$res"
    common=(--config "$config" --device cuda --out "$run" --set "steps=$steps"
        --set eval_every=500 --set checkpoint_every=2000 --set log_every=100)
    for kv in "$@"; do common+=(--set "$kv"); done
    left() { local l=$(($1 - $(date +%s))); echo $((l > 1 ? l : 1)); }
    start=$(date +%s)
    {
        echo "== $name: $config, $book_steps steps on books + TinyStories, then TinyStories to $steps; sets: $*"
        timeout -s INT "$(left "$book_end")" $T train "${common[@]}" --set data=/tmp/data/all \
            --stop-after "$book_steps" || [ $? = 124 ]
        timeout -s INT "$(left "$end")" $T train "${common[@]}" --set "data=${PHASE2:-/tmp/data/ts}" \
            --set eval_every=100 --resume "$run/checkpoint" || [ $? = 124 ]
        echo "training wall time: $(($(date +%s) - start)) s"
    } >"$res/train.log" 2>&1
    $T plot "$run" >/dev/null 2>&1 || true
    {
        $T eval "$run/best" --data /tmp/data/ts/val.bin --device cuda
        $P pack "$run/best" -o "$res/$name.walsh" --embeddings int8
        $P inspect "$res/$name.walsh" | head -n 20
        ls -l "$res/$name.walsh"
        $P eval "$res/$name.walsh" $G/text/valid.txt
    } >"$res/eval.txt" 2>&1 || echo "eval failed" >>"$res/eval.txt"
    $P run "$res/$name.walsh" "Once upon a time" --max-tokens 200 >"$res/greedy.txt" 2>&1 || true
    cp "$run/metrics.csv" "$res/"
    cp "$run/loss.png" "$res/" 2>/dev/null || true
    mkdir -p "$res/best"
    cp "$run/best/"{config.json,model.safetensors,tokenizer.json,train_state.json} "$res/best/"
    ;;
collect)
    out=${OUT:-/tmp/frontier-out}
    mkdir -p "$out"
    for d in /tmp/data/*/; do
        for j in "$d"*.json; do cp "$j" "/tmp/res/$(basename "$d")-$(basename "$j")"; done
    done
    tar -C /tmp/res --exclude='*/best' -cf "$out/results.tar" .
    for d in /tmp/res/*/best; do
        name=$(basename "$(dirname "$d")")
        tar -C "$(dirname "$d")" -cf "/tmp/$name.ckpt.tar" best
        if [ "$(stat -c %s "/tmp/$name.ckpt.tar")" -gt 15000000 ]; then
            split -b 15000000 -d "/tmp/$name.ckpt.tar" "$out/$name.ckpt.tar.part"
        else
            cp "/tmp/$name.ckpt.tar" "$out/"
        fi
    done
    ls -l "$out"
    ;;
*)
    echo "frontier.sh: unknown subcommand $cmd" >&2
    exit 2
    ;;
esac
