"""Canonical trajectory files and task files: reading (with line-numbered errors) and writing.

Trajectory files hold one episode per record: `.jsonl` (one JSON object per line, see
`schema.py`) or `.parquet` (one row per episode; `task` and `steps` as JSON text columns, so the
file stays readable by any Parquet reader). Task files are `.parquet` (TASK_SCHEMA) or `.jsonl`.

Writers are atomic (`artifacts.atomic_path`); readers validate every record and raise
`InputError` naming the file, the line (or row) and the field.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from dreamgym_cli.artifacts import atomic_path
from dreamgym_cli.errors import InputError
from dreamgym_cli.schema import (
    SCHEMA_VERSION, TASK_SCHEMA, EpisodeRecord, Task, episode_to_json, read_schema_version,
    validate_episode, validate_task,
)

MAX_LINE_BYTES = 64 << 20  # one episode larger than this is almost surely a broken file

_TRAJ_PARQUET_SCHEMA = pa.schema(
    [("schema_version", pa.int32()), ("episode_id", pa.string()), ("record", pa.string())],
    metadata={b"dreamgym.schema_version": str(SCHEMA_VERSION).encode(),
              b"dreamgym.table": b"trajectories"},
)


def _check_readable_file(path: Path) -> None:
    if not path.exists():
        raise InputError("no such file", file=path)
    if path.is_dir():
        raise InputError("is a directory, expected a trajectory file (.jsonl or .parquet)",
                         file=path)


# ----------------------------------------------------------------------------------------------
# JSON lines


def iter_json_lines(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed object) for each non-blank line; InputError on the first bad one."""
    _check_readable_file(path)
    with open(path, "rb") as f:
        lineno = 0
        while True:
            raw = f.readline(MAX_LINE_BYTES + 1)
            if not raw:
                break
            lineno += 1
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]  # a UTF-8 byte-order mark, as some Windows tools write
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                raise InputError(f"line is longer than {MAX_LINE_BYTES >> 20} MiB; expected one "
                                 "episode per line", file=path, line=lineno)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise InputError(f"not UTF-8 (byte {e.start + 1} of the line)", file=path,
                                 line=lineno) from None
            if not text.strip():
                continue
            if lineno == 1 and text.strip() == "[":
                raise InputError("expected one JSON object per line (JSONL), found the start "
                                 "of a JSON list", file=path, line=1)
            try:
                yield lineno, json.loads(text)
            except json.JSONDecodeError as e:
                what = "truncated JSON" if "Unterminated" in e.msg or "Expecting" in e.msg and \
                    e.pos >= len(text.rstrip()) else "not valid JSON"
                raise InputError(f"{what}: {e.msg} at column {e.colno}", file=path,
                                 line=lineno) from None


# ----------------------------------------------------------------------------------------------
# Trajectories


def read_episodes(path: str | Path, *, env: str | None = None,
                  source: str | None = None) -> Iterator[EpisodeRecord]:
    """Validated (task, episode, steps) rows from a canonical .jsonl or .parquet file.

    `env` and `source` fill in records that do not carry one (they never override a value).
    """
    for _, task, episode, steps in read_episodes_numbered(path, env=env, source=source):
        yield EpisodeRecord(task, episode, steps)


def read_episodes_numbered(path: str | Path, *, env: str | None = None, source: str | None = None
                           ) -> Iterator[tuple[int, dict[str, Any], dict[str, Any], list[dict]]]:
    """(line or row number, task, episode, steps) for each record; InputError on the first bad one.

    An empty file and an episode_id seen twice in one file are errors.
    """
    path = Path(path)
    _check_readable_file(path)
    records = parquet_records(path) if path.suffix == ".parquet" else iter_json_lines(path)
    seen: dict[str, int] = {}
    for lineno, obj in records:
        fill_defaults(obj, env=env, source=source)
        try:
            task, episode, steps = validate_episode(obj)
        except InputError as e:
            raise e.at(file=path, line=lineno) from None
        first = seen.setdefault(episode["episode_id"], lineno)
        if first != lineno:
            raise InputError(f"duplicate episode_id {episode['episode_id']!r} (first on line "
                             f"{first})", file=path, line=lineno, field="episode_id")
        yield lineno, task, episode, steps
    if not seen:
        raise InputError("file is empty; expected one episode per line", file=path)


