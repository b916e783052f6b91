"""TextWorld games: challenge settings, offline generation, and the on-disk game cache.

Games are generated in-process with the challenge's own `make` + `textworld.generator.
compile_game` (what `tw-make` does) and cached by challenge, settings and seed:

    <data_dir>/textworld/<challenge>/<settings-key>/seed-<n>.z8   (+ .json and .ni beside it)

`data_dir` defaults to `$DREAMGYM_HOME/games` (`DREAMGYM_HOME` defaults to `~/.cache/dreamgym`).
Two processes asking for the same game at once (pytest-xdist workers, collect workers) are safe:
one generates into a private temporary directory under a file lock and renames the files into
place (.z8 last, so a .z8 that exists is complete); the other waits and then finds it cached.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dreamgym_cli.errors import InputError, unknown_name

CHALLENGES = ("tw-simple", "tw-coin_collector", "tw-treasure_hunter", "tw-cooking")

# tw-make makes these settings mandatory flags without a default; we pick the easiest/most
# informative value so `--challenge tw-simple` alone works.
REQUIRED_DEFAULTS: dict[str, dict[str, Any]] = {
    "tw-simple": {"rewards": "dense", "goal": "detailed"},
    "tw-coin_collector": {"level": 1},
    "tw-treasure_hunter": {"level": 1},
}

# Step limit written into task specs when the user gives none: tw-simple's walkthrough is ~10
# steps; the others grow with level/rooms.
DEFAULT_MAX_STEPS = {"tw-simple": 50, "tw-coin_collector": 100, "tw-treasure_hunter": 100,
                     "tw-cooking": 100}

GAME_SUFFIXES = (".ni", ".json", ".z8")  # rename order: the .z8 last marks the game complete
MAX_SEED = 2**31 - 1


def default_data_dir() -> Path:
    home = os.environ.get("DREAMGYM_HOME") or "~/.cache/dreamgym"
    return Path(home).expanduser() / "games"


# ----------------------------------------------------------------------------------------------
# Settings: parsed with each challenge's own argparse arguments (its choices, types, defaults)


class _RaisingParser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would print usage and sys.exit(2)
        raise InputError(f"{self.prog} settings: {message}", field="settings")


def check_challenge(challenge: Any, field: str = "challenge") -> str:
    if not isinstance(challenge, str) or challenge not in CHALLENGES:
        raise unknown_name("TextWorld challenge", str(challenge), CHALLENGES, field=field)
    return challenge


def _parser(challenge: str) -> argparse.ArgumentParser:
    import textworld.challenges

    _, _, add_arguments = textworld.challenges.CHALLENGES[challenge]
    parser = _RaisingParser(prog=challenge, add_help=False)
    add_arguments(parser)
    return parser


def _setting_actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {a.dest: a for a in parser._actions if a.option_strings}


def parse_settings_text(text: str) -> dict[str, Any]:
    """'rewards=dense,goal=brief' or 'level=5' or 'cook,cut' (a bare name means true)."""
    out: dict[str, Any] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        key, eq, value = part.partition("=")
        out[key.strip()] = value.strip() if eq else True
    return out


def _truth(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off", ""):
        return False
    raise InputError(f"expected true or false for '{key}', got {value!r}", field="settings")


def normalize_settings(challenge: str, settings: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """Every setting of `challenge` (theirs defaults filled in), checked by its own parser."""
    check_challenge(challenge)
    given = parse_settings_text(settings) if isinstance(settings, str) else dict(settings or {})
    values = dict(REQUIRED_DEFAULTS.get(challenge, {}))
    values.update({str(k).strip().replace("-", "_"): v for k, v in given.items()})
    parser = _parser(challenge)
    actions = _setting_actions(parser)
    argv: list[str] = []
    for key, value in values.items():
        action = actions.get(key)
        if action is None:
            raise unknown_name(f"{challenge} setting", key, actions, field="settings")
        if isinstance(action, argparse._StoreTrueAction):
            if _truth(value, key):
                argv.append(action.option_strings[0])
        elif value is not None:
            argv += [action.option_strings[0], str(value)]
    parsed = vars(parser.parse_args(argv))
    return {dest: parsed[dest] for dest in actions}  # parser order: stable across JSON round trips


def settings_key(challenge: str, settings: Mapping[str, Any]) -> str:
    """A readable, filesystem-safe key naming the settings, e.g. 'rewards=dense,goal=detailed,
    test=false' (None values left out)."""
    normalized = normalize_settings(challenge, settings)

    def fmt(v: Any) -> str:
        return ("true" if v else "false") if isinstance(v, bool) else str(v)

    return ",".join(f"{k}={fmt(v)}" for k, v in normalized.items() if v is not None)


