#!/usr/bin/env bash
# The Slurm side of cluster/sbatch/gpu_single_node.sbatch and gpu_multi_node.sbatch (the
# latter on --nodes=1), on the local Slurm's stand-in GPUs (gres entries with no GPU behind
# them; qisa trains on the CPU): one task per GPU, local ranks 0 and 1, every task sees both
# GPUs of the allocation in CUDA_VISIBLE_DEVICES (what "device = local rank" needs), and the
# 2 ranks train as one MPI world to the end. Skipped when the local Slurm is up without
# stand-in GPUs.
#   bash tests/slurm/gpu_templates.sh BUILD/qisa
# shellcheck source=tests/slurm/lib.sh disable=SC2154  # lib.sh; submit sets the id variables
source "$(dirname "$0")/lib.sh" "$@"
slurm_test_begin slurm-gpu-templates

gpus=$(sinfo -h -o %G | sed -n 's/.*gpu:\([0-9]*\).*/\1/p' | head -n 1)
if [ "${gpus:-0}" -lt 2 ]; then
  echo "$SLURM_TEST_NAME: skipped: the local Slurm is up without 2 stand-in GPUs (run" \
    "cluster/local-slurm/down.sh, then QISA_SLURM_GPUS=2 cluster/local-slurm/up.sh)"
  SLURM_TEST_OK=1
  exit 77
fi

steps=20
make_corpus "$WORK/corpus.h5"
write_config "$WORK/tiny.yaml" "$WORK/corpus.h5" "$steps"
# What each task sees, then the real qisa.
cat >"$WORK/qisa-probe" <<PROBE
#!/bin/bash
echo "rank \$SLURM_PROCID local \$SLURM_LOCALID visible \${CUDA_VISIBLE_DEVICES:-unset}" >>"$WORK/tasks-\$SLURM_JOB_ID.txt"
echo "\$*" >>"$WORK/args-\$SLURM_JOB_ID.txt"
exec "$QISA" "\$@"
PROBE
chmod +x "$WORK/qisa-probe"

for t in gpu_single_node gpu_multi_node; do
  QISA=$WORK/qisa-probe submit "id_$t" --nodes=1 --gpus-per-node=2 --ntasks-per-node=2 --cpus-per-task=1 --time=5 \
    --output="$WORK/$t-%j.out" "$SLURM_TEST_SBATCH/$t.sbatch" "$WORK/tiny.yaml" --quiet "log.dir=$WORK/$t" \
    train.device=cpu dist.comm=auto  # stand-in GPUs: the template's cuda/nccl defaults are overridden
done
log "submitted gpu_single_node.sbatch as job $id_gpu_single_node, gpu_multi_node.sbatch as job $id_gpu_multi_node"
for t in gpu_single_node gpu_multi_node; do
  id_var=id_$t
  id=${!id_var}
  wait_job "$id" 120
  expect_state "$id" COMPLETED
  grep -q "| 2 ranks (mpi)" "$WORK/$t-$id.out" || fail "$t: the job did not train as one 2-rank MPI world"
  grep -q "trained to step $steps " "$WORK/$t-$id.out" || fail "$t: no 'trained to step $steps'"
  [ -f "$WORK/$t/final.h5" ] || fail "$t: no final.h5"
  args=$(head -n 1 "$WORK/args-$id.txt")
  [[ $args == *"tiny.yaml train.device=cuda dist.comm=nccl --quiet "*" train.device=cpu dist.comm=auto" ]] ||
    fail "$t: qisa got '$args': expected the template's train.device=cuda dist.comm=nccl after CONFIG, the overrides last"
  seen=$(sort "$WORK/tasks-$id.txt" | tr '\n' ';')
  [ "$seen" = "rank 0 local 0 visible 0,1;rank 1 local 1 visible 0,1;" ] ||
    fail "$t: the tasks saw '$seen', expected ranks 0 and 1 on local ranks 0 and 1, each seeing GPUs 0,1"
done
pass "jobs $id_gpu_single_node and $id_gpu_multi_node COMPLETED: one task per stand-in GPU, each seeing CUDA_VISIBLE_DEVICES=0,1"
