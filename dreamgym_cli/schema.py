"""The records (Task, Step, Episode), their Arrow schemas (schema v1) and their validation.

This is the one definition of the data model (DESIGN §4). Everything that reads or writes records
— the canonical trajectory JSONL, the replay store's Parquet segments, envs and stages — goes
through here, so a field is named, typed and checked in exactly one place.

Canonical trajectory JSONL: one episode per line,

    {"schema_version": 1, "episode_id": ..., "task": {Task}, "source": "real", "policy": "expert",
     "return": 1.0, "success": true, "length": 3, "steps": [{Step without the episode fields}, ...]}

Step rows repeat `episode_id`, `task_id`, `env`, `source`, `policy` so that a steps table can be
queried alone; in JSONL they may be omitted from each step and are taken from the episode.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from datetime import datetime, timezone
from collections.abc import Sequence
from typing import Any, NamedTuple

import pyarrow as pa

from dreamgym_cli.errors import InputError

SCHEMA_VERSION = 1
SOURCES = ("real", "synthetic")
SPLITS = ("train", "valid", "test")
ORIGINS = ("seed", "generated")
TIMESTAMP = pa.timestamp("us", tz="UTC")


def _meta(table: str) -> dict[bytes, bytes]:
    return {b"dreamgym.schema_version": str(SCHEMA_VERSION).encode(), b"dreamgym.table": table.encode()}


TASK_SCHEMA = pa.schema(
    [
        pa.field("task_id", pa.string(), nullable=False),
        pa.field("env", pa.string(), nullable=False),
        pa.field("instruction", pa.string(), nullable=False),
        pa.field("spec", pa.string(), nullable=False),  # JSON text the real env needs to reset
        pa.field("split", pa.string(), nullable=False),
        pa.field("origin", pa.string(), nullable=False),
        pa.field("parent_id", pa.string()),
        pa.field("generation", pa.int32(), nullable=False),
    ],
    metadata=_meta("tasks"),
)

STEP_SCHEMA = pa.schema(
    [
        pa.field("episode_id", pa.string(), nullable=False),
        pa.field("t", pa.int32(), nullable=False),
        pa.field("task_id", pa.string(), nullable=False),
        pa.field("env", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("state", pa.string(), nullable=False),
        pa.field("admissible", pa.list_(pa.string())),
        pa.field("action", pa.string(), nullable=False),
        pa.field("next_state", pa.string(), nullable=False),
        pa.field("reward", pa.float64()),  # null = unknown (e.g. AgentGym conversations)
        pa.field("done", pa.bool_(), nullable=False),
        pa.field("success", pa.bool_()),  # null = unknown
        pa.field("reasoning", pa.string()),
        pa.field("policy", pa.string(), nullable=False),
        pa.field("created_at", TIMESTAMP, nullable=False),
        pa.field("content_hash", pa.string(), nullable=False),
        # JSON text: where the transition came from (input format, file, line, the source file's
        # ids and keys we have no column for). Not part of content_hash. Added after v1's first
        # stores: segments without it read as null (DuckDB union_by_name, Arrow promotion).
        pa.field("metadata", pa.string()),
    ],
    metadata=_meta("steps"),
)

EPISODE_SCHEMA = pa.schema(
    [
        pa.field("episode_id", pa.string(), nullable=False),
        pa.field("task_id", pa.string(), nullable=False),
        pa.field("env", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("policy", pa.string(), nullable=False),
        pa.field("return", pa.float64()),  # null = unknown
        pa.field("success", pa.bool_()),  # null = unknown
        pa.field("length", pa.int32(), nullable=False),
        pa.field("created_at", TIMESTAMP, nullable=False),
        pa.field("content_hash", pa.string(), nullable=False),
    ],
    metadata=_meta("episodes"),
)

SCHEMAS = {"tasks": TASK_SCHEMA, "steps": STEP_SCHEMA, "episodes": EPISODE_SCHEMA}
OPTIONAL_COLUMNS = ("metadata",)  # added to v1 later: writers and segments without them are fine
EPISODE_FIELDS_IN_STEP = ("episode_id", "task_id", "env", "source", "policy")


# --------------------------------------------------------------------------------------------
# Records as Python objects (what envs and stages pass around)


@dataclasses.dataclass(frozen=True)
class Task:
    task_id: str
    env: str
    instruction: str
    spec: dict[str, Any]
    split: str = "train"
    origin: str = "seed"
    parent_id: str | None = None
    generation: int = 0

    def to_row(self) -> dict[str, Any]:
        row = dataclasses.asdict(self)
        row["spec"] = json.dumps(self.spec, sort_keys=True)
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "Task":
        spec = row["spec"]
        return cls(
            task_id=row["task_id"],
            env=row["env"],
            instruction=row["instruction"],
            spec=json.loads(spec) if isinstance(spec, str) else dict(spec),
            split=row.get("split") or "train",
            origin=row.get("origin") or "seed",
            parent_id=row.get("parent_id"),
            generation=int(row.get("generation") or 0),
        )


@dataclasses.dataclass(frozen=True)
class Step:
    episode_id: str
    t: int
    task_id: str
    env: str
    source: str
    state: str
    admissible: list[str] | None
    action: str
    next_state: str
    reward: float | None
    done: bool
    success: bool | None
    reasoning: str | None
    policy: str
    created_at: datetime
    metadata: str | None = None  # JSON text (provenance), see STEP_SCHEMA

    def to_row(self) -> dict[str, Any]:
        row = dataclasses.asdict(self)
        row["content_hash"] = step_hash(row)
        return row


@dataclasses.dataclass(frozen=True)
class Episode:
    episode_id: str
    task_id: str
    env: str
    source: str
    policy: str
    return_: float | None
    success: bool | None
    length: int
    created_at: datetime

    def to_row(self, steps: list[dict[str, Any]]) -> dict[str, Any]:
        row = dataclasses.asdict(self)
        row["return"] = row.pop("return_")
        row["content_hash"] = episode_hash(row, steps)
        return row


class EpisodeRecord(NamedTuple):
    """One episode as rows: the one currency between readers, envs, stages and the store.

    A named tuple, so `task, episode, steps = record` and `record[1]` read as they did when
    records were bare `(task, episode, steps)` tuples. `task` is None only where a store's
    episode names a task its tasks table lacks (`ReplayStore.iter_episodes`).
    """

    task: dict[str, Any]  # a Task row (spec as JSON text)
    episode: dict[str, Any]  # an Episode row
    steps: list[dict[str, Any]]  # Step rows, ordered by t


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


# --------------------------------------------------------------------------------------------
# Content hashes (dedup)

_STEP_HASHED = ("task_id", "env", "source", "t", "state", "admissible", "action", "next_state",
                "reward", "done", "success")


def _digest(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def step_hash(step: dict[str, Any]) -> str:
    """Hash of what a transition says (not who recorded it or when)."""
    return _digest([step.get(k) for k in _STEP_HASHED])


def episode_hash(episode: dict[str, Any], steps: list[dict[str, Any]]) -> str:
    """Two episodes with the same task, source, policy and transitions are duplicates."""
    return _digest([episode["task_id"], episode["env"], episode["source"], episode["policy"],
                    [s["content_hash"] for s in steps]])


# --------------------------------------------------------------------------------------------
# Validation: dicts in, normalised dicts out; the first bad field raises InputError(field=...)

_MISSING = object()


def _get(rec: dict, name: str, where: str, *, required: bool, default: Any = None) -> Any:
    value = rec.get(name, _MISSING)
    if value is _MISSING or (value is None and required):
        if required:
            raise InputError("required field is missing" if value is _MISSING else
                             "must not be null", field=f"{where}{name}")
        return default
    return value


def _str(rec, name, where, *, required=True, choices=None, nonempty=False):
    value = _get(rec, name, where, required=required)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InputError(f"expected a string, got {type(value).__name__} {_short(value)}",
                         field=f"{where}{name}")
    if nonempty and not value.strip():
        raise InputError("must not be empty", field=f"{where}{name}")
    if choices is not None and value not in choices:
        raise InputError(f"expected one of {', '.join(choices)}, got {_short(value)}",
                         field=f"{where}{name}")
    return value


def _int(rec, name, where, *, required=True, default=None, minimum=None):
    value = _get(rec, name, where, required=required, default=default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise InputError(f"expected an integer, got {type(value).__name__} {_short(value)}",
                             field=f"{where}{name}")
    if minimum is not None and value < minimum:
        raise InputError(f"expected an integer >= {minimum}, got {value}", field=f"{where}{name}")
    if abs(value) > 2**31 - 1:
        raise InputError(f"integer out of range: {value}", field=f"{where}{name}")
    return value


def _float(rec, name, where, *, required=True):
    value = _get(rec, name, where, required=required)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"expected a number, got {type(value).__name__} {_short(value)}",
                         field=f"{where}{name}")
    value = float(value)
    if not math.isfinite(value):
        raise InputError(f"expected a finite number, got {value}", field=f"{where}{name}")
    return value


def _bool(rec, name, where, *, required=True, default=None):
    value = _get(rec, name, where, required=required, default=default)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise InputError(f"expected true or false, got {type(value).__name__} {_short(value)}",
                         field=f"{where}{name}")
    return value


def _time(rec, name, where) -> datetime:
    value = rec.get(name)
    if value is None:
        return now_utc()
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InputError(f"expected an ISO-8601 time, got {_short(value)}",
                             field=f"{where}{name}") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    raise InputError(f"expected an ISO-8601 time string, got {type(value).__name__}",
                     field=f"{where}{name}")


def _short(value: Any, n: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= n else text[: n - 3] + "..."


def _require_dict(value: Any, field: str) -> dict:
    if not isinstance(value, dict):
        raise InputError(f"expected an object, got {type(value).__name__}", field=field)
    return value


def check_schema_version(rec: dict, where: str = "") -> None:
    version = rec.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise InputError(f"unknown schema version {_short(version)}; this dreamgym reads version "
                         f"{SCHEMA_VERSION} (upgrade dreamgym to read newer files)",
                         field=f"{where}schema_version")


def validate_task(rec: Any, where: str = "") -> dict[str, Any]:
    """A Task row (spec as JSON text) from a dict; raises InputError naming the bad field."""
    rec = _require_dict(rec, where.rstrip(".") or "task")
    spec = _get(rec, "spec", where, required=False, default={})
    if spec is None:  # null is no spec, like every optional field set to null
        spec = {}
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except json.JSONDecodeError as e:
            raise InputError(f"spec is not valid JSON ({e.msg})", field=f"{where}spec") from None
    if not isinstance(spec, dict):
        raise InputError(f"expected an object, got {type(spec).__name__}", field=f"{where}spec")
    spec = _without_nulls(spec)
    _check_spec_paths(spec, f"{where}spec.")
    return {
        "task_id": _str(rec, "task_id", where, nonempty=True),
        "env": _str(rec, "env", where, nonempty=True),
        "instruction": _str(rec, "instruction", where),
        "spec": json.dumps(spec, sort_keys=True),
        "split": _str(rec, "split", where, required=False, choices=SPLITS) or "train",
        "origin": _str(rec, "origin", where, required=False, choices=ORIGINS) or "seed",
        "parent_id": _str(rec, "parent_id", where, required=False),
        "generation": _int(rec, "generation", where, required=False, default=0, minimum=0),
    }


def _without_nulls(value: Any) -> Any:
    """Object keys with null values dropped, at any depth: a null key and an absent key mean the
    same to an env, and columnar readers (Arrow, HF datasets) cannot tell them apart."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


