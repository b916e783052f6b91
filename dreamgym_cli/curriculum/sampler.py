"""The curriculum inside `train-agent` (DESIGN §8): the λ mix per batch, variance, task evolution.

    sampler = CurriculumSampler(pool, CurriculumSettings(...), generate=..., initial_states=...)
    train(..., sampler=sampler)     # the trainer calls sampler(n, rng), then sampler.observe(eps)

Each batch is drawn by `mix_batch`: at most ⌊λ·n⌋ generated tasks, the rest from the original
pool (tasks of the task file whose origin is not `generated`). On, original tasks are drawn by
priority (`task_priorities`): weight 1 for a task not yet seen or whose latest group had V > 0,
`zero_variance_weight` (0.1) for one whose latest group had V = 0 — always solved or always
failed, so GRPO learned nothing from it. Off, the draw is uniform. `observe` records each task's
outcome rewards of the iteration:

    GRPO   the groups are the G episodes of each task draw; V per group; a task's V pools its
           episodes of the iteration.
    PPO    there are no groups: the batch's distinct tasks are clustered by their instruction
           embeddings (the store's embedder, k = ⌈√tasks⌉ clusters, `cluster_groups`), V is
           computed per cluster and spread to its members.

Every `every` iterations the recorded variances (the latest per task since the last round) go to
`evolve_pool`, whose selected variations join the generated tasks. Off (`enabled=False`: the
"w/o task generation" ablation, or a real env) the batch is uniform over the whole pool and no
task is generated; the variance metrics are still measured, so on and off runs compare.

Per iteration `observe` returns the metrics (namespaced `curriculum/`): pool_size, generated,
fraction_generated (of the batch), groups, mean_variance and zero_variance_share (of the batch's
groups), added, seeds, rejected/<reason> (0 in iterations without a round).
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dreamgym_cli.artifacts import write_atomic
from dreamgym_cli.curriculum.variance import (cluster_groups, mix_batch, reward_variance,
                                              select_seed_tasks, spread_to_members,
                                              task_priorities, zero_variance_share)
from dreamgym_cli.curriculum.variation import (REJECTION_REASONS, CandidateGenerator, Embed,
                                               evolve_pool)
from dreamgym_cli.schema import Task

OUTCOMES = ("return", "success")
STATE_FILE = "curriculum.json"  # in the trainer's run directory
# {task_id: (initial state, admissible)} for the seeds of a round (the dream env knows them)
InitialStates = Callable[[Sequence[Task]], dict[str, tuple[str, tuple[str, ...]]]]


@dataclasses.dataclass(frozen=True)
class CurriculumSettings:
    enabled: bool = True
    every: int = 1  # iterations between evolution rounds
    lam: float = 0.3  # largest fraction of generated tasks in a batch
    seeds_per_round: int = 4
    candidates: int = 4
    algo: str = "grpo"  # ppo: V per cluster of instruction embeddings
    outcome: str = "return"
    seed: int = 0
    examples: int = 5  # generated tasks (with parents) kept for the run report
    zero_variance_weight: float = 0.1  # draw weight of a task whose latest group had V = 0


@dataclasses.dataclass
class GeneratedRecord:
    """A generated task with when and from what it was made (the run report shows these)."""

    task: Task
    iteration: int
    parent_instruction: str

    def to_json(self) -> dict[str, Any]:
        return {"iteration": self.iteration, "parent_instruction": self.parent_instruction,
                "task": self.task.to_row()}

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> "GeneratedRecord":
        return cls(Task.from_row(row["task"]), int(row["iteration"]), row["parent_instruction"])


def episode_reward(episode, outcome: str) -> float:
    return float(episode.success) if outcome == "success" else float(episode.total_return)


def num_clusters(n_tasks: int) -> int:
    """k for PPO's clusters: ⌈√n⌉ (1 task → 1, 4 → 2, 16 → 4), a rule of thumb that keeps
    clusters of a few tasks each so V has more than one task's episodes behind it."""
    return max(1, math.ceil(math.sqrt(n_tasks)))


