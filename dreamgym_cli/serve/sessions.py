"""Sessions of a served env: bounded in number, never evicted mid-episode, expired when idle.

AgentGym clients often never call /close (webshop's client has none that its server answers;
AgentGym-RL creates every client of a batch before it resets any), so the server reclaims envs by
itself, but only envs nobody is playing: a session idle for longer than `idle_timeout` seconds is
closed at the next request, and when `max_sessions` are open, creating one more closes the least
recently used session whose episode has *ended*. A session that was created and not yet reset, or
whose episode is running, is never taken: then `/create` fails with `CapacityError` (HTTP 503).
A closed or expired id answers "unknown id".

Every env call runs on the pool's worker threads, so a slow env never blocks the event loop. Each
session has its own lock (two requests for one session run one after the other; different
sessions in parallel); `compute_lock`, when given, is held around every env call of every session
(the dream env's model generates for one request at a time). `run` waits at most `timeout`
seconds for the locks and the call together; a call that overruns ends its episode (the client
was told it failed, so the state it would have seen is gone) and raises `StepTimeout`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from dreamgym_cli.envs.base import Observation
from dreamgym_cli.schema import Task

GRACE_SECONDS = 2.0  # the handler waits this much longer than the worker's own deadline


class SessionError(Exception):
    """A request the server cannot serve (bad id, bad index, episode over); sent as `error`."""


class CapacityError(SessionError):
    """Every session slot holds a live episode (HTTP 503)."""


class StepTimeout(SessionError):
    """The env call (or the wait for it) took longer than the server's step timeout (HTTP 504)."""


@dataclasses.dataclass
class Session:
    id: int
    env: Any
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    last_used: float = 0.0
    task: Task | None = None
    data_idx: int = 0
    instruction: str = ""
    observation: Observation | None = None
    done: bool = True
    steps: int = 0
    score: float = 0.0  # the return so far, in the server's reward mode
    last_reward: float = 0.0
    success: bool | None = None
    info: dict = dataclasses.field(default_factory=dict)
    broken: str | None = None  # why the episode was cut short by the server

    @property
    def ended(self) -> bool:
        """An episode was played here and is over: the session may be reclaimed."""
        return self.observation is not None and self.done


