"""Helpers for the real-env tests (BabyAI, MiniWoB, ScienceWorld) through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path


def make_and_collect_expert(run_cli, env: str, suite: str, seeds: str, tasks: Path,
                            episodes: Path, *collect_args) -> tuple[dict, dict]:
    """`tasks make` (split test) into `tasks`, then `collect --policy expert` on them into
    `episodes`; both commands must succeed. Their JSON results (made, collected)."""
    code, out, err = run_cli("tasks", "make", "--env", env, "--suite", suite, "--seeds", seeds,
                             "--split", "test", "--out", tasks, "--json")
    assert code == 0, err
    made = json.loads(out)
    code, out, err = run_cli("collect", "--tasks", tasks, "--policy", "expert", *collect_args,
                             "--out", episodes, "--json")
    assert code == 0, err
    return made, json.loads(out)