class CurriculumSampler:
    """A trainer sampler (`sampler(n, rng) -> tasks`, `observe(episodes) -> metrics`)."""

    def __init__(self, pool: Sequence[Task], settings: CurriculumSettings, *,
                 generate: CandidateGenerator | None = None,
                 initial_states: InitialStates | None = None, embed: Embed | None = None):
        if settings.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {settings.outcome!r}")
        if settings.enabled and generate is None:
            raise ValueError("an enabled curriculum needs a candidate generator")
        self.settings = settings
        pool = list(pool)
        original = [t for t in pool if t.origin != "generated"]
        if settings.enabled and original:  # tasks generated earlier (tasks evolve) count in λ
            self.original = original
            self.generated = [GeneratedRecord(t, 0, "") for t in pool if t.origin == "generated"]
        else:  # off (uniform over everything), or a pool of generated tasks only
            self.original, self.generated = pool, []
        self.by_id = {t.task_id: t for t in pool}
        self.generate, self.initial_states, self.embed = generate, initial_states, embed
        self.iteration = 0  # iterations observed (the trainer's iteration index + 1)
        self.pending: dict[str, float] = {}  # latest V per task since the last round
        self.latest: dict[str, float] = {}  # latest V per task over the whole run (priorities)
        self.last_batch: list[Task] = []
        self._vectors: dict[str, np.ndarray] = {}

    # ---- the pool --------------------------------------------------------------------------

    @property
    def pool(self) -> list[Task]:
        return self.original + [r.task for r in self.generated]

    def generated_tasks(self) -> list[Task]:
        return [r.task for r in self.generated if r.iteration > 0]

    def examples(self) -> list[dict[str, Any]]:
        """Up to `examples` tasks generated in this run, with their parents, latest first."""
        made = [r for r in self.generated if r.iteration > 0][::-1][:self.settings.examples]
        return [{"iteration": r.iteration, "task_id": r.task.task_id,
                 "parent_id": r.task.parent_id, "parent": r.parent_instruction,
                 "instruction": r.task.instruction, "generation": r.task.generation}
                for r in made]

    def save(self, run_dir: Path) -> None:
        """The tasks generated so far, for a resumed run (the trainer calls it at checkpoints)."""
        state = {"generated": [r.to_json() for r in self.generated if r.iteration > 0]}
        write_atomic(run_dir / STATE_FILE, json.dumps(state))

    def resume(self, run_dir: Path, iteration: int) -> None:
        """Back to the end of checkpointed `iteration`: rounds after it are dropped. Variances
        recorded since the last round before it are not kept (the next round starts afresh)."""
        path = run_dir / STATE_FILE
        state = json.loads(path.read_text()) if path.is_file() else {}
        records = [GeneratedRecord.from_json(r) for r in state.get("generated", [])]
        self.generated = [r for r in self.generated if r.iteration == 0] + \
            [r for r in records if r.iteration <= iteration]
        self.by_id.update({r.task.task_id: r.task for r in self.generated})
        self.iteration = iteration

    # ---- the trainer's hooks ---------------------------------------------------------------

    def __call__(self, n: int, rng: random.Random) -> list[Task]:
        np_rng = np.random.default_rng(rng.getrandbits(63))
        generated_ids = [r.task.task_id for r in self.generated]
        lam = self.settings.lam if self.settings.enabled else 0.0
        original_ids = [t.task_id for t in self.original]
        weights = task_priorities(original_ids, self.latest, self.settings.zero_variance_weight) \
            if self.settings.enabled else None
        ids = mix_batch(original_ids, generated_ids, n, lam, np_rng, weights)
        self.last_batch = [self.by_id[i] for i in ids]
        return list(self.last_batch)

    def observe(self, episodes) -> dict[str, Any]:
        """Record the iteration's outcomes; evolve the pool when a round is due; the metrics."""
        self.iteration += 1
        rewards = [episode_reward(e, self.settings.outcome) for e in episodes]
        group_v, task_v = self._variances(episodes, rewards)
        self.pending.update(task_v)
        self.latest.update(task_v)
        metrics = self._batch_metrics(group_v)
        metrics.update(generated_solved(episodes))
        round_metrics = {"curriculum/added": 0, "curriculum/seeds": 0,
                         **{f"curriculum/rejected/{r}": 0 for r in REJECTION_REASONS}}
        if self.settings.enabled and self.iteration % self.settings.every == 0:
            round_metrics.update(self._evolve())
        metrics.update(round_metrics)
        metrics["curriculum/pool_size"] = len(self.original) + len(self.generated)
        metrics["curriculum/generated"] = len(self.generated)
        return metrics

    # ---- internals -------------------------------------------------------------------------

    def _variances(self, episodes, rewards) -> tuple[dict, dict[str, float]]:
        """({group: V} of the batch, {task_id: V}) — GRPO's draws, or PPO's clusters."""
        if not episodes:
            return {}, {}
        task_ids = [e.task.task_id for e in episodes]
        if self.settings.algo != "ppo":
            return reward_variance(rewards, [e.group for e in episodes]), \
                reward_variance(rewards, task_ids)
        distinct = list(dict.fromkeys(task_ids))
        labels = cluster_groups(self._embed_tasks(distinct), num_clusters(len(distinct)),
                                seed=self.settings.seed)
        cluster_of = dict(zip(distinct, labels.tolist()))
        group_v = reward_variance(rewards, [cluster_of[t] for t in task_ids])
        return group_v, {str(k): v for k, v in spread_to_members(cluster_of, group_v).items()}

    def _embed_tasks(self, task_ids: list[str]) -> np.ndarray:
        missing = [t for t in task_ids if t not in self._vectors]
        if missing:
            embed = self.embed or _store_embed
            vectors = embed([self.by_id[t].instruction for t in missing])
            self._vectors.update(zip(missing, np.asarray(vectors)))
        return np.stack([self._vectors[t] for t in task_ids])

    def _batch_metrics(self, group_v: dict) -> dict[str, Any]:
        generated = sum(t.origin == "generated" for t in self.last_batch)
        return {
            "curriculum/enabled": int(self.settings.enabled),
            "curriculum/fraction_generated": generated / len(self.last_batch)
            if self.last_batch else 0.0,
            "curriculum/groups": len(group_v),
            "curriculum/mean_variance": sum(group_v.values()) / len(group_v) if group_v else 0.0,
            "curriculum/zero_variance_share": zero_variance_share(group_v),
        }

    def _evolve(self) -> dict[str, Any]:
        """One round over the variances recorded since the last one."""
        variances, self.pending = self.pending, {}
        pool = self.pool
        seeds = [self.by_id[i] for i in select_seed_tasks(
            {k: v for k, v in variances.items() if k in self.by_id}, self.settings.seeds_per_round)]
        if not seeds:
            return {}
        states = self.initial_states(seeds) if self.initial_states else None
        result = evolve_pool(None, pool, variances, seeds_per_round=self.settings.seeds_per_round,
                             candidates=self.settings.candidates, initial_states=states,
                             seed=self.settings.seed * 1_000_003 + self.iteration,
                             generate=self.generate, embed=self.embed or _store_embed)
        for task in result.new_tasks:
            parent = self.by_id[task.parent_id]
            self.generated.append(GeneratedRecord(task, self.iteration, parent.instruction))
            self.by_id[task.task_id] = task
        return {"curriculum/added": len(result.new_tasks),
                "curriculum/seeds": len(result.seed_ids),
                **{f"curriculum/rejected/{r}": n for r, n in result.rejected_counts.items()}}


def generated_solved(episodes) -> dict[str, Any]:
    """How many groups of generated tasks in a batch were solved at least once: a generated task
    that no rollout ever solves only adds a zero-variance group (no GRPO signal)."""
    groups: dict[Any, bool] = {}
    for e in episodes:
        if e.task.origin == "generated":
            groups[e.group] = groups.get(e.group, False) or bool(e.success)
    out: dict[str, Any] = {"curriculum/generated_groups": len(groups),
                           "curriculum/generated_groups_solved": sum(groups.values())}
    if groups:
        out["curriculum/generated_solved_share"] = sum(groups.values()) / len(groups)
    return out


def _store_embed(texts: Sequence[str]) -> np.ndarray:
    from dreamgym_cli.curriculum.variation import default_embed

    return default_embed(texts)