SPEC_PATH_KEYS = ("game", "path", "data_path", "file")


def _check_spec_paths(spec: dict, where: str) -> None:
    """Paths in a task spec are relative to the env's data directory and must stay inside it."""
    for key in SPEC_PATH_KEYS:
        value = spec.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not value:
            raise InputError("expected a relative path string", field=f"{where}{key}")
        parts = value.replace("\\", "/").split("/")
        if value.startswith(("/", "~")) or ":" in parts[0] or ".." in parts:
            raise InputError(f"path {_short(value)} escapes the data directory; expected a "
                             "relative path inside it", field=f"{where}{key}")


def validate_step(rec: Any, episode: dict[str, Any], where: str = "") -> dict[str, Any]:
    """A Step row; episode-level fields missing from the step are taken from `episode`."""
    rec = _require_dict(rec, where.rstrip(".") or "step")
    merged = {k: episode[k] for k in EPISODE_FIELDS_IN_STEP if k in episode}
    merged.update({k: v for k, v in rec.items() if v is not None or k not in merged})
    for k in EPISODE_FIELDS_IN_STEP:
        if k in rec and k in episode and rec[k] != episode[k]:
            raise InputError(f"step says {_short(rec[k])} but its episode says "
                             f"{_short(episode[k])}", field=f"{where}{k}")
    admissible = merged.get("admissible")
    if admissible is not None:
        if not isinstance(admissible, list) or not all(isinstance(a, str) for a in admissible):
            raise InputError("expected a list of strings or null", field=f"{where}admissible")
    row = {
        "episode_id": _str(merged, "episode_id", where, nonempty=True),
        "t": _int(merged, "t", where, minimum=0),
        "task_id": _str(merged, "task_id", where, nonempty=True),
        "env": _str(merged, "env", where, nonempty=True),
        "source": _str(merged, "source", where, choices=SOURCES),
        "state": _str(merged, "state", where),
        "admissible": admissible,
        "action": _str(merged, "action", where),
        "next_state": _str(merged, "next_state", where),
        "reward": _float(merged, "reward", where, required=False),
        "done": _bool(merged, "done", where),
        "success": _bool(merged, "success", where, required=False),
        "reasoning": _str(merged, "reasoning", where, required=False),
        "policy": _str(merged, "policy", where, nonempty=True),
        "created_at": _time(merged, "created_at", where),
    }
    row["content_hash"] = step_hash(row)
    row["metadata"] = _metadata(merged, where)
    return row


