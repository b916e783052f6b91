"""Sessions of a served env: bounded in number, expired when idle, one lock each.

AgentGym clients often never call /close (webshop's client has no close at all), so a server must
reclaim envs by itself: a session idle for longer than `idle_timeout` seconds is closed at the next
request, and when `max_sessions` are open, creating one more closes the least recently used idle
session first (AgentGym's webshop server recycles its envs the same way). A closed or expired id
answers "unknown id", which the client turns into a clear error.

Each session has its own lock, so two requests for one session run one after the other while
different sessions run in parallel. `compute_lock`, when given, is held around every env call of
every session: the dream env's model generates for one request at a time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from dreamgym_cli.envs.base import Observation
from dreamgym_cli.schema import Task


class SessionError(Exception):
    """A request the server cannot serve (bad id, bad index, episode over); sent as `error`."""


@dataclasses.dataclass
class Session:
    id: int
    env: Any
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    last_used: float = 0.0
    task: Task | None = None
    observation: Observation | None = None
    done: bool = True
    steps: int = 0


class SessionPool:
    def __init__(self, make_env: Callable[[], Any], *, max_sessions: int = 64,
                 idle_timeout: float = 600.0, compute_lock: threading.Lock | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.make_env, self.max_sessions, self.idle_timeout = make_env, max_sessions, idle_timeout
        self.compute_lock, self.clock = compute_lock, clock
        self.sessions: dict[int, Session] = {}
        self._lock = threading.Lock()  # guards `sessions` and the id counter
        self._ids = itertools.count()
        self.stats = {"created": 0, "closed": 0, "expired": 0, "evicted": 0, "close_errors": 0}

    def create(self) -> int:
        self.sweep()
        with self._lock:
            while len(self.sessions) >= self.max_sessions:
                victim = self._lock_least_recently_used_idle()
                if victim is None:
                    raise SessionError(f"all {self.max_sessions} sessions are busy; retry later "
                                       "or start the server with a larger --max-sessions")
                try:
                    self._drop(victim, "evicted")
                finally:
                    victim.lock.release()
            session_id = next(self._ids)
        session = Session(session_id, self.make_env(), last_used=self.clock())
        with self._lock:
            self.sessions[session_id] = session
            self.stats["created"] += 1
        return session_id

    @contextlib.contextmanager
    def use(self, session_id: Any) -> Iterator[Session]:
        """The session, locked for this request (and the compute lock, when there is one)."""
        self.sweep()
        session = self._get(session_id)
        with session.lock:
            if self.sessions.get(session.id) is not session:  # closed while we waited
                raise SessionError(f"unknown id {session_id}: closed or expired")
            with self.compute_lock or contextlib.nullcontext():
                try:
                    yield session
                finally:
                    session.last_used = self.clock()

    def close(self, session_id: Any) -> bool:
        session = self._get(session_id)
        with session.lock, self._lock:
            if self.sessions.get(session.id) is not session:
                return False
            self._drop(session, "closed")
        return True

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

    # ---- internals (callers hold self._lock where it matters) ---------------------------

    def _get(self, session_id: Any) -> Session:
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

    def _lock_least_recently_used_idle(self) -> Session | None:
        """The least recently used session that no request holds, returned with its lock held."""
        for session in sorted(self.sessions.values(), key=lambda s: s.last_used):
            if session.lock.acquire(False):
                return session
        return None

    def _drop(self, session: Session, why: str) -> None:
        self.sessions.pop(session.id, None)
        self.stats[why] += 1
        try:
            session.env.close()
        except Exception:  # noqa: BLE001 — one env failing to close must not break the server
            self.stats["close_errors"] += 1
