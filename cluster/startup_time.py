#!/usr/bin/env python3
"""Start-up time of `qisa train` (issue 17 B.3): seconds from the command's start to its first
step's line, minus that step's own time (its ms/step), at the GPT-2 124M shape (B=4, T=64).

    python3 cluster/startup_time.py [QISA] [THREADS]      (defaults: build/qisa 2)

Needs data/gpt2/tinyshakespeare_gpt2.h5 (configs/gpt2/README.md). The run directory is a
temporary folder, removed afterwards.
"""
import shutil
import subprocess
import sys
import tempfile
import time

qisa = sys.argv[1] if len(sys.argv) > 1 else "build/qisa"
threads = sys.argv[2] if len(sys.argv) > 2 else "2"
run_dir = tempfile.mkdtemp(prefix="qisa-startup-")
cmd = [qisa, "train", "configs/gpt2/gpt2_124m_csa.yaml", "model.block_size=64", "train.batch_size=4",
       "train.micro_batch_size=4", "train.steps=1", "eval.every=0", "eval.windows=1",
       "checkpoint.every_steps=0", "log.every=1", "train.warmup_steps=0", "train.threads=" + threads,
       "log.dir=" + run_dir + "/run"]
t0 = time.time()
p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
try:
    for line in p.stdout:
        if line.startswith("step 1"):
            total = time.time() - t0
            step = float(line.split("ms/step")[0].split()[-1]) / 1000
            print(f"{qisa}, {threads} threads: first step's line at {total:.2f} s, the step {step:.2f} s, "
                  f"start-up {total - step:.2f} s")
            break
    else:
        sys.exit(f"error: no 'step 1' line from {' '.join(cmd)} (exit {p.wait()})")
finally:
    p.kill()
    p.wait()
    shutil.rmtree(run_dir, ignore_errors=True)