def _metadata(rec: dict, where: str) -> str | None:
    """The step's metadata as JSON text: an object (or its JSON text), or null."""
    value = rec.get("metadata")
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise InputError(f"metadata is not valid JSON ({e.msg})",
                             field=f"{where}metadata") from None
    if not isinstance(value, dict):
        raise InputError(f"expected an object or null, got {type(value).__name__}",
                         field=f"{where}metadata")
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def validate_episode(rec: Any, where: str = "") -> EpisodeRecord:
    """One canonical JSONL episode -> (task row, episode row, step rows)."""
    rec = _require_dict(rec, where.rstrip(".") or "episode")
    check_schema_version(rec, where)
    task_rec = _require_dict(_get(rec, "task", where, required=True), f"{where}task")
    task = validate_task(task_rec, f"{where}task.")
    episode_id = _str(rec, "episode_id", where, nonempty=True)
    head = {
        "episode_id": episode_id,
        "task_id": _str(rec, "task_id", where, required=False) or task["task_id"],
        "env": _str(rec, "env", where, required=False) or task["env"],
        "source": _str(rec, "source", where, choices=SOURCES),
        "policy": _str(rec, "policy", where, nonempty=True),
    }
    if head["task_id"] != task["task_id"]:
        raise InputError(f"episode says {head['task_id']!r} but its task says "
                         f"{task['task_id']!r}", field=f"{where}task_id")
    raw_steps = _get(rec, "steps", where, required=True)
    if not isinstance(raw_steps, list):
        raise InputError(f"expected a list, got {type(raw_steps).__name__}", field=f"{where}steps")
    steps = [validate_step(s, head, f"{where}steps[{i}].") for i, s in enumerate(raw_steps)]
    for i, s in enumerate(steps):
        if s["t"] != i:
            raise InputError(f"steps must be numbered 0, 1, 2, ...; expected t={i}, got {s['t']}",
                             field=f"{where}steps[{i}].t")
    rewards = [s["reward"] for s in steps]
    computed_return = None if any(r is None for r in rewards) else float(sum(rewards))
    given_return = _float(rec, "return", where, required=False)
    success = _bool(rec, "success", where, required=False)
    if success is None and steps:
        success = steps[-1]["success"]
    length = _int(rec, "length", where, required=False, default=len(steps), minimum=0)
    if length != len(steps):
        raise InputError(f"length is {length} but the episode has {len(steps)} steps",
                         field=f"{where}length")
    episode = {
        **head,
        "return": given_return if given_return is not None else computed_return,
        "success": success,
        "length": length,
        "created_at": _time(rec, "created_at", where),
    }
    episode["content_hash"] = episode_hash(episode, steps)
    return EpisodeRecord(task, episode, steps)