# ----------------------------------------------------------------------------------------------
# Paths inside the data directory


def game_relpath(challenge: str, settings: Mapping[str, Any], seed: int) -> str:
    return f"textworld/{challenge}/{settings_key(challenge, settings)}/seed-{seed}.z8"


def resolve_inside(data_dir: Path, relpath: str, field: str = "spec.game") -> Path:
    """`data_dir/relpath`, refusing anything that resolves outside `data_dir` (symlinks too)."""
    root = Path(data_dir).expanduser().resolve()
    if not isinstance(relpath, str) or not relpath:
        raise InputError("expected a relative path to the game file", field=field)
    target = (root / relpath).resolve()
    if Path(relpath).is_absolute() or not target.is_relative_to(root):
        raise InputError(f"game path {relpath!r} resolves outside the data directory {root}",
                         field=field)
    return target


def game_is_complete(z8: Path) -> bool:
    return z8.is_file() and z8.stat().st_size > 0 and z8.with_suffix(".json").is_file()


def check_seed(seed: Any, field: str = "seed") -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise InputError(f"expected an integer seed in 0..{MAX_SEED}, got {seed!r}", field=field)
    return seed


# ----------------------------------------------------------------------------------------------
# Generation


def ensure_game(data_dir: Path, challenge: str, settings: Mapping[str, Any],
                seed: int) -> tuple[str, bool]:
    """(game path relative to data_dir, whether it was generated now); cached by settings+seed."""
    check_seed(seed)
    settings = normalize_settings(challenge, settings)
    rel = game_relpath(challenge, settings, seed)
    z8 = resolve_inside(data_dir, rel)
    if game_is_complete(z8):
        return rel, False
    z8.parent.mkdir(parents=True, exist_ok=True)
    with open(z8.parent / f".{z8.stem}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes (or the process dies)
        if game_is_complete(z8):  # another process made it while we waited
            return rel, False
        _generate_into(z8, challenge, settings, seed)
    return rel, True


def _generate_into(z8: Path, challenge: str, settings: dict[str, Any], seed: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f".{z8.stem}.tmp-", dir=z8.parent))
    try:
        compiled = Path(generate_game(challenge, settings, seed, tmp / z8.name))
        for suffix in GAME_SUFFIXES:
            part = compiled.with_suffix(suffix)
            if part.is_file():
                os.replace(part, z8.with_suffix(suffix))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def generate_game(challenge: str, settings: dict[str, Any], seed: int, path: Path) -> str:
    """Generate and compile one game at `path` (a .z8 path); returns the compiled file."""
    import textworld
    import textworld.challenges
    from textworld.generator import QuestGenerationError, compile_game

    _, make, _ = textworld.challenges.CHALLENGES[challenge]
    options = textworld.GameOptions()
    options.seeds = seed
    options.path = str(path)
    options.file_ext = ".z8"
    options.force_recompile = True
    try:
        with warnings.catch_warnings():  # tw-cooking plays a draft game: see TextWorldEnv.reset
            warnings.filterwarnings("ignore", message=".*not fully supported")
            game = make(settings=dict(settings), options=options)
    except (ValueError, AssertionError, QuestGenerationError) as e:
        key = settings_key(challenge, settings)
        raise InputError(f"{challenge} cannot make a game with settings '{key}' and seed "
                         f"{seed}: {e}", field="settings") from None
    return compile_game(game, options)


def game_objective(z8: Path) -> str:
    """The game's objective text (what the player is told to do), whitespace collapsed."""
    with open(z8.with_suffix(".json"), encoding="utf-8") as f:
        return " ".join((json.load(f).get("objective") or "").split())
