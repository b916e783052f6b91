"""Dream-env benchmark: transitions/s of `DreamEnv.step_batch` at batch 1 / 8 / 64.

    .venv/bin/python bench/bench_dream.py --em EM --tasks T.parquet [--store S] --threads 1
    .venv/bin/python bench/bench_dream.py --threads 1        # builds a tiny EM first (~2 min)
    .venv/bin/python bench/bench_dream.py --em EM --tasks T.parquet --json

Each batch size runs `--steps` dream steps over a batch of tasks (the task file cycled to fill
it), retries off (`max_retries=0`), greedy, and a fixed `--new-tokens` budget (the EM's own
`max_new_tokens` is overridden). Beside the measured rate: the FLOP ceiling, measured matmul
FLOP/s in this process over 2 · params · tokens forwarded per transition (its prompt prefill plus
its generated tokens, counted from what the backend returned), and the ratio measured/ideal. The
time of a step is split into retrieval (the store's batched top-k), generation (the backend call),
parsing (the completion parser) and the rest (prompt building and tokenization, bookkeeping).
Without `--em`, a tiny:1m EM is built through the CLI from generated TextWorld games (tasks make
→ collect → ingest → annotate → train-em) in a temporary directory. Figures are printed,
never asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_generation import matmul_flops_per_s  # noqa: E402
from dreamgym_cli.envs.dream import DreamEnv  # noqa: E402
from dreamgym_cli.experience import parser as em_parser  # noqa: E402
from dreamgym_cli.llm.models import load_model  # noqa: E402
from dreamgym_cli.llm.tiny import parameter_count  # noqa: E402
from dreamgym_cli.trajectories import read_tasks  # noqa: E402


def build_tiny_em(directory: Path, seeds: str = "1-4") -> tuple[Path, Path]:
    """(EM dir, task file): a tiny:1m EM with retrieval, built through the real CLI."""
    from dreamgym_cli.cli import main

    d, quiet = Path(directory), ["--json"]
    steps = [["tasks", "make", "--env", "textworld", "--challenge", "tw-simple", "--seeds", seeds,
              "--out", str(d / "T.parquet")],
             ["collect", "--tasks", str(d / "T.parquet"), "--policy", "expert",
              "--episodes-per-task", "1", "--out", str(d / "E.jsonl")],
             ["ingest", str(d / "E.jsonl"), "--store", str(d / "S")],
             ["annotate", "--store", str(d / "S")],
             ["train-em", "--store", str(d / "S"), "--base", "tiny:1m", "--max-steps", "5",
              "--retrieval-k", "2", "--out", str(d / "EM")]]
    for argv in steps:
        with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the bench's output
            code = main(argv + quiet)
        if code != 0:
            raise SystemExit(f"building the EM failed at: dreamgym {' '.join(argv)}")
    return d / "EM", d / "T.parquet"


class PhaseTimer:
    """Seconds spent in retrieval, generation and parsing, and the tokens the model forwarded.

    Wraps the env's own store, backend and parser calls (the real ones) with timers."""

    def __init__(self, env: DreamEnv):
        self.seconds = {"retrieval": 0.0, "generation": 0.0, "parsing": 0.0}
        self.prompt_tokens = self.new_tokens = self.completions = 0
        if env.store is not None:
            env.store.retrieve = self._timed("retrieval", env.store.retrieve)
        env.backend.generate = self._count(self._timed("generation", env.backend.generate))
        em_parser.parse_em_completion = self._timed("parsing", em_parser.parse_em_completion)

    def _timed(self, phase, fn):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[phase] += time.perf_counter() - start
        return wrapper

    def _count(self, generate):
        def wrapper(prompts, params):
            results = generate(prompts, params)
            for prompt, completions in zip(prompts, results):
                for c in completions:
                    self.prompt_tokens += len(prompt)
                    self.new_tokens += len(c.token_ids or [])
                    self.completions += 1
            return results
        return wrapper

    def reset(self) -> None:
        self.seconds = dict.fromkeys(self.seconds, 0.0)
        self.prompt_tokens = self.new_tokens = self.completions = 0


def pick_actions(observations, results) -> list[str | None]:
    """The first admissible action of each running slot ('look' when none is listed)."""
    out = []
    for obs, res in zip(observations, results):
        if res is not None and res.done:
            out.append(None)
        else:
            current = obs if res is None else res.observation
            out.append((current.admissible or ["look"])[0])
    return out


