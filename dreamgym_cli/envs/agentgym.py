"""A client env for AgentGym's HTTP env servers: `--env agentgym:<name>@<url>`.

AgentGym (github.com/WooooDyy/AgentGym) runs each environment as a small HTTP server. Its clients
(`agentenv/envs/*.py`) all follow one shape — create → reset(index) → step(action) → close — but
the servers differ in details. What the real servers do, per env:

| env       | ids      | create returns     | reset body                       | step returns                 |
|-----------|----------|--------------------|----------------------------------|------------------------------|
| webshop   | env_idx  | a bare int         | {env_idx, session_id}            | {state, reward, done, info}  |
| webarena  | env_idx  | {"env_idx": n}     | {env_idx, seed: 0, idx}          | {observation, reward, terminated} |
| alfworld  | id       | {"id": n}          | {id, game, world_type: "Text"}   | {observation, available_actions, reward, done} |
| sciworld  | id       | {"id": n}          | {id, data_idx}                   | {observation, reward, score, done} |
| babyai    | id       | {"id": n}          | {id, data_idx}                   | {observation, reward, score, done} |
| textcraft | id       | {"id": n, observation} | {id, data_idx}               | {observation, reward, done}  |

`GET /observation?id=n` (or `?env_idx=n`) returns the current observation text; webshop also has
`GET /available_actions` ({has_search_bar, clickables}) and `GET /instruction_text`. Errors come
back as HTTP 200 with an `error` key (`{"error": "The id 3 is not valid."}`); we raise
`AgentGymError` with the server's message. Any other name (e.g. a `dreamgym serve` server) is
handled by detection: the dialect from what `/create` returns, the observation from `observation`
or `state`, the end from `done` or `terminated`, admissible actions from `available_actions`.

Connection reuse: one `httpx.Client` per env. Transport errors are retried with exponential
backoff where a retry cannot repeat an action (connect errors, 502/503/504, and any error on
create/reset/observe); a step whose reply was lost is not re-sent. The server env is created on
the first reset, so building the env (which callers do to validate names) contacts nothing.

Tasks: `make_tasks` builds them from data indices without contacting the server; task ids are
AgentGym's `item_id`s (`webshop_6` → data index 6). The instruction comes from the server on
reset (`Observation.info["instruction"]` where the server says it).
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable
from typing import Any

from dreamgym_cli.envs.base import Observation, StepResult, check_step_limit
from dreamgym_cli.errors import InputError
from dreamgym_cli.schema import Task

PREFIX = "agentgym"
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")


class AgentGymError(RuntimeError):
    """The server answered with an error, or could not be reached after retries."""


def _won_by_reward(reply: dict) -> bool:
    return float(reply.get("reward") or 0.0) > 0.0


@dataclasses.dataclass(frozen=True)
class ServerProfile:
    """How one AgentGym env server spells reset and reports the end (see the module table)."""

    reset_body: Callable[[int], dict[str, Any]] = lambda i: {"data_idx": i}
    success: Callable[[dict], bool] | None = None  # (final step reply) -> won; None: cannot tell
    instruction_key: str | None = None  # reset reply field holding the task description
    prepend_instruction: bool = False  # sciworld's client shows task_description + observation
    webshop_extras: bool = False  # the instruction comes from GET /instruction_text


PROFILES: dict[str, ServerProfile] = {
    "webshop": ServerProfile(reset_body=lambda i: {"session_id": i},
                             success=lambda r: float(r.get("reward") or 0.0) >= 1.0,
                             webshop_extras=True),
    "webarena": ServerProfile(reset_body=lambda i: {"seed": 0, "idx": i},
                              success=_won_by_reward),
    "alfworld": ServerProfile(reset_body=lambda i: {"game": i, "world_type": "Text"},
                              success=_won_by_reward),
    "sciworld": ServerProfile(success=lambda r: float(r.get("score") or 0.0) >= 100.0,
                              instruction_key="task_description", prepend_instruction=True),
    "babyai": ServerProfile(success=_won_by_reward),
    "textcraft": ServerProfile(success=_won_by_reward),
}
_DETECTED = ServerProfile()  # servers we do not know: detection + `info.success` when given


def parse_env_name(name: str) -> tuple[str, str]:
    """('webshop', 'http://127.0.0.1:36001') from 'agentgym:webshop@127.0.0.1:36001'."""
    body = name.split(":", 1)[1] if name.startswith(f"{PREFIX}:") else name
    env, at, url = body.partition("@")
    if not at or not _NAME.fullmatch(env) or not url.strip():
        raise InputError(f"expected --env agentgym:<name>@<url> (e.g. "
                         f"agentgym:webshop@http://127.0.0.1:36001), got {name!r}", field="env")
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = f"http://{url}"
    if not url.startswith(("http://", "https://")):
        raise InputError(f"expected an http(s) URL after '@', got {url!r}", field="env")
    return env, url


def data_index(task: Task, name: str) -> int:
    """The server's data index of a task: spec.data_idx, else from an item_id like 'webshop_6'."""
    idx = task.spec.get("data_idx")
    if idx is None:
        match = re.fullmatch(rf"{re.escape(name)}_(\d+)", task.task_id)
        if match is None:
            raise InputError(f"task {task.task_id!r} has no spec.data_idx and its id is not "
                             f"'{name}_<index>'", field="spec.data_idx")
        idx = int(match.group(1))
    if isinstance(idx, bool) or not isinstance(idx, int) or idx < 0:
        raise InputError(f"expected a data index >= 0, got {idx!r}", field="spec.data_idx")
    return idx