def episode_record(task: Task, steps: Sequence[dict[str, Any]], *, episode_id: str, source: str,
                   policy: str, success: bool | None = None) -> EpisodeRecord:
    """The store rows of one episode of `task` that an env just ran (collect, the rollout engine
    and the dream env all build them here), validated as `read_episodes` validates a file.

    steps: one dict per step with t, state, admissible, action, next_state, reward, done, success,
    reasoning, created_at (episode fields may be there too; they must agree). The episode's
    return is the sum of the rewards; its success is `success`, else the last step's.
    """
    return validate_episode({"episode_id": episode_id, "task": task.to_row(), "source": source,
                             "policy": policy, "steps": list(steps), "success": success})


def episode_to_json(task: dict, episode: dict, steps: list[dict]) -> dict[str, Any]:
    """The canonical JSONL object for one episode (inverse of validate_episode)."""
    task_obj = dict(task)
    if isinstance(task_obj.get("spec"), str):
        task_obj["spec"] = json.loads(task_obj["spec"])
    out = {"schema_version": SCHEMA_VERSION}
    out.update({k: v for k, v in episode.items() if k != "content_hash"})
    out["created_at"] = _iso(episode["created_at"])
    out["task"] = task_obj
    out["steps"] = [_step_json(s) for s in steps]
    return out


def _step_json(step: dict) -> dict[str, Any]:
    out = {k: (_iso(v) if k == "created_at" else v) for k, v in step.items()
           if k not in EPISODE_FIELDS_IN_STEP and k not in ("content_hash", "metadata")}
    if step.get("metadata") is not None:  # absent, not null: files without it stay as they were
        out["metadata"] = json.loads(step["metadata"])
    return out


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def rows_to_table(table: str, rows: list[dict[str, Any]]) -> pa.Table:
    """Validated rows -> an Arrow table with the v1 schema of `table`."""
    schema = SCHEMAS[table]
    arrow = pa.Table.from_pylist(rows, schema=schema)
    for f in schema:  # Arrow does not enforce nullable=False on construction
        if not f.nullable and arrow.column(f.name).null_count:
            raise ValueError(f"{table}.{f.name} must not be null")
    return arrow


def read_schema_version(schema: pa.Schema) -> int | None:
    meta = schema.metadata or {}
    raw = meta.get(b"dreamgym.schema_version")
    return int(raw) if raw is not None else None
