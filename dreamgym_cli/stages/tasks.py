"""`dreamgym tasks make`: generate tasks for a real env and write a task file.

TextWorld games are generated offline and cached by challenge + settings + seed (see
`envs.textworld_games`), so a second `tasks make` over the same seeds generates nothing. The task
file is a stage artifact (`<out>.manifest.json` beside it): an unchanged re-run is skipped.

    dreamgym tasks make --env textworld --challenge tw-simple --seeds 1-3 --split test \
        --out T.parquet
    dreamgym tasks make --env miniwob --suite click-button,click-link,enter-text --seeds 1-3 \
        --split test --out W.parquet

MiniWoB, ScienceWorld and BabyAI are suite-based: `--suite` names their tasks and each env module
builds the tasks itself (`make_tasks`), reading each task's instruction from the real env.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dreamgym_cli import artifacts
from dreamgym_cli.config import option, to_dict
from dreamgym_cli.envs.base import check_step_limit
from dreamgym_cli.errors import InputError, unknown_name
from dreamgym_cli.schema import SPLITS, Task
from dreamgym_cli.ui import counter_progress

# Suite-based envs: --suite names their tasks/levels, --seeds their seeds (ScienceWorld: variation
# indices); each env module provides `make_tasks(suite, seeds, split, max_steps, advance)`.
SUITE_ENVS = {
    "miniwob": "dreamgym_cli.envs.miniwob",
    "scienceworld": "dreamgym_cli.envs.scienceworld",
    "babyai": "dreamgym_cli.envs.babyai",
}
TASK_ENVS = ("textworld", "alfworld", *SUITE_ENVS)
MAX_SEEDS = 100_000


@dataclasses.dataclass(frozen=True)
class MakeConfig:
    env: str = option(help="Environment to make tasks for (textworld).")
    out: Path = option(help="Task file to write (.parquet or .jsonl).")
    seeds: str = option("1-10", help="Seeds, e.g. '1-40' or '1,2,5-9'; one task per seed.")
    split: str = option("train", help="Split recorded on every task: train, valid or test.")
    challenge: str | None = option(None, help="TextWorld challenge: tw-simple (default), "
                                   "tw-coin_collector, tw-treasure_hunter, tw-cooking.")
    settings: str | None = option(None, help="Challenge settings, e.g. "
                                  "'rewards=dense,goal=detailed' or 'level=5' or 'cook,cut'.")
    suite: str | None = option(None, help="Comma-separated task names: MiniWoB tasks "
                               "(click-button,...), ScienceWorld tasks (seeds = variations), "
                               "BabyAI level ids (BabyAI-GoToLocal-v0,...).")
    max_steps: int | None = option(None, help="Step limit recorded in each task spec "
                                   "(default: per challenge, 50 for tw-simple).")
    data_dir: Path | None = option(None, help="Where generated games are cached "
                                   "(default: $DREAMGYM_HOME/games).")
    force: bool = option(False, help="Redo even if the task file is up to date.")


def parse_seeds(text: str) -> list[int]:
    """'1-40' or '1,2,5-9' -> sorted unique seeds; InputError on anything else."""
    if not isinstance(text, str) or not text.strip():
        raise InputError("expected seeds like '1-40' or '1,2,5-9', got nothing", field="seeds")
    seeds: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        match = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", part)
        if not match:
            raise InputError(f"expected seeds like '1-40' or '1,2,5-9', got {text!r} "
                             f"(bad part {part!r})", field="seeds")
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) else first
        if last < first:
            raise InputError(f"seed range {part!r} runs backwards", field="seeds")
        if last > 2**31 - 1 or len(seeds) + last - first + 1 > MAX_SEEDS:
            raise InputError(f"too many or too large seeds in {text!r} (at most {MAX_SEEDS} "
                             "seeds, each below 2^31)", field="seeds")
        seeds.update(range(first, last + 1))
    return sorted(seeds)


def _check_config(config: MakeConfig) -> None:
    if config.env.startswith("agentgym:"):
        return _check_common(config)
    if config.env not in TASK_ENVS:
        raise unknown_name("environment for `tasks make`", config.env,
                           (*TASK_ENVS, "agentgym:<name>@<url>"), field="env")
    _check_common(config)


def _check_common(config: MakeConfig) -> None:
    if config.split not in SPLITS:
        raise InputError(f"expected one of {', '.join(SPLITS)}, got {config.split!r}",
                         field="split")
    check_step_limit(config.max_steps)
    if Path(config.out).suffix not in (".parquet", ".jsonl"):
        raise InputError("expected a task file ending in .parquet or .jsonl", file=config.out,
                         field="out")
    if Path(config.out).is_dir():
        raise InputError("is a directory, expected a task file path", file=config.out)


def make(config: MakeConfig) -> dict[str, Any]:
    """Generate (or reuse) the games and write the task file; a JSON-ready summary."""
    _check_config(config)
    if config.env in SUITE_ENVS:
        return _make_suite(config)
    if config.env.startswith("agentgym:"):
        return _make_agentgym(config)
    if config.env == "alfworld":
        return _make_alfworld(config)
    start = time.perf_counter()
    if config.suite:
        raise InputError("--suite is for suite-based envs (miniwob, ...); TextWorld uses "
                         "--challenge and --settings", field="suite")
    from dreamgym_cli.envs.textworld_games import (
        DEFAULT_MAX_STEPS, check_challenge, default_data_dir, normalize_settings, settings_key,
    )

    challenge = check_challenge(config.challenge or "tw-simple")
    settings = normalize_settings(challenge, config.settings)
    seeds = parse_seeds(config.seeds)
    data_dir = Path(config.data_dir).expanduser() if config.data_dir else default_data_dir()
    resolved = dict(to_dict(config), challenge=challenge, settings=settings,
                    max_steps=config.max_steps or DEFAULT_MAX_STEPS[challenge],
                    data_dir=str(data_dir))
    summary = {"out": str(config.out), "env": config.env, "challenge": challenge,
               "settings": settings, "settings_key": settings_key(challenge, settings),
               "split": config.split, "data_dir": str(data_dir)}

    def make_tasks() -> tuple[list[Task], dict[str, Any]]:
        tasks, generated = _textworld_tasks(challenge, settings, seeds, config.split,
                                            resolved["max_steps"], data_dir)
        return tasks, {"generated": generated, "cached": len(tasks) - generated}

    result = _write_task_file(config, start, resolved, summary, make_tasks)
    if result["skipped"]:  # nothing generated: every game of the file is cached
        result.update(generated=0, cached=result.get("count", 0))
    return result


def _write_task_file(config: MakeConfig, start: float, resolved: dict[str, Any],
                     summary: dict[str, Any],
                     make_tasks: Callable[[], tuple[list[Task], dict[str, Any]]]
                     ) -> dict[str, Any]:
    """Write `make_tasks()`'s tasks to `config.out` as a tasks-make artifact (unless it is up to
    date with `resolved`); `summary` with the metrics (count and make_tasks' own), JSON-ready."""
    from dreamgym_cli.trajectories import write_tasks

    key_config = {k: v for k, v in resolved.items() if k != "force"}
    with artifacts.ArtifactRun("tasks-make", config.out, resolved, kind="file",
                               force=config.force, fingerprint_config=key_config) as run:
        if run.up_to_date:
            return {**summary, **run.previous.get("metrics", {}), "skipped": True,
                    "seconds": round(time.perf_counter() - start, 3)}
        tasks, extra = make_tasks()
        write_tasks(run.tmp, tasks)
        metrics = {"count": len(tasks), **extra}
        run.commit(metrics=metrics)
    return {**summary, **metrics, "skipped": False,
            "seconds": round(time.perf_counter() - start, 3)}


def _textworld_tasks(challenge: str, settings: dict[str, Any], seeds: list[int], split: str,
                     max_steps: int, data_dir: Path) -> tuple[list[Task], int]:
    from dreamgym_cli.envs.textworld import task_instruction
    from dreamgym_cli.envs.textworld_games import ensure_game, settings_key

    key = settings_key(challenge, settings)
    tasks, generated = [], 0
    with counter_progress(f"{challenge} games", total=len(seeds)) as advance:
        for seed in seeds:
            rel, made = ensure_game(data_dir, challenge, settings, seed)
            generated += made
            spec = {"challenge": challenge, "settings": settings, "seed": seed, "game": rel,
                    "max_steps": max_steps}
            tasks.append(Task(task_id=f"{challenge}/{key}/seed-{seed}", env="textworld",
                              instruction=task_instruction(data_dir, rel), spec=spec,
                              split=split))
            advance()
    return tasks, generated


def parse_suite(config: MakeConfig) -> list[str]:
    names = [n.strip() for n in (config.suite or "").split(",") if n.strip()]
    if not names:
        raise InputError(f"expected --suite with comma-separated {config.env} task names",
                         field="suite")
    if config.challenge or config.settings:
        raise InputError(f"--challenge/--settings are for TextWorld; {config.env} takes --suite",
                         field="challenge" if config.challenge else "settings")
    if len(set(names)) != len(names):
        raise InputError(f"a task is listed twice in {config.suite!r}", field="suite")
    return names


def _make_suite(config: MakeConfig) -> dict[str, Any]:
    """Tasks for a suite-based env: one per (suite name, seed), instructions read from the env."""
    import importlib

    start = time.perf_counter()
    suite, seeds = parse_suite(config), parse_seeds(config.seeds)
    resolved = dict(to_dict(config), suite=",".join(suite))
    summary = {"out": str(config.out), "env": config.env, "suite": suite, "split": config.split}

    def make_tasks() -> tuple[list[Task], dict[str, Any]]:
        module = importlib.import_module(SUITE_ENVS[config.env])
        with counter_progress(f"{config.env} tasks", total=len(suite) * len(seeds)) as advance:
            return module.make_tasks(suite, seeds, config.split, config.max_steps, advance), {}

    return _write_task_file(config, start, resolved, summary, make_tasks)


def _make_agentgym(config: MakeConfig) -> dict[str, Any]:
    """AgentGym tasks are data indices of the user's server; nothing is contacted here."""
    from dreamgym_cli.envs.agentgym import make_tasks

    start = time.perf_counter()
    summary = {"out": str(config.out), "env": config.env, "split": config.split}
    return _write_task_file(
        config, start, to_dict(config), summary,
        lambda: (make_tasks(config.env, parse_seeds(config.seeds), config.split,
                            config.max_steps), {}))


def _make_alfworld(config: MakeConfig) -> dict[str, Any]:
    """ALFWorld tasks: games of the user's $ALFWORLD_DATA, else dreamgym's own ALFWorld games
    (generated into --data-dir/alfworld/ on first use); seed N is the split's N-th game."""
    import os

    from dreamgym_cli.envs.alfworld import make_tasks

    if config.suite or config.challenge or config.settings:
        raise InputError("ALFWorld takes --seeds and --split (its games: $ALFWORLD_DATA, else "
                         "dreamgym's own)", field="suite" if config.suite else "challenge")
    start = time.perf_counter()
    user_data = os.environ.get("ALFWORLD_DATA") or None
    resolved = dict(to_dict(config), alfworld_data=user_data)
    summary = {"out": str(config.out), "env": config.env, "split": config.split,
               "games": "user" if user_data else "dreamgym"}

    def alfworld_tasks() -> tuple[list[Task], dict[str, Any]]:
        tasks = make_tasks(parse_seeds(config.seeds), config.split, user_data, config.max_steps,
                           Path(config.data_dir).expanduser() if config.data_dir else None)
        return tasks, {"data": tasks[0].spec["data"] if tasks else None}

    return _write_task_file(config, start, resolved, summary, alfworld_tasks)


def render_make(result: dict[str, Any]) -> None:
    from rich.console import Console

    verb = "up to date" if result.get("skipped") else "wrote"
    if result.get("env") == "alfworld":
        Console().print(
            f"{verb} [bold]{result['out']}[/]: {result['count']} alfworld tasks "
            f"({result['games']} games in {result['data']}; split {result['split']}) "
            f"in {result['seconds']:.1f}s", highlight=False, soft_wrap=True)
        return
    if "suite" in result:
        Console().print(
            f"{verb} [bold]{result['out']}[/]: {result['count']} {result['env']} tasks "
            f"({', '.join(result['suite'])}; split {result['split']}) "
            f"in {result['seconds']:.1f}s", highlight=False, soft_wrap=True)
        return
    Console().print(
        f"{verb} [bold]{result['out']}[/]: {result['count']} {result['env']} tasks "
        f"({result['challenge']}, {result['settings_key']}, split {result['split']}); "
        f"games generated {result['generated']}, cached {result['cached']} "
        f"in {result['seconds']:.1f}s", highlight=False, soft_wrap=True)