def make_tasks(env: str, seeds: list[int], split: str = "train",
               max_steps: int | None = None) -> list[Task]:
    """One task per data index (the seeds), without contacting the server."""
    name, url = parse_env_name(env)
    spec_name = f"{PREFIX}:{name}@{url}"
    tasks = []
    for idx in seeds:
        spec: dict[str, Any] = {"data_idx": int(idx)}
        if max_steps is not None:
            spec["max_steps"] = int(max_steps)
        tasks.append(Task(task_id=f"{name}_{idx}", env=spec_name, split=split, spec=spec,
                          instruction=f"{name} item {idx} (the server gives the instruction "
                                      "on reset)"))
    return tasks


class AgentGymEnv:
    """One episode at a time against one AgentGym env server."""

    def __init__(self, name: str, *, max_steps: int | None = None, timeout: float = 60.0,
                 retries: int = 3, backoff: float = 0.5, **_ignored: Any):
        self.env_name, self.url = parse_env_name(name)
        self.name = f"{PREFIX}:{self.env_name}@{self.url}"
        check_step_limit(max_steps)
        self.profile = PROFILES.get(self.env_name, _DETECTED)
        self.max_steps, self.timeout, self.retries, self.backoff = max_steps, timeout, retries, \
            backoff
        self._http = None
        self._id: int | None = None
        self._key = "id"  # or "env_idx", detected from /create
        self._limit: int | None = None
        self._t = 0
        self._done = True
        self._missing: set[str] = set()  # optional endpoints this server lacks

    # ---- transport ----------------------------------------------------------------------

    def _client(self):
        if self._http is None:
            import httpx

            self._http = httpx.Client(base_url=self.url, timeout=self.timeout)
        return self._http

    def _call(self, method: str, path: str, body: dict | None = None, *,
              replayable: bool = True) -> Any:
        """One request with retries; the decoded JSON; AgentGymError on `{"error": ...}`."""
        import httpx

        client, last = self._client(), None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                if method == "GET":
                    reply = client.get(path, params=body)
                else:
                    reply = client.post(path, json=body or {})
            except (httpx.ConnectError, httpx.ConnectTimeout) as e:  # nothing reached the server
                last = e
                continue
            except httpx.TransportError as e:
                last = e
                if replayable:
                    continue
                raise AgentGymError(f"{self.url}{path}: {type(e).__name__}: {e} (not retried: "
                                    "the server may have acted already)") from None
            if reply.status_code in (502, 503, 504):
                last = f"HTTP {reply.status_code}"
                continue
            return self._decode(path, reply)
        detail = f"{type(last).__name__}: {last}" if isinstance(last, Exception) else last
        raise AgentGymError(f"cannot reach the AgentGym server at {self.url}{path} after "
                            f"{self.retries + 1} tries ({detail}); is it running?")

    def _decode(self, path: str, reply) -> Any:
        if reply.status_code != 200:
            raise AgentGymError(f"{self.url}{path}: HTTP {reply.status_code}: "
                                f"{reply.text[:300]}")
        try:
            data = reply.json()
        except ValueError:
            raise AgentGymError(f"{self.url}{path}: expected JSON, got "
                                f"{reply.text[:200]!r}") from None
        if isinstance(data, dict) and data.get("error") is not None:
            raise AgentGymError(f"{self.url}{path}: server error: {data['error']}")
        return data

    def _ids(self) -> dict[str, int]:
        return {self._key: self._id}

    def _create(self) -> None:
        data = self._call("POST", "/create")
        if isinstance(data, bool) or not isinstance(data, (int, dict)):
            raise AgentGymError(f"{self.url}/create: expected an id, got {data!r}")
        if isinstance(data, int):  # webshop: a bare int, env_idx dialect
            self._key, self._id = "env_idx", data
        elif "id" in data:
            self._key, self._id = "id", int(data["id"])
        elif "env_idx" in data:
            self._key, self._id = "env_idx", int(data["env_idx"])
        else:
            raise AgentGymError(f"{self.url}/create: expected 'id' or 'env_idx' in {data!r}")

    # ---- Env protocol ---------------------------------------------------------------------

    def reset(self, task: Task) -> Observation:
        idx = data_index(task, self.env_name)
        limit = self.max_steps or task.spec.get("max_steps")
        if self._id is None:
            self._create()
        try:
            reply = self._reset_call(idx)
        except AgentGymError:
            # Servers recycle or expire idle envs (webshop at 8000 envs, `dreamgym serve` after
            # --idle-timeout): start over once with a fresh env before giving up.
            self._create()
            reply = self._reset_call(idx)
        text, instruction = self._reset_text(reply)
        self._limit, self._t, self._done = (int(limit) if limit else None), 0, False
        info = {"data_idx": idx, "server_id": self._id, "dialect": self._key}
        if instruction:
            info["instruction"] = instruction
        return Observation(text, self._admissible(reply), info)

    def _reset_call(self, idx: int) -> Any:
        # data_idx rides along for servers we detect rather than know; known ones ignore it.
        body = {**self.profile.reset_body(idx), "data_idx": idx, **self._ids()}
        return self._call("POST", "/reset", body)

    def _reset_text(self, reply: Any) -> tuple[str, str | None]:
        instruction = None
        if isinstance(reply, dict):
            instruction = reply.get(self.profile.instruction_key or "instruction")
            text = reply.get("observation", reply.get("state"))
        else:  # webshop: [observation, None]
            text = reply[0] if isinstance(reply, list) and reply else None
        if not isinstance(text, str):
            text = self._observe()
        if self.profile.prepend_instruction and instruction:
            text = f"{instruction}\n{text}"
        if self.profile.webshop_extras and instruction is None:
            instruction = self._optional_get("/instruction_text")
        return text, instruction if isinstance(instruction, str) else None

    def _observe(self) -> str:
        data = self._call("GET", "/observation", self._ids())
        if isinstance(data, dict):
            data = data.get("observation", data.get("state"))
        if not isinstance(data, str):
            raise AgentGymError(f"{self.url}/observation: expected text, got {data!r}")
        return data

    def _admissible(self, reply: Any) -> list[str] | None:
        """From the reply when it lists them, else from GET /available_actions if the server
        has it (webshop: {has_search_bar, clickables}; dreamgym serve: {available_actions})."""
        if isinstance(reply, dict):
            actions = reply.get("available_actions")
            if actions is None and isinstance(reply.get("info"), dict):
                actions = reply["info"].get("available_actions")
            if isinstance(actions, list):
                return [str(a) for a in actions]
        data = self._optional_get("/available_actions")
        if not isinstance(data, dict):
            return None
        if isinstance(data.get("available_actions"), list):
            return [str(a) for a in data["available_actions"]]
        if "clickables" in data:
            clicks = [f"click[{c}]" for c in data.get("clickables") or []]
            return (["search[<keywords>]"] if data.get("has_search_bar") else []) + clicks
        return None

    def _optional_get(self, path: str) -> Any:
        """GET an endpoint only some servers have; None (and never again) where it is missing."""
        if path in self._missing:
            return None
        try:
            return self._call("GET", path, self._ids())
        except AgentGymError as e:
            if "HTTP 404" not in str(e) and "HTTP 405" not in str(e):
                raise
            self._missing.add(path)
            return None

    def step(self, action: str) -> StepResult:
        if self._id is None or self._done:
            raise RuntimeError("the episode is over (or never started): call reset(task) first")
        reply = self._call("POST", "/step", {"action": action, **self._ids()}, replayable=False)
        if not isinstance(reply, dict):
            raise AgentGymError(f"{self.url}/step: expected an object, got {reply!r}")
        self._t += 1
        text = reply.get("observation", reply.get("state"))
        if not isinstance(text, str):
            raise AgentGymError(f"{self.url}/step: no 'observation' or 'state' in {reply!r}")
        ended = bool(reply.get("done", reply.get("terminated", False)))
        truncated = not ended and self._limit is not None and self._t >= self._limit
        self._done = ended or truncated
        success = self._success(reply) if ended else (False if truncated else None)
        info = {"truncated": truncated, "server_reply": {k: v for k, v in reply.items()
                                                         if k not in ("observation", "state")}}
        observation = Observation(text, None if self._done else self._admissible(reply), info)
        return StepResult(observation, float(reply.get("reward") or 0.0), self._done, success,
                          info)

    def _success(self, reply: dict) -> bool | None:
        said = reply.get("info", {}).get("success") if isinstance(reply.get("info"), dict) \
            else None
        if isinstance(reply.get("success"), bool):
            said = reply["success"]
        if isinstance(said, bool):
            return said
        return self.profile.success(reply) if self.profile.success else None

    def close(self) -> None:
        if self._id is not None and self._http is not None:
            try:
                self._call("POST", "/close", self._ids())
            except AgentGymError:
                pass  # closing is best effort: the server may be gone or have expired the id
        if self._http is not None:
            self._http.close()
        self._http, self._id, self._done = None, None, True


def make(argument: str, **kwargs: Any) -> AgentGymEnv:
    """The registry's factory for `agentgym:<argument>`."""
    return AgentGymEnv(f"{PREFIX}:{argument}", **kwargs)
