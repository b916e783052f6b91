"""Many real envs stepped as one batch: `reset_batch(tasks)` / `step_batch(actions)`.

The same batch interface as the dream env, so the rollout engine drives both the same way. Slots
are spread round-robin over persistent worker processes (spawn context, one pipe each, like gym's
AsyncVectorEnv): each worker owns the env instances of its slots and steps them in order, and the
workers run in parallel. `workers=0` runs the same code in this process (no pickling, easy to
debug). A slot whose episode is over returns None; passing None as its action is also how a
caller leaves a running slot alone (the sim-to-real budget cap does that).
"""

from __future__ import annotations

import multiprocessing
import os
from typing import Any

from dreamgym_cli.envs.base import Observation, StepResult
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


def _worker(pipe, env_name: str, env_kwargs: dict[str, Any]) -> None:
    """Serve ("reset"|"step"|"close", jobs) requests; reply ("ok", results) or ("error", exc)."""
    group = EnvGroup(env_name, env_kwargs)
    try:
        while True:
            command, jobs = pipe.recv()
            if command == "close":
                break
            try:
                result = group.reset(jobs) if command == "reset" else group.step(jobs)
                pipe.send(("ok", result))
            except Exception as e:  # noqa: BLE001 — the parent re-raises it
                pipe.send(("error", e))
    except (EOFError, KeyboardInterrupt):
        return  # the parent closed its end or was interrupted: shut down (finally closes)
    finally:
        group.close()
        pipe.close()


class VectorEnv:
    """A batch of real envs named `env_name` (see the module doc)."""

    def __init__(self, env_name: str, *, workers: int | None = None, **env_kwargs: Any):
        self.env_name, self.env_kwargs = env_name, env_kwargs
        self.workers = max(0, int(os.cpu_count() or 1) if workers is None else workers)
        self.local = EnvGroup(env_name, env_kwargs) if self.workers == 0 else None
        self._pipes: list = []
        self._procs: list = []
        self.done: list[bool] = []
        self.steps_taken = 0  # real env steps since construction (sim-to-real budgets)

    def _start_workers(self, needed: int) -> None:
        context = multiprocessing.get_context("spawn")  # fork is unsafe with torch threads
        while len(self._procs) < min(self.workers, needed):
            parent, child = context.Pipe()
            proc = context.Process(target=_worker, args=(child, self.env_name, self.env_kwargs),
                                   daemon=True)
            proc.start()
            child.close()
            self._pipes.append(parent)
            self._procs.append(proc)

    def _run(self, command: str, jobs: list[tuple[int, Any]]) -> dict[int, Any]:
        """Results by slot; slot s runs in worker s % workers."""
        if self.local is not None:
            method = self.local.reset if command == "reset" else self.local.step
            return {slot: r for (slot, _), r in zip(jobs, method(jobs))}
        per_worker: dict[int, list] = {}
        for slot, arg in jobs:
            per_worker.setdefault(slot % len(self._procs), []).append((slot, arg))
        for w, items in per_worker.items():
            self._pipes[w].send((command, items))
        out, error = {}, None
        for w, items in per_worker.items():  # collect every reply before raising
            try:
                status, payload = self._pipes[w].recv()
            except EOFError:  # the process is gone (killed, or its env crashed hard)
                status, payload = "error", RuntimeError(f"env worker {w} died")
            if status == "error":
                error = error or payload
            else:
                out.update({slot: r for (slot, _), r in zip(items, payload)})
        if error is not None:
            raise error
        return out

    def reset_batch(self, tasks: list[Task]) -> list[Observation]:
        if self.local is None:
            self._start_workers(len(tasks))
        results = self._run("reset", list(enumerate(tasks)))
        self.done = [False] * len(tasks)
        return [results[i] for i in range(len(tasks))]

    def step_batch(self, actions: list[str | None]) -> list[StepResult | None]:
        """Step every running slot whose action is not None; None for the others."""
        if len(actions) != len(self.done):
            raise ValueError(f"expected {len(self.done)} actions, got {len(actions)}")
        jobs = [(i, a) for i, a in enumerate(actions) if a is not None and not self.done[i]]
        results = self._run("step", jobs)
        self.steps_taken += len(jobs)
        out: list[StepResult | None] = [None] * len(actions)
        for slot, result in results.items():
            out[slot] = result
            self.done[slot] = result.done
        return out

    def close(self) -> None:
        if self.local is not None:
            self.local.close()
        for pipe in self._pipes:
            try:
                pipe.send(("close", None))
            except (BrokenPipeError, OSError):
                continue  # that worker is gone already; the join below reaps it
        for proc in self._procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
        self._pipes, self._procs = [], []

    def __enter__(self) -> "VectorEnv":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
