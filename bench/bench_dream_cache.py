"""Dream-env transition cache: GRPO rollouts with the cache off (baseline) and on, same process.

    .venv/bin/python bench/bench_dream_cache.py --em runs/table1/em/full \
        --policy runs/table1/seed0/sft --tasks runs/table1/pool_tasks.parquet --threads 1

Each mode runs `--iterations` rollout calls of `--batch-tasks` tasks × `--group` episodes, as
train-agent's GRPO does (tasks drawn with a fixed seed per call, the policy sampling at
temperature 1 with the trainer's per-turn seeds, episodes of at most `--turns` turns), in one
`DreamEnv` per mode over the same experience model, store and policy weights. The policy is not
updated, so both modes see the same policy. Printed per mode: dream steps, queries the model
generated (steps − cache hits), seconds, steps/s, and the ratio on/off; then how many episodes
came out identical (actions, states, rewards) in both modes — the cache is meant to be exact at
temperature 0, so a difference can only come from batch-composition numerics in generation.
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

from dreamgym_cli.envs.dream import DreamEnv, open_experience_model  # noqa: E402
from dreamgym_cli.llm.generate import open_backend  # noqa: E402
from dreamgym_cli.rl.policy import load_policy  # noqa: E402
from dreamgym_cli.rl.rollout import run_rollouts  # noqa: E402
from dreamgym_cli.rl.session import rollout_settings  # noqa: E402
from dreamgym_cli.trajectories import read_tasks  # noqa: E402


def run_mode(args, cache_size: int, em, policy, tasks) -> tuple[dict, list[tuple]]:
    settings, em_model, em_tokenizer = em
    model, tokenizer, saved = policy
    env = DreamEnv(args.em, store=args.store, max_retries=2, seed=0, max_steps=args.turns,
                   model=em_model, tokenizer=em_tokenizer, settings=settings,
                   cache_size=cache_size)
    backend = open_backend("transformers", model=model, tokenizer=tokenizer)
    rollout = rollout_settings(saved, temperature=1.0, max_turns=args.turns, seed=0,
                               action_interface="free")
    env.start_states(tasks)  # untimed: the store's initial states, the retrieval encoder
    trajectories, seconds = [], 0.0
    for call in range(args.iterations):
        drawn = random.Random(call).sample(tasks, args.batch_tasks)
        start = time.perf_counter()
        episodes = run_rollouts(env, backend, tokenizer, drawn, rollout, group_size=args.group,
                                call=call)
        seconds += time.perf_counter() - start
        trajectories += [tuple((t.action, t.next_state, t.reward, t.done) for t in e.turns)
                         for e in episodes]
    steps, hits = env.metrics["dream/steps"], env.metrics["dream/cache_hits"]
    env.close()
    return ({"cache_size": cache_size, "episodes": len(trajectories), "steps": steps,
             "generated": steps - hits, "seconds": seconds, "steps_per_s": steps / seconds},
            trajectories)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--em", type=Path, required=True, help="experience-model dir")
    parser.add_argument("--policy", type=Path, required=True, help="policy dir (e.g. an SFT)")
    parser.add_argument("--tasks", type=Path, required=True, help="task file to draw from")
    parser.add_argument("--store", type=Path, help="store to retrieve from (default: em.json's)")
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--batch-tasks", type=int, default=4)
    parser.add_argument("--group", type=int, default=4)
    parser.add_argument("--turns", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--json", action="store_true", help="print one JSON object, no table")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    tasks = read_tasks(args.tasks)
    em = open_experience_model(args.em)
    policy = load_policy(args.policy)
    off, off_eps = run_mode(args, 0, em, policy, tasks)
    on, on_eps = run_mode(args, 65_536, em, policy, tasks)
    same = sum(a == b for a, b in zip(off_eps, on_eps))
    result = {"em": str(args.em), "policy": str(args.policy), "threads": torch.get_num_threads(),
              "runs": [off, on], "speedup": on["steps_per_s"] / off["steps_per_s"],
              "identical_episodes": same, "episodes": len(off_eps)}
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"EM {args.em}, policy {args.policy}; {args.iterations} calls × {args.batch_tasks} "
          f"tasks × {args.group} episodes, ≤ {args.turns} turns; torch threads {result['threads']}")
    print(f"{'cache':>8} {'episodes':>8} {'steps':>6} {'generated':>9} {'seconds':>8} "
          f"{'steps/s':>8}")
    for r in (off, on):
        print(f"{'off' if r['cache_size'] == 0 else 'on':>8} {r['episodes']:8d} {r['steps']:6d} "
              f"{r['generated']:9d} {r['seconds']:8.1f} {r['steps_per_s']:8.2f}")
    print(f"speed-up on/off: {result['speedup']:.2f}×; identical episodes: {same} of "
          f"{len(off_eps)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
