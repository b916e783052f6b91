"""Generation benchmark: the transformers backend on tiny:1m / tiny:10m / tiny:30m at batch 1/8/64.

    .venv/bin/python bench/bench_generation.py
    .venv/bin/python bench/bench_generation.py --sizes 1m --batches 1,64 --threads 1 --json

For each model size and batch: completions/s and completion tokens/s (64 new tokens each, sampled
at temperature 1 from a fresh random model, so EOS is rare), and beside the measured time the FLOP
ceiling: 2 · params · tokens / (matmul FLOP/s measured in this process), where tokens counts every
token the model forwards (prompt prefill + generated) and params counts the tied embedding once (it
is used as the output matmul). Attention-score FLOPs are left out (small at these lengths). The
ratio measured/ideal says how far per-token overhead keeps small-batch decoding from the hardware.
Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dreamgym_cli.llm.generate import GenerationParams, open_backend  # noqa: E402
from dreamgym_cli.llm.tiny import build_tiny, parameter_count  # noqa: E402


def textworld_like_corpus(n: int = 3000, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    rooms = ["kitchen", "cellar", "garden", "attic", "pantry", "bedroom", "hallway", "shed"]
    things = ["apple", "key", "lamp", "chest", "knife", "coin", "book", "box", "door", "table"]
    verbs = ["take", "open", "go", "drop", "examine", "unlock", "eat", "put"]
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 8)))
             for _ in range(3000)]
    out = []
    for _ in range(n):
        room, thing, verb = rng.choice(rooms), rng.choice(things), rng.choice(verbs)
        filler = " ".join(rng.choice(words) for _ in range(10))
        out.append(f"You are in the {room}. You see a {thing}. {filler} "
                   f"<action>{verb} {thing}</action> <reward>{rng.randint(0, 1)}</reward>")
    return out


def matmul_flops_per_s(size: int = 1024, repeats: int = 5) -> float:
    """Best-of-`repeats` float32 FLOP/s of one (size x size) @ (size x size) matmul."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.matmul(a, b)  # warm up the kernels and thread pool
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def prompts_of(tokenizer, corpus: list[str], batch: int, prompt_tokens: int) -> list[list[int]]:
    ids = [i for text in corpus[:400] for i in tokenizer(text, add_special_tokens=False)["input_ids"]]
    return [ids[i * 7 : i * 7 + prompt_tokens] for i in range(batch)]  # distinct, equal length


def bench_one(backend, prompts, params: GenerationParams, n_params: int, flops: float) -> dict:
    backend.generate(prompts[:1], GenerationParams(max_new_tokens=4, seed=0))  # warm-up
    start = time.perf_counter()
    results = backend.generate(prompts, params)
    seconds = time.perf_counter() - start
    completion_tokens = sum(len(c.token_ids) for r in results for c in r)
    forwarded = completion_tokens + sum(len(p) for p in prompts)
    ideal = 2 * n_params * forwarded / flops
    return {
        "completions": len(prompts), "completion_tokens": completion_tokens,
        "seconds": seconds, "tokens_per_s": completion_tokens / seconds,
        "completions_per_s": len(prompts) / seconds, "ideal_seconds": ideal,
        "ratio": seconds / ideal,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1m,10m,30m")
    parser.add_argument("--batches", default="1,8,64")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--json", action="store_true", help="print one JSON object, no table")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    corpus = textworld_like_corpus()
    flops = matmul_flops_per_s()
    rows = []
    if not args.json:
        print(f"torch threads {torch.get_num_threads()}; matmul 1024^3 float32: "
              f"{flops / 1e9:.1f} GFLOP/s (best of 5)")
        print(f"{'model':>9} {'params':>7} {'batch':>5} {'compl/s':>8} {'tok/s':>8} "
              f"{'time s':>7} {'ideal s':>8} {'ratio':>6}")
    for size in args.sizes.split(","):
        model, tokenizer = build_tiny(f"tiny:{size}", corpus, seed=0)
        n_params = parameter_count(model)
        backend = open_backend("transformers", model=model, tokenizer=tokenizer,
                               max_batch_size=max(int(b) for b in args.batches.split(",")))
        for batch in (int(b) for b in args.batches.split(",")):
            prompts = prompts_of(tokenizer, corpus, batch, args.prompt_tokens)
            params = GenerationParams(max_new_tokens=args.new_tokens, temperature=1.0, seed=1)
            row = {"model": f"tiny:{size}", "params": n_params, "batch": batch,
                   **bench_one(backend, prompts, params, n_params, flops)}
            rows.append(row)
            if not args.json:
                print(f"{row['model']:>9} {n_params / 1e6:6.2f}M {batch:5d} "
                      f"{row['completions_per_s']:8.2f} {row['tokens_per_s']:8.1f} "
                      f"{row['seconds']:7.2f} {row['ideal_seconds']:8.4f} {row['ratio']:6.1f}")
    if args.json:
        print(json.dumps({"threads": torch.get_num_threads(), "matmul_flops_per_s": flops,
                          "new_tokens": args.new_tokens, "prompt_tokens": args.prompt_tokens,
                          "runs": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
