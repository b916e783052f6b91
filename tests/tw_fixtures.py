"""TextWorld fixtures shared by the textworld/tasks/collect tests (import the fixtures you use).

Games are generated into the session's DREAMGYM_HOME (shared by xdist workers; generation is
locked and cached). Between runs they are kept in pytest's cache directory (.pytest_cache) and
copied into DREAMGYM_HOME first, so only the first run pays 1-5 s per game; the tests that are
about generation itself generate into their own empty directories.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from dreamgym_cli.schema import Task

GAME_FILES = ("*.ni", "*.json", "*.z8")  # copy order: a present .z8 means a complete game


def _copy_games(src: Path, dst: Path) -> None:
    """Copy the complete games under src that dst lacks (atomically, file by file)."""
    for pattern in GAME_FILES:
        for path in sorted(src.rglob(pattern)):
            rel = path.relative_to(src)
            target = dst / rel
            if any(part.startswith(".") for part in rel.parts) or target.exists():
                continue
            if not path.with_suffix(".z8").is_file():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.copy-{os.getpid()}")
            shutil.copyfile(path, tmp)
            os.replace(tmp, target)


@pytest.fixture(scope="session")
def tw_games(request, dreamgym_home) -> Path:
    """DREAMGYM_HOME/games, prefilled from (and saved back to) the cross-run pytest cache."""
    import textworld

    games = dreamgym_home / "games"
    kept = Path(request.config.cache.mkdir(f"dreamgym-games-tw{textworld.__version__}"))
    _copy_games(kept, games)
    yield games
    _copy_games(games, kept)


def make_task_file(out: Path, challenge: str = "tw-simple", seeds: str = "1-3",
                   settings: str | None = None, split: str = "test") -> list[Task]:
    from dreamgym_cli.stages import tasks
    from dreamgym_cli.trajectories import read_tasks

    tasks.make(tasks.MakeConfig(env="textworld", out=out, seeds=seeds, split=split,
                                challenge=challenge, settings=settings))
    return read_tasks(out)


@pytest.fixture(scope="session")
def tw_simple_file(tmp_path_factory, tw_games) -> Path:
    """A task file of tw-simple seeds 1-3 (split test), games cached under DREAMGYM_HOME."""
    out = tmp_path_factory.mktemp("tw") / "T.parquet"
    make_task_file(out)
    return out


@pytest.fixture(scope="session")
def tw_simple_tasks(tw_simple_file) -> list[Task]:
    from dreamgym_cli.trajectories import read_tasks

    return read_tasks(tw_simple_file)
