"""train-agent's RL rollouts on real TextWorld games: the in-process batch env against Ray actors.

    .venv/bin/python bench/bench_ray_rollouts.py [--seeds 1-8] [--iterations 2] [--batch-tasks 4]
        [--group 2] [--turns 5] [--rounds 3] [--ray-cpus 2] [--policy DIR] [--threads 1] [--json]

Workload, identical in every mode: `--iterations` calls of `rl.rollout.run_rollouts` (the code
path of train-agent's GRPO rollout) of `--batch-tasks` tasks × `--group` episodes, the tasks
drawn per call with the trainer's seeded rng from tw-simple games `--seeds` (generated once into
$DREAMGYM_HOME/games, then cached), episodes of at most `--turns` turns (also the env's step
limit), the policy sampling at temperature 1 with the trainer's per-turn seeds. The policy is a
tiny model built from the games' first prompts (`tiny:1m`, seed 0) unless `--policy DIR` names
one; it is never updated, so every mode sees the same policy. Modes, in one process so each ratio
is against a baseline measured in the same run:

  in-process  `VectorEnv(workers=0)`: the envs stepped in this process, one after another
  ray-1       `RayVectorEnv(workers=1)`: all slots in one Ray actor
  ray-2       `RayVectorEnv(workers=2)`: slots round-robin over two actors, stepped in parallel

Ray is started here with `ray.init(num_cpus=--ray-cpus)` (or joins `--ray-address`). The modes
run `--rounds` times, in a rotated order each round (in-process first, then second, ...), so
neither warm-up nor a neighbour's load on the machine favours one mode; each time a mode opens
its env and runs one untimed warm-up call first (actor start-up, first game loads, torch's first
generation), then the timed calls. Printed per mode, summed over the rounds: episodes, env steps,
seconds, the seconds spent in the env's reset/step calls (env s; the rest is the policy:
prompts, generation, parsing, all on the driver), episodes/s, steps/s, the env's share of the
time and the ratio of episodes/s against in-process; then whether every episode (task,
actions, sampled tokens, states, rewards, done) is identical to the in-process one, per Ray
mode. It should be: the policy stays on the driver and its sampling is seeded per turn, so only
where the env runs changes.

What to expect on a small machine: Ray can only win the env's share of the time, and only
where a core is free to step one actor's slots while another steps the others. The policy's
generation runs on the driver between env steps (the batch waits for it), every turn costs one
actor round trip per worker (pickling observations with their admissible lists), and with
2 cores shared by the driver, two actors and Ray's own processes the actors compete with the
driver for CPU. On 2 shared cores with the tiny policy (docs/scale.md, "Measured: rollouts on
Ray") the env is ~20% of the time, its calls take 15-50% longer through Ray with 1 or 2 actors,
and the episodes/s ratio lands within ±12% of 1.0, moved by the machine's other load on the
policy's ~80%. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODES = (("in-process", None), ("ray-1", 1), ("ray-2", 2))


class TimedEnv:
    """A batch env that adds up the seconds spent in its reset/step calls."""

    def __init__(self, env):
        self.env, self.seconds = env, 0.0

    def reset_batch(self, tasks):
        return self._timed(self.env.reset_batch, tasks)

    def step_batch(self, actions):
        return self._timed(self.env.step_batch, actions)

    def _timed(self, call, argument):
        start = time.perf_counter()
        try:
            return call(argument)
        finally:
            self.seconds += time.perf_counter() - start


def load_tasks(args) -> list:
    """tw-simple tasks of `--seeds` (games from the cache, generated when missing)."""
    from dreamgym_cli.stages import tasks as tasks_stage
    from dreamgym_cli.trajectories import read_tasks

    if args.tasks is not None:
        return read_tasks(args.tasks)
    out = Path(tempfile.mkdtemp(prefix="bench-ray-")) / "tasks.parquet"
    tasks_stage.make(tasks_stage.MakeConfig(env="textworld", out=out, seeds=args.seeds,
                                            split="train", challenge="tw-simple"))
    return read_tasks(out)


def load_policy(args, tasks):
    """(backend, tokenizer, RolloutSettings): `--policy DIR`, or a tiny model built here."""
    from dreamgym_cli.envs.vector import VectorEnv
    from dreamgym_cli.llm.generate import open_backend
    from dreamgym_cli.rl.rollout import RolloutSettings
    from dreamgym_cli.rl.session import rollout_settings

    if args.policy is not None:
        from dreamgym_cli.rl.policy import load_policy as load_saved

        model, tokenizer, saved = load_saved(args.policy)
        settings = rollout_settings(saved, temperature=1.0, max_turns=args.turns, seed=args.seed,
                                    action_interface="free")
    else:
        from dreamgym_cli.llm.models import load_model
        from dreamgym_cli.stages.train_agent_rl import corpus_from_env

        with VectorEnv("textworld", workers=0) as env:
            texts = corpus_from_env(env, tasks)
        model, tokenizer = load_model(args.model, texts=texts, full=True, seed=0)
        settings = RolloutSettings(max_new_tokens=args.max_new_tokens, temperature=1.0,
                                   max_turns=args.turns, seed=args.seed)
    model.eval()
    return open_backend("transformers", model=model, tokenizer=tokenizer), tokenizer, settings


def open_env(workers: int | None, args):
    from dreamgym_cli.envs.vector import VectorEnv
    from dreamgym_cli.scale.ray_env import RayVectorEnv

    if workers is None:
        return VectorEnv("textworld", workers=0, max_steps=args.turns)
    env = RayVectorEnv("textworld", address=args.ray_address or "local", workers=workers,
                       max_steps=args.turns)
    env.worker_pids()  # the actors are up before the clock starts
    return env


def view(episodes) -> list[tuple]:
    """Everything of an episode but its random id."""
    return [(e.task.task_id, e.group, e.truncated,
             [(t.state, t.token_ids, t.action, t.next_state, t.reward, t.done, t.success)
              for t in e.turns]) for e in episodes]


def run_mode(workers: int | None, args, tasks, policy) -> tuple[dict, list]:
    from dreamgym_cli.rl.rollout import run_rollouts

    backend, tokenizer, settings = policy

    def draw(call: int) -> list:  # as train-agent's uniform sampler draws an iteration's tasks
        rng = random.Random(args.seed * 1_000_003 + call)
        return rng.sample(tasks, args.batch_tasks) if args.batch_tasks <= len(tasks) else \
            [rng.choice(tasks) for _ in range(args.batch_tasks)]

    env = open_env(workers, args)
    timed = TimedEnv(env)
    try:
        run_rollouts(timed, backend, tokenizer, draw(-1), settings, group_size=args.group,
                     call=-1)  # warm-up, untimed
        timed.seconds, steps_before, episodes = 0.0, env.steps_taken, []
        start = time.perf_counter()
        for call in range(args.iterations):
            episodes += run_rollouts(timed, backend, tokenizer, draw(call), settings,
                                     group_size=args.group, call=call)
        seconds = time.perf_counter() - start
        steps = env.steps_taken - steps_before
    finally:
        env.close()
    return ({"episodes": len(episodes), "steps": steps, "seconds": seconds,
             "env_seconds": timed.seconds}, view(episodes))


def run_rounds(args, tasks, policy) -> tuple[list[dict], list[list]]:
    """Every mode `--rounds` times, the order rotated per round; per mode (in MODES order) its
    figures summed over the rounds and its episodes of every round."""
    totals = {name: {"mode": name, "workers": workers or 0, "episodes": 0, "steps": 0,
                     "seconds": 0.0, "env_seconds": 0.0} for name, workers in MODES}
    views: dict[str, list] = {name: [] for name, _ in MODES}
    for r in range(args.rounds):
        for name, workers in MODES[r % len(MODES):] + MODES[:r % len(MODES)]:
            run, episodes = run_mode(workers, args, tasks, policy)
            for key in ("episodes", "steps", "seconds", "env_seconds"):
                totals[name][key] += run[key]
            views[name] += episodes
    runs = []
    for name, _ in MODES:
        t = totals[name]
        runs.append({**t, "episodes_per_s": t["episodes"] / t["seconds"],
                     "steps_per_s": t["steps"] / t["seconds"],
                     "env_share": t["env_seconds"] / t["seconds"]})
    return runs, [views[name] for name, _ in MODES]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1-8", help="tw-simple game seeds (one task each)")
    parser.add_argument("--tasks", type=Path, help="a task file instead of --seeds")
    parser.add_argument("--policy", type=Path, help="policy dir (default: a tiny model)")
    parser.add_argument("--model", default="tiny:1m", help="tiny base without --policy")
    parser.add_argument("--max-new-tokens", type=int, default=24, help="tiny policy's answers")
    parser.add_argument("--iterations", type=int, default=2, help="timed rollout calls per run")
    parser.add_argument("--batch-tasks", type=int, default=4, help="tasks drawn per call")
    parser.add_argument("--group", type=int, default=2, help="episodes per task draw")
    parser.add_argument("--turns", type=int, default=5, help="turn (and env step) limit")
    parser.add_argument("--rounds", type=int, default=3, help="times each mode runs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ray-cpus", type=int, default=2, help="num_cpus of the local Ray")
    parser.add_argument("--ray-address", help="join this Ray cluster instead of a local one")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on the driver")
    parser.add_argument("--json", action="store_true", help="print one JSON object, no table")
    args = parser.parse_args(argv)

    try:
        import ray
    except ImportError:  # where the scale extra is absent there is nothing to measure
        print("skipped: needs the `ray` package (pip install 'dreamgym[scale]')")
        return 0
    import torch

    torch.set_num_threads(args.threads)
    tasks = load_tasks(args)
    policy = load_policy(args, tasks)
    if args.ray_address:
        ray.init(address=args.ray_address, log_to_driver=False)
    else:
        ray.init(num_cpus=args.ray_cpus, include_dashboard=False, log_to_driver=False)
    try:
        runs, views = run_rounds(args, tasks, policy)
    finally:
        ray.shutdown()
    base = runs[0]["episodes_per_s"]
    for run, episodes in zip(runs, views):
        run["ratio"] = run["episodes_per_s"] / base
        run["identical_episodes"] = sum(a == b for a, b in zip(episodes, views[0]))
        run["all_identical"] = episodes == views[0]
    result = {"tasks": len(tasks), "policy": str(args.policy or args.model),
              "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
              "ray_cpus": None if args.ray_address else args.ray_cpus,
              "rounds": args.rounds, "iterations": args.iterations,
              "batch_tasks": args.batch_tasks, "group": args.group, "turns": args.turns,
              "runs": runs}
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"tw-simple, {len(tasks)} games; policy {result['policy']}; {args.rounds} rounds × "
          f"{args.iterations} calls × {args.batch_tasks} tasks × {args.group} episodes, "
          f"≤ {args.turns} turns; "
          f"{result['cpus']} CPUs, Ray num_cpus {result['ray_cpus']}, torch threads "
          f"{result['threads']}")
    print(f"{'mode':>10} {'episodes':>8} {'steps':>6} {'seconds':>8} {'env s':>6} "
          f"{'episodes/s':>10} {'steps/s':>8} {'env share':>9} {'vs in-process':>13} "
          f"{'identical':>10}")
    for r in runs:
        print(f"{r['mode']:>10} {r['episodes']:8d} {r['steps']:6d} {r['seconds']:8.2f} "
              f"{r['env_seconds']:6.2f} {r['episodes_per_s']:10.2f} {r['steps_per_s']:8.1f} "
              f"{r['env_share']:9.0%} "
              f"{r['ratio']:12.2f}× {r['identical_episodes']:>4d} of {r['episodes']:<3d}")
    same = all(r["all_identical"] for r in runs)
    print("episodes (tasks, actions, sampled tokens, states, rewards) identical across modes: "
          f"{'yes' if same else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
