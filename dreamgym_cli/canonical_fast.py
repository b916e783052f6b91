"""A columnar reader for canonical trajectory JSONL: the fast path of `dreamgym ingest`.

The per-record reader (`schema.validate_episode` on each parsed line) costs ~40 µs a transition
in Python; this one streams the file through Arrow's JSON reader a block (~16 MiB) at a time and
checks and hashes whole columns of each block. Memory stays bounded by the block, not the file.
It is a fast path only: it raises `Declined` whenever it cannot vouch for the file (a parse or
type error, a missing or null required field, t out of order, an unusual field, a repeated
episode id), possibly after some blocks were yielded; the caller then drops what it took from
the file and reads it record by record, which finds and names the first bad line and field
exactly as before. What it produces equals what the per-record reader produces, content hashes
included (`step_hash`, `episode_hash`), which it spot-checks in every block.
"""

from __future__ import annotations

import binascii
import hashlib
import json
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from dreamgym_cli import trajectory_io
from dreamgym_cli.errors import InputError
from dreamgym_cli.schema import (
    EPISODE_SCHEMA, SCHEMA_VERSION, SOURCES, STEP_SCHEMA, episode_hash, step_hash, validate_task,
)

# JSON bytes parsed and converted at a time: small enough that a block's columns stay in cache
# (4 MiB ran fastest at 1M transitions, with a third of 16 MiB's peak memory). A file with a line
# longer than a block is read whole instead, in blocks of up to trajectory_io.MAX_LINE_BYTES.
BLOCK_BYTES = 4 << 20

_STEP_FIELDS = {"t", "state", "admissible", "action", "next_state", "reward", "done", "success",
                "reasoning", "created_at", "content_hash"}
_EPISODE_FIELDS = {"schema_version", "episode_id", "task", "source", "policy", "return", "success",
                   "length", "created_at", "steps", "task_id", "env"}
_ESCAPES = (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"),
            ("\b", "\\b"), ("\f", "\\f"))
_READ_ERRORS = (pa.ArrowException, InputError, KeyError, TypeError, ValueError, OverflowError,
                IndexError, AssertionError)


class Declined(Exception):
    """The file needs the per-record reader (which will say what is wrong, if anything is)."""


class FastBatch(NamedTuple):
    """One block of a file, converted: new tasks (with their line) and the Arrow rows."""

    tasks: list[tuple[int, dict]]  # (line, validated task row) of tasks new in this block
    episodes: pa.Table  # EPISODE_SCHEMA
    steps: pa.Table  # STEP_SCHEMA


class _FileState:
    """What the blocks of one file must agree on: episode ids, tasks, the time of reading."""

    def __init__(self, env: str | None, source: str | None):
        self.env, self.source = env, source
        self.now = datetime.now(timezone.utc)
        self.episode_ids: set[str] = set()
        self.tasks: dict[str, dict] = {}  # a task's JSON as read -> its validated row


def read(path: Path, *, env: str | None, source: str | None) -> dict[str, Any] | None:
    """The whole file at once: {"tasks": [(line, row)], "episodes": Table, "steps": Table} or None
    (small files and tests; `read_batches` streams)."""
    try:
        batches = list(read_batches(path, env=env, source=source))
    except Declined:
        return None
    return {"tasks": [t for b in batches for t in b.tasks],
            "episodes": pa.concat_tables([b.episodes for b in batches]),
            "steps": pa.concat_tables([b.steps for b in batches])}


def read_batches(path: Path, *, env: str | None, source: str | None) -> Iterator[FastBatch]:
    """The file's blocks, converted and checked; raises Declined (possibly after some blocks)."""
    if trajectory_io.data_suffix(path) == ".parquet":
        raise Declined("parquet")
    state = _FileState(env, source)
    rows = 0
    try:
        for block in _json_blocks(path):
            converted = _convert(block, state, first_line=rows + 1)
            rows += block.num_rows
            yield converted
    except (Declined, *_READ_ERRORS) as e:
        raise Declined(str(e)) from None
    if rows == 0:
        raise Declined("no records")


