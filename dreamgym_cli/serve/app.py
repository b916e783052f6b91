"""An env (the dream env or a real one) behind AgentGym's HTTP protocol, as a FastAPI app.

Endpoints: POST /create, POST /reset, POST /step, POST /close, GET /observation, GET
/available_actions, GET /instruction_text, GET /list_envs, GET /. Their bodies and replies follow
one `Shape` (`serve/shapes.py`): our canonical `id` / `env_idx` dialects, or the exact shapes of
AgentGym's textcraft, babyai, sciworld, alfworld and webshop servers (`--agentgym-env`).

Status codes, as AgentGym's servers (FastAPI + pydantic bodies) use them: a body that is not the
shape's typed request (missing or mistyped field, bad JSON, an action over `max_action_chars`) is
HTTP 422 naming the field; a request the env cannot serve (unknown id, index out of range,
episode over, an env exception) is HTTP 200 with an `error` key; all sessions holding live
episodes is 503; an env call over `step_timeout` is 504; a body over the cap 413, too slow 408.

Rewards: `dense` passes the env's reward through; `sparse` gives 0 on every step but the last,
which gets 1 when the episode was won, so a trajectory's final reward (AgentGym-RL's score) is
its success.
"""

# no `from __future__ import annotations`: FastAPI reads the body types of the endpoints
# below (chosen per shape at build time) from their live annotations.
import json
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from dreamgym_cli.schema import Task
from dreamgym_cli.serve.limits import BodyLimit
from dreamgym_cli.serve.sessions import (CapacityError, Session, SessionError, SessionPool,
                                         StepTimeout)
from dreamgym_cli.serve.shapes import Shape, View

REWARD_MODES = ("dense", "sparse")


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _view(session: Session) -> View:
    obs = session.observation
    return View(session_id=session.id, task=session.task, data_idx=session.data_idx,
                instruction=session.instruction, text=obs.text, admissible=obs.admissible,
                reward=session.last_reward, score=session.score, done=session.done,
                first=session.steps == 0, steps=session.steps, success=session.success,
                info=session.info)


def _check_index(index: int | None, count: int) -> int:
    if index is None:
        raise SessionError("expected 'data_idx' (the task index) in the reset body")
    if not 0 <= index < count:
        raise SessionError(f"data index {index} is out of range: this server has {count} tasks "
                           f"(0-{count - 1})")
    return index


def reset_session(session: Session, task: Task, index: int) -> View:
    observation = session.env.reset(task)
    session.task, session.data_idx, session.observation = task, index, observation
    session.instruction = str(observation.info.get("objective") or task.instruction or "")
    session.done, session.steps, session.score, session.last_reward = False, 0, 0.0, 0.0
    session.success, session.info, session.broken = None, {}, None
    return _view(session)


def step_session(session: Session, action: str, *, reward_mode: str, scale: float) -> View:
    if session.observation is None:
        raise SessionError(f"session {session.id} has no episode: POST /reset first")
    if session.done:
        why = f" ({session.broken})" if session.broken else ""
        raise SessionError(f"the episode of session {session.id} is over{why}: POST /reset for "
                           "another")
    result = session.env.step(action)
    done = bool(result.done)
    if reward_mode == "sparse":
        reward = 1.0 if done and result.success else 0.0
    else:
        reward = float(result.reward)
    session.observation, session.done = result.observation, done
    session.steps += 1
    session.last_reward = reward * scale
    session.score += reward * scale
    session.success = result.success if done else None
    session.info = _jsonable(result.info)
    return _view(session)


def current_view(session: Session) -> View:
    if session.observation is None:
        raise SessionError(f"session {session.id} has no episode: POST /reset first")
    return _view(session)


def _field_errors(exc: RequestValidationError) -> JSONResponse:
    # never echo the input back: it may be the megabyte the client should not have sent
    details = [{k: v for k, v in e.items() if k not in ("input", "ctx", "url")}
               for e in exc.errors()]
    message = "; ".join(f"{'.'.join(str(p) for p in d.get('loc', ()))}: {d.get('msg')}"
                        for d in details)
    return JSONResponse({"detail": jsonable_encoder(details), "error": f"invalid request: "
                         f"{message}"}, status_code=422)


