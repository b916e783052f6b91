"""`dreamgym ingest FILES... --store S`: validate trajectory files, then append them to a store.

Two phases, so that bad input never changes the store:

1. **Validate** every record of every file (canonical, HF datasets, and the conversation
   formats of AgentGym, AgentInstruct, ETO, OpenAI fine-tuning and ShareGPT; see
   `trajectory_formats.py`), check tasks against the store and each other, drop episodes seen
   earlier in this run, and spool the normalised rows as Arrow batches in a temporary directory.
   By default the first bad record raises `InputError` (file, line, field) before anything is
   written; with `on_error="skip"` bad records are left out and listed in a rejects file (JSONL:
   file, line, field, reason), written beside the run's manifest unless `rejects` names a path.
2. **Commit** the batches one by one (`ReplayStore.append_arrow`, each atomic, ~`batch_steps`
   transitions). A process killed here leaves only complete, committed batches; running the same
   ingest again skips what is stored (dedup by episode id / content hash) and adds the rest.

Each run appends a record to `S/manifests/ingest-<utc>.json` with the manifest fields of
`artifacts.py`.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from dreamgym_cli import artifacts, canonical_fast
from dreamgym_cli.config import option, to_dict
from dreamgym_cli.errors import InputError, unknown_name
from dreamgym_cli.schema import SOURCES, rows_to_table
from dreamgym_cli.store import AppendResult, ReplayStore
from dreamgym_cli.store.segments import MANIFEST_DIR, is_blank
from dreamgym_cli.trajectory_formats import FORMATS, detect_format, read_records

_TASK_CONTENT = ("env", "instruction", "spec", "split", "origin", "parent_id", "generation")
_SPOOL_TABLES = ("tasks", "episodes", "steps")
ON_ERROR = ("fail", "skip")


@dataclasses.dataclass(frozen=True)
class IngestConfig:
    files: tuple[Path, ...] = option(help="Trajectory files: canonical JSONL/Parquet, HF datasets "
                                     "(save_to_disk dirs, parquet/json files), conversations "
                                     "(AgentGym, AgentInstruct, ETO, OpenAI messages, ShareGPT); "
                                     "JSON/JSONL may be .gz or .zst.")
    store: Path = option(help="Replay store directory (created if missing).")
    format: str = option("auto", help="Input format: auto, canonical, hf, agentgym, "
                         "agentinstruct, eto, openai or sharegpt.")
    env: str | None = option(None, help="Env name for records that carry none (conversations: "
                             "else taken from an id like 'webshop_6').")
    source: str | None = option(None, help="Source (real/synthetic) for records that carry none "
                                "(a free-text source such as ETO's 'human' counts as none and is "
                                "kept in the steps' metadata).")
    on_error: str = option("fail", help="fail: the first bad record stops the run, the store is "
                           "untouched; skip: store the good records, list the bad in a rejects "
                           "file.")
    rejects: Path | None = option(None, help="Rejects file for --on-error skip (default: "
                                  "S/manifests/ingest-<time>-rejects.jsonl).")
    embed: bool = option(False, help="Embed the new transitions for retrieval now.")
    batch_steps: int = option(50_000, help="Transitions per commit: a crash loses at most the "
                              "batch being written.")


@dataclasses.dataclass
class _FileTally:
    path: Path
    format: str
    sha256: str
    episodes_read: int = 0
    steps_read: int = 0
    rejected: int = 0
    rejected_reasons: list[str] = dataclasses.field(default_factory=list)
    rejects: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    duplicate_in_run: int = 0
    result: AppendResult = dataclasses.field(default_factory=AppendResult)

    def report(self) -> dict[str, Any]:
        return {"file": str(self.path), "format": self.format, "episodes_read": self.episodes_read,
                "steps_read": self.steps_read, "episodes_added": self.result.episodes_added,
                "steps_added": self.result.steps_added, "tasks_added": self.result.tasks_added,
                "episodes_duplicate": self.result.episodes_duplicate + self.duplicate_in_run,
                "rejected": self.rejected, "rejected_reasons": self.rejected_reasons[:10]}


def run(config: IngestConfig) -> dict[str, Any]:
    """Validate all inputs, then commit them to the store in batches; returns the report."""
    started = datetime.now(timezone.utc)
    _check_config(config)
    store = _open_existing(config.store)
    tallies = [_FileTally(Path(p), detect_format(Path(p), config.format), "") for p in config.files]
    for tally in tallies:
        tally.sha256 = artifacts.content_hash(tally.path)
    stored_rows = [] if store is None else store.read_table("tasks").to_pylist()
    stored_tasks = {r["task_id"]: tuple(r[k] for k in _TASK_CONTENT) for r in stored_rows}
    with tempfile.TemporaryDirectory(prefix="dreamgym-ingest-") as spool, _progress() as progress:
        batches = _validate_and_spool(tallies, config, stored_tasks, Path(spool), progress)
        store = store or ReplayStore.open(config.store, create=True)
        _commit(store, batches, tallies, progress)
    report = _report(store, tallies)
    rejects = _write_rejects(store, config, tallies, started)
    if rejects is not None:
        report["rejects"] = str(rejects)
    if config.embed:
        report["embed"] = store.embed()
    report["manifest"] = str(_write_manifest(store, config, tallies, report, started))
    return report


def _check_config(config: IngestConfig) -> None:
    if not config.files:
        raise InputError("no input files given", field="files")
    if config.format not in FORMATS:
        raise unknown_name("format", config.format, FORMATS, field="format")
    if config.source is not None and config.source not in SOURCES:
        raise unknown_name("source", config.source, SOURCES, field="source")
    if config.on_error not in ON_ERROR:
        raise unknown_name("on-error", config.on_error, ON_ERROR, field="on_error")
    if config.batch_steps < 1:
        raise InputError(f"expected a positive number, got {config.batch_steps}",
                         field="batch_steps")


def _open_existing(path: Path) -> ReplayStore | None:
    """The store if it exists (checked: schema, not-a-store dirs); None when it is to be made."""
    return None if is_blank(path) else ReplayStore.open(path)


def _progress() -> Progress:
    console = Console(stderr=True)
    # Off when stderr is not a terminal: a log file gets the one-line outcome, not bar frames.
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=True,
                    disable=not console.is_terminal)


# ----------------------------------------------------------------------------------------------
# Phase 1: validate and spool


class _Spool:
    """Validated rows, flushed to Arrow IPC files of about `batch_steps` transitions each."""

    def __init__(self, root: Path, batch_steps: int):
        self.root, self.batch_steps = root, batch_steps
        self.rows: dict[str, list[dict]] = {t: [] for t in _SPOOL_TABLES}
        self.tables: list[tuple[pa.Table, pa.Table, pa.Table]] = []  # fast path, not yet written
        self.table_steps = 0
        self.batches: list[tuple[int, Path, int]] = []  # (file index, batch dir, steps)

    def add_task(self, task: dict) -> None:
        self.rows["tasks"].append(task)

    def add_episode(self, file_index: int, episode: dict, steps: list[dict]) -> None:
        self.rows["episodes"].append(episode)
        self.rows["steps"].extend(steps)
        if len(self.rows["steps"]) >= self.batch_steps:
            self.flush(file_index)

    def add_tables(self, file_index: int, tasks: pa.Table, episodes: pa.Table,
                   steps: pa.Table) -> None:
        """Arrow tables of whole episodes (the fast path, a block of a file at a time); written
        in batches of whole episodes of about `batch_steps` transitions."""
        self.tables.append((tasks, episodes, steps))
        self.table_steps += steps.num_rows
        if self.table_steps >= self.batch_steps:
            self._write_tables(file_index, final=False)

    def _write_tables(self, file_index: int, final: bool) -> None:
        """Write the pending tables as full batches; with `final`, the remainder too."""
        tasks, episodes, steps = (pa.concat_tables(t) for t in zip(*self.tables))
        ends = episodes.column("length").to_numpy().cumsum()
        start_ep = start_step = 0
        while start_ep < episodes.num_rows or tasks.num_rows:
            if not final and steps.num_rows - start_step < self.batch_steps:
                break
            stop_ep = max(start_ep + 1, int((ends <= start_step + self.batch_steps).sum()))
            stop_ep = min(stop_ep, episodes.num_rows)
            stop_step = int(ends[stop_ep - 1]) if stop_ep else 0
            self._write(file_index, {"tasks": tasks, "episodes": episodes.slice(
                start_ep, stop_ep - start_ep), "steps": steps.slice(start_step,
                                                                    stop_step - start_step)},
                        stop_step - start_step)
            tasks = tasks.slice(0, 0)
            start_ep, start_step = stop_ep, stop_step
        rest = (tasks, episodes.slice(start_ep), steps.slice(start_step))
        self.tables = [rest] if rest[0].num_rows or rest[1].num_rows else []
        self.table_steps = rest[2].num_rows

    def _write(self, file_index: int, tables: dict[str, pa.Table], n_steps: int) -> None:
        batch_dir = self.root / f"batch-{len(self.batches):06d}"
        batch_dir.mkdir()
        for name, table in tables.items():
            with pa.OSFile(str(batch_dir / f"{name}.arrow"), "wb") as sink, \
                    pa.ipc.new_file(sink, table.schema) as writer:
                writer.write_table(table)
        self.batches.append((file_index, batch_dir, n_steps))

    def flush(self, file_index: int) -> None:
        if self.tables:
            self._write_tables(file_index, final=True)
        if not self.rows["episodes"] and not self.rows["tasks"]:
            return
        self._write(file_index, {name: rows_to_table(name, rows)
                                 for name, rows in self.rows.items()}, len(self.rows["steps"]))
        self.rows = {t: [] for t in _SPOOL_TABLES}

    def mark(self) -> int:
        """A point to roll back to (call between files: nothing is pending then)."""
        return len(self.batches)

    def rollback(self, mark: int) -> None:
        """Forget everything added since `mark`."""
        for _, batch_dir, _ in self.batches[mark:]:
            shutil.rmtree(batch_dir)
        del self.batches[mark:]
        self.tables, self.table_steps = [], 0


def _validate_and_spool(tallies: list[_FileTally], config: IngestConfig,
                        stored_tasks: dict[str, tuple], spool_dir: Path,
                        progress: Progress) -> list[tuple[int, Path, int]]:
    spool = _Spool(spool_dir, config.batch_steps)
    task_origin: dict[str, tuple[tuple, str]] = {}  # task_id -> (content, "file:line")
    seen_ids: set[str] = set()
    seen_hashes: set[str] = set()
    for index, tally in enumerate(tallies):
        bar = progress.add_task(f"checking {tally.path.name}", total=None)
        if tally.format == "canonical" and _spool_fast(index, tally, config, stored_tasks,
                                                       task_origin, seen_ids, seen_hashes, spool):
            progress.remove_task(bar)
            continue
        for rec in read_records(tally.path, tally.format, env=config.env, source=config.source):
            new_task = False
            if rec.error is None and rec.rejected is None:
                try:
                    new_task = _check_task(rec.task, stored_tasks, task_origin, tally.path,
                                           rec.line)
                except InputError as e:
                    rec.error = e
            if rec.error is not None:
                if config.on_error == "fail":
                    raise rec.error
                _reject(tally, rec.line, rec.error.message, rec.error.field)
                continue
            if rec.rejected is not None:
                _reject(tally, rec.line, rec.rejected, None)
                continue
            tally.episodes_read += 1
            tally.steps_read += len(rec.steps)
            if new_task:
                spool.add_task(rec.task)
            eid, ehash = rec.episode["episode_id"], rec.episode["content_hash"]
            if eid in seen_ids or ehash in seen_hashes:
                tally.duplicate_in_run += 1  # e.g. the same file given twice
                continue
            seen_ids.add(eid)
            seen_hashes.add(ehash)
            spool.add_episode(index, rec.episode, rec.steps)
            if tally.episodes_read % 256 == 0:
                progress.update(bar, completed=tally.episodes_read)
        spool.flush(index)
        progress.remove_task(bar)
    return spool.batches


def _spool_fast(index: int, tally: _FileTally, config: IngestConfig,
                stored_tasks: dict[str, tuple], task_origin: dict[str, tuple[tuple, str]],
                seen_ids: set[str], seen_hashes: set[str], spool: _Spool) -> bool:
    """Spool a canonical JSONL file read column-wise, a block at a time; False (and nothing
    spooled or counted) when it needs the per-record path."""
    mark = spool.mark()
    origin = dict(task_origin)
    new_ids: set[str] = set()
    new_hashes: set[str] = set()
    episodes_read = steps_read = duplicates = 0
    try:
        for batch in canonical_fast.read_batches(tally.path, env=config.env,
                                                 source=config.source):
            new_tasks = [row for line, row in batch.tasks
                         if _check_task(row, stored_tasks, origin, tally.path, line)]
            episodes, steps = batch.episodes, batch.steps
            keep = []
            for eid, ehash in zip(episodes.column("episode_id").to_pylist(),
                                  episodes.column("content_hash").to_pylist()):
                duplicate = (eid in seen_ids or eid in new_ids or ehash in seen_hashes or
                             ehash in new_hashes)
                keep.append(not duplicate)
                new_ids.add(eid)
                new_hashes.add(ehash)
            episodes_read += episodes.num_rows
            steps_read += steps.num_rows
            duplicates += keep.count(False)
            if not all(keep):
                episodes = episodes.filter(pa.array(keep))
                steps = steps.filter(pc.is_in(steps.column("episode_id"),
                                              episodes.column("episode_id")))
            spool.add_tables(index, rows_to_table("tasks", new_tasks), episodes, steps)
        spool.flush(index)
    except (canonical_fast.Declined, InputError):
        spool.rollback(mark)  # the per-record reader names the bad line exactly
        return False
    task_origin.update(origin)
    seen_ids.update(new_ids)
    seen_hashes.update(new_hashes)
    tally.episodes_read += episodes_read
    tally.steps_read += steps_read
    tally.duplicate_in_run += duplicates
    return True


def _reject(tally: _FileTally, line: int, reason: str, field: str | None) -> None:
    tally.rejected += 1
    where = f"line {line}" + (f", field '{field}'" if field else "")
    tally.rejected_reasons.append(f"{where}: {reason}")
    tally.rejects.append({"file": str(tally.path), "line": line, "field": field,
                          "reason": reason})


def _check_task(task: dict, stored: dict[str, tuple], seen: dict[str, tuple[tuple, str]],
                path: Path, line: int) -> bool:
    """True when `task` is new to the store and this run; InputError when its id clashes."""
    content = tuple(task[k] for k in _TASK_CONTENT)
    task_id = task["task_id"]
    previous = stored.get(task_id)
    where = "the store"
    if previous is None and task_id in seen:
        previous, where = seen[task_id]
    if previous is None:
        seen[task_id] = (content, f"{path}:{line}")
        return True
    if previous != content:
        field = next(k for k, a, b in zip(_TASK_CONTENT, previous, content) if a != b)
        raise InputError(f"task {task_id!r} differs from the task with that id in {where} (in "
                         f"its {field}); give a changed task a new task_id", file=path, line=line,
                         field=f"task.{field}")
    return False


# ----------------------------------------------------------------------------------------------
# Phase 2: commit


def _commit(store: ReplayStore, batches: list[tuple[int, Path, int]], tallies: list[_FileTally],
            progress: Progress) -> None:
    bar = progress.add_task(f"storing into {store.path}", total=sum(n for _, _, n in batches))
    for file_index, batch_dir, n_steps in batches:
        tables = {}
        for name in _SPOOL_TABLES:
            with pa.memory_map(str(batch_dir / f"{name}.arrow")) as source:
                tables[name] = pa.ipc.open_file(source).read_all()
        result = store.append_arrow(tables["tasks"], tables["episodes"], tables["steps"])
        tallies[file_index].result += result
        progress.advance(bar, n_steps)
    progress.remove_task(bar)


def _write_rejects(store: ReplayStore, config: IngestConfig, tallies: list[_FileTally],
                   started: datetime) -> Path | None:
    """The rejects file (one JSON object per rejected record), when there is anything in it."""
    rows = [r for t in tallies for r in t.rejects]
    if not rows and config.rejects is None:
        return None
    path = config.rejects or (store.path / MANIFEST_DIR /
                              f"ingest-{started.strftime('%Y%m%dT%H%M%S.%fZ')}-rejects.jsonl")
    path.parent.mkdir(parents=True, exist_ok=True)
    artifacts.write_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def _report(store: ReplayStore, tallies: list[_FileTally]) -> dict[str, Any]:
    files = [t.report() for t in tallies]
    keys = ("episodes_read", "steps_read", "episodes_added", "steps_added", "tasks_added",
            "episodes_duplicate", "rejected")
    return {"store": str(store.path), "files": files,
            "totals": {k: sum(f[k] for f in files) for k in keys}}


def _write_manifest(store: ReplayStore, config: IngestConfig, tallies: list[_FileTally],
                    report: dict[str, Any], started: datetime) -> Path:
    inputs = {"files": [{"path": str(t.path.resolve()), "sha256": t.sha256, "format": t.format}
                        for t in tallies]}
    return artifacts.write_run_record(store.path / MANIFEST_DIR, "ingest", to_dict(config),
                                      report["totals"], inputs=inputs,
                                      outputs=[str(store.path)], started_at=started.isoformat())


# ----------------------------------------------------------------------------------------------
# Rendering


def render(result: dict[str, Any]) -> None:
    console = Console()
    table = Table("file", "format", "episodes", "steps", "added", "duplicate", "rejected",
                  title=f"ingested into {escape(result['store'])}")
    for f in result["files"]:
        table.add_row(escape(Path(f["file"]).name), f["format"], str(f["episodes_read"]),
                      str(f["steps_read"]), f"{f['episodes_added']} ep / {f['steps_added']} steps",
                      str(f["episodes_duplicate"]), str(f["rejected"]))
    console.print(table)
    for f in result["files"]:
        for reason in f["rejected_reasons"]:
            console.print(f"[yellow]rejected[/] {escape(Path(f['file']).name)} {escape(reason)}")
    t = result["totals"]
    console.print(f"{t['episodes_added']} episodes ({t['steps_added']} transitions, "
                  f"{t['tasks_added']} tasks) added; {t['episodes_duplicate']} duplicates skipped;"
                  f" {t['rejected']} rejected")