def _json_blocks(path: Path) -> Iterator[pa.RecordBatch]:
    """Record batches of about BLOCK_BYTES of JSON each, one row per line."""
    done = 0
    try:
        options = pj.ReadOptions(block_size=min(BLOCK_BYTES, trajectory_io.MAX_LINE_BYTES))
        with trajectory_io.open_bytes(path) as stream:
            for batch in pj.open_json(stream, read_options=options):
                done += batch.num_rows
                yield batch
        return
    except pa.ArrowInvalid:
        pass
    # A later block has a field or type the first lacked (the streaming reader keeps the first
    # block's schema), or a line is longer than a block: the whole-file reader unifies the
    # blocks' types. Continue after the rows already given.
    options = pj.ReadOptions(block_size=trajectory_io.MAX_LINE_BYTES)
    with trajectory_io.open_bytes(path) as stream:
        table = pj.read_json(stream, read_options=options)
    yield from table.slice(done).to_batches()


def _convert(batch: pa.RecordBatch, state: _FileState, first_line: int) -> FastBatch:
    names = set(batch.schema.names)
    if not batch.num_rows or not {"episode_id", "task", "steps", "policy"} <= names or \
            names - _EPISODE_FIELDS:
        raise Declined("fields")
    n = batch.num_rows
    col = {name: batch.column(name) for name in names}
    if "schema_version" in col and not pc.all(pc.equal(pc.coalesce(
            col["schema_version"], pa.scalar(SCHEMA_VERSION, col["schema_version"].type)),
            SCHEMA_VERSION)).as_py():
        raise Declined("schema_version")
    ids = _strings(col["episode_id"], nonempty=True)
    new_ids = ids.to_pylist()
    if pc.count_distinct(ids).as_py() != n or not state.episode_ids.isdisjoint(new_ids):
        raise Declined("repeated episode_id")
    state.episode_ids.update(new_ids)
    tasks, task_ids, task_envs = _tasks(col["task"], state, first_line)
    for name, values in (("task_id", task_ids), ("env", task_envs)):
        if name in col and not pc.all(pc.equal(pc.coalesce(col[name], values), values)).as_py():
            raise Declined(name)
    src = col["source"] if "source" in col else pa.nulls(n, pa.string())
    if pa.types.is_null(src.type):
        src = pa.nulls(n, pa.string())
    if state.source is not None:
        src = pc.coalesce(src, pa.scalar(state.source, src.type))
    src = _strings(src)
    if not pc.all(pc.is_in(src, pa.array(SOURCES))).as_py():
        raise Declined("source")
    policy = _strings(col["policy"], nonempty=True)
    fields, parents = _steps(col["steps"])
    lengths = pc.list_value_length(col["steps"])
    if "length" in col and not pc.all(pc.equal(pc.coalesce(
            col["length"].cast(pa.int64()), lengths.cast(pa.int64())), lengths)).as_py():
        raise Declined("length")
    heads = {"episode_id": ids, "task_id": task_ids, "env": task_envs, "source": src,
             "policy": policy}
    steps = _step_columns(fields, parents, heads, state.now)
    episodes = _episode_columns(col, heads, lengths, steps, state.now)
    return FastBatch(tasks, pa.table(episodes, schema=EPISODE_SCHEMA),
                     pa.table(steps, schema=STEP_SCHEMA))


def _strings(arr: pa.Array, nonempty: bool = False) -> pa.Array:
    if not pa.types.is_string(arr.type) or arr.null_count:
        raise Declined("string")
    if nonempty and not pc.all(pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(arr)),
                                          0)).as_py():
        raise Declined("empty string")
    return arr


# ----------------------------------------------------------------------------------------------
# Tasks: each distinct task object is validated once (a block repeats a few tasks many times)


def _tasks(task_col: pa.Array, state: _FileState,
           first_line: int) -> tuple[list[tuple[int, dict]], pa.Array, pa.Array]:
    """Validated task rows new to the file (first line of each) and per-episode task_id/env."""
    if not pa.types.is_struct(task_col.type) or task_col.null_count:
        raise Declined("task")
    group, first = _distinct_rows(task_col)
    rows: list[tuple[int, dict]] = []
    ids, envs = [], []
    for line, task in zip((first + first_line).tolist(), task_col.take(first).to_pylist()):
        task = {k: v for k, v in task.items() if v is not None}  # validate_task drops spec nulls
        if state.env is not None:
            task.setdefault("env", state.env)
        key = json.dumps(task, sort_keys=True, default=str)
        row = state.tasks.get(key)
        if row is None:
            row = state.tasks[key] = validate_task(task, "task.")
            rows.append((line, row))
        ids.append(row["task_id"])
        envs.append(row["env"])
    take = pa.array(group)
    return rows, pa.array(ids, pa.string()).take(take), pa.array(envs, pa.string()).take(take)


