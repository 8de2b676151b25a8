#!/usr/bin/env python3
"""PyTorch anchor for qisa's GPU numbers: the same shapes timed in PyTorch, in the same call.

  python3 torch_bench.py [--preset gpt2-124m|gpt1|tiny] [--device cuda|cpu] [--dtype bf16|fp32]
                         [--modes eager,compile] [--steps N] [--warmup N] [--what step,attention]

Prints JSON lines (one per measurement):
  {"bench":"torch_step", "mode":"eager"|"compile", "attention":"csa", ...,
   "ms_per_step", "tokens_per_s"}   a GPT training step (forward, backward, AdamW) of the preset:
                                    nanoGPT's model (pre-LN blocks, GELU-tanh MLP, tied nothing,
                                    biases on), scaled_dot_product_attention with is_causal=True
                                    (flash/efficient kernels on a GPU), fused AdamW on CUDA,
                                    autocast to bf16 when --dtype bf16 (fp32 master weights), the
                                    same as qisa's train.precision: bf16
  {"bench":"torch_attention", "kernel":"sdpa_causal"|"gaussian_causal", ..., "ms"}
                                    attention forward+backward at B x H x T x D: SDPA's causal
                                    flash attention, and QISA's Gaussian attention written plainly
                                    (exp(-|q_i-k_j|^2), causal softmax, p v; T x T materialised):
                                    what a PyTorch user of the paper's model runs
"sdpa": false marks a PyTorch older than 2.0, where a plain causal attention stands in for SDPA.
A mode that fails (e.g. torch.compile without a working Triton) prints a line with "error" and
the run goes on. Exit status 0 when at least one measurement was made, 2 when PyTorch is missing.
"""
import argparse
import json
import math
import sys
import time

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError as e:  # the GPU machine has PyTorch; this machine may not
    print(json.dumps({"bench": "torch", "error": f"PyTorch is not importable: {e}"}))
    sys.exit(2)

PRESETS = {
    # L, C, H, T, B (micro-batch), V
    "gpt2-124m": dict(n_layer=12, n_embd=768, n_head=12, block_size=1024, batch=8, vocab=50304),
    "gpt1": dict(n_layer=6, n_embd=16, n_head=1, block_size=16, batch=1024, vocab=65),  # configs/paper
    "tiny": dict(n_layer=2, n_embd=32, n_head=2, block_size=16, batch=2, vocab=67),
}


HAVE_SDPA = hasattr(F, "scaled_dot_product_attention")  # PyTorch >= 2.0


def causal_attention(q, k, v):
    """SDPA's causal attention (flash/efficient kernels on a GPU); a plain version before PyTorch 2."""
    if HAVE_SDPA:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    t = q.shape[-2]
    w = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    mask = torch.ones(t, t, dtype=torch.bool, device=q.device).tril()
    return torch.softmax(w.masked_fill(~mask, float("-inf")), dim=-1) @ v


