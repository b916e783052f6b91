"""Synthetic transitions for store tests and benchmarks (no environment needed).

Texts are deterministic in (prefix, episode, step) and shaped like small text-game states, so
sizes and compression are in the range real TextWorld data gives.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa

from dreamgym_cli.schema import SCHEMA_VERSION, episode_hash, rows_to_table, step_hash

_CREATED = datetime(2025, 1, 1, tzinfo=timezone.utc)
_ROOMS = ("kitchen", "cellar", "attic", "garden", "study", "hall", "pantry", "bedroom")
_VERBS = ("go north", "go south", "take key", "open chest", "eat apple", "look", "inventory")


def _state(i: int, t: int, width: int) -> str:
    room = _ROOMS[(i + t) % len(_ROOMS)]
    text = (f"-= {room.title()} =- You are in the {room}. Episode {i} step {t}. "
            f"You see a chest, a key and an apple. Exits: north, south. Inventory: coin {t}.")
    return (text * (1 + width // len(text)))[:width]


def task_object(i: int, env: str = "synthetic", n_tasks: int = 50) -> dict[str, Any]:
    k = i % n_tasks
    return {"task_id": f"{env}-task-{k}", "env": env, "instruction": f"Find the key number {k}.",
            "spec": {"seed": k}, "split": "train"}


def episode_object(i: int, steps: int = 10, *, env: str = "synthetic", source: str = "real",
                   prefix: str = "ep", state_chars: int = 200) -> dict[str, Any]:
    """One canonical JSONL episode object (as `schema.episode_to_json` writes them)."""
    won = i % 3 == 0
    return {
        "schema_version": SCHEMA_VERSION, "episode_id": f"{prefix}-{i}", "source": source,
        "policy": "synthetic", "task": task_object(i, env),
        "steps": [{"t": t, "state": _state(i, t, state_chars), "admissible": list(_VERBS[:4]),
                   "action": _VERBS[(i * 7 + t) % len(_VERBS)],
                   "next_state": _state(i, t + 1, state_chars),
                   "reward": 1.0 if won and t == steps - 1 else 0.0, "done": t == steps - 1,
                   "success": won and t == steps - 1} for t in range(steps)],
    }


def write_jsonl(path: str | Path, episodes: int, steps: int = 10, start: int = 0, **kw) -> int:
    """Write `episodes` canonical episodes to a JSONL file; returns the number of transitions."""
    with open(path, "w", encoding="utf-8") as f:
        for i in range(start, start + episodes):
            f.write(json.dumps(episode_object(i, steps, **kw)) + "\n")
    return episodes * steps


def arrow_batches(total_steps: int, steps: int = 10, batch_steps: int = 50_000, *,
                  env: str = "synthetic", source: str = "real", prefix: str = "ep",
                  state_chars: int = 200) -> Iterator[tuple[pa.Table, pa.Table, pa.Table]]:
    """(tasks, episodes, steps) Arrow tables with the v1 schemas, `batch_steps` steps each."""
    per_batch = max(1, batch_steps // steps)
    n_episodes = total_steps // steps
    seen_tasks: set[str] = set()
    for first in range(0, n_episodes, per_batch):
        task_rows, episode_rows, step_rows = [], [], []
        for i in range(first, min(n_episodes, first + per_batch)):
            obj = episode_object(i, steps, env=env, source=source, prefix=prefix,
                                 state_chars=state_chars)
            task = dict(obj["task"], spec=json.dumps(obj["task"]["spec"], sort_keys=True),
                        origin="seed", parent_id=None, generation=0)
            if task["task_id"] not in seen_tasks:
                seen_tasks.add(task["task_id"])
                task_rows.append(task)
            head = {"episode_id": obj["episode_id"], "task_id": task["task_id"], "env": env,
                    "source": source, "policy": "synthetic"}
            rows = []
            for s in obj["steps"]:
                row = dict(head, **s, reasoning=None, created_at=_CREATED)
                row["content_hash"] = step_hash(row)
                rows.append(row)
            episode = dict(head, length=steps, created_at=_CREATED,
                           success=obj["steps"][-1]["success"],
                           **{"return": sum(s["reward"] for s in obj["steps"])})
            episode["content_hash"] = episode_hash(episode, rows)
            episode_rows.append(episode)
            step_rows += rows
        yield (rows_to_table("tasks", task_rows), rows_to_table("episodes", episode_rows),
               rows_to_table("steps", step_rows))