def _distinct_rows(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(group of each row, first row of each group), groups numbered in order of appearance.

    Rows of a struct array share a group when all their leaf values and struct validities are
    equal; a list anywhere inside compares the rows' Python values instead.
    """
    try:
        leaves = list(_leaves(arr))
        codes = np.zeros(len(arr), np.int64)
        for leaf in leaves:
            leaf_codes = _codes(leaf)
            codes = np.unique(codes * (int(leaf_codes.max(initial=0)) + 2) + leaf_codes + 1,
                              return_inverse=True)[1].reshape(-1)
    except _ListInside:
        keys: dict[str, int] = {}
        codes = np.fromiter((keys.setdefault(json.dumps(v, sort_keys=True, default=str),
                                             len(keys)) for v in arr.to_pylist()),
                            np.int64, len(arr))
    _, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[inverse.reshape(-1)], first[order]


class _ListInside(Exception):
    """A list-typed column holds a nested list: this block goes to the per-record reader."""


def _leaves(arr: pa.Array) -> Iterator[pa.Array]:
    if pa.types.is_struct(arr.type):
        yield arr.is_valid()
        for child in arr.flatten():
            yield from _leaves(child)
    elif pa.types.is_nested(arr.type) or pa.types.is_dictionary(arr.type):
        raise _ListInside
    else:
        yield arr


def _codes(leaf: pa.Array) -> np.ndarray:
    """A small integer per distinct value (-1 for null)."""
    if pa.types.is_null(leaf.type):
        return np.full(len(leaf), -1, np.int64)
    indices = pc.dictionary_encode(leaf).indices
    codes = indices.to_numpy(zero_copy_only=False)
    if indices.null_count:
        codes = np.where(indices.is_null().to_numpy(zero_copy_only=False), -1, codes)
    return codes.astype(np.int64)


# ----------------------------------------------------------------------------------------------
# Steps and episodes


def _steps(steps_col: pa.Array) -> tuple[dict[str, pa.Array], np.ndarray]:
    if not pa.types.is_list(steps_col.type) or not pa.types.is_struct(steps_col.type.value_type):
        raise Declined("steps")
    if steps_col.null_count:
        raise Declined("steps null")
    flat = pc.list_flatten(steps_col)
    if flat.null_count:
        raise Declined("step null")
    names = {f.name for f in flat.type}
    if names - _STEP_FIELDS or "content_hash" in names:
        raise Declined("step fields")
    fields = {name: flat.field(name) for name in names}
    parents = pc.list_parent_indices(steps_col).to_numpy()
    offsets = steps_col.offsets.to_numpy()
    t = fields.get("t")
    if t is None or not pa.types.is_integer(t.type) or t.null_count:
        raise Declined("t")
    expected = np.arange(len(flat)) - (offsets[parents] - offsets[0])
    if not np.array_equal(t.to_numpy(), expected):
        raise Declined("t order")
    return fields, parents


def _typed(fields: dict[str, pa.Array], name: str, n: int, required: bool) -> pa.Array:
    target = STEP_SCHEMA.field(name).type
    arr = fields.get(name)
    if arr is None:
        if required:
            raise Declined(name)
        return pa.nulls(n, target)
    if required and arr.null_count:
        raise Declined(name)
    if pa.types.is_null(arr.type):
        return pa.nulls(n, target)
    if name in ("state", "action", "next_state", "reasoning") and not pa.types.is_string(arr.type):
        raise Declined(name)
    if name in ("done", "success") and not pa.types.is_boolean(arr.type):
        raise Declined(name)
    if name == "reward":
        if not (pa.types.is_floating(arr.type) or pa.types.is_integer(arr.type)):
            raise Declined(name)
        arr = arr.cast(pa.float64())
        if pc.any(pc.invert(pc.is_finite(arr))).as_py():
            raise Declined(name)
        return arr
    if name == "admissible" and not (pa.types.is_list(arr.type) and (
            pa.types.is_string(arr.type.value_type) or pa.types.is_null(arr.type.value_type))):
        raise Declined(name)
    return arr.cast(target)


def _step_columns(fields: dict[str, pa.Array], parents: np.ndarray, heads: dict[str, pa.Array],
                  now: datetime) -> dict[str, pa.Array]:
    n = len(parents)
    take = pa.array(parents)
    cols = {"episode_id": heads["episode_id"].take(take), "t": fields["t"].cast(pa.int32())}
    for name in ("task_id", "env", "source"):
        cols[name] = heads[name].take(take)
    for name, required in (("state", True), ("admissible", False), ("action", True),
                           ("next_state", True), ("reward", False), ("done", True),
                           ("success", False), ("reasoning", False)):
        cols[name] = _typed(fields, name, n, required)
    cols["policy"] = heads["policy"].take(take)
    cols["created_at"] = _times(fields.get("created_at"), n, now)
    cols["content_hash"] = step_hashes(cols)
    cols["metadata"] = pa.nulls(n, pa.string())
    return cols


def _times(arr: pa.Array | None, n: int, now: datetime) -> pa.Array:
    target = STEP_SCHEMA.field("created_at").type
    if arr is None or pa.types.is_null(arr.type) or arr.null_count == len(arr):
        return pa.array(np.full(n, np.datetime64(now.replace(tzinfo=None), "us")), target)
    if not pa.types.is_string(arr.type):
        raise Declined("created_at")
    parsed = pc.cast(pc.replace_substring(arr, "Z", "+00:00"), target)
    return pc.coalesce(parsed, pa.scalar(now, target))


def _episode_columns(col: dict[str, pa.Array], heads: dict[str, pa.Array], lengths: pa.Array,
                     steps: dict[str, pa.Array], now: datetime) -> dict[str, pa.Array]:
    n = len(heads["episode_id"])
    ends = np.cumsum(lengths.to_numpy(zero_copy_only=False))
    starts = ends - lengths.to_numpy(zero_copy_only=False)
    reward = steps["reward"]
    zero_filled = pc.coalesce(reward, pa.scalar(0.0)).to_numpy()
    sums = np.add.reduceat(zero_filled, starts) if len(reward) else np.zeros(n)
    sums[starts == ends] = 0.0
    unknown = np.add.reduceat(reward.is_null().cast(pa.int8()).to_numpy(), starts) \
        if len(reward) else np.zeros(n)
    unknown[starts == ends] = 0
    computed = pa.array(sums, pa.float64(), mask=unknown > 0)
    given = col.get("return")
    if given is not None and not pa.types.is_null(given.type):
        if not (pa.types.is_floating(given.type) or pa.types.is_integer(given.type)):
            raise Declined("return")
        computed = pc.if_else(given.is_null(), computed, given.cast(pa.float64()))
    success = col.get("success")
    last_success = steps["success"].take(pa.array(np.maximum(ends - 1, 0)))
    last_success = pc.if_else(pa.array(starts == ends), pa.nulls(n, pa.bool_()), last_success)
    if success is None or pa.types.is_null(success.type):
        success = last_success
    elif not pa.types.is_boolean(success.type):
        raise Declined("success")
    else:
        success = pc.if_else(success.is_null(), last_success, success)
    offsets = np.concatenate([[0], ends]).astype(np.int32)
    return {**heads, "return": computed, "success": success, "length": lengths.cast(pa.int32()),
            "created_at": _times(col.get("created_at"), n, now),
            "content_hash": episode_hashes(heads, offsets, steps["content_hash"])}


# ----------------------------------------------------------------------------------------------
# Content hashes over columns: the same JSON text json.dumps writes, built with Arrow string
# kernels in one join per row, then sha256 over slices of the joined buffer


class _Escapes:
    """What escaping a block's text columns found: rows that needed it (spot-checked first), and
    whether a value holds a control character that json.dumps writes as \\u00XX (then the block
    is hashed in Python)."""

    def __init__(self):
        self.rows: set[int] = set()
        self.odd = False


def _escaped(arr: pa.Array, notes: _Escapes, list_offsets: np.ndarray | None = None) -> pa.Array:
    """A JSON string's body for each value (`list_offsets`: arr holds the items of lists)."""
    rows = _rows_with(arr, _needs_escape)
    if not len(rows):
        return arr
    owners = rows if list_offsets is None else \
        np.searchsorted(list_offsets, rows, side="right") - 1
    notes.rows.update(owners[:8].tolist())
    mask = np.zeros(len(arr), bool)
    mask[rows] = True
    needs = pa.array(mask)
    escaped = arr.filter(needs)  # escape only the rows that need it
    notes.odd = notes.odd or bool(len(_rows_with(escaped, _other_control)))
    present = np.bincount(_data_bytes(escaped), minlength=256)
    for old, new in _ESCAPES:  # backslash first; a pass only for a character that occurs
        if present[ord(old)]:
            escaped = pc.replace_substring(escaped, old, new)
    return pc.replace_with_mask(arr, needs, escaped)


def _needs_escape(data: np.ndarray) -> np.ndarray:
    """Bytes json.dumps escapes: '"', backslash and control characters (UTF-8 continuation and
    lead bytes are >= 0x80, so a byte test is exact)."""
    return (data < 0x20) | (data == 0x22) | (data == 0x5C)


def _other_control(data: np.ndarray) -> np.ndarray:
    """Control characters json.dumps writes as \\u00XX (not \\b \\t \\n \\f \\r)."""
    return (data < 0x20) & ((data < 0x08) | (data == 0x0B) | (data > 0x0D))


def _rows_with(arr: pa.Array, test) -> np.ndarray:
    """Indices of the values of a string array holding a byte for which `test` is true."""
    data = _data_bytes(arr)
    if not len(data):
        return np.empty(0, np.int64)
    offsets = _offsets(arr)
    hits = np.flatnonzero(test(data)) + offsets[0]
    return np.unique(np.searchsorted(offsets, hits, side="right") - 1)


def _offsets(arr: pa.Array) -> np.ndarray:
    return np.frombuffer(arr.buffers()[1], np.int32)[arr.offset:arr.offset + len(arr) + 1]


def _data_bytes(arr: pa.Array) -> np.ndarray:
    """The UTF-8 bytes of a string array's values, end to end (a view, no copy)."""
    data_buffer = arr.buffers()[2]
    if data_buffer is None or not len(arr):
        return np.empty(0, np.uint8)
    offsets = _offsets(arr)
    return np.frombuffer(data_buffer, np.uint8)[offsets[0]:offsets[-1]]


def _numbers(arr: pa.Array) -> pa.Array:
    """JSON text of each float as json.dumps writes it (repr), via the distinct values."""
    unique = pc.unique(arr.drop_null())
    texts = pa.array([json.dumps(v) for v in unique.to_pylist()] + ["null"], pa.string())
    index = pc.coalesce(pc.index_in(arr, unique), pa.scalar(len(unique), pa.int32()))
    return texts.take(index)


def _lists(arr: pa.Array, notes: _Escapes) -> pa.Array:
    """JSON text of each list of strings (null for a null list)."""
    values = pc.list_flatten(arr).cast(pa.string())
    if values.null_count:
        raise Declined("null in a list of strings")
    offsets = arr.offsets
    if len(offsets) and offsets[0].as_py():
        offsets = pc.subtract(offsets, offsets[0])
    inner = pa.ListArray.from_arrays(offsets, _escaped(values, notes, offsets.to_numpy()))
    joined = pc.binary_join_element_wise('["', pc.binary_join(inner, '","'), '"]', "")
    empty = pa.array(np.diff(offsets.to_numpy()) == 0)
    return pc.if_else(arr.is_null(), pa.scalar("null"),
                      pc.if_else(empty, pa.scalar("[]"), joined))


def _bools(arr: pa.Array) -> pa.Array:
    return pc.if_else(arr.is_null(), pa.scalar("null"),
                      pc.if_else(pc.coalesce(arr, pa.scalar(False)), pa.scalar("true"),
                                 pa.scalar("false")))


def _sha256_32(texts: pa.Array) -> pa.Array:
    """sha256 hex (its first 32 characters) of each value of a string array without nulls,
    hashed over slices of the array's data buffer."""
    if texts.null_count:
        raise Declined("a value the column-built text cannot hold")
    _, offsets_buffer, data_buffer = texts.buffers()
    bounds = np.frombuffer(offsets_buffer, np.int32)[
        texts.offset:texts.offset + len(texts) + 1].tolist()
    data = memoryview(data_buffer if data_buffer is not None else b"")
    sha = hashlib.sha256
    digests = b"".join([sha(data[a:b]).digest() for a, b in zip(bounds, bounds[1:])])
    hexed = binascii.hexlify(np.frombuffer(digests, np.uint8).reshape(-1, 32)[:, :16].tobytes())
    offsets = np.arange(len(texts) + 1, dtype=np.int32) * 32
    return pa.StringArray.from_buffers(len(texts), pa.py_buffer(offsets.tobytes()),
                                       pa.py_buffer(hexed))


def step_hashes(cols: dict[str, pa.Array]) -> pa.Array:
    """`schema.step_hash` of every row of the step columns, without a Python loop over JSON."""
    notes = _Escapes()
    text = pc.binary_join_element_wise(
        '["', _escaped(cols["task_id"], notes), '","', _escaped(cols["env"], notes), '","',
        _escaped(cols["source"], notes), '",', cols["t"].cast(pa.string()), ',"',
        _escaped(cols["state"], notes), '",', _lists(cols["admissible"], notes), ',"',
        _escaped(cols["action"], notes), '","', _escaped(cols["next_state"], notes), '",',
        _numbers(cols["reward"]), ",", _bools(cols["done"]), ",", _bools(cols["success"]), "]",
        "")
    if notes.odd:  # rare control characters: json.dumps decides
        return pa.array([step_hash(r) for r in _rows(cols, range(len(text)))], pa.string())
    hashes = _sha256_32(text)
    # dedup across paths depends on the hashes agreeing: check rows that needed escaping and a
    # spread of the others against step_hash
    index = sorted(set(_spread(len(hashes), 16)) | set(sorted(notes.rows)[:16]))
    for i, row, got in zip(index, _rows(cols, index), _at(hashes, index)):
        if step_hash(row) != got:
            raise AssertionError(f"column-built content hash differs from step_hash at row {i}")
    return hashes


def episode_hashes(heads: dict[str, pa.Array], offsets: np.ndarray,
                   step_hash_col: pa.Array) -> pa.Array:
    """`schema.episode_hash` of every episode; offsets[i]:offsets[i+1] are episode i's steps."""
    notes = _Escapes()
    names = ("task_id", "env", "source", "policy")
    parts = [_escaped(heads[name], notes) for name in names]
    inner = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets, pa.int32()),
                                                    step_hash_col), '","')
    hashes = pc.if_else(pa.array(np.diff(offsets) == 0), pa.scalar(""),
                        pc.binary_join_element_wise('"', inner, '"', ""))
    text = pc.binary_join_element_wise('["', parts[0], '","', parts[1], '","', parts[2], '","',
                                       parts[3], '",[', hashes, "]]", "")
    if notes.odd:  # rare control characters: json.dumps decides
        return pa.array([episode_hash(dict(zip(names, head)), _hash_rows(step_hash_col, a, b))
                         for head, a, b in zip(zip(*(heads[k].to_pylist() for k in names)),
                                               offsets[:-1].tolist(), offsets[1:].tolist())],
                        pa.string())
    out = _sha256_32(text)
    index = sorted(set(_spread(len(out), 8)) | set(sorted(notes.rows)[:8]))
    for i, got in zip(index, _at(out, index)):
        head = {k: heads[k][i].as_py() for k in names}
        if episode_hash(head, _hash_rows(step_hash_col, offsets[i], offsets[i + 1])) != got:
            raise AssertionError(f"column-built episode hash differs at row {i}")
    return out


def _at(arr: pa.Array, index: list[int]) -> list:
    return arr.take(pa.array(index, pa.int64())).to_pylist()


def _hash_rows(step_hash_col: pa.Array, start, stop) -> list[dict]:
    return [{"content_hash": h} for h in step_hash_col[int(start):int(stop)].to_pylist()]


def _spread(n: int, k: int) -> list[int]:
    """Up to k row indices spread over 0..n-1 (first and last included)."""
    return sorted(set(np.linspace(0, n - 1, num=min(k, n), dtype=int).tolist())) if n else []


def _rows(cols: dict[str, pa.Array], index) -> list[dict]:
    names = ("task_id", "env", "source", "t", "state", "admissible", "action", "next_state",
             "reward", "done", "success")
    taken = {k: cols[k].take(pa.array(list(index), pa.int64())).to_pylist() for k in names}
    return [{k: taken[k][i] for k in names} for i in range(len(taken["t"]))]
