"""Environments by name, as chosen in configs and on the command line.

Two kinds of names: plain names (`textworld`) and prefixed names whose part after the colon is an
argument (`dream:<EM_DIR>`, `agentgym:<name>@<url>`). Each maps to a factory that imports its
adapter only when called, so importing this module is cheap and nothing registers itself. The real
envs' factories live in `real.py`; this module adds the dream env on top of them.
Callers only ever use `make_env(name, **kwargs)` or `env_for_task(task, **kwargs)`, and
`check_env_name(name)` where a name is only checked (it builds nothing).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dreamgym_cli.envs.base import Env
from dreamgym_cli.envs.real import PLAIN, PREFIXED, check_real_env_name, make_real_env
from dreamgym_cli.errors import unknown_name
from dreamgym_cli.schema import Task

DREAM_PREFIX = "dream"


def _dream(em_dir: str, **kwargs: Any) -> Env:
    from dreamgym_cli.envs.dream import DreamEnv

    return DreamEnv(em_dir, **kwargs)


# prefix -> factory(argument, **kwargs), for names written `prefix:argument`
_PREFIXED: dict[str, Callable[..., Env]] = {DREAM_PREFIX: _dream, **PREFIXED}


def available_envs() -> list[str]:
    """Every accepted name; prefixed forms shown as `prefix:...`."""
    return sorted(PLAIN) + sorted(f"{p}:..." for p in _PREFIXED)


def is_dream_name(name: str) -> bool:
    """Whether `name` names the dream env (`dream:<EM_DIR>`), read as `make_env` reads it."""
    prefix, colon, _ = name.partition(":")
    return bool(colon) and prefix == DREAM_PREFIX


def check_env_name(name: str) -> None:
    """Raise what `make_env(name)` raises for a bad name (InputError with did-you-mean; for
    `dream:DIR`, a DIR that is not an experience-model directory; what a real env checks first,
    see `real.check_real_env_name`) without building the env: no browser, no model loaded."""
    prefix, colon, argument = name.partition(":")
    if colon and prefix == DREAM_PREFIX:
        from dreamgym_cli.envs.dream import read_em_settings

        read_em_settings(argument, field="env")
    elif (colon and prefix in PREFIXED) or (not colon and name in PLAIN):
        check_real_env_name(name)
    else:
        raise unknown_name("environment", name, available_envs(), field="env")


def make_env(name: str, **kwargs: Any) -> Env:
    """A new env instance for `name`; InputError (with did-you-mean) for an unknown name."""
    if is_dream_name(name):
        return _dream(name.partition(":")[2], **kwargs)
    return make_real_env(name, known=available_envs(), **kwargs)


def env_for_task(task: Task, **kwargs: Any) -> Env:
    """The env that can reset `task` (by `task.env`)."""
    return make_env(task.env, **kwargs)
