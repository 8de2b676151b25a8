#!/usr/bin/env bash
# Regenerate the seeds that a built qisa writes: tests/fuzz/checkpoint/qisa.h5 (the checkpoint
# of a tiny QISA model after one step, 31 KiB) and tests/fuzz/config/resolved.yaml (the
# config.yaml of that run). The other seeds are written by hand (corpus and model_file: edit
# lists for h5_spec.h, the empty one meaning the valid baseline).
#   bash tests/fuzz/make_seeds.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
QISA=${1:-build}/qisa
FUZZ=tests/fuzz
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

printf 'To be, or not to be: that is the question.\nWhether tis nobler in the mind to suffer\n' > "$work/text.txt"
"$QISA" prepare --input "$work/text.txt" --out "$work/corpus.h5" >/dev/null

# A tiny QISA model (it has Pauli strings as well as tensors): its checkpoint after one step.
"$QISA" train /dev/null --quiet --overwrite --threads 1 data.corpus="$work/corpus.h5" \
  model.attention=qisa model.block_size=4 model.n_embd=4 model.n_head=1 model.n_layer=1 \
  train.batch_size=2 train.steps=1 eval.windows=1 log.dir="$work/run" >/dev/null
cp "$work"/run/checkpoints/ckpt_00000001.h5 "$FUZZ/checkpoint/qisa.h5"
sed "s|$work|/tmp/run|g" "$work/run/config.yaml" > "$FUZZ/config/resolved.yaml"  # to_yaml(): every key
ls -l "$FUZZ/checkpoint/qisa.h5" "$FUZZ/config/resolved.yaml"
