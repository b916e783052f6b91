"""Environments by name, as chosen in configs and on the command line.

Two kinds of names: plain names (`textworld`) and prefixed names whose part after the colon is an
argument (`dream:<EM_DIR>`, `agentgym:<name>@<url>`). Each maps to a factory that imports its
adapter only when called, so importing this module is cheap and nothing registers itself.
Callers only ever use `make_env(name, **kwargs)` or `env_for_task(task, **kwargs)`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dreamgym_cli.envs.base import Env
from dreamgym_cli.errors import unknown_name
from dreamgym_cli.schema import Task


def _textworld(**kwargs: Any) -> Env:
    from dreamgym_cli.envs.textworld import TextWorldEnv

    return TextWorldEnv(**kwargs)


def _miniwob(**kwargs: Any) -> Env:
    from dreamgym_cli.envs.miniwob import MiniWoBEnv

    return MiniWoBEnv(**kwargs)


def _scienceworld(**kwargs: Any) -> Env:
    from dreamgym_cli.envs.scienceworld import ScienceWorldEnv

    return ScienceWorldEnv(**kwargs)


def _babyai(**kwargs: Any) -> Env:
    from dreamgym_cli.envs.babyai import BabyAIEnv

    return BabyAIEnv(**kwargs)


# name -> factory(**kwargs)
_PLAIN: dict[str, Callable[..., Env]] = {
    "textworld": _textworld,
    "miniwob": _miniwob,
    "scienceworld": _scienceworld,
    "babyai": _babyai,
    "webarena": lambda **kw: __import__("dreamgym_cli.envs.webarena").envs.webarena.make(**kw),
    "alfworld": lambda **kw: __import__("dreamgym_cli.envs.alfworld").envs.alfworld.make(**kw),
}


def _dream(em_dir: str, **kwargs: Any) -> Env:
    from dreamgym_cli.envs.dream import DreamEnv

    return DreamEnv(em_dir, **kwargs)


# prefix -> factory(argument, **kwargs), for names written `prefix:argument`
_PREFIXED: dict[str, Callable[..., Env]] = {
    "dream": _dream,
    "agentgym": lambda a, **kw: __import__("dreamgym_cli.envs.agentgym").envs.agentgym.make(a, **kw),
}


def available_envs() -> list[str]:
    """Every accepted name; prefixed forms shown as `prefix:...`."""
    return sorted(_PLAIN) + sorted(f"{p}:..." for p in _PREFIXED)


def make_env(name: str, **kwargs: Any) -> Env:
    """A new env instance for `name`; InputError (with did-you-mean) for an unknown name."""
    prefix, colon, argument = name.partition(":")
    if colon and prefix in _PREFIXED:
        return _PREFIXED[prefix](argument, **kwargs)
    if not colon and name in _PLAIN:
        return _PLAIN[name](**kwargs)
    raise unknown_name("environment", name, available_envs(), field="env")


def env_for_task(task: Task, **kwargs: Any) -> Env:
    """The env that can reset `task` (by `task.env`)."""
    return make_env(task.env, **kwargs)
