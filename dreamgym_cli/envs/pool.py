"""Worker processes for real envs: the one local pool under `VectorEnv` and `run_jobs`.

A `WorkerPool` keeps persistent spawn-context processes (fork is unsafe with torch threads), one
pipe each, like gym's AsyncVectorEnv. Each worker builds one handler, `make(*args)`, and serves
(command, payload) requests by calling `handler.<command>(payload)`, replying ("ok", result) or
("error", exception); "close" (or the parent going away) calls `handler.close()` and ends it.
`VectorEnv`'s handler is an `EnvGroup` (the envs of its slots); `run_jobs`'s is a `JobRunner`
(whole independent jobs, e.g. collect's episodes), the local twin of `scale.ray_env.run_jobs`.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from multiprocessing.connection import wait
from typing import Any


def _serve(pipe, make: Callable[..., Any], args: tuple) -> None:
    """A worker's loop (see the module doc)."""
    handler = make(*args)
    try:
        while True:
            command, payload = pipe.recv()
            if command == "close":
                break
            try:
                pipe.send(("ok", getattr(handler, command)(payload)))
            except Exception as e:  # noqa: BLE001 — the parent re-raises it
                pipe.send(("error", e))
    except (EOFError, KeyboardInterrupt):
        return  # the parent closed its end or was interrupted: shut down (finally closes)
    finally:
        handler.close()
        pipe.close()


class WorkerPool:
    """Worker processes, each serving one `make(*args)` handler (see the module doc)."""

    def __init__(self, make: Callable[..., Any], args: tuple = ()):
        self.make, self.args = make, args
        self._pipes: list = []
        self._procs: list = []

    def __len__(self) -> int:
        return len(self._procs)

    def grow(self, size: int) -> None:
        """Start workers until `size` are running."""
        context = multiprocessing.get_context("spawn")
        while len(self._procs) < size:
            parent, child = context.Pipe()
            proc = context.Process(target=_serve, args=(child, self.make, self.args), daemon=True)
            proc.start()
            child.close()
            self._pipes.append(parent)
            self._procs.append(proc)

    def send(self, worker: int, command: str, payload: Any) -> None:
        self._pipes[worker].send((command, payload))

    def receive(self, worker: int) -> tuple[str, Any]:
        """("ok", result) or ("error", exception); a dead worker reads as an error."""
        try:
            return self._pipes[worker].recv()
        except EOFError:  # the process is gone (killed, or its env crashed hard)
            return "error", RuntimeError(f"env worker {worker} died")

    def ready(self, workers: Sequence[int]) -> list[int]:
        """Those of `workers` with a reply waiting (blocks until at least one has)."""
        pipes = {id(self._pipes[w]): w for w in workers}
        return [pipes[id(pipe)] for pipe in wait([self._pipes[w] for w in workers])]

    def close(self) -> None:
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


class JobRunner:
    """Runs `fn(job)`; `cleanup()` (e.g. closing cached envs) on close."""

    def __init__(self, fn: Callable[[Any], Any], cleanup: Callable[[], None] | None = None):
        self.fn, self.cleanup = fn, cleanup

    def run(self, job: Any) -> Any:
        return self.fn(job)

    def close(self) -> None:
        if self.cleanup is not None:
            self.cleanup()


def run_jobs(fn: Callable[[Any], Any], jobs: Sequence[Any], *, workers: int | None = None,
             cleanup: Callable[[], None] | None = None,
             on_result: Callable[[int], None] | None = None) -> list[Any]:
    """`[fn(job) for job in jobs]` in job order, on min(workers or CPUs, jobs) worker processes
    (in this process when that is 1); a worker takes the next job as it finishes one.

    `fn` and `cleanup` must pickle (module-level functions); each worker calls `cleanup()` when
    it ends. on_result(index): called as each job's result arrives. The first job to raise
    raises here.
    """
    n = min(workers or os.cpu_count() or 1, len(jobs)) or 1
    results: list[Any] = [None] * len(jobs)
    if n == 1:
        runner = JobRunner(fn, cleanup)
        try:
            for i, job in enumerate(jobs):
                results[i] = runner.run(job)
                if on_result is not None:
                    on_result(i)
        finally:
            runner.close()  # do not keep browsers/JVMs open after the jobs
        return results
    pool = WorkerPool(JobRunner, (fn, cleanup))
    pending = list(range(len(jobs)))[::-1]
    running: dict[int, int] = {}  # worker -> job index

    def submit(worker: int) -> None:
        running[worker] = pending.pop()
        pool.send(worker, "run", jobs[running[worker]])

    try:
        pool.grow(n)
        for worker in range(n):
            submit(worker)
        while running:
            for worker in pool.ready(list(running)):
                index = running.pop(worker)
                status, payload = pool.receive(worker)
                if status == "error":
                    raise payload
                results[index] = payload
                if on_result is not None:
                    on_result(index)
                if pending:
                    submit(worker)
    finally:
        pool.close()
    return results