def bench_batch(env: DreamEnv, timer: PhaseTimer, tasks, batch: int, steps: int) -> dict:
    """`steps` timed step_batch calls; a batch whose episodes all ended is reset (untimed)."""
    chosen = [tasks[i % len(tasks)] for i in range(batch)]
    observations, results = env.reset_batch(chosen), [None] * batch
    timer.reset()
    transitions, seconds, resets, invalid_before = 0, 0.0, 0, env.metrics["dream/invalid"]
    for _ in range(steps):
        actions = pick_actions(observations, results)
        if all(a is None for a in actions):  # a tiny EM often ends episodes at once
            observations, results, resets = env.reset_batch(chosen), [None] * batch, resets + 1
            actions = pick_actions(observations, results)
        start = time.perf_counter()
        stepped = env.step_batch(actions)
        seconds += time.perf_counter() - start
        transitions += sum(r is not None for r in stepped)
        observations = [r.observation if r is not None else o
                        for o, r in zip(observations, stepped)]
        results = [r if r is not None else prev for prev, r in zip(results, stepped)]
    phases = dict(timer.seconds)
    phases["other"] = max(0.0, seconds - sum(phases.values()))
    calls = max(1, timer.completions)
    return {"batch": batch, "transitions": transitions, "seconds": seconds, "resets": resets,
            "invalid": env.metrics["dream/invalid"] - invalid_before,
            "transitions_per_s": transitions / seconds,
            "tokens_per_transition": (timer.prompt_tokens + timer.new_tokens) / calls,
            "prompt_tokens_per_transition": timer.prompt_tokens / calls,
            "new_tokens_per_transition": timer.new_tokens / calls,
            "share": {k: v / seconds for k, v in phases.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--em", type=Path, help="EM dir (default: build a tiny one)")
    parser.add_argument("--tasks", type=Path, help="task file (required with --em)")
    parser.add_argument("--store", type=Path, help="store to retrieve from (default: em.json's)")
    parser.add_argument("--batches", default="1,8,64")
    parser.add_argument("--steps", type=int, default=2, help="dream steps per batch size")
    parser.add_argument("--new-tokens", type=int, default=64, help="max_new_tokens per step")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--json", action="store_true", help="print one JSON object, no table")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if (args.em is None) != (args.tasks is None):
        parser.error("--em and --tasks go together (or give neither to build a tiny EM)")
    with tempfile.TemporaryDirectory(prefix="bench-dream-") as scratch:
        em, tasks_file = (args.em, args.tasks) if args.em else build_tiny_em(Path(scratch))
        return run(args, em, read_tasks(tasks_file))


def run(args, em: Path, tasks) -> int:
    model, tokenizer = load_model(em)
    n_params = parameter_count(model)
    largest = max(int(b) for b in args.batches.split(","))
    env = DreamEnv(em, store=args.store, max_retries=0, seed=0, model=model, tokenizer=tokenizer,
                   backend_options={"max_batch_size": largest})
    env.settings = dataclasses.replace(env.settings, max_new_tokens=args.new_tokens)
    timer = PhaseTimer(env)
    bench_batch(env, timer, tasks, 1, 1)  # warm-up: kernels, embedder, initial-state cache
    flops = matmul_flops_per_s()
    rows = []
    for batch in (int(b) for b in args.batches.split(",")):
        row = bench_batch(env, timer, tasks, batch, args.steps)
        row["ideal_transitions_per_s"] = flops / (2 * n_params * row["tokens_per_transition"])
        row["ratio"] = row["transitions_per_s"] / row["ideal_transitions_per_s"]
        rows.append(row)
    env.close()
    header = {"em": str(em), "params": n_params, "threads": torch.get_num_threads(),
              "matmul_flops_per_s": flops, "retrieval_k": env.settings.retrieval_k,
              "new_tokens": args.new_tokens, "steps": args.steps,
              "store": None if env.store is None else str(env.store.path)}
    if args.json:
        print(json.dumps({**header, "runs": rows}))
    else:
        print_table(header, rows)
    return 0


def print_table(header: dict, rows: list[dict]) -> None:
    print(f"EM {header['em']} ({header['params'] / 1e6:.2f}M params, retrieval k="
          f"{header['retrieval_k']}, store {header['store']}); torch threads {header['threads']}; "
          f"matmul 1024^3 float32: {header['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s; "
          f"max_new_tokens {header['new_tokens']}, {header['steps']} steps per batch, retries off")
    print(f"{'batch':>5} {'trans':>5} {'trans/s':>8} {'tok/trans':>9} {'(prompt+gen)':>12} "
          f"{'ideal/s':>9} {'ratio':>7} {'invalid':>7} {'retr':>5} {'gen':>5} {'parse':>5} "
          f"{'other':>5}")
    for r in rows:
        s = r["share"]
        print(f"{r['batch']:5d} {r['transitions']:5d} {r['transitions_per_s']:8.2f} "
              f"{r['tokens_per_transition']:9.0f} "
              f"{r['prompt_tokens_per_transition']:6.0f}+{r['new_tokens_per_transition']:<5.0f} "
              f"{r['ideal_transitions_per_s']:9.0f} {r['ratio']:7.4f} {r['invalid']:7d} "
              f"{s['retrieval']:5.0%} {s['generation']:5.0%} {s['parsing']:5.0%} {s['other']:5.0%}")


if __name__ == "__main__":
    sys.exit(main())
