#!/usr/bin/env python3
"""Random GPT-2 token ids for the GPU bundle's GPT-2 124M benchmarks (cluster/gpu/make_bundle.sh).

  python3 gpt2_random_tokens.py OUT_DIR [--train 400000] [--val 40000] [--seed 1337]

Writes OUT_DIR/train.bin and OUT_DIR/val.bin, headerless little-endian uint16 ids drawn uniformly
from [0, 50257) with a fixed seed (nanoGPT's format, for `qisa prepare --import-raw-u16`), and
OUT_DIR/vocab/{encoder.json,vocab.bpe}: a SYNTHETIC byte-level BPE vocabulary of GPT-2's shape
(the 256 byte tokens in GPT-2's byte-to-unicode alphabet, 50000 merges of two bytes each, in
order, <|endoftext|> = 50256), which `qisa prepare --gpt2-dir OUT_DIR/vocab` accepts. It is not
GPT-2's vocabulary (that needs a download): the ids are random, only their range matters for
timing a step, and decoding them gives meaningless bytes.
"""
import argparse
import array
import json
import os
import random
import sys


def byte_chars():
    """GPT-2's bytes_to_unicode: a printable character for each byte."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--train", type=int, default=400000)
    ap.add_argument("--val", type=int, default=40000)
    ap.add_argument("--seed", type=int, default=1337)
    args = ap.parse_args()
    ch = byte_chars()
    tokens = [ch[b] for b in range(256)]
    merges = []
    for r in range(50000):  # every merge joins two single bytes: formed before use, each pair once
        a, b = ch[r // 256], ch[r % 256]
        merges.append(a + " " + b)
        tokens.append(a + b)
    tokens.append("<|endoftext|>")
    assert len(tokens) == 50257 and len(set(tokens)) == 50257
    vocab = os.path.join(args.out, "vocab")
    os.makedirs(vocab, exist_ok=True)
    with open(os.path.join(vocab, "encoder.json"), "w", encoding="utf-8") as f:
        json.dump({t: i for i, t in enumerate(tokens)}, f, ensure_ascii=False)
    with open(os.path.join(vocab, "vocab.bpe"), "w", encoding="utf-8") as f:
        f.write("#version: synthetic (cluster/gpu/gpt2_random_tokens.py)\n" + "\n".join(merges) + "\n")
    rng = random.Random(args.seed)
    for name, n in (("train.bin", args.train), ("val.bin", args.val)):
        ids = array.array("H", (rng.randrange(50257) for _ in range(n)))
        if sys.byteorder == "big":
            ids.byteswap()
        with open(os.path.join(args.out, name), "wb") as f:
            f.write(ids.tobytes())
    return 0


if __name__ == "__main__":
    sys.exit(main())
