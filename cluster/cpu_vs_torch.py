#!/usr/bin/env python3
"""qisa's CPU backend and PyTorch side by side, in one run (issue 17's performance targets).

  python3 cluster/cpu_vs_torch.py [--qisa build/qisa] [--python /usr/bin/python3]
                                  [--threads 1,2] [--steps 3] [--coretype unset|asis|NAME]
                                  [--skip-large] [--only gpt2|paper] [--json FILE]

Measures, each qisa figure beside PyTorch's on the same shape, threads and BLAS environment:
  ceiling   a 2048^3 sgemm through qisa's CPU backend (`qisa bench kernels`' GEMM ceiling) on
            each thread count: the machine's measured peak with the BLAS kernel qisa runs
  124M      the GPT-2 124M shape (configs/gpt2/gpt2_124m_csa.yaml, fp32) at B4 T64 and B8 T256:
            s/step, model FLOP utilisation (qisa's flops/token x tokens / time / ceiling), the
            2-thread speed-up, and qisa's s/step over PyTorch's (torch_bench.py, eager, fp32)
  paper     the paper's configuration (configs/paper/csa_causal.yaml and qisa_causal.yaml):
            steps/s, and qisa over PyTorch (the paper's model in torch_bench.py --preset gpt1)
then prints a markdown table with the targets. Needs data/gpt2/tinyshakespeare_gpt2.h5 and
data/tinyshakespeare.h5 (configs/gpt2/README.md, cluster/quickstart.sh) and a python with
PyTorch (Debian's python3-torch: /usr/bin/python3).

BLAS environment (--coretype), set for both programs alike, for this benchmark only:
  unset  OPENBLAS_CORETYPE removed: OpenBLAS (qisa's and PyTorch's: the same library here)
         chooses for the CPU, and qisa overrides a choice below AVX-512 on an AVX-512 CPU
  asis   the environment as it is (a user's OPENBLAS_CORETYPE is kept by both)
  NAME   OPENBLAS_CORETYPE=NAME for both (e.g. SkylakeX: the same class of kernel)
Takes about 10 minutes on 2 cores (--skip-large leaves out B8 T256: about 3).
"""
import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TORCH_BENCH = os.path.join(ROOT, "cluster", "gpu", "torch_bench.py")
GPT2 = "configs/gpt2/gpt2_124m_csa.yaml"
PAPER = {"csa": "configs/paper/csa_causal.yaml", "qisa": "configs/paper/qisa_causal.yaml"}

# issue 17's targets
MFU_TARGET = {(4, 64): 0.6, (8, 256): 0.8}  # 1 thread
SPEEDUP_TARGET = 1.7                        # 2 threads over 1
TORCH_RATIO_TARGET = 0.8                    # qisa s/step over PyTorch's, same kernel class
PAPER_TARGET = 10.0                         # qisa steps/s over PyTorch's, 1 thread


def env_for(coretype):
    env = dict(os.environ)
    if coretype == "unset":
        env.pop("OPENBLAS_CORETYPE", None)
    elif coretype != "asis":
        env["OPENBLAS_CORETYPE"] = coretype
    env.pop("OMP_NUM_THREADS", None)  # --threads says it, for both
    return env


