#!/usr/bin/env bash
# ctest fixture `slurm_cluster`: one local Slurm for all tests labelled slurm.
#   cluster_fixture.sh up MARKER     start cluster/local-slurm (2 stand-in GPUs) unless it is
#                                    up; MARKER records that this fixture started it
#   cluster_fixture.sh down MARKER   stop it again, only when MARKER says the fixture started it
# Not root: exit 77 (ctest: skipped), as the tests themselves do.
set -euo pipefail
local_slurm=$(cd "$(dirname "$0")/../../cluster/local-slurm" && pwd)
[ $# = 2 ] || { echo "usage: cluster_fixture.sh up|down MARKER" >&2; exit 2; }
marker=$2
if [ "$(id -u)" != 0 ]; then
  echo "cluster_fixture.sh: skipped: the local Slurm needs root"
  exit 77
fi
case "$1" in
  up)
    if bash "$local_slurm/up.sh" --check; then
      rm -f "$marker"  # up already: someone else's to stop
    else
      QISA_SLURM_GPUS=${QISA_SLURM_GPUS:-2} bash "$local_slurm/up.sh" </dev/null
      date >"$marker"
    fi
    ;;
  down)
    if [ -f "$marker" ]; then
      rm -f "$marker"
      bash "$local_slurm/down.sh"
    else
      echo "cluster_fixture.sh: the local Slurm was up before the tests: left running"
    fi
    ;;
  *) echo "usage: cluster_fixture.sh up|down MARKER" >&2; exit 2 ;;
esac
