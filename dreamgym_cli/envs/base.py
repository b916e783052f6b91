"""What every environment speaks: `Observation`, `StepResult`, the `Env` protocol (DESIGN §5) and
the `BatchEnv` protocol of envs that run a batch of episodes.

Real adapters (TextWorld, ...) and the dream env implement the same three methods, and render the
same **abstract state** text, so a policy cannot tell them apart (sim-to-real depends on it).
Envs that know a good next action (TextWorld's `policy_commands`) also offer `expert_action()`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol, runtime_checkable

from dreamgym_cli.errors import InputError
from dreamgym_cli.schema import Task


@dataclasses.dataclass(frozen=True)
class Observation:
    """What the agent sees: the abstract state text and, where known, the admissible actions."""

    text: str
    admissible: list[str] | None
    info: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class StepResult:
    """The outcome of one action. `reward` is this step's reward (not a running total)."""

    observation: Observation
    reward: float
    done: bool
    success: bool | None  # None = the env cannot tell
    info: dict[str, Any] = dataclasses.field(default_factory=dict)


@runtime_checkable
class Env(Protocol):
    def reset(self, task: Task) -> Observation: ...

    def step(self, action: str) -> StepResult: ...

    def close(self) -> None: ...


@runtime_checkable
class BatchEnv(Protocol):
    """Episodes advanced together (the dream env, `VectorEnv`, the Ray envs): `step_batch` takes
    one action per episode (None for one that is over) and answers None for those."""

    def reset_batch(self, tasks: list[Task]) -> list[Observation]: ...

    def step_batch(self, actions: list[str | None]) -> list[StepResult | None]: ...

    def close(self) -> None: ...


@runtime_checkable
class ExpertEnv(Env, Protocol):
    """An env that can say what an expert would do now (a state-dependent plan, not a replay)."""

    def expert_action(self) -> str | None: ...


def has_expert(env: Any) -> bool:
    return callable(getattr(env, "expert_action", None))


def clean_action(action: str) -> str:
    """The action without backslashes and control characters, whitespace collapsed.

    TextWorld's interpreter (dumb-frotz) reads a leading backslash as one of its own commands and
    then loops forever asking for more; no env command needs either, so they are never sent.
    """
    cleaned = "".join(" " if ch == "\\" or not ch.isprintable() else ch for ch in action)
    return " ".join(cleaned.split())


def check_task_env(task: Task, env_name: str) -> None:
    """Refuse a task made for another env (InputError on its `env` field)."""
    if task.env != env_name:
        raise InputError(f"task {task.task_id!r} is for env {task.env!r}, not {env_name!r}",
                         field="env")


def check_step_limit(max_steps: int | None, field: str = "max_steps") -> int | None:
    """A step limit as given (None: the task's own), refused unless it is >= 1."""
    if max_steps is not None and max_steps < 1:
        raise InputError(f"expected a step limit >= 1, got {max_steps}", field=field)
    return max_steps