def last_json(cmd, env, what):
    t0 = time.time()
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    lines = [x for x in r.stdout.splitlines() if x.startswith("{")]
    if r.returncode != 0 or not lines:
        tail = (r.stderr.strip().splitlines() or ["(no output)"])[-1]
        sys.exit(f"cpu_vs_torch: {what} failed (exit {r.returncode}): {tail}\n  command: {' '.join(cmd)}")
    d = json.loads(lines[-1])
    if "error" in d:
        sys.exit(f"cpu_vs_torch: {what}: {d['error']}")
    print(f"  {what}: {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    return d


def ceiling(a, env, t):
    d = last_json([a.qisa, "bench", "kernels", PAPER["csa"], "--gemm-size", "2048", "--reps", "3", "--warmup", "1",
                   "--copy-mb", "64", "--threads", str(t)], env, f"sgemm ceiling, {t} thread(s)")
    return d["ceilings"]["gemm_tflops"]


def qisa_step(a, env, config, t, overrides, steps):
    return last_json([a.qisa, "bench", "step", config, *overrides, "--threads", str(t), "--steps", str(steps),
                      "--warmup", "1"], env, f"qisa {os.path.basename(config)} {' '.join(overrides)} {t} thread(s)")


def torch_step(a, env, preset, t, steps, extra):
    return last_json([a.python, TORCH_BENCH, "--device", "cpu", "--dtype", "fp32", "--modes", "eager", "--what",
                      "step", "--preset", preset, "--threads", str(t), "--steps", str(steps), "--warmup", "1", *extra],
                     env, f"torch {preset} {' '.join(extra)} {t} thread(s)")


def mark(ok):
    return "yes" if ok else "**no**"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--qisa", default=os.path.join(ROOT, "build", "qisa"))
    ap.add_argument("--python", default="/usr/bin/python3", help="a python with PyTorch (Debian's python3-torch)")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per 124M measurement (paper: 10x this)")
    ap.add_argument("--coretype", default="unset", help="unset | asis | an OPENBLAS_CORETYPE for both programs")
    ap.add_argument("--skip-large", action="store_true", help="leave out the 124M shape at B8 T256")
    ap.add_argument("--only", choices=["gpt2", "paper"], help="measure one part only (the ceiling always)")
    ap.add_argument("--json", help="also write every measurement here (JSON)")
    a = ap.parse_args()
    for f in (a.qisa, TORCH_BENCH):
        if not os.path.exists(f):
            sys.exit(f"cpu_vs_torch: {f} does not exist (hint: build qisa first: bash cluster/setup.sh)")
    threads = [int(x) for x in a.threads.split(",") if x]
    env = env_for(a.coretype)
    shapes = [] if a.only == "paper" else [(4, 64)] + ([] if a.skip_large else [(8, 256)])
    res = {"coretype": a.coretype, "date": time.strftime("%Y-%m-%d"), "ceiling_tflops": {}, "gpt2": [], "paper": []}
    for t in threads:
        res["ceiling_tflops"][t] = ceiling(a, env, t)
    for b, tt in shapes:
        for t in threads:
            ov = [f"train.batch_size={b}", f"train.micro_batch_size={b}", f"model.block_size={tt}"]
            q = qisa_step(a, env, GPT2, t, ov, a.steps)
            p = torch_step(a, env, "gpt2-124m", t, a.steps, ["--batch", str(b), "--block-size", str(tt)])
            res["gpt2"].append({"B": b, "T": tt, "threads": t, "qisa": q, "torch": p})
    for att, cfg in ({} if a.only == "gpt2" else PAPER).items():
        for t in threads:
            q = qisa_step(a, env, cfg, t, [], 10 * a.steps)
            p = torch_step(a, env, "gpt1", t, 10 * a.steps, ["--attention", att])
            res["paper"].append({"attention": att, "threads": t, "qisa": q, "torch": p})
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    report(res)


def report(res):
    c = res["ceiling_tflops"]
    first = (res["gpt2"] or res["paper"])[0]
    print(f"BLAS environment: {res['coretype']}; qisa's GEMM kernel: {first['qisa']['gemm_kernel']}; torch "
          f"{first['torch']['torch']}; {res['date']}")
    print("sgemm 2048^3 ceiling: " + ", ".join(f"{t} thread(s) {v * 1e3:.0f} GFLOP/s" for t, v in c.items()))
    if res["gpt2"]:
        report_gpt2(res, c)
    if res["paper"]:
        report_paper(res)


def report_gpt2(res, c):
    print()
    print("| 124M shape | threads | qisa s/step | MFU | target | PyTorch s/step | qisa/PyTorch | 2-thread speed-up |")
    print("|---|---|---|---|---|---|---|---|")
    one = {(r["B"], r["T"]): r["qisa"]["ms_per_step"] for r in res["gpt2"] if r["threads"] == 1}
    for r in res["gpt2"]:
        q, p, t, key = r["qisa"], r["torch"], r["threads"], (r["B"], r["T"])
        mfu = q["tflops_per_rank"] / c[t]
        target = f">= {MFU_TARGET[key]} {mark(mfu >= MFU_TARGET[key])}" if t == 1 and key in MFU_TARGET else ""
        ratio = q["ms_per_step"] / p["ms_per_step"]
        sp = ""
        if t == 2 and key in one:
            s = one[key] / q["ms_per_step"]
            sp = f"{s:.2f} (>= {SPEEDUP_TARGET} {mark(s >= SPEEDUP_TARGET)})"
        print(f"| B{r['B']} T{r['T']} | {t} | {q['ms_per_step'] / 1e3:.2f} | {mfu:.2f} | {target} | "
              f"{p['ms_per_step'] / 1e3:.2f} | {ratio:.2f} (<= {TORCH_RATIO_TARGET} {mark(ratio <= TORCH_RATIO_TARGET)}) | {sp} |")


def report_paper(res):
    print()
    print("| paper config | threads | qisa steps/s | PyTorch steps/s | qisa/PyTorch |")
    print("|---|---|---|---|---|")
    for r in res["paper"]:
        qs, ps = 1e3 / r["qisa"]["ms_per_step"], 1e3 / r["torch"]["ms_per_step"]
        tgt = f" (>= {PAPER_TARGET} {mark(qs / ps >= PAPER_TARGET)})" if r["threads"] == 1 else ""
        print(f"| {r['attention']} causal | {r['threads']} | {qs:.1f} | {ps:.2f} | {qs / ps:.1f}x{tgt} |")


if __name__ == "__main__":
    main()