class Block(nn.Module):
    def __init__(self, c, h):
        super().__init__()
        self.h = h
        self.ln1, self.ln2 = nn.LayerNorm(c), nn.LayerNorm(c)
        self.qkv, self.proj = nn.Linear(c, 3 * c), nn.Linear(c, c)
        self.fc, self.mproj = nn.Linear(c, 4 * c), nn.Linear(4 * c, c)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.h, c // self.h).transpose(1, 2) for z in (q, k, v))
        y = causal_attention(q, k, v)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, c))
        return x + self.mproj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, p):
        super().__init__()
        c = p["n_embd"]
        self.tok = nn.Embedding(p["vocab"], c)
        self.pos = nn.Embedding(p["block_size"], c)
        self.blocks = nn.ModuleList(Block(c, p["n_head"]) for _ in range(p["n_layer"]))
        self.lnf = nn.LayerNorm(c)
        self.head = nn.Linear(c, p["vocab"], bias=False)

    def forward(self, idx, targets):
        t = idx.shape[1]
        x = self.tok(idx) + self.pos(torch.arange(t, device=idx.device))
        for blk in self.blocks:
            x = blk(x)
        logits = self.head(self.lnf(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.view(-1))


def gaussian_attention(q, k, v):
    """QISA's causal Gaussian attention, plainly: alpha_ij = exp(-|q_i - k_j|^2), softmax over j <= i."""
    d2 = (q * q).sum(-1, keepdim=True) - 2 * q @ k.transpose(-1, -2) + (k * k).sum(-1).unsqueeze(-2)
    alpha = torch.exp(-d2.clamp_min(0))
    t = q.shape[-2]
    mask = torch.ones(t, t, dtype=torch.bool, device=q.device).tril()
    p = torch.softmax(alpha.masked_fill(~mask, float("-inf")), dim=-1)
    return p @ v


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, steps, warmup, dev):
    for _ in range(warmup):
        fn()
    sync(dev)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        sync(dev)
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return times[len(times) // 2]  # median, ms


def base_line(args, dev, **kw):
    line = {"torch": torch.__version__, "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
            "dtype": args.dtype, "preset": args.preset, "sdpa": HAVE_SDPA}
    line.update(kw)
    return line


def bench_step(args, dev, mode):
    p = PRESETS[args.preset]
    torch.manual_seed(0)
    model = GPT(p).to(dev)
    fused = {"fused": True} if dev.type == "cuda" else {}  # fused AdamW: CUDA only
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1, **fused)
    if mode == "compile" and not hasattr(torch, "compile"):
        raise RuntimeError(f"torch.compile needs PyTorch >= 2.0 (this is {torch.__version__})")
    fwd = torch.compile(model) if mode == "compile" else model
    idx = torch.randint(0, p["vocab"], (p["batch"], p["block_size"]), device=dev)
    tgt = torch.randint(0, p["vocab"], (p["batch"], p["block_size"]), device=dev)
    amp = args.dtype == "bf16"

    def step():
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=amp):
            loss = fwd(idx, tgt)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    ms = timed(step, args.steps, args.warmup, dev)
    tokens = p["batch"] * p["block_size"]
    params = sum(q.numel() for q in model.parameters())
    return base_line(args, dev, bench="torch_step", mode=mode, attention="csa", params=params, **p,
                     steps=args.steps, warmup=args.warmup, ms_per_step=ms, tokens_per_s=tokens / (ms / 1e3))


def bench_attention(args, dev, kernel):
    p = PRESETS[args.preset]
    b, h, t = p["batch"], p["n_head"], p["block_size"]
    d = p["n_embd"] // h
    dt = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    torch.manual_seed(0)
    q, k, v = (torch.randn(b, h, t, d, device=dev, dtype=dt, requires_grad=True) for _ in range(3))
    g = torch.randn(b, h, t, d, device=dev, dtype=dt)
    fn = {"sdpa_causal": lambda: causal_attention(q, k, v), "gaussian_causal": lambda: gaussian_attention(q, k, v)}[kernel]

    def fwd_bwd():
        out = fn()
        torch.autograd.backward(out, g)

    ms = timed(fwd_bwd, args.steps, args.warmup, dev)
    return base_line(args, dev, bench="torch_attention", kernel=kernel, mode="eager", B=b, H=h, T=t, D=d,
                     ms=ms, pairs=b * h * t * (t + 1) // 2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="gpt2-124m")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    ap.add_argument("--modes", default="eager,compile", help="comma list of eager, compile")
    ap.add_argument("--what", default="step,attention", help="comma list of step, attention")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()
    dev = torch.device(args.device)
    jobs = []
    if "step" in args.what.split(","):
        jobs += [(bench_step, m) for m in args.modes.split(",") if m]
    if "attention" in args.what.split(","):
        jobs += [(bench_attention, k) for k in ("sdpa_causal", "gaussian_causal")]
    made = 0
    for fn, what in jobs:
        try:
            line = fn(args, dev, what)
            made += 1
        except Exception as e:  # noqa: BLE001 - report and go on (a missing Triton, out of memory)
            line = base_line(args, dev, bench=fn.__name__, what=what, error=f"{type(e).__name__}: {e}"[:500])
        print(json.dumps(line), flush=True)
    return 0 if made else 1


if __name__ == "__main__":
    sys.exit(main())