def build_app(pool: SessionPool, tasks: list[Task], *, env_name: str, shape: Shape,
              description: str = "", reward: str = "dense", max_action_chars: int = 4096,
              step_timeout: float = 600.0, max_body_bytes: int = 1 << 20,
              body_timeout: float = 10.0) -> FastAPI:
    """The app serving `pool`'s envs in `shape`; `tasks[data_idx]` is what /reset plays."""
    if reward not in REWARD_MODES:
        raise ValueError(f"reward must be one of {REWARD_MODES}, got {reward!r}")
    key = shape.key
    app = FastAPI(title=f"dreamgym serve: {env_name}", docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes, timeout=body_timeout)

    @app.exception_handler(RequestValidationError)
    async def _malformed(_request, exc):
        return _field_errors(exc)

    async def answer(call) -> Any:
        try:
            return await call()
        except CapacityError as e:
            return JSONResponse({"error": str(e)}, status_code=503, headers={"Retry-After": "5"})
        except StepTimeout as e:
            return JSONResponse({"error": str(e)}, status_code=504)
        except SessionError as e:
            return {"error": str(e)}
        except Exception as e:  # noqa: BLE001 — an env failure is reported, the server lives on
            return {"error": f"{type(e).__name__}: {e}"}

    @app.get("/")
    def hello():
        return (f"This is environment {env_name} (dreamgym serve{description}, {len(tasks)} "
                f"tasks, shape {shape.name}, {reward} rewards).")

    @app.get("/list_envs")
    def list_envs():
        return sorted(pool.sessions)

    @app.post("/create")
    async def create():
        async def call():
            n = await pool.create(step_timeout)
            if not shape.reset_on_create:
                return shape.created(n, None)
            index = n % len(tasks)  # textcraft's server begins episode `id` at once
            view = await pool.run(n, lambda s: reset_session(s, tasks[index], index),
                                  step_timeout)
            return shape.created(n, view)
        return await answer(call)

    @app.post("/reset")
    async def reset(body: shape.reset_model):  # type: ignore[valid-type]
        async def call():
            problem = shape.check_reset(body)
            if problem:
                raise SessionError(problem)
            index = _check_index(shape.task_index(body), len(tasks))
            view = await pool.run(getattr(body, key),
                                  lambda s: reset_session(s, tasks[index], index), step_timeout)
            return shape.reset(view)
        return await answer(call)

    @app.post("/step")
    async def step(body: shape.step_model):  # type: ignore[valid-type]
        if len(body.action) > max_action_chars:
            return JSONResponse({"detail": [{"loc": ["body", "action"], "type": "too_long",
                                             "msg": f"at most {max_action_chars} characters"}],
                                 "error": f"invalid request: body.action: {len(body.action)} "
                                          f"characters, at most {max_action_chars} "
                                          "(--max-action-chars)"}, status_code=422)

        async def call():
            view = await pool.run(getattr(body, key), lambda s: step_session(
                s, body.action, reward_mode=reward, scale=shape.reward_scale), step_timeout)
            return shape.step(view)
        return await answer(call)

    async def current(session_id: int, render):
        async def call():
            return render(await pool.run(session_id, current_view, step_timeout))
        return await answer(call)

    @app.get("/observation")
    async def observation(session_id: int = Query(alias=key)):
        return await current(session_id, shape.observation)

    @app.get("/available_actions")
    async def available_actions(session_id: int = Query(alias=key)):
        return await current(session_id, shape.available_actions)

    @app.get("/instruction_text")
    async def instruction_text(session_id: int = Query(alias=key)):
        return await current(session_id, lambda v: v.instruction)

    @app.post("/close")
    async def close(body: shape.close_model):  # type: ignore[valid-type]
        async def call():
            return shape.closed(await pool.close(getattr(body, key), step_timeout))
        return await answer(call)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception):
        return JSONResponse({"error": f"{type(exc).__name__}: {exc}"}, status_code=500)

    return app
