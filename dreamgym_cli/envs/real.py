"""Real environments by name: the adapters `make_env` builds for a plain or `agentgym:` name.

Split from `registry.py` so the dream env can reset a task's real env (to learn its initial state)
without importing the registry that builds the dream env itself. Each factory imports its adapter
only when called; nothing registers itself. Callers outside `envs/` use `registry.make_env`, or
`registry.check_env_name` to check a name without building its env (`check_real_env_name` here).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dreamgym_cli.envs.base import Env
from dreamgym_cli.errors import unknown_name


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
PLAIN: dict[str, Callable[..., Env]] = {
    "textworld": _textworld,
    "miniwob": _miniwob,
    "scienceworld": _scienceworld,
    "babyai": _babyai,
    "webarena": lambda **kw: __import__("dreamgym_cli.envs.webarena").envs.webarena.make(**kw),
    "alfworld": lambda **kw: __import__("dreamgym_cli.envs.alfworld").envs.alfworld.make(**kw),
}

# prefix -> factory(argument, **kwargs), for names written `prefix:argument`
PREFIXED: dict[str, Callable[..., Env]] = {
    "agentgym": lambda a, **kw: __import__("dreamgym_cli.envs.agentgym").envs.agentgym.make(a, **kw),
}


def _webarena_prerequisites() -> None:
    from dreamgym_cli.envs.webarena import check_webarena_urls

    check_webarena_urls()


def _alfworld_prerequisites() -> None:
    from dreamgym_cli.envs.alfworld import data_dir

    data_dir()


def _agentgym_argument(argument: str) -> None:
    from dreamgym_cli.envs.agentgym import PREFIX, parse_env_name

    parse_env_name(f"{PREFIX}:{argument}")


# name -> what its env checks first when built (an env var, a data directory), checked the same
# way without building it; names missing here need nothing before they are built
PLAIN_CHECKS: dict[str, Callable[[], None]] = {
    "webarena": _webarena_prerequisites,
    "alfworld": _alfworld_prerequisites,
}

# prefix -> check(argument): the argument is well formed (the server is not contacted)
PREFIXED_CHECKS: dict[str, Callable[[str], None]] = {"agentgym": _agentgym_argument}


def real_env_names() -> list[str]:
    """Every accepted real-env name; prefixed forms shown as `prefix:...`."""
    return sorted(PLAIN) + sorted(f"{p}:..." for p in PREFIXED)


def make_real_env(name: str, *, known: list[str] | None = None, **kwargs: Any) -> Env:
    """A new real env for `name`; InputError (with did-you-mean among `known`, by default the
    real-env names) for a name that is not one."""
    prefix, colon, argument = name.partition(":")
    if colon and prefix in PREFIXED:
        return PREFIXED[prefix](argument, **kwargs)
    if not colon and name in PLAIN:
        return PLAIN[name](**kwargs)
    raise unknown_name("environment", name, known or real_env_names(), field="env")


def check_real_env_name(name: str) -> None:
    """Raise what `make_real_env(name)` raises for a bad name (InputError with did-you-mean; a
    malformed `agentgym:` argument; WebArena's URLs or an ALFWorld data directory missing) without
    building the env: no browser, no game engine, no connection."""
    prefix, colon, argument = name.partition(":")
    if colon and prefix in PREFIXED:
        PREFIXED_CHECKS.get(prefix, lambda _: None)(argument)
    elif not colon and name in PLAIN:
        PLAIN_CHECKS.get(name, lambda: None)()
    else:
        raise unknown_name("environment", name, real_env_names(), field="env")
