#!/bin/sh
# Usage: expect_job_dies.sh LIMIT_S PATTERN COMMAND...
# Runs COMMAND (an mpiexec job in which a rank fails) under `timeout LIMIT_S` and passes when
# the job ended by itself with a non-zero status (0: the failure went unnoticed; 124, or 137
# after the grace kill: the job hung until the timeout) and, unless PATTERN is empty, its
# output contains PATTERN (a fixed string). Prints how long the job took to end.
limit=$1
pattern=$2
shift 2
out=$(mktemp)
trap 'rm -f "$out"' EXIT
start=$(date +%s.%N)
timeout -k 5 "$limit" "$@" >"$out" 2>&1
rc=$?
end=$(date +%s.%N)
cat "$out"
elapsed=$(echo "$start $end" | awk '{printf "%.2f", $2 - $1}')
echo "expect_job_dies: exit status $rc after $elapsed s (limit $limit s): $*"
failed_at=$(sed -n 's/.* at unix time \([0-9.]*\).*/\1/p' "$out" | head -n 1)
if [ -n "$failed_at" ]; then
  echo "$failed_at $end" | awk '{printf "expect_job_dies: the job ended %.2f s after the rank failed\n", $2 - $1}'
fi
case $rc in
  0) echo "expect_job_dies: FAIL: the job succeeded although a rank failed"; exit 1 ;;
  124|137) echo "expect_job_dies: FAIL: the job hung until the timeout"; exit 1 ;;
esac
if [ -n "$pattern" ] && ! grep -qF -- "$pattern" "$out"; then
  echo "expect_job_dies: FAIL: the output lacks '$pattern'"
  exit 1
fi
exit 0
