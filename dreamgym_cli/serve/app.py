"""An env (the dream env or a real one) behind AgentGym's HTTP protocol, as a FastAPI app.

Two dialects, as AgentGym's own servers speak them (see `envs/agentgym.py` for the survey):

| endpoint                     | `id` (canonical; sciworld, alfworld, babyai, textcraft) | `env_idx` (webshop) |
|------------------------------|--------------------------------------|-------------------------------------|
| POST /create                 | `{"id": n}`                          | `n`                                 |
| POST /reset {id, data_idx}   | `{"observation", "available_actions", "instruction", "task_id", "reward": 0, "done": false}` | `[observation, null]` |
| GET /observation?id=n        | the current abstract state (a string) | the same                           |
| POST /step {id, action}      | `{"observation", "reward", "done", "info"}` | `{"state", "reward", "done", "info"}` |
| POST /close {id}             | `{"closed": true}`                   | the same                            |
| GET /available_actions?id=n  | `{"available_actions": [...]}`       | the same                            |

`data_idx` indexes the server's task list (reset also accepts AgentGym's other spellings:
`session_id`, `idx`, `game`). `info` carries `success`, `available_actions`, `truncated`,
`task_id` and whatever the env reports. Errors are HTTP 200 with an `error` key, as AgentGym
servers send them: `{"error": "unknown id 7: ..."}` — malformed bodies included.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Body, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from dreamgym_cli.schema import Task
from dreamgym_cli.serve.sessions import Session, SessionError, SessionPool

DIALECTS = ("id", "env_idx")
_INDEX_KEYS = ("data_idx", "session_id", "idx", "game")


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _task_index(body: dict, count: int) -> int:
    key = next((k for k in _INDEX_KEYS if body.get(k) is not None), None)
    if key is None:
        raise SessionError("expected 'data_idx' (the task index) in the reset body")
    value = body[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise SessionError(f"expected an integer {key}, got {value!r}")
    if not 0 <= value < count:
        raise SessionError(f"{key} {value} is out of range: this server has {count} tasks "
                           f"(0-{count - 1})")
    return value


def reset_session(session: Session, tasks: list[Task], body: dict) -> dict[str, Any]:
    task = tasks[_task_index(body, len(tasks))]
    observation = session.env.reset(task)
    session.task, session.observation, session.done, session.steps = task, observation, False, 0
    return {"observation": observation.text, "available_actions": observation.admissible,
            "instruction": observation.info.get("objective") or task.instruction,
            "task_id": task.task_id, "reward": 0.0, "done": False}


def step_session(session: Session, action: Any) -> dict[str, Any]:
    if not isinstance(action, str):
        raise SessionError(f"expected the action as a string, got {action!r}")
    if session.observation is None:
        raise SessionError(f"session {session.id} has no episode: POST /reset first")
    if session.done:
        raise SessionError(f"the episode of session {session.id} is over: POST /reset for "
                           "another")
    result = session.env.step(action)
    session.observation, session.done = result.observation, bool(result.done)
    session.steps += 1
    info = {**_jsonable(result.info), "success": result.success,
            "available_actions": result.observation.admissible,
            "task_id": session.task.task_id if session.task else None, "steps": session.steps}
    return {"observation": result.observation.text, "reward": float(result.reward),
            "done": bool(result.done), "info": info}


def build_app(pool: SessionPool, tasks: list[Task], *, env_name: str, dialect: str = "id",
              description: str = ""):
    """The FastAPI app serving `pool`'s envs; `tasks[data_idx]` is what /reset plays."""
    if dialect not in DIALECTS:
        raise ValueError(f"dialect must be one of {DIALECTS}, got {dialect!r}")
    key = dialect  # the name of the session-id field in bodies and queries
    app = FastAPI(title=f"dreamgym serve: {env_name}", docs_url=None, redoc_url=None)

    @app.exception_handler(RequestValidationError)
    async def _malformed(_request, exc):  # AgentGym servers report errors as 200 + "error"
        return JSONResponse({"error": f"malformed request: {exc.errors()[:1]}"}, status_code=200)

    def answer(work):
        try:
            return work()
        except SessionError as e:
            return {"error": str(e)}
        except Exception as e:  # noqa: BLE001 — an env failure is reported, the server lives on
            return {"error": f"{type(e).__name__}: {e}"}

    def session_id(body: Any) -> Any:
        if not isinstance(body, dict) or key not in body:
            raise SessionError(f"expected a JSON object with '{key}'")
        return body[key]

    @app.get("/")
    def hello():
        return f"This is environment {env_name} (dreamgym serve{description}, {len(tasks)} tasks)."

    @app.get("/list_envs")
    def list_envs():
        return sorted(pool.sessions)

    @app.post("/create")
    def create():
        def work():
            n = pool.create()
            return {"id": n} if dialect == "id" else n
        return answer(work)

    @app.post("/reset")
    def reset(body: Any = Body(None)):
        def work():
            with pool.use(session_id(body)) as session:
                reply = reset_session(session, tasks, body)
            return reply if dialect == "id" else [reply["observation"], None]
        return answer(work)

    @app.post("/step")
    def step(body: Any = Body(None)):
        def work():
            with pool.use(session_id(body)) as session:
                reply = step_session(session, body.get("action"))
            if dialect == "env_idx":
                reply["state"] = reply.pop("observation")
            return reply
        return answer(work)

    def current(request: Request, field: str):
        def work():
            with pool.use(request.query_params.get(key)) as session:
                if session.observation is None:
                    raise SessionError(f"session {session.id} has no episode: POST /reset first")
                if field == "text":
                    return session.observation.text
                return {"available_actions": session.observation.admissible}
        return answer(work)

    @app.get("/observation")
    def observation(request: Request):
        return current(request, "text")

    @app.get("/available_actions")
    def available_actions(request: Request):
        return current(request, "admissible")

    @app.post("/close")
    def close(body: Any = Body(None)):
        return answer(lambda: {"closed": pool.close(session_id(body))})

    return app
