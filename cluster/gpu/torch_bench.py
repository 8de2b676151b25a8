#!/usr/bin/env python3
"""PyTorch anchor for qisa's GPU numbers: the same shapes timed in PyTorch, in the same call.

  python3 torch_bench.py [--preset gpt2-124m|gpt1|tiny] [--device cuda|cpu] [--dtype bf16|fp32]
                         [--modes eager,compile] [--steps N] [--warmup N] [--what step,attention]
                         [--attention csa|qisa] [--batch B] [--block-size T] [--threads N]

The gpt1 preset is the paper's configuration (configs/paper: relu, dropout 0.2, C^-0.5 score
scale, no q/k/v biases for csa); --attention qisa swaps in the paper's QISA head as its
published code computes it (Gaussian scores exp(-|q_i - k_j|^2), values Re<u|P_j|u> through dense
N x N Pauli matrices, no dropout inside the head). --threads sets torch.set_num_threads (CPU).

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
    # L, C, H, T, B (micro-batch), V; the model's form: activation, dropout, csa score scale
    # ("D": 1/sqrt(head dim), SDPA's; "C": 1/sqrt(n_embd), the paper's) and q/k/v biases
    "gpt2-124m": dict(n_layer=12, n_embd=768, n_head=12, block_size=1024, batch=8, vocab=50304,
                      activation="gelu", dropout=0.0, scale="D", qkv_bias=True),
    "gpt1": dict(n_layer=6, n_embd=16, n_head=1, block_size=16, batch=1024, vocab=65,  # configs/paper
                 activation="relu", dropout=0.2, scale="C", qkv_bias=False),
    "tiny": dict(n_layer=2, n_embd=32, n_head=2, block_size=16, batch=2, vocab=67,
                 activation="gelu", dropout=0.0, scale="D", qkv_bias=True),
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


def pauli_real_matrices(n_qubits, d, generator, identity_prob=0.9):
    """d random Pauli strings on n_qubits (each letter I with identity_prob, else X, Y or Z; the
    all-I string redrawn), as the real parts of their dense 2^n x 2^n matrices (SPEC 1.2): what
    the published code multiplies by. Qubit 0 is the most significant bit (kron order)."""
    paulis = [torch.eye(2, dtype=torch.complex64),
              torch.tensor([[0, 1], [1, 0]], dtype=torch.complex64),
              torch.tensor([[0, -1j], [1j, 0]], dtype=torch.complex64),
              torch.tensor([[1, 0], [0, -1]], dtype=torch.complex64)]
    mats = []
    while len(mats) < d:
        letters = [0 if torch.rand(1, generator=generator).item() < identity_prob
                   else 1 + int(torch.randint(0, 3, (1,), generator=generator)) for _ in range(n_qubits)]
        if not any(letters):
            continue
        m = torch.ones(1, 1, dtype=torch.complex64)
        for letter in letters:
            m = torch.kron(m, paulis[letter])
        mats.append(m.real)
    return torch.stack(mats)  # (d, N, N)


class QisaAttention(nn.Module):
    """The paper's QISA heads, causal: q, k with biases; u = a L_h^T zero-padded to N amplitudes;
    v_j = u^T Re(P_j) u; alpha_ij = exp(-|q_i - k_j|^2); p = softmax over j <= i of alpha; out = p v."""

    def __init__(self, c, h):
        super().__init__()
        self.h, self.d = h, c // h
        self.q, self.k = nn.Linear(c, c), nn.Linear(c, c)
        self.L = nn.Parameter(torch.randn(h, c, c) * 0.02)
        self.nq = max(1, math.ceil(math.log2(c)))
        g = torch.Generator().manual_seed(1)
        self.register_buffer("P", torch.stack([pauli_real_matrices(self.nq, self.d, g) for _ in range(h)]))

    def forward(self, a):
        b, t, c = a.shape
        q, k = (z(a).view(b, t, self.h, self.d).transpose(1, 2) for z in (self.q, self.k))  # B,H,T,D
        u = torch.einsum("btc,hnc->bhtn", a, self.L)                                         # B,H,T,C
        u = F.pad(u, (0, (1 << self.nq) - c))                                                # B,H,T,N
        pu = torch.einsum("hjnm,bhtm->bhtjn", self.P, u)                                     # B,H,T,D,N
        v = (pu * u.unsqueeze(-2)).sum(-1)                                                   # B,H,T,D
        d2 = ((q.unsqueeze(-2) - k.unsqueeze(-3)) ** 2).sum(-1)                               # B,H,T,T
        mask = torch.ones(t, t, dtype=torch.bool, device=a.device).tril()
        p = torch.softmax(torch.exp(-d2).masked_fill(~mask, float("-inf")), dim=-1)
        return (p @ v).transpose(1, 2).reshape(b, t, c)


class CsaAttention(nn.Module):
    def __init__(self, c, h, p):
        super().__init__()
        self.h = h
        self.qkv = nn.Linear(c, 3 * c, bias=p["qkv_bias"])
        self.scale = 1.0 / math.sqrt(c) if p["scale"] == "C" else None  # None: SDPA's 1/sqrt(D)
        self.drop = p["dropout"]

    def forward(self, a):
        b, t, c = a.shape
        q, k, v = self.qkv(a).split(c, dim=2)
        q, k, v = (z.view(b, t, self.h, c // self.h).transpose(1, 2) for z in (q, k, v))
        if self.scale is None and self.drop == 0.0:
            y = causal_attention(q, k, v)
        else:  # the paper's C^-0.5 and attention dropout, plainly
            w = (q @ k.transpose(-1, -2)) * (self.scale or 1.0 / math.sqrt(c // self.h))
            mask = torch.ones(t, t, dtype=torch.bool, device=a.device).tril()
            w = torch.softmax(w.masked_fill(~mask, float("-inf")), dim=-1)
            y = F.dropout(w, self.drop, self.training) @ v
        return y.transpose(1, 2).reshape(b, t, c)


class Block(nn.Module):
    def __init__(self, c, h, p, attention):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(c), nn.LayerNorm(c)
        self.attn = QisaAttention(c, h) if attention == "qisa" else CsaAttention(c, h, p)
        self.proj = nn.Linear(c, c)
        self.fc, self.mproj = nn.Linear(c, 4 * c), nn.Linear(4 * c, c)
        self.act = (lambda z: F.gelu(z, approximate="tanh")) if p["activation"] == "gelu" else F.relu
        self.drop = nn.Dropout(p["dropout"])

    def forward(self, x):
        x = x + self.drop(self.proj(self.attn(self.ln1(x))))
        return x + self.drop(self.mproj(self.act(self.fc(self.ln2(x)))))


class GPT(nn.Module):
    def __init__(self, p, attention="csa"):
        super().__init__()
        c = p["n_embd"]
        self.tok = nn.Embedding(p["vocab"], c)
        self.pos = nn.Embedding(p["block_size"], c)
        self.blocks = nn.ModuleList(Block(c, p["n_head"], p, attention) for _ in range(p["n_layer"]))
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
            "dtype": args.dtype, "preset": args.preset, "sdpa": HAVE_SDPA, "threads": torch.get_num_threads()}
    line.update(kw)
    return line


def preset(args):
    p = dict(PRESETS[args.preset])
    if args.batch:
        p["batch"] = args.batch
    if args.block_size:
        p["block_size"] = args.block_size
    return p


def bench_step(args, dev, mode):
    p = preset(args)
    torch.manual_seed(0)
    model = GPT(p, args.attention).to(dev)
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
    return base_line(args, dev, bench="torch_step", mode=mode, attention=args.attention, params=params, **p,
                     steps=args.steps, warmup=args.warmup, ms_per_step=ms, tokens_per_s=tokens / (ms / 1e3))


def bench_attention(args, dev, kernel):
    p = preset(args)
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
    ap.add_argument("--attention", choices=["csa", "qisa"], default="csa", help="the step's attention")
    ap.add_argument("--batch", type=int, default=0, help="sequences per step (default: the preset's)")
    ap.add_argument("--block-size", type=int, default=0, help="tokens per sequence (default: the preset's)")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (default: PyTorch's own)")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
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
