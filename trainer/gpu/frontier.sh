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
#                                 valid.txt (not with PACKER_EVAL=0) and a greedy 200-token `packer
#                                 run`, into /tmp/res/NAME.
#   frontier.sh formats NAME [ARGS…]
#                                 issue 17's ablation on /tmp/res/NAME/best: `packer pack` in every
#                                 embedding format (f16, int8, int6, int4, each also --rotate where
#                                 it applies; ARGS go to every pack, e.g. --packing 5x --floats f16),
#                                 `packer eval` of each blob on valid.txt, into /tmp/res/NAME/formats.txt
#                                 (FORMATS="int6r int4": those only).
#   frontier.sh collect           /tmp/res → $OUT: results.tar (logs, metrics, evaluations,
#                                 samples, blobs, the tokenizer) and NAME.ckpt.tar for each run's
#                                 best/ f32 checkpoint (parts NAME.ckpt.tar.partNN over 15 MB).
set -euo pipefail
cmd=${1:?usage: frontier.sh prepare|train|collect …}
shift
# DATA: where prepare writes and train reads the prepared data (default /tmp/data; e.g. /tmp/g2
# with TOKENIZER=models/tokenizer-gpt2.json for the GPT-2-vocabulary models).
D=${DATA:-/tmp/data}
# VALID: the text `packer eval` scores in train and formats (default all of valid.txt; a prefix
# such as its first 100,000 bytes where a 50,257-token model's CPU evaluation would not fit a call).
V=${VALID:-${GPU_DIR:-.gpu}/text/valid.txt}
# GPU_DIR: where the binaries and the text are (.gpu; another carried folder when the device
# tool sends a checkout other than this one).
G=${GPU_DIR:-.gpu}
T=$G/trainer
P=$G/packer
case "$cmd" in
prepare)
    vocab=${1:-4096}
    mkdir -p /tmp/text "$D"
    for f in $G/text/*.xz; do
        [ -f "/tmp/text/$(basename "$f" .xz)" ] && continue
        python3 -c 'import lzma, shutil, sys
with lzma.open(sys.argv[1]) as f, open(sys.argv[2], "wb") as g: shutil.copyfileobj(f, g)' \
            "$f" "/tmp/text/$(basename "$f" .xz)" &
    done
    wait
    tok=(--train-tokenizer "$vocab")
    if [ -n "${TOKENIZER:-}" ]; then tok=(--tokenizer "$TOKENIZER"); fi
    # Books first, TinyStories last: the windows are drawn uniformly over the file.
    $T prepare /tmp/text/books-0*.txt /tmp/text/train-00.txt --val $G/text/valid.txt \
        "${tok[@]}" -o "$D/all"
    $T prepare /tmp/text/train-00.txt --val $G/text/valid.txt \
        --tokenizer "$D/all/tokenizer.json" -o "$D/ts"
    ;;
corpus)
    teacher=$1 count=$2 seed=${3:-1000}
    $T sample "$teacher" --device cuda --count "$count" --batch-size 256 --max-tokens 255 \
        --complete-only --seed "$seed" -o /tmp/text/teacher.txt --overwrite
    $T prepare /tmp/text/train-00.txt /tmp/text/teacher.txt --val $G/text/valid.txt \
        --tokenizer "$D/all/tokenizer.json" -o "$D/ts-teacher"
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
        timeout -s INT "$(left "$book_end")" $T train "${common[@]}" --set "data=$D/all" \
            --stop-after "$book_steps" || [ $? = 124 ]
        timeout -s INT "$(left "$end")" $T train "${common[@]}" --set "data=${PHASE2:-$D/ts}" \
            --set eval_every=100 --resume "$run/checkpoint" || [ $? = 124 ]
        echo "training wall time: $(($(date +%s) - start)) s"
    } >"$res/train.log" 2>&1
    $T plot "$run" >/dev/null 2>&1 || true
    {
        $T eval "$run/best" --data "$D/ts/val.bin" --device cuda
        $P pack "$run/best" -o "$res/$name.walsh" --embeddings int8
        $P inspect "$res/$name.walsh" | head -n 20
        ls -l "$res/$name.walsh"
        if [ "${PACKER_EVAL:-1}" = 1 ]; then $P eval "$res/$name.walsh" "$V"; fi
    } >"$res/eval.txt" 2>&1 || echo "eval failed" >>"$res/eval.txt"
    $P run "$res/$name.walsh" "Once upon a time" --max-tokens 200 >"$res/greedy.txt" 2>&1 || true
    cp "$run/metrics.csv" "$res/"
    cp "$run/loss.png" "$res/" 2>/dev/null || true
    mkdir -p "$res/best"
    cp "$run/best/"{config.json,model.safetensors,tokenizer.json,train_state.json} "$res/best/"
    ;;
formats)
    name=$1
    shift
    res=/tmp/res/$name
    for e in ${FORMATS:-f16 int8 int8r int6 int6r int4 int4r}; do
        rot=()
        case $e in *r) rot=(--rotate) ;; esac
        $P pack "$res/best" -o "/tmp/$name-$e.walsh" --embeddings "${e%r}" "${rot[@]}" "$@" >/dev/null
        echo "$e $(stat -c %s "/tmp/$name-$e.walsh") bytes: $($P eval "/tmp/$name-$e.walsh" "$V" 2>&1 | tail -n 1)"
    done >"$res/formats.txt" 2>&1
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
