"""Many real envs stepped as one batch: `reset_batch(tasks)` / `step_batch(actions)`.

The same batch interface as the dream env, so the rollout engine drives both the same way. Slots
are spread round-robin over the persistent worker processes of a `pool.WorkerPool`: each worker
owns the env instances of its slots (an `EnvGroup`) and steps them in order, and the workers run
in parallel. `workers=0` runs the same code in this process (no pickling, easy to
debug). A slot whose episode is over returns None; passing None as its action is also how a
caller leaves a running slot alone (the sim-to-real budget cap does that).
"""

from __future__ import annotations

import os
from typing import Any

from dreamgym_cli.envs.base import Observation, StepResult
from dreamgym_cli.envs.pool import WorkerPool
from dreamgym_cli.schema import Task


class EnvGroup:
    """The env instances of some slots, in one process; `env_name` + `env_kwargs` build each."""

    def __init__(self, env_name: str, env_kwargs: dict[str, Any]):
        self.env_name, self.env_kwargs = env_name, env_kwargs
        self.envs: dict[int, Any] = {}

    def _env(self, slot: int):
        from dreamgym_cli.envs.registry import make_env

        if slot not in self.envs:
            self.envs[slot] = make_env(self.env_name, **self.env_kwargs)
        return self.envs[slot]

    def reset(self, jobs: list[tuple[int, Task]]) -> list[Observation]:
        return [self._env(slot).reset(task) for slot, task in jobs]

    def step(self, jobs: list[tuple[int, str]]) -> list[StepResult]:
        return [self.envs[slot].step(action) for slot, action in jobs]

    def close(self) -> None:
        for env in self.envs.values():
            env.close()
        self.envs.clear()


def step_jobs(actions: list[str | None], done: list[bool]) -> list[tuple[int, str]]:
    """(slot, action) for each running slot whose action is not None (a batch env's step)."""
    if len(actions) != len(done):
        raise ValueError(f"expected {len(done)} actions, got {len(actions)}")
    return [(i, a) for i, a in enumerate(actions) if a is not None and not done[i]]


def place_results(results: dict[int, StepResult], n: int, done: list[bool]
                  ) -> list[StepResult | None]:
    """`results` by slot as a list of `n` (None where no step ran); marks `done` slots."""
    out: list[StepResult | None] = [None] * n
    for slot, result in results.items():
        out[slot] = result
        done[slot] = result.done
    return out


class VectorEnv:
    """A batch of real envs named `env_name` (see the module doc)."""

    def __init__(self, env_name: str, *, workers: int | None = None, **env_kwargs: Any):
        self.env_name, self.env_kwargs = env_name, env_kwargs
        self.workers = max(0, int(os.cpu_count() or 1) if workers is None else workers)
        self.local = EnvGroup(env_name, env_kwargs) if self.workers == 0 else None
        self.pool = WorkerPool(EnvGroup, (env_name, env_kwargs))
        self.done: list[bool] = []
        self.steps_taken = 0  # real env steps since construction (sim-to-real budgets)

    def _run(self, command: str, jobs: list[tuple[int, Any]]) -> dict[int, Any]:
        """Results by slot; slot s runs in worker s % workers."""
        if self.local is not None:
            return {slot: r for (slot, _), r in zip(jobs, getattr(self.local, command)(jobs))}
        per_worker: dict[int, list] = {}
        for slot, arg in jobs:
            per_worker.setdefault(slot % len(self.pool), []).append((slot, arg))
        for w, items in per_worker.items():
            self.pool.send(w, command, items)
        out, error = {}, None
        for w, items in per_worker.items():  # collect every reply before raising
            status, payload = self.pool.receive(w)
            if status == "error":
                error = error or payload
            else:
                out.update({slot: r for (slot, _), r in zip(items, payload)})
        if error is not None:
            raise error
        return out

    def reset_batch(self, tasks: list[Task]) -> list[Observation]:
        if self.local is None:
            self.pool.grow(min(self.workers, len(tasks)))
        results = self._run("reset", list(enumerate(tasks)))
        self.done = [False] * len(tasks)
        return [results[i] for i in range(len(tasks))]

    def step_batch(self, actions: list[str | None]) -> list[StepResult | None]:
        """Step every running slot whose action is not None; None for the others."""
        jobs = step_jobs(actions, self.done)
        results = self._run("step", jobs)
        self.steps_taken += len(jobs)
        return place_results(results, len(actions), self.done)

    def close(self) -> None:
        if self.local is not None:
            self.local.close()
        self.pool.close()

    def __enter__(self) -> "VectorEnv":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