class SessionPool:
    def __init__(self, make_env: Callable[[], Any], *, max_sessions: int = 512,
                 idle_timeout: float = 600.0, compute_lock: threading.Lock | None = None,
                 clock: Callable[[], float] = time.monotonic, workers: int | None = None):
        self.make_env, self.max_sessions, self.idle_timeout = make_env, max_sessions, idle_timeout
        self.compute_lock, self.clock = compute_lock, clock
        self.sessions: dict[int, Session] = {}
        self._lock = threading.Lock()  # guards `sessions`, `_reserved` and the id counter
        self._reserved = 0  # slots taken by creates whose env is still being built
        self._ids = itertools.count()
        self.executor = ThreadPoolExecutor(max_workers=workers or min(max_sessions, 256) + 8,
                                           thread_name_prefix="serve-env")
        self.stats = {"created": 0, "closed": 0, "expired": 0, "reclaimed": 0, "refused": 0,
                      "timeouts": 0, "close_errors": 0}

    # ---- the event-loop side --------------------------------------------------------------

    async def create(self, timeout: float) -> int:
        self.sweep()
        self._reserve()
        try:
            future = self.executor.submit(self.make_env)
            try:
                env = await asyncio.wait_for(asyncio.wrap_future(future), timeout)
            except asyncio.TimeoutError:
                future.add_done_callback(_close_built_env)
                self.stats["timeouts"] += 1
                raise StepTimeout(f"creating an env took longer than {timeout:g}s") from None
            with self._lock:
                session_id = next(self._ids)
                self.sessions[session_id] = Session(session_id, env, last_used=self.clock())
                self.stats["created"] += 1
            return session_id
        finally:
            with self._lock:
                self._reserved -= 1

    async def run(self, session_id: Any, work: Callable[[Session], Any], timeout: float) -> Any:
        """`work(session)` on a worker thread, under the session's (and compute) lock."""
        self.sweep()
        session = self.get(session_id)
        deadline = self.clock() + timeout
        future = self.executor.submit(self._locked, session, work, deadline)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout + GRACE_SECONDS)
        except asyncio.TimeoutError:
            self.stats["timeouts"] += 1
            raise StepTimeout(f"session {session.id}: the env took longer than {timeout:g}s "
                              "(--step-timeout); its episode is over, POST /reset for another"
                              ) from None

    async def close(self, session_id: Any, timeout: float) -> bool:
        session = self.get(session_id)

        def drop(s: Session) -> bool:
            with self._lock:
                if self.sessions.get(s.id) is not s:
                    return False
                self._drop(s, "closed")
            return True
        return await self.run(session.id, drop, timeout)

    # ---- worker threads -------------------------------------------------------------------

    def _locked(self, session: Session, work: Callable[[Session], Any], deadline: float) -> Any:
        if not session.lock.acquire(timeout=max(0.0, deadline - self.clock())):
            raise StepTimeout(f"session {session.id} is busy with another request")
        try:
            if self.sessions.get(session.id) is not session:  # closed while we waited
                raise SessionError(f"unknown id {session.id}: closed or expired")
            compute = self.compute_lock
            if compute is not None and not compute.acquire(
                    timeout=max(0.0, deadline - self.clock())):
                raise StepTimeout("the env is busy with other sessions' requests; retry later "
                                  "or raise --step-timeout")
            try:
                result = work(session)
            finally:
                if compute is not None:
                    compute.release()
            if self.clock() > deadline:  # too late: the state it produced is not sent, so the
                session.done, session.broken = True, "a request overran --step-timeout"
                raise StepTimeout(f"session {session.id}: the env took longer than the step "
                                  "timeout (--step-timeout); its episode is over, POST /reset "
                                  "for another")
            return result
        finally:
            session.last_used = self.clock()
            session.lock.release()

    # ---- bookkeeping ----------------------------------------------------------------------

    def get(self, session_id: Any) -> Session:
        if isinstance(session_id, bool) or not isinstance(session_id, int):
            try:
                session_id = int(str(session_id))
            except ValueError:
                raise SessionError(f"expected an integer id, got {session_id!r}") from None
        session = self.sessions.get(session_id)
        if session is None:
            raise SessionError(f"unknown id {session_id}: never created, closed or expired "
                               "(POST /create for a new one)")
        return session

    def sweep(self) -> list[int]:
        """Close every idle session older than idle_timeout; the ids closed."""
        now, expired = self.clock(), []
        with self._lock:
            for session in list(self.sessions.values()):
                if now - session.last_used > self.idle_timeout and session.lock.acquire(False):
                    try:
                        self._drop(session, "expired")
                    finally:
                        session.lock.release()
                    expired.append(session.id)
        return expired

    def close_all(self) -> None:
        with self._lock:
            for session in list(self.sessions.values()):
                self._drop(session, "closed")
        self.executor.shutdown(wait=False, cancel_futures=True)

    def _reserve(self) -> None:
        """Take a slot for a new session, reclaiming an ended episode's when all are taken."""
        with self._lock:
            while len(self.sessions) + self._reserved >= self.max_sessions:
                victim = self._lock_least_recently_used_ended()
                if victim is None:
                    self.stats["refused"] += 1
                    raise CapacityError(
                        f"all {self.max_sessions} sessions hold live episodes (none is "
                        "reclaimed mid-episode): close finished ones (POST /close), retry "
                        "later, or start the server with a larger --max-sessions")
                try:
                    self._drop(victim, "reclaimed")
                finally:
                    victim.lock.release()
            self._reserved += 1

    def _lock_least_recently_used_ended(self) -> Session | None:
        """The least recently used session whose episode ended, returned with its lock held."""
        for session in sorted(self.sessions.values(), key=lambda s: s.last_used):
            if session.ended and session.lock.acquire(False):
                return session
        return None

    def _drop(self, session: Session, why: str) -> None:
        self.sessions.pop(session.id, None)
        self.stats[why] += 1
        try:
            session.env.close()
        except Exception:  # noqa: BLE001 — one env failing to close must not break the server
            self.stats["close_errors"] += 1


def _close_built_env(future) -> None:
    """An env built after its create timed out belongs to nobody: close it."""
    if not future.cancelled() and future.exception() is None:
        with contextlib.suppress(Exception):
            future.result().close()
