"""Env workers as Ray actors: a batch env (`RayVectorEnv`) and an episode-job pool (`run_jobs`).

`--ray local` starts a Ray instance in this process (`ray.init()`); `--ray ADDRESS` joins a
running cluster (`ray.init(address=ADDRESS)`, e.g. `auto` or `ray://head:10001`); an already
initialised Ray (a test's `ray.init(num_cpus=2)`) is used as it is.

RayVectorEnv has VectorEnv's interface and semantics: slots are spread round-robin over
`workers` actors, each owning the env instances of its slots (an `EnvGroup`: one Chromium per
MiniWoB slot, one JVM per ScienceWorld slot, ...). The policy stays in the driver, so an episode
depends only on the env and the driver's seeded sampling: the same seeds give the same episodes
as the in-process path.

Fault tolerance: actors are created with `max_restarts`, so Ray restarts a killed one (its
constructor runs again, its envs are gone). The driver keeps, per slot, the task and the actions
applied so far; the slots of a restarted actor are re-run from `reset` with those actions (envs
reset to a task are deterministic), and the replayed observation is checked against the one the
driver already has. Replayed steps are not counted in `steps_taken` (sim-to-real budgets count
each step once) and no episode is returned twice. `run_jobs` re-runs a whole job whose actor
died; each job's result is kept once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from dreamgym_cli.envs.base import Observation, StepResult
from dreamgym_cli.envs.pool import JobRunner
from dreamgym_cli.envs.vector import EnvGroup, place_results, step_jobs
from dreamgym_cli.errors import InputError
from dreamgym_cli.schema import Task

INSTALL_HINT = "--ray needs the `ray` package: pip install 'dreamgym[scale]'"
MAX_RESTARTS = 3  # per actor; past that the RayActorError reaches the caller


def connect(address: str | None) -> None:
    """Join (or start) the Ray cluster named by `--ray`: 'local' or a cluster address."""
    try:
        import ray
    except ImportError:
        raise InputError(INSTALL_HINT, field="ray") from None
    if ray.is_initialized():
        return
    if address in (None, "", "local"):
        ray.init(include_dashboard=False, log_to_driver=False)
    else:
        ray.init(address=address, log_to_driver=False)


def _actor_errors():
    import ray

    return (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError)


class EnvActor:
    """One Ray actor: the envs of some slots (an EnvGroup), and a replay for restarts."""

    def __init__(self, env_name: str, env_kwargs: dict[str, Any]):
        self.group = EnvGroup(env_name, env_kwargs)

    def pid(self) -> int:
        import os

        return os.getpid()

    def reset(self, jobs: list[tuple[int, Task]]) -> list[Observation]:
        return self.group.reset(jobs)

    def step(self, jobs: list[tuple[int, str]]) -> list[StepResult]:
        return self.group.step(jobs)

    def replay(self, jobs: list[tuple[int, Task, list[str]]]) -> list[tuple[Observation, Any]]:
        """Reset each slot to its task and apply its actions: (reset obs, last StepResult)."""
        out = []
        for slot, task, actions in jobs:
            (obs,) = self.group.reset([(slot, task)])
            last = None
            for action in actions:
                (last,) = self.group.step([(slot, action)])
            out.append((obs, last))
        return out

    def close(self) -> None:
        self.group.close()


class RayVectorEnv:
    """VectorEnv's batch interface over Ray actors (see the module doc)."""

    def __init__(self, env_name: str, *, address: str | None = "local", workers: int | None = None,
                 num_cpus: float = 1.0, max_restarts: int = MAX_RESTARTS, **env_kwargs: Any):
        import ray

        connect(address)
        self.env_name, self.env_kwargs = env_name, env_kwargs
        if workers is None or workers < 1:
            workers = max(1, int(ray.available_resources().get("CPU", 1) // max(num_cpus, 1e-9)))
        remote = ray.remote(EnvActor).options(num_cpus=num_cpus, max_restarts=max_restarts,
                                              max_task_retries=0)
        self.actors = [remote.remote(env_name, env_kwargs) for _ in range(workers)]
        self.done: list[bool] = []
        self.steps_taken = 0  # real env steps the driver asked for (replays not counted)
        self.restarts = 0  # actor deaths recovered from
        self.replayed_steps = 0  # steps re-run on restarted actors
        self._tasks: list[Task] = []
        self._actions: list[list[str]] = []
        self._last_text: list[str] = []

    @property
    def workers(self) -> int:
        return len(self.actors)

    def worker_pids(self) -> list[int]:
        """The process id of each actor (to watch or kill one)."""
        import ray

        return ray.get([a.pid.remote() for a in self.actors])

    def _call(self, command: str, jobs: list[tuple[int, Any]]) -> dict[int, Any]:
        """Results by slot; an actor that died is restarted by Ray and its slots re-run."""
        import ray

        per_actor: dict[int, list] = {}
        for slot, arg in jobs:
            per_actor.setdefault(slot % len(self.actors), []).append((slot, arg))
        refs = {w: getattr(self.actors[w], command).remote(items)
                for w, items in per_actor.items()}
        out, dead = {}, []
        for w, ref in refs.items():  # collect every reply before recovering
            try:
                out.update({slot: r for (slot, _), r in zip(per_actor[w], ray.get(ref))})
            except _actor_errors():
                dead.append(w)
        for w in dead:
            out.update(self._recover(w, command, per_actor[w]))
        return out

    def _recover(self, w: int, command: str, items: list[tuple[int, Any]]) -> dict[int, Any]:
        """Re-run actor w's running slots from their reset; the results of `items`."""
        import ray

        self.restarts += 1
        wanted = {slot for slot, _ in items}
        slots = [s for s in range(len(self._tasks))
                 if s % len(self.actors) == w and (s in wanted or not self.done[s])]
        jobs = [(s, self._tasks[s], list(self._actions[s])) for s in slots]
        replies = None
        for attempt in range(MAX_RESTARTS + 1):
            try:  # the replay is idempotent: Ray may retry it on the restarted actor
                replies = ray.get(self.actors[w].replay.options(max_task_retries=-1).remote(jobs))
                break
            except _actor_errors():
                if attempt == MAX_RESTARTS:
                    raise
                time.sleep(1.0)
        out = {}
        for (slot, _, actions), (obs, last) in zip(jobs, replies):
            self.replayed_steps += len(actions) - (1 if command == "step" and slot in wanted
                                                   else 0)
            result = obs if command == "reset" else last
            if slot in wanted:
                out[slot] = result
            elif (obs.text if last is None else last.observation.text) != self._last_text[slot]:
                raise RuntimeError(f"env {self.env_name!r} slot {slot}: the re-run after a "
                                   "worker restart reached another state (not deterministic)")
        return out

    def reset_batch(self, tasks: list[Task]) -> list[Observation]:
        self._tasks, self._actions = list(tasks), [[] for _ in tasks]
        self.done = [False] * len(tasks)
        self._last_text = [""] * len(tasks)
        results = self._call("reset", list(enumerate(tasks)))
        for i in range(len(tasks)):
            self._last_text[i] = results[i].text
        return [results[i] for i in range(len(tasks))]

    def step_batch(self, actions: list[str | None]) -> list[StepResult | None]:
        """Step every running slot whose action is not None; None for the others."""
        jobs = step_jobs(actions, self.done)
        for slot, action in jobs:  # the replay of a restarted actor includes this step
            self._actions[slot].append(action)
        results = self._call("step", jobs)
        self.steps_taken += len(jobs)
        for slot, result in results.items():
            self._last_text[slot] = result.observation.text
        return place_results(results, len(actions), self.done)

    def close(self) -> None:
        import ray

        for actor in self.actors:
            try:
                ray.get(actor.close.remote(), timeout=30)
            except Exception:  # noqa: BLE001 — a dead actor has nothing left to close
                pass
            ray.kill(actor)
        self.actors = []

    def __enter__(self) -> "RayVectorEnv":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class DreamActor:
    """One Ray actor holding the dream env: the experience model steps the whole batch in one
    generation call, as in process; the store is opened from its path (appends by the driver
    are read from disk)."""

    def __init__(self, name: str, env_kwargs: dict[str, Any]):
        from dreamgym_cli.envs.registry import make_env

        self.env = make_env(name, **env_kwargs)

    def reset_batch(self, tasks: list[Task]) -> list[Observation]:
        return self.env.reset_batch(tasks)

    def step_batch(self, actions: list[str | None]) -> list[StepResult | None]:
        return self.env.step_batch(actions)

    def metrics(self) -> dict[str, Any]:
        return dict(getattr(self.env, "metrics", {}))

    def close(self) -> None:
        self.env.close()


class RayDreamEnv:
    """The dream env (`dream:EM_DIR`) run in a Ray actor with `num_gpus`/`num_cpus` of its own,
    so the driver's process keeps only the policy. `store` is a store directory (or None)."""

    def __init__(self, name: str, *, address: str | None = "local", num_cpus: float = 1.0,
                 num_gpus: float = 0.0, **env_kwargs: Any):
        import ray

        connect(address)
        self.actor = ray.remote(DreamActor).options(num_cpus=num_cpus, num_gpus=num_gpus).remote(
            name, env_kwargs)

    def reset_batch(self, tasks: list[Task]) -> list[Observation]:
        import ray

        return ray.get(self.actor.reset_batch.remote(list(tasks)))

    def step_batch(self, actions: list[str | None]) -> list[StepResult | None]:
        import ray

        return ray.get(self.actor.step_batch.remote(list(actions)))

    @property
    def metrics(self) -> dict[str, Any]:
        import ray

        return ray.get(self.actor.metrics.remote())

    def close(self) -> None:
        import ray

        if self.actor is None:
            return
        try:
            ray.get(self.actor.close.remote(), timeout=60)
        finally:
            ray.kill(self.actor)
            self.actor = None


# ---- independent jobs (whole episodes) -------------------------------------------------------


def run_jobs(fn: Callable[[Any], Any], jobs: Sequence[Any], *, address: str | None = "local",
             workers: int | None = None, num_cpus: float = 1.0,
             cleanup: Callable[[], None] | None = None, max_restarts: int = MAX_RESTARTS,
             on_result: Callable[[int], None] | None = None,
             on_start: Callable[[list], None] | None = None,
             on_retry: Callable[[int], None] | None = None) -> list[Any]:
    """`[fn(job) for job in jobs]` on Ray actors, in job order; results stream back as they end.

    A job whose actor died is submitted again (to the restarted actor, where Ray holds it until
    the actor is back, however long its restart takes) and its result kept once.
    on_result(index): called as each job's result arrives; on_retry(index) when a job is run
    again; on_start(actors): the actor handles, once they exist.
    """
    import ray

    connect(address)
    if not jobs:
        return []
    if workers is None or workers < 1:
        workers = max(1, int(ray.available_resources().get("CPU", 1) // max(num_cpus, 1e-9)))
    workers = min(workers, len(jobs))
    remote = ray.remote(JobRunner).options(num_cpus=num_cpus, max_restarts=max_restarts,
                                          max_task_retries=0)
    actors = [remote.remote(fn, cleanup) for _ in range(workers)]
    if on_start is not None:
        on_start(actors)
    results: list[Any] = [None] * len(jobs)
    pending = list(range(len(jobs)))[::-1]
    running: dict[Any, tuple[int, int, int]] = {}  # ref -> (job index, actor, attempts)
    failures = 0
    try:
        def submit(actor: int, index: int, attempts: int = 0) -> None:
            run = actors[actor].run
            if attempts:  # a re-run waits for the restarted actor (a restart takes seconds
                # under load); sent with no retries, a restarting actor refuses it (about every 2 s
                # ActorUnavailableError), each refusal spending one of the job's attempts
                run = run.options(max_task_retries=-1)
            running[run.remote(jobs[index])] = (index, actor, attempts)

        for a in range(workers):
            if pending:
                submit(a, pending.pop())
        while running:
            (ref,), _ = ray.wait(list(running), num_returns=1)
            index, actor, attempts = running.pop(ref)
            try:
                results[index] = ray.get(ref)
            except _actor_errors():
                failures += 1
                if attempts >= max_restarts:
                    raise
                if on_retry is not None:
                    on_retry(index)
                submit(actor, index, attempts + 1)  # the same job again, on the restarted actor
                continue
            if on_result is not None:
                on_result(index)
            if pending:
                submit(actor, pending.pop())
    finally:
        for actor in actors:
            try:
                ray.get(actor.close.remote(), timeout=30)
            except Exception:  # noqa: BLE001 — a dead actor has nothing left to close
                pass
            ray.kill(actor)
    return results
