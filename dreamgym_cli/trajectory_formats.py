"""Trajectory files in the field's formats, read into validated canonical records.

- **canonical**: our JSONL/Parquet (`trajectories.py`, `schema.py`).
- **agentgym**, **agentinstruct**, **eto**, **openai**, **sharegpt**: chat conversations of agent
  trajectories (`conversations.py` maps them; docs/formats.md shows each).
- **hf**: Hugging Face datasets — a `save_to_disk` directory or parquet/json/arrow data files —
  whose rows are canonical episodes (nested `steps`), flat step rows (grouped by `episode_id`,
  ordered by `t`), or conversations.

JSON, JSONL and Parquet files may be compressed (`.gz`, `.zst`); a UTF-8 BOM is skipped
(`trajectory_io.py`). Every reader yields `Read` items: a validated (task, episode, steps) with
the line (or row) it came from, a record with nothing to learn from (`rejected`), or a record's
`InputError` (file, line, field) — the caller stops at it or skips it. Errors that make the rest
of a file unreadable (missing, not Parquet, a truncated JSON list) are raised.
"""

from __future__ import annotations

import dataclasses
import json
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from dreamgym_cli import trajectories, trajectory_io
from dreamgym_cli.conversations import (
    CONVERSATION_FORMATS, TURN_KEYS, conversation_episode, conversation_flavour,
    looks_like_conversation,
)
from dreamgym_cli.errors import InputError, unknown_name
from dreamgym_cli.schema import SPLITS, validate_episode

FORMATS = ("auto", "canonical", "hf", *CONVERSATION_FORMATS)
HF_DIR_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
TASK_COLUMNS = ("task_id", "env", "instruction", "spec", "split", "origin", "parent_id",
                "generation")


@dataclasses.dataclass
class Read:
    """One record of an input file: an episode, why it holds none, or what is wrong with it."""

    line: int
    task: dict[str, Any] | None = None
    episode: dict[str, Any] | None = None
    steps: list[dict[str, Any]] | None = None
    rejected: str | None = None
    error: InputError | None = None


def read_records(path: Path, fmt: str, *, env: str | None = None,
                 source: str | None = None) -> Iterator[Read]:
    """Records of `path` in format `fmt` (as returned by `detect_format`)."""
    if fmt == "canonical":
        yield from read_canonical(path, env=env, source=source)
    elif fmt in CONVERSATION_FORMATS:
        yield from read_conversations(path, fmt, env=env, source=source)
    elif fmt == "hf":
        yield from read_hf(path, env=env, source=source)
    else:
        raise unknown_name("format", fmt, FORMATS[1:], file=path)


def _checked(path: Path, line: int, make) -> Read:
    """Read(line, task, episode, steps) from make(), or Read(line, error=...) naming file+line."""
    try:
        rec = make()
    except InputError as e:
        return Read(line, error=e.at(file=path, line=line))
    if isinstance(rec, str):
        return Read(line, rejected=rec)
    return Read(line, *rec)


# ----------------------------------------------------------------------------------------------
# Format detection


def _new_episode(record: dict[str, Any], env: str | None, source: str | None,
                 seen: dict[str, int], where: int, place: str):
    """(task, episode, steps) of `record` (defaults filled, validated); an episode_id already in
    `seen` (id -> first line/row, updated here) is an InputError naming `place` ('on line')."""
    trajectories.fill_defaults(record, env=env, source=source)
    task, episode, steps = validate_episode(record)
    first = seen.setdefault(episode["episode_id"], where)
    if first != where:
        raise InputError(f"duplicate episode_id {episode['episode_id']!r} (first {place} "
                         f"{first})", field="episode_id")
    return task, episode, steps


def detect_format(path: Path, fmt: str = "auto") -> str:
    """The format to read `path` with; InputError for a missing path or an unusable directory."""
    if fmt not in FORMATS:
        raise unknown_name("format", fmt, FORMATS, field="format")
    if not path.exists():
        raise InputError("no such file", file=path)
    if path.is_dir():
        if any((path / m).is_file() for m in HF_DIR_MARKERS):
            return "hf" if fmt in ("auto", "hf") else _dir_error(path)
        return _dir_error(path)
    if fmt != "auto":
        return fmt
    suffix = trajectory_io.data_suffix(path)
    if suffix == ".parquet":
        return _sniff_parquet(path)
    if suffix == ".arrow":
        return "hf"
    return _sniff_json(path)


def _dir_error(path: Path) -> str:
    raise InputError("is a directory, expected a trajectory file (.jsonl, .json, .parquet, "
                     "optionally .gz/.zst) or a Hugging Face `save_to_disk` directory", file=path)


