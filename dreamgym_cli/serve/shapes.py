"""The reply shapes of AgentGym's env servers, one `Shape` per env name, plus our canonical two.

Written from AgentGym's servers (`agentenv-<env>/agentenv_<env>/server.py`, `env_wrapper.py` or
`environment.py`, `model.py`) and the clients that read them (`agentenv/agentenv/envs/<env>.py`).
The served env is whatever `dreamgym serve` runs (TextWorld, the dream env, ...): a shape only
decides field names, types, nesting, the session key, and where the task instruction appears in
what the client shows its agent. What each shape answers:

| shape     | key     | /create                 | /reset body → reply                                     | /step reply                                    |
|-----------|---------|-------------------------|---------------------------------------------------------|------------------------------------------------|
| textcraft | id      | {id, observation, done, reward} (episode `id mod N` begun) | {id, data_idx=0} → {id, observation, done, reward} | {observation, reward, done}               |
| babyai    | id      | {id}                    | {id, data_idx} → {observation, reward, score, deleted, done} | {observation, reward, score, done}        |
| sciworld  | id      | {id}                    | {id, data_idx} → {task_name, var_num, task_description, observation, reward, score, deleted, done} | {observation, reward, score, done} |
| alfworld  | id      | {id}                    | {id, game, world_type} → {id, observation, available_actions, task_type} | {observation, reward, available_actions, done} |
| webshop   | env_idx | n (a bare int)          | {env_idx, session_id} → [observation, null]             | {state, reward, done, info: null}              |

Where the instruction goes (as each env's server puts it): textcraft ends its first observation
with `Goal: ...`; babyai starts the reset observation (and every GET /observation) with
`Your goal: ...` and ends every observation with `Available actions: [...]`; sciworld sends it as
`task_description` (its client shows `task_description + "\\n" + observation`); alfworld ends the
first observation with `Your task is to: ...`; webshop heads every observation with
`WebShop [SEP] Instruction: [SEP] ... [SEP]`. `score` is the episode's return so far (× 100 for
sciworld, whose scores run 0-100); the sciworld shape scales `reward` the same way.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any, Optional

from pydantic import BaseModel

from dreamgym_cli.schema import Task

# ---- request bodies (pydantic, as AgentGym's servers type them; extra keys are ignored) -------


class IdBody(BaseModel):
    id: int


class EnvIdxBody(BaseModel):
    env_idx: int


class IdStep(IdBody):
    action: str


class EnvIdxStep(EnvIdxBody):
    action: str


class CanonicalIdReset(IdBody):  # our `id` dialect: AgentGym's index spellings, all accepted
    data_idx: Optional[int] = None
    session_id: Optional[int] = None
    idx: Optional[int] = None
    game: Optional[int] = None


class CanonicalEnvIdxReset(EnvIdxBody):
    data_idx: Optional[int] = None
    session_id: Optional[int] = None
    idx: Optional[int] = None
    game: Optional[int] = None


class TextCraftReset(IdBody):
    data_idx: Optional[int] = 0


class DataIdxReset(IdBody):  # babyai, sciworld
    data_idx: int


class AlfWorldReset(IdBody):
    game: int
    world_type: str


class WebShopReset(EnvIdxBody):
    session_id: Optional[int] = None


# ---- what a shape renders from ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class View:
    """One session's episode as a shape sees it (after a reset or a step)."""

    session_id: int
    task: Task
    data_idx: int
    instruction: str
    text: str  # the current abstract state
    admissible: list[str] | None
    reward: float  # of the last step (0 after a reset), in the server's reward mode
    score: float  # the episode's return so far, in the server's reward mode
    done: bool
    first: bool  # the state is the episode's first (no step yet)
    steps: int
    success: bool | None
    info: dict


def _actions_suffix(view: View) -> str:
    return "\nAvailable actions: " + json.dumps(view.admissible or [], ensure_ascii=False)


# ---- the shapes ---------------------------------------------------------------------------------


def _canonical_reset(view: View) -> dict:
    return {"observation": view.text, "available_actions": view.admissible,
            "instruction": view.instruction, "task_id": view.task.task_id, "reward": 0.0,
            "done": False}


def _canonical_step(view: View, state_key: str = "observation") -> dict:
    info = {**view.info, "success": view.success, "available_actions": view.admissible,
            "task_id": view.task.task_id, "steps": view.steps}
    return {state_key: view.text, "reward": view.reward, "done": view.done, "info": info}


def _textcraft_text(view: View) -> str:
    return f"{view.text}\n\nGoal: {view.instruction}" if view.first else view.text


def _babyai_first(view: View) -> str:
    return f"Your goal: {view.instruction}\n{view.text}{_actions_suffix(view)}"


def _alfworld_text(view: View) -> str:
    return f"{view.text}\n\nYour task is to: {view.instruction}" if view.first else view.text


def _webshop_text(view: View) -> str:
    return f"WebShop [SEP] Instruction: [SEP] {view.instruction} [SEP] {view.text}"


def _sciworld_reset(view: View) -> dict:
    spec = view.task.spec
    return {"task_name": str(spec.get("task_name") or view.task.task_id),
            "var_num": int(spec.get("variation", view.data_idx)),
            "task_description": view.instruction, "observation": view.text, "reward": 0.0,
            "score": 0.0, "deleted": False, "done": False}