def fill_defaults(obj: Any, *, env: str | None = None, source: str | None = None) -> None:
    """Set `source` on an episode object and `env` on its task where they are missing."""
    if not isinstance(obj, dict):
        return
    if source is not None and obj.get("source") is None:
        obj["source"] = source
    task = obj.get("task")
    if env is not None and isinstance(task, dict) and task.get("env") is None:
        task["env"] = env


def _check_schema_version(schema: pa.Schema, path: Path) -> None:
    version = read_schema_version(schema)
    if version is not None and version != SCHEMA_VERSION:
        raise InputError(f"unknown schema version {version}; this dreamgym reads version "
                         f"{SCHEMA_VERSION}", file=path, field="schema_version")


def parquet_records(path: Path) -> Iterator[tuple[int, Any]]:
    """(row, parsed record) of a canonical trajectory Parquet file."""
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(f"not a readable Parquet file ({e})", file=path) from None
    _check_schema_version(pf.schema_arrow, path)
    if "record" not in pf.schema_arrow.names:
        raise InputError("expected a dreamgym trajectory Parquet file with a 'record' column",
                         file=path)
    row = 0
    for batch in pf.iter_batches(columns=["record"]):
        for text in batch.column(0).to_pylist():
            row += 1
            try:
                yield row, json.loads(text)
            except (json.JSONDecodeError, TypeError) as e:
                raise InputError(f"record is not valid JSON: {getattr(e, 'msg', e)}", file=path,
                                 line=row, field="record") from None


def write_episodes(path: str | Path, records: Iterable[EpisodeRecord]) -> int:
    """Write canonical episodes to .jsonl or .parquet atomically; returns the episode count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with atomic_path(path) as tmp:
        if path.suffix == ".parquet":
            ids, texts = [], []
            for task, episode, steps in records:
                ids.append(episode["episode_id"])
                texts.append(json.dumps(episode_to_json(task, episode, steps), ensure_ascii=False))
            table = pa.table({"schema_version": pa.array([SCHEMA_VERSION] * len(ids), pa.int32()),
                              "episode_id": ids, "record": texts}, schema=_TRAJ_PARQUET_SCHEMA)
            pq.write_table(table, tmp, compression="zstd")
            count = len(ids)
        else:
            with open(tmp, "w", encoding="utf-8") as f:
                for task, episode, steps in records:
                    f.write(json.dumps(episode_to_json(task, episode, steps), ensure_ascii=False))
                    f.write("\n")
                    count += 1
    return count


# ----------------------------------------------------------------------------------------------
# Task files


def read_tasks(path: str | Path) -> list[Task]:
    """Tasks from a .parquet (TASK_SCHEMA) or .jsonl task file, validated, ids unique."""
    path = Path(path)
    _check_readable_file(path)
    rows: list[tuple[int, Any]]
    if path.suffix == ".parquet":
        try:
            table = pq.read_table(path)
        except (pa.ArrowInvalid, OSError) as e:
            raise InputError(f"not a readable Parquet file ({e})", file=path) from None
        _check_schema_version(table.schema, path)
        rows = list(enumerate(table.to_pylist(), start=1))
    else:
        rows = list(iter_json_lines(path))
    if not rows:
        raise InputError("task file is empty", file=path)
    tasks, seen = [], {}
    for lineno, obj in rows:
        try:
            row = validate_task(obj)
        except InputError as e:
            raise e.at(file=path, line=lineno) from None
        first = seen.setdefault(row["task_id"], lineno)
        if first != lineno:
            raise InputError(f"duplicate task_id {row['task_id']!r} (first on line {first})",
                             file=path, line=lineno, field="task_id")
        tasks.append(Task.from_row(row))
    return tasks


def write_tasks(path: str | Path, tasks: Iterable[Task]) -> int:
    """Write tasks to .parquet or .jsonl atomically; returns the task count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [t.to_row() for t in tasks]
    with atomic_path(path) as tmp:
        if path.suffix == ".parquet":
            pq.write_table(pa.Table.from_pylist(rows, schema=TASK_SCHEMA), tmp, compression="zstd")
        else:
            with open(tmp, "w", encoding="utf-8") as f:
                for row in rows:
                    row = dict(row, spec=json.loads(row["spec"]))
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return len(rows)