def _sniff_parquet(path: Path) -> str:
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(f"not a readable Parquet file ({e})", file=path) from None
    names = pf.schema_arrow.names
    if "record" in names:
        return "canonical"
    if set(names) & set(TURN_KEYS) and pf.metadata.num_rows:
        first = next(pf.iter_batches(batch_size=1)).to_pylist()[0]
        return conversation_flavour(first)
    return "hf"


def _sniff_json(path: Path) -> str:
    head = trajectory_io.first_bytes(path, 1 << 20)
    text = head.decode("utf-8", errors="ignore").lstrip()
    if not text:
        return "canonical"  # its reader says the file is empty
    start = 1 if text.startswith("[") else 0
    try:
        first, _ = json.JSONDecoder().raw_decode(text[start:].lstrip())
    except json.JSONDecodeError:
        # unreadable first record: the reader of the file's likely kind reports it precisely
        return "agentgym" if start else "canonical"
    if looks_like_conversation(first):
        return conversation_flavour(first)
    if isinstance(first, dict) and "steps" not in first and "task" not in first and \
            {"episode_id", "action"} <= first.keys():
        return "hf"  # flat step rows
    if isinstance(first, dict) and not ({"steps", "task"} & first.keys()):
        keys = ", ".join(sorted(map(str, first))[:12]) or "none"
        raise InputError(f"cannot tell the format: the first record has keys {keys}; expected "
                         "canonical episodes (task, steps), conversations (conversations or "
                         "messages) or step rows (episode_id, t, action); see --format",
                         file=path, line=1)
    return "canonical"


# ----------------------------------------------------------------------------------------------
# Canonical JSONL / Parquet


def read_canonical(path: Path, *, env: str | None = None,
                   source: str | None = None) -> Iterator[Read]:
    """Canonical episodes; a repeated episode_id in one file is an error of the later record."""
    if trajectory_io.data_suffix(path) == ".parquet":
        records: Iterator[tuple[int, Any]] = trajectories.parquet_records(path)
    else:
        records = trajectory_io.json_items(path)
    seen: dict[str, int] = {}

    def make(obj: Any):
        if isinstance(obj, InputError):
            raise obj
        return _new_episode(obj, env, source, seen, line, "on line")

    count = 0
    for line, obj in records:
        count += 1
        yield _checked(path, line, lambda: make(obj))
    if count == 0:
        raise InputError("file is empty; expected one episode per line", file=path)


# ----------------------------------------------------------------------------------------------
# Conversations (AgentGym, AgentInstruct, ETO, OpenAI messages, ShareGPT)


def read_conversations(path: Path, fmt: str, *, env: str | None = None,
                       source: str | None = None) -> Iterator[Read]:
    """Episodes from a JSON list, JSON object, JSONL or Parquet file of conversations."""
    if trajectory_io.data_suffix(path) == ".parquet":
        items: Iterator[tuple[int, Any]] = _parquet_rows(path)
    else:
        items = trajectory_io.json_items(path)
    count = 0
    for line, item in items:
        count += 1
        yield _conversation_read(path, line, item, fmt, env, source)
    if count == 0:
        raise InputError(f"file has no records; expected {fmt} conversations", file=path)


def _conversation_read(path: Path, line: int, item: Any, fmt: str, env: str | None,
                       source: str | None) -> Read:
    def make():
        if isinstance(item, InputError):
            raise item
        rec, reason = conversation_episode(item, fmt, env=env, source=source,
                                           file_name=path.name, line=line)
        return reason if rec is None else validate_episode(rec)

    return _checked(path, line, make)


def _parquet_rows(path: Path) -> Iterator[tuple[int, Any]]:
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(f"not a readable Parquet file ({e})", file=path) from None
    row = 0
    for batch in pf.iter_batches(batch_size=4096):
        for obj in batch.to_pylist():
            row += 1
            yield row, obj


# ----------------------------------------------------------------------------------------------
# Hugging Face datasets


def read_hf(path: Path, *, env: str | None = None, source: str | None = None) -> Iterator[Read]:
    """Records of a `save_to_disk` directory or a parquet/json/arrow data file."""
    import datasets

    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory(prefix="dreamgym-hf-") as cache:
        for split, table in _hf_tables(path, cache):
            yield from _hf_rows(path, table, split, env=env, source=source)


def _hf_tables(path: Path, cache: str) -> Iterator[tuple[str | None, pa.Table]]:
    import datasets

    try:
        if path.is_dir():
            loaded = datasets.load_from_disk(str(path))
        else:
            builder = {".parquet": "parquet", ".arrow": "arrow"}.get(path.suffix, "json")
            loaded = datasets.load_dataset(builder, data_files=str(path), split="train",
                                           cache_dir=cache)
    except Exception as e:  # datasets raises many types for a bad file; all mean bad input
        message = " ".join(str(e).split())[:300]
        raise InputError(f"cannot load as a Hugging Face dataset ({type(e).__name__}: "
                         f"{message})", file=path) from None
    if isinstance(loaded, datasets.DatasetDict):
        for split, ds in loaded.items():
            yield split, ds.data.table
    else:
        yield None, loaded.data.table