@dataclasses.dataclass(frozen=True)
class Shape:
    """How one AgentGym server spells every endpoint (see the module table)."""

    name: str
    key: str  # the session-id field of bodies and queries: "id" or "env_idx"
    reset_model: type[BaseModel]
    task_index: Callable[[Any], int | None]  # the reset body's data index (None: not given)
    created: Callable[[int, View | None], Any]  # (new id, its first view if reset_on_create)
    reset: Callable[[View], Any]
    step: Callable[[View], Any]
    observation: Callable[[View], Any]
    available_actions: Callable[[View], Any]
    closed: Callable[[bool], Any]
    reset_on_create: bool = False  # textcraft's /create begins an episode
    check_reset: Callable[[Any], str | None] = lambda body: None  # an error message, or None
    reward_scale: float = 1.0  # applied to `reward` and `score`

    @property
    def step_model(self) -> type[BaseModel]:
        return IdStep if self.key == "id" else EnvIdxStep

    @property
    def close_model(self) -> type[BaseModel]:
        return IdBody if self.key == "id" else EnvIdxBody


def _first_index(body: Any) -> int | None:
    return next((getattr(body, k) for k in ("data_idx", "session_id", "idx", "game")
                 if getattr(body, k) is not None), None)


def _alfworld_world_type(body: Any) -> str | None:
    if body.world_type not in ("Text", "Embody", "Hybrid"):
        return 'world_type must be one of "Text", "Embody" and "Hybrid"'
    return None


CANONICAL: dict[str, Shape] = {
    "id": Shape(
        "id", "id", CanonicalIdReset, _first_index,
        created=lambda n, _v: {"id": n}, reset=_canonical_reset, step=_canonical_step,
        observation=lambda v: v.text,
        available_actions=lambda v: {"available_actions": v.admissible},
        closed=lambda ok: {"closed": ok}),
    "env_idx": Shape(
        "env_idx", "env_idx", CanonicalEnvIdxReset, _first_index,
        created=lambda n, _v: n, reset=lambda v: [v.text, None],
        step=lambda v: _canonical_step(v, "state"), observation=lambda v: v.text,
        available_actions=lambda v: {"available_actions": v.admissible},
        closed=lambda ok: {"closed": ok}),
}

AGENTGYM: dict[str, Shape] = {
    "textcraft": Shape(
        "textcraft", "id", TextCraftReset, lambda b: b.data_idx,
        created=lambda n, v: {"id": n, "observation": _textcraft_text(v), "done": False,
                              "reward": 0},
        reset=lambda v: {"id": v.session_id, "observation": _textcraft_text(v), "done": False,
                         "reward": 0},
        step=lambda v: {"observation": v.text, "reward": v.reward, "done": v.done},
        observation=_textcraft_text,
        available_actions=lambda v: {"available_actions": v.admissible},
        closed=lambda ok: ok, reset_on_create=True),
    "babyai": Shape(
        "babyai", "id", DataIdxReset, lambda b: b.data_idx,
        created=lambda n, _v: {"id": n},
        reset=lambda v: {"observation": _babyai_first(v), "reward": 0.0, "score": 0.0,
                         "deleted": False, "done": False},
        step=lambda v: {"observation": v.text + _actions_suffix(v), "reward": v.reward,
                        "score": v.score, "done": v.done},
        observation=lambda v: {"observation": _babyai_first(v), "reward": v.reward,
                               "score": v.score, "done": v.done, "deleted": False},
        available_actions=lambda v: {"available_actions": v.admissible},
        closed=lambda ok: ok),
    "sciworld": Shape(
        "sciworld", "id", DataIdxReset, lambda b: b.data_idx,
        created=lambda n, _v: {"id": n}, reset=_sciworld_reset,
        step=lambda v: {"observation": v.text, "reward": v.reward, "score": v.score,
                        "done": v.done},
        observation=lambda v: v.text,
        available_actions=lambda v: {"available_actions": v.admissible},
        closed=lambda ok: ok, reward_scale=100.0),
    "alfworld": Shape(
        "alfworld", "id", AlfWorldReset, lambda b: b.game,
        created=lambda n, _v: {"id": n},
        reset=lambda v: {"id": v.session_id, "observation": _alfworld_text(v),
                         "available_actions": v.admissible or [],
                         "task_type": str(v.task.spec.get("task_type") or v.task.env)},
        step=lambda v: {"observation": v.text, "reward": v.reward,
                        "available_actions": v.admissible or [], "done": v.done},
        observation=_alfworld_text, available_actions=lambda v: v.admissible or [],
        closed=lambda ok: ok, check_reset=_alfworld_world_type),
    "webshop": Shape(
        "webshop", "env_idx", WebShopReset, lambda b: 0 if b.session_id is None else b.session_id,
        created=lambda n, _v: n, reset=lambda v: [_webshop_text(v), None],
        step=lambda v: {"state": _webshop_text(v), "reward": v.reward, "done": v.done,
                        "info": None},
        observation=_webshop_text,
        available_actions=lambda v: {"has_search_bar": False, "clickables": v.admissible or []},
        closed=lambda ok: ok),
}


def shape_for(agentgym_env: str | None, dialect: str) -> Shape:
    """The shape `--agentgym-env NAME` names, else the canonical one of `--dialect`."""
    return AGENTGYM[agentgym_env] if agentgym_env is not None else CANONICAL[dialect]
