"""`dreamgym collect`: run a policy in a real env and write canonical trajectories.

Policies (comma-separate several to collect each): `expert` follows the env's expert
(TextWorld's `policy_commands`, recomputed from the current state every step; MiniWoB's scripted
expert; BabyAI's `BabyAIBot`; ScienceWorld's gold sequence), `random` picks uniformly among the
admissible actions (or the env's `valid_actions()` where observations carry none), `mixed`
takes a random admissible action with probability ε and the expert's otherwise (so it recovers
after a random move, where the expert is state-dependent). Episodes run in a pool of worker
processes; each episode's randomness comes from (seed, policy, task id, episode index), so
the output does not depend on the worker count or the order episodes finish in.

    dreamgym collect --tasks T.parquet --policy expert --episodes-per-task 1 --out E.jsonl
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dreamgym_cli import artifacts
from dreamgym_cli.config import option, to_dict
from dreamgym_cli.envs import pool
from dreamgym_cli.envs.base import check_step_limit
from dreamgym_cli.errors import InputError, unknown_name
from dreamgym_cli.schema import EpisodeRecord, Task, episode_record, now_utc

POLICIES = ("expert", "random", "mixed")
DEFAULT_EPSILON = 0.3


@dataclasses.dataclass(frozen=True)
class CollectConfig:
    tasks: Path = option(help="Task file from `dreamgym tasks make`.")
    out: Path = option(help="Trajectory file to write (.jsonl or .parquet).")
    policy: str = option("expert", help="expert, random or mixed (comma-separate several); "
                         "policy directories arrive with training (issue 4).")
    episodes_per_task: int = option(1, help="Episodes to run on each task (per policy).")
    epsilon: float | None = option(None, help="mixed: probability of a random action "
                                   f"(default {DEFAULT_EPSILON}).")
    max_steps: int | None = option(None, help="Step limit (default: the task's own).")
    workers: int | None = option(None, help="Worker processes (default: min(CPUs, episodes)).")
    ray: str | None = option(None, help="Run the episodes on Ray actors: 'local' starts Ray "
                             "here, else a cluster address (e.g. 'auto'); --workers actors.")
    seed: int | None = option(None, help="Seed for the random choices of the policy (default 0).")
    force: bool = option(False, help="Redo even if the output is up to date.")


@dataclasses.dataclass(frozen=True)
class EpisodeJob:
    """One episode to run: everything a worker needs, picklable."""

    task_row: dict[str, Any]
    policy: str  # 'expert', 'random' or 'mixed'
    epsilon: float
    index: int
    seed: int
    max_steps: int | None

    @property
    def policy_label(self) -> str:
        return f"mixed-{self.epsilon:g}" if self.policy == "mixed" else self.policy


def parse_policies(text: str, epsilon: float | None) -> list[tuple[str, float]]:
    """'expert,mixed' -> [('expert', 0.0), ('mixed', 0.3)]; InputError for anything else."""
    names = [p.strip() for p in str(text).split(",") if p.strip()]
    if not names:
        raise InputError(f"expected one of {', '.join(POLICIES)}", field="policy")
    eps = DEFAULT_EPSILON if epsilon is None else float(epsilon)
    if not 0.0 <= eps <= 1.0:
        raise InputError(f"expected a probability in [0, 1], got {epsilon}", field="epsilon")
    out = []
    for name in names:
        if name not in POLICIES:
            if Path(name).is_dir():
                raise InputError(f"{name!r} is a directory: collecting with a trained policy "
                                 f"arrives with training (issue 4); accepted now: "
                                 f"{', '.join(POLICIES)}", field="policy")
            raise unknown_name("policy", name, POLICIES, field="policy")
        out.append((name, eps if name == "mixed" else 0.0))
    if len(set(out)) != len(out):
        raise InputError(f"policy listed twice in {text!r}", field="policy")
    return out


def episode_rng(seed: int, policy: str, task_id: str, index: int) -> random.Random:
    digest = hashlib.sha256(f"{seed}\0{policy}\0{task_id}\0{index}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def episode_id(job: EpisodeJob) -> str:
    key = f"{job.task_row['task_id']}\0{job.policy_label}\0{job.seed}\0{job.index}"
    return "ep-" + hashlib.sha256(key.encode()).hexdigest()[:20]


# ----------------------------------------------------------------------------------------------
# Running one episode (in a worker process)

_ENVS: dict[tuple, Any] = {}  # per worker process: one env per (name, max_steps), reused


def _env_for(task: Task, max_steps: int | None):
    from dreamgym_cli.envs.registry import env_for_task

    key = (task.env, max_steps)
    if key not in _ENVS:
        _ENVS[key] = env_for_task(task, max_steps=max_steps)
    return _ENVS[key]


def close_envs() -> None:
    """Close the envs this process has opened for episodes."""
    while _ENVS:
        _, env = _ENVS.popitem()
        env.close()


def choose_action(policy: str, epsilon: float, admissible: list[str] | None, env: Any,
                  rng: random.Random) -> str:
    """The next action of `policy`; the expert falls back to random when it has no plan."""
    explore = policy == "random" or (policy == "mixed" and rng.random() < epsilon)
    if not explore:
        action = env.expert_action()
        if action is not None:
            return action
    if not admissible and callable(getattr(env, "valid_actions", None)):
        admissible = env.valid_actions()  # envs too slow to list them every step (ScienceWorld)
    if not admissible:
        raise RuntimeError("no admissible action to choose from")
    return rng.choice(admissible)


def run_episode(job: EpisodeJob) -> EpisodeRecord:
    """(task row, episode row, step rows), validated like `read_episodes` would."""
    task = Task.from_row(job.task_row)
    env = _env_for(task, job.max_steps)
    if job.policy != "random" and not callable(getattr(env, "expert_action", None)):
        raise InputError(f"env {task.env!r} has no expert; use --policy random", field="policy")
    rng = episode_rng(job.seed, job.policy_label, task.task_id, job.index)
    try:
        observation, steps, done, t = env.reset(task), [], False, 0
    except InputError as e:  # say which task; the file is added by the caller
        raise InputError(f"task {task.task_id!r}: {e.message}", field=e.field) from None
    while not done:
        action = choose_action(job.policy, job.epsilon, observation.admissible, env, rng)
        result = env.step(action)
        steps.append({"t": t, "state": observation.text, "admissible": observation.admissible,
                      "action": action, "next_state": result.observation.text,
                      "reward": result.reward, "done": result.done, "success": result.success,
                      "reasoning": None, "created_at": now_utc()})
        observation, done, t = result.observation, result.done, t + 1
    return episode_record(task, steps, episode_id=episode_id(job), source="real",
                          policy=job.policy_label)


# ----------------------------------------------------------------------------------------------
# The stage


def _check_config(config: CollectConfig) -> None:
    if config.episodes_per_task < 1:
        raise InputError(f"expected at least 1, got {config.episodes_per_task}",
                         field="episodes_per_task")
    check_step_limit(config.max_steps)
    if config.workers is not None and config.workers < 1:
        raise InputError(f"expected at least 1 worker, got {config.workers}", field="workers")
    if Path(config.out).suffix not in (".jsonl", ".parquet"):
        raise InputError("expected a trajectory file ending in .jsonl or .parquet",
                         file=config.out, field="out")


def _jobs(tasks: list[Task], policies: list[tuple[str, float]], config: CollectConfig,
          seed: int) -> list[EpisodeJob]:
    return [EpisodeJob(task.to_row(), name, eps, k, seed, config.max_steps)
            for name, eps in policies for task in tasks for k in range(config.episodes_per_task)]


def run(config: CollectConfig) -> dict[str, Any]:
    """Collect episodes into `config.out`; a JSON-ready summary."""
    from dreamgym_cli.trajectories import read_tasks, write_episodes

    start = time.perf_counter()
    _check_config(config)
    policies = parse_policies(config.policy, config.epsilon)
    tasks = read_tasks(config.tasks)
    seed = 0 if config.seed is None else config.seed
    resolved = dict(to_dict(config), seed=seed,
                    epsilon=config.epsilon if config.epsilon is not None else DEFAULT_EPSILON)
    # Worker count, Ray and --force do not change what is written.
    key_config = {k: v for k, v in resolved.items() if k not in ("workers", "force", "ray")}
    with artifacts.ArtifactRun("collect", config.out, resolved, inputs={"tasks": config.tasks},
                               kind="file", force=config.force,
                               fingerprint_config=key_config) as run_:
        if run_.up_to_date:
            metrics = run_.previous.get("metrics", {})
            return {**metrics, "out": str(config.out), "skipped": True,
                    "seconds": round(time.perf_counter() - start, 3)}
        jobs = _jobs(tasks, policies, config, seed)
        try:
            records = run_jobs(jobs, config.workers, ray=config.ray)
        except InputError as e:
            raise e.at(file=config.tasks) from None
        write_episodes(run_.tmp, records)
        metrics = summarize(records)
        run_.commit(metrics=metrics)
    return {**metrics, "out": str(config.out), "skipped": False,
            "seconds": round(time.perf_counter() - start, 3)}


def run_jobs(jobs: list[EpisodeJob], workers: int | None, ray: str | None = None
             ) -> list[EpisodeRecord]:
    """Run every episode (in worker processes unless one worker, or on Ray actors when `ray`
    names a cluster); results in job order."""
    from dreamgym_cli.ui import counter_progress

    with counter_progress("episodes", total=len(jobs)) as advance:
        if ray:
            from dreamgym_cli.scale.ray_env import run_jobs as run_on_ray

            return run_on_ray(run_episode, jobs, address=ray, workers=workers,
                              cleanup=close_envs, on_result=lambda _: advance())
        return pool.run_jobs(run_episode, jobs, workers=workers, cleanup=close_envs,
                             on_result=lambda _: advance())


def _stats(episodes: list[dict]) -> dict[str, Any]:
    n = len(episodes)
    return {
        "episodes": n,
        "steps": sum(e["length"] for e in episodes),
        "success_rate": round(sum(bool(e["success"]) for e in episodes) / n, 4) if n else 0.0,
        "mean_return": round(sum(e["return"] or 0.0 for e in episodes) / n, 4) if n else 0.0,
        "mean_length": round(sum(e["length"] for e in episodes) / n, 3) if n else 0.0,
    }


def summarize(records: Sequence[EpisodeRecord]) -> dict[str, Any]:
    episodes = [episode for _, episode, _ in records]
    per_policy: dict[str, list[dict]] = {}
    for e in episodes:
        per_policy.setdefault(e["policy"], []).append(e)
    return {**_stats(episodes), "per_policy": {p: _stats(es) for p, es in per_policy.items()}}


def render(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    verb = "up to date" if result.get("skipped") else "wrote"
    table = Table(title=f"{verb} {result['out']} ({result.get('seconds', 0):.1f}s)")
    for column in ("policy", "episodes", "steps", "success rate", "mean return", "mean length"):
        table.add_column(column, justify="left" if column == "policy" else "right")
    rows = dict(result.get("per_policy", {}))
    if len(rows) > 1:
        rows["all"] = result
    for name, s in rows.items():
        table.add_row(name, str(s["episodes"]), str(s["steps"]), f"{s['success_rate']:.1%}",
                      f"{s['mean_return']:.3f}", f"{s['mean_length']:.1f}")
    Console().print(table)
