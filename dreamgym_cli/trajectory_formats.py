"""Trajectory files in other people's formats, read into validated canonical records.

- **canonical**: our JSONL/Parquet (`trajectories.py`).
- **hf**: Hugging Face datasets — a `save_to_disk` directory or parquet/json data files — whose
  rows are canonical episodes (nested `steps`), flat step rows (grouped by `episode_id`, ordered
  by `t`), or AgentGym conversations.
- **agentgym**: AgentGym trajectories (AgentTraj-L and its inference outputs): a JSON list or
  JSONL of `{"item_id": "webshop_6", "conversations": [{"from": "human"|"gpt", "value": ...,
  "loss": ...}], "reward"?: ..., "success"?: ...}`.

Every reader yields `Read` items: a validated (task, episode, steps) with the line (or row) it
came from, or a rejection with its reason (an AgentGym item without any agent turn). Anything
malformed is an `InputError` naming the file, line and field.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from dreamgym_cli import trajectories
from dreamgym_cli.errors import InputError, unknown_name
from dreamgym_cli.schema import SPLITS, validate_episode

FORMATS = ("auto", "canonical", "hf", "agentgym")
HF_DIR_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
TASK_COLUMNS = ("task_id", "env", "instruction", "spec", "split", "origin", "parent_id",
                "generation")


@dataclasses.dataclass
class Read:
    """One record of an input file: an episode, or the reason it was rejected."""

    line: int
    task: dict[str, Any] | None = None
    episode: dict[str, Any] | None = None
    steps: list[dict[str, Any]] | None = None
    rejected: str | None = None


def read_records(path: Path, fmt: str, *, env: str | None = None,
                 source: str | None = None) -> Iterator[Read]:
    """Validated records of `path` in format `fmt` (as returned by `detect_format`)."""
    if fmt == "canonical":
        for line, task, episode, steps in trajectories.read_episodes_numbered(
                path, env=env, source=source):
            yield Read(line, task, episode, steps)
    elif fmt == "agentgym":
        yield from read_agentgym(path, env=env, source=source)
    elif fmt == "hf":
        yield from read_hf(path, env=env, source=source)
    else:
        raise unknown_name("format", fmt, FORMATS[1:], file=path)


# ----------------------------------------------------------------------------------------------
# Format detection


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
    if path.suffix == ".parquet":
        try:
            names = pq.read_schema(path).names
        except (pa.ArrowInvalid, OSError) as e:
            raise InputError(f"not a readable Parquet file ({e})", file=path) from None
        return "canonical" if "record" in names else "hf"
    if path.suffix == ".arrow":
        return "hf"
    return _sniff_json(path)


def _dir_error(path: Path) -> str:
    raise InputError("is a directory, expected a trajectory file (.jsonl, .json, .parquet) or a "
                     "Hugging Face `save_to_disk` directory", file=path)


def _sniff_json(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(4096).lstrip()
        if head.startswith(b"["):
            return "agentgym"
        f.seek(0)
        first = f.readline(trajectories.MAX_LINE_BYTES)
    try:
        obj = json.loads(first)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return "canonical"  # its reader reports the bad line precisely
    if isinstance(obj, dict):
        if "conversations" in obj or "conversation" in obj:
            return "agentgym"
        if "steps" not in obj and "task" not in obj and {"episode_id", "action"} <= obj.keys():
            return "hf"  # flat step rows
    return "canonical"


# ----------------------------------------------------------------------------------------------
# AgentGym conversations

_ROLES = {"human": "human", "user": "human", "system": "human", "gpt": "gpt", "assistant": "gpt"}
_ACKNOWLEDGEMENTS = {"ok", "okay", "sure", "understood", "got it", "ok, i understand"}
_ITEM_ID = re.compile(r"^(?P<env>.+?)_(?P<idx>\d+)$")


def read_agentgym(path: Path, *, env: str | None = None,
                  source: str | None = None) -> Iterator[Read]:
    """Episodes from an AgentGym JSON list or JSONL file (see `agentgym_episode`)."""
    count = 0
    for line, item in _json_items(path):
        count += 1
        try:
            rec, reason = agentgym_episode(item, env=env, source=source)
            if rec is None:
                yield Read(line, rejected=reason)
                continue
            task, episode, steps = validate_episode(rec)
        except InputError as e:
            raise e.at(file=path, line=line) from None
        yield Read(line, task, episode, steps)
    if count == 0:
        raise InputError("file has no items; expected AgentGym trajectories", file=path)


def _json_items(path: Path) -> Iterator[tuple[int, Any]]:
    """(line, item) of a JSON list file, or of each line of a JSONL file."""
    trajectories._check_readable_file(path)
    with open(path, "rb") as f:
        head = f.read(4096).lstrip()
    if not head.startswith(b"["):
        yield from trajectories.iter_json_lines(path)
        return
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"not UTF-8 (byte {e.start + 1} of the file)", file=path,
                         line=data.count(b"\n", 0, e.start) + 1) from None
    decoder = json.JSONDecoder()
    lines = _LineCounter(text)
    pos = text.index("[") + 1
    while True:
        start = _skip_ws(text, pos)
        if start < len(text) and text[start] == "]":
            if _skip_ws(text, start + 1) != len(text):
                raise InputError("unexpected text after the closing ']'", file=path,
                                 line=lines.at(start))
            return
        try:
            item, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError as e:
            what = "truncated JSON" if e.pos >= len(text.rstrip()) else "not valid JSON"
            raise InputError(f"{what}: {e.msg}", file=path, line=e.lineno) from None
        yield lines.at(start), item
        pos = _skip_ws(text, end)
        if pos < len(text) and text[pos] == ",":
            pos += 1
        elif pos >= len(text) or text[pos] != "]":
            raise InputError("truncated JSON: expected ',' or ']' after an item", file=path,
                             line=lines.at(min(pos, len(text))))


class _LineCounter:
    """Line numbers of increasing offsets in a text, counted incrementally."""

    def __init__(self, text: str):
        self.text, self.offset, self.line = text, 0, 1

    def at(self, offset: int) -> int:
        self.line += self.text.count("\n", self.offset, offset)
        self.offset = offset
        return self.line


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def agentgym_episode(item: Any, *, env: str | None = None,
                     source: str | None = None) -> tuple[dict | None, str | None]:
    """A canonical episode object from one AgentGym item, or (None, why it was rejected).

    The human turns before the first agent action are the prompt; the last of them is the first
    observation (in AgentGym it carries the task: "WebShop [SEP] Instruction: ..."), used as the
    task instruction and the first state. Each agent (`gpt`) turn is an action — its text after
    the last "Action:" when it is in ReAct form — and the human turns after it are the next
    observation. Where a conversation marks turns with `loss`, only `loss: true` agent turns are
    actions (the "Ok." acknowledgement of the system prompt has `loss: false`). The reward is
    unknown unless the item gives `reward` (then it is the last step's reward and the return);
    unknown rewards are stored as null.
    """
    if not isinstance(item, dict):
        raise InputError(f"expected an object, got {type(item).__name__}", field="item")
    item_id = item.get("item_id")
    if isinstance(item_id, int) and not isinstance(item_id, bool):
        item_id = str(item_id)
    if not isinstance(item_id, str) or not item_id.strip():
        raise InputError("expected a non-empty string id like 'webshop_6'", field="item_id")
    key = "conversations" if "conversations" in item else "conversation"
    turns = _turns(item.get(key), key)
    actions = _action_turns(turns)
    if not actions:
        return None, f"item {item_id!r} has no agent (gpt) turn"
    prompt = [value for role, value, _ in turns[: actions[0]] if role == "human"]
    if not prompt:
        raise InputError("expected a human turn (the task and first observation) before the "
                         "first agent turn", field=f"{key}[{actions[0]}].from")
    reward, success = _outcome(item)
    states = [prompt[-1]]
    for k, i in enumerate(actions):
        end = actions[k + 1] if k + 1 < len(actions) else len(turns)
        states.append("\n\n".join(v for role, v, _ in turns[i + 1:end] if role == "human"))
    last = len(actions) - 1
    steps = [{"t": k, "state": states[k], "action": _action_text(turns[i][1]),
              "next_state": states[k + 1], "admissible": None,
              "reward": reward if k == last else None, "done": k == last,
              "success": success if k == last else (None if success is None else False)}
             for k, i in enumerate(actions)]
    env_name, spec = _env_and_spec(item_id, env)
    digest = hashlib.sha256(json.dumps([turns, reward, success]).encode()).hexdigest()[:12]
    return {
        "schema_version": item.get("schema_version", 1),
        "episode_id": str(item.get("episode_id") or f"{item_id}-{digest}"),
        "task": {"task_id": item_id, "env": env_name, "instruction": prompt[-1], "spec": spec},
        "source": item.get("source") or source or "real",
        "policy": str(item.get("policy") or item.get("model") or "agentgym"),
        "return": reward,
        "success": success,
        "steps": steps,
    }, None


def _turns(raw: Any, key: str) -> list[tuple[str, str, bool | None]]:
    if not isinstance(raw, list):
        raise InputError(f"expected a list of turns, got {type(raw).__name__}", field=key)
    turns = []
    for i, turn in enumerate(raw):
        where = f"{key}[{i}]"
        if not isinstance(turn, dict):
            raise InputError(f"expected an object, got {type(turn).__name__}", field=where)
        role = _ROLES.get(turn.get("from"))
        if role is None:
            raise InputError(f"expected 'human' or 'gpt', got {turn.get('from')!r}",
                             field=f"{where}.from")
        value = turn.get("value")
        if not isinstance(value, str):
            raise InputError(f"expected a string, got {type(value).__name__}",
                             field=f"{where}.value")
        loss = turn.get("loss")
        if loss is not None and not isinstance(loss, bool):
            raise InputError(f"expected true, false or null, got {loss!r}", field=f"{where}.loss")
        turns.append((role, value, loss))
    return turns


def _action_turns(turns: list[tuple[str, str, bool | None]]) -> list[int]:
    if any(role == "gpt" and loss is not None for role, _, loss in turns):
        return [i for i, (role, _, loss) in enumerate(turns) if role == "gpt" and loss]
    return [i for i, (role, value, _) in enumerate(turns) if role == "gpt" and not (
        i == 1 and value.strip().rstrip(".!").lower() in _ACKNOWLEDGEMENTS)]


def _action_text(value: str) -> str:
    head, sep, tail = value.rpartition("Action:")
    return tail.strip() if sep and tail.strip() else value.strip()


def _outcome(item: dict) -> tuple[float | None, bool | None]:
    reward = item.get("reward")
    if reward is not None and (isinstance(reward, bool) or not isinstance(reward, (int, float))):
        raise InputError(f"expected a number, got {type(reward).__name__}", field="reward")
    success = item.get("success")
    if success in (0, 1) and not isinstance(success, bool):
        success = bool(success)
    if success is not None and not isinstance(success, bool):
        raise InputError(f"expected true/false or 0/1, got {success!r}", field="success")
    if success is None and reward is not None:
        success = reward >= 1.0  # AgentGym counts an episode as solved when its reward is 1
    return (None if reward is None else float(reward)), success


def _env_and_spec(item_id: str, env: str | None) -> tuple[str, dict[str, Any]]:
    match = _ITEM_ID.match(item_id)
    spec: dict[str, Any] = {"item_id": item_id}
    if match:
        spec["data_idx"] = int(match["idx"])
    if env:
        return env, spec
    if not match:
        raise InputError(f"cannot tell the env from item_id {item_id!r} (expected "
                         "'<env>_<index>'); pass --env", field="item_id")
    return match["env"], spec


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
    if names & {"conversations", "conversation"}:
        for i, item in enumerate(_pylist(table), start=1):
            try:
                rec, reason = agentgym_episode(item, env=env, source=source)
                if rec is None:
                    yield Read(i, rejected=reason)
                    continue
                yield Read(i, *validate_episode(rec))
            except InputError as e:
                raise e.at(file=path, line=i) from None
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
                try:
                    row = json.loads(row["record"])
                except json.JSONDecodeError as e:
                    raise InputError(f"record is not valid JSON: {e.msg}", field="record") from None
            if isinstance(row.get("task"), str):
                try:
                    row["task"] = json.loads(row["task"])
                except json.JSONDecodeError as e:
                    raise InputError(f"task is not valid JSON: {e.msg}", field="task") from None
            if row.get("task") is None:
                row["task"] = _task_from_columns(row, split)
            _clean_task(row["task"], split)
            trajectories.fill_defaults(row, env=env, source=source)
            task, episode, steps = validate_episode(row)
        except InputError as e:
            raise e.at(file=path, line=i) from None
        first = seen.setdefault(episode["episode_id"], i)
        if first != i:
            raise InputError(f"duplicate episode_id {episode['episode_id']!r} (first in row "
                             f"{first})", file=path, line=i, field="episode_id")
        yield Read(i, task, episode, steps)


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
        raise InputError(e.message, file=path, line=line,
                         field=step[2] if step else e.field) from None
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