def _hf_rows(path: Path, table: pa.Table, split: str | None, *, env: str | None,
             source: str | None) -> Iterator[Read]:
    names = set(table.column_names)
    if table.num_rows == 0:
        raise InputError("dataset has no rows", file=path)
    if names & set(TURN_KEYS):
        flavour = None
        for i, item in enumerate(_pylist(table), start=1):
            flavour = flavour or (conversation_flavour(item) if isinstance(item, dict)
                                  else "sharegpt")
            yield _conversation_read(path, i, item, flavour, env, source)
    elif names & {"steps", "record"}:
        yield from _hf_episode_rows(path, table, split, env=env, source=source)
    elif {"episode_id", "action"} <= names:
        yield from _hf_step_rows(path, table, split, env=env, source=source)
    else:
        raise InputError("expected columns of episodes (steps, task), of steps (episode_id, t, "
                         "state, action, ...) or AgentGym conversations; found "
                         f"{', '.join(sorted(names))}", file=path)


def _pylist(table: pa.Table, batch: int = 4096) -> Iterator[dict[str, Any]]:
    for rb in table.to_batches(batch):
        yield from rb.to_pylist()


def _hf_episode_rows(path: Path, table: pa.Table, split: str | None, *, env: str | None,
                     source: str | None) -> Iterator[Read]:
    seen: dict[str, int] = {}
    for i, row in enumerate(_pylist(table), start=1):
        try:
            if "record" in row and isinstance(row["record"], str):
                row = _json_column(row, "record")
            if isinstance(row.get("task"), str):
                row["task"] = _json_column(row, "task")
            if row.get("task") is None:
                row["task"] = _task_from_columns(row, split)
            _clean_task(row["task"], split)
            task, episode, steps = _new_episode(row, env, source, seen, i, "in row")
        except InputError as e:
            yield Read(i, error=e.at(file=path, line=i))
            continue
        yield Read(i, task, episode, steps)


def _json_column(row: dict[str, Any], name: str) -> Any:
    try:
        return json.loads(row[name])
    except json.JSONDecodeError as e:
        raise InputError(f"{name} is not valid JSON: {e.msg}", field=name) from None


def _hf_step_rows(path: Path, table: pa.Table, split: str | None, *, env: str | None,
                  source: str | None) -> Iterator[Read]:
    """Flat step rows: grouped by episode_id and ordered by t (rows numbered as in the file)."""
    if "t" not in table.column_names:
        raise InputError("step rows need a 't' column (step index)", file=path, field="t")
    table = table.append_column("__row", pa.array(range(1, table.num_rows + 1), pa.int64()))
    try:
        table = table.sort_by([("episode_id", "ascending"), ("t", "ascending")])
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise InputError(f"cannot order rows by episode_id and t ({e})", file=path) from None
    group: list[dict] = []
    for row in _pylist(table):
        if group and row["episode_id"] != group[0]["episode_id"]:
            yield _episode_from_steps(path, group, split, env=env, source=source)
            group = []
        group.append(row)
    if group:
        yield _episode_from_steps(path, group, split, env=env, source=source)


def _episode_from_steps(path: Path, rows: list[dict], split: str | None, *, env: str | None,
                        source: str | None) -> Read:
    first = rows[0]
    task = _task_from_columns(first, split)
    _clean_task(task, split)
    rec = {"episode_id": first.get("episode_id"), "task": task,
           "source": first.get("source"), "policy": first.get("policy"),
           "steps": [{k: v for k, v in r.items() if k not in TASK_COLUMNS and k != "__row"}
                     for r in rows]}
    trajectories.fill_defaults(rec, env=env, source=source)
    try:
        task, episode, steps = validate_episode(rec)
    except InputError as e:
        step = re.match(r"steps\[(\d+)\]\.(.*)", e.field or "")
        line = rows[int(step[1])]["__row"] if step else first["__row"]
        return Read(first["__row"], error=InputError(e.message, file=path, line=line,
                                                     field=step[2] if step else e.field))
    return Read(first["__row"], task, episode, steps)


def _task_from_columns(row: dict[str, Any], split: str | None) -> dict[str, Any]:
    task = {k: row[k] for k in TASK_COLUMNS if row.get(k) is not None}
    task.setdefault("instruction", "")  # step rows without an instruction: unknown, kept empty
    return task


def _clean_task(task: Any, split: str | None) -> None:
    """Undo what Arrow does to JSON objects: struct fields missing in a row come back as null."""
    if not isinstance(task, dict):
        return
    if isinstance(task.get("spec"), dict):
        task["spec"] = {k: v for k, v in task["spec"].items() if v is not None}
    if task.get("split") is None and split in SPLITS:
        task["split"] = split
