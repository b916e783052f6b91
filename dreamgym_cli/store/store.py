"""ReplayStore: a directory of immutable Parquet segments plus a catalog, queried with DuckDB.

    store = ReplayStore.open("S", create=True)
    store.append(tasks, episodes, steps)        # validated rows (schema.validate_*), atomic
    store.append_arrow(tasks_t, episodes_t, steps_t)   # the same from Arrow tables (fast path)
    store.sql("SELECT env, count(*) FROM steps GROUP BY env")   # -> pyarrow.Table
    for task, episode, steps in store.iter_episodes("source = 'real'"): ...

Each append is all or nothing: its segments become visible together when the new catalog
replaces the old one (see `segments.py`). Episodes whose `episode_id` or `content_hash` is
already stored, or whose content hash appeared earlier in the same append, are skipped as
duplicates (and their steps with them); one episode_id twice in one append is an InputError
(its steps could not be told apart). A task whose id is stored with identical content is
skipped, with different content it is an InputError. Transitions are
deduplicated through their episode: two episodes may share an identical transition (the same
start state and first action), and that repetition is real data, not a copy.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import duckdb
import filelock
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dreamgym_cli.errors import InputError
from dreamgym_cli.schema import (
    OPTIONAL_COLUMNS, SCHEMA_VERSION, SCHEMAS, SOURCES, EpisodeRecord, Task, rows_to_table,
)
from dreamgym_cli.store import segments as seg

CORE_TABLES = ("tasks", "episodes", "steps")
DEFAULT_LOCK_TIMEOUT = 300.0  # seconds a writer waits for another one before giving up
_TASK_CONTENT = ("env", "instruction", "spec", "split", "origin", "parent_id", "generation")


class StoreLockedError(RuntimeError):
    """Another writer held the store's lock for longer than the lock timeout."""


@dataclasses.dataclass(frozen=True)
class AppendResult:
    tasks_added: int = 0
    episodes_added: int = 0
    steps_added: int = 0
    episodes_duplicate: int = 0
    tasks_duplicate: int = 0

    def __add__(self, other: "AppendResult") -> "AppendResult":
        return AppendResult(*(a + b for a, b in zip(dataclasses.astuple(self),
                                                    dataclasses.astuple(other))))

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


def _default_lock_timeout() -> float:
    raw = os.environ.get("DREAMGYM_LOCK_TIMEOUT")
    if raw is None:
        return DEFAULT_LOCK_TIMEOUT
    try:
        return float(raw)
    except ValueError:
        raise InputError(f"expected seconds, got {raw!r}", field="DREAMGYM_LOCK_TIMEOUT") from None


class ReplayStore:
    """A replay store directory; use `ReplayStore.open`."""

    def __init__(self, path: Path, lock_timeout: float):
        self._path = path
        self.lock_timeout = lock_timeout
        self._filelock = filelock.FileLock(str(path / seg.LOCK_FILE), timeout=lock_timeout)
        self._lock_depth = 0
        # Dedup keys of committed segments, filled incrementally (segments never change).
        self._loaded_files: set[str] = set()
        self._episode_ids: set[str] = set()
        self._episode_hashes: set[str] = set()
        self._task_content: dict[str, tuple] = {}

    # ------------------------------------------------------------------------------------------
    # Opening, locking

    @classmethod
    def open(cls, path: str | Path, create: bool = False,
             lock_timeout: float | None = None) -> "ReplayStore":
        """Open the store at `path` (creating it when `create`); InputError if it is not one."""
        path = Path(path)
        timeout = _default_lock_timeout() if lock_timeout is None else lock_timeout
        if path.exists() and not path.is_dir():
            raise InputError("is a file, expected a replay store directory", file=path)
        if (path / seg.MARKER).exists():
            seg.read_marker(path)
            return cls(path, timeout)
        if not seg.is_blank(path):
            raise InputError("directory is not empty and is not a replay store (no store.json); "
                             "expected a store directory or a new path", file=path)
        if not create:
            raise InputError("no replay store here (create one with `dreamgym ingest FILE "
                             f"--store {path}`)", file=path)
        path.mkdir(parents=True, exist_ok=True)
        store = cls(path, timeout)
        with store.lock():  # two processes creating the same store: one writes the marker
            if not (path / seg.MARKER).exists():
                seg.write_catalog(path, seg.empty_catalog())
                seg.write_marker(path)
        seg.read_marker(path)
        return store

    @property
    def path(self) -> Path:
        return self._path

    @contextlib.contextmanager
    def lock(self) -> Iterator["ReplayStore"]:
        """Hold the store's write lock (re-entrant). Taking it first removes a crash's leftovers."""
        if self._lock_depth == 0:
            try:
                self._filelock.acquire()
            except filelock.Timeout:
                raise StoreLockedError(
                    f"store {self._path} is locked by another writer (pid {self._holder_pid()}); "
                    f"waited {self.lock_timeout:g} s (set DREAMGYM_LOCK_TIMEOUT to wait longer)"
                ) from None
            try:
                self._record_holder()
                if (self._path / seg.MARKER).exists():
                    seg.remove_uncommitted(self._path, seg.read_catalog(self._path))
            except BaseException:
                self._filelock.release()
                raise
        self._lock_depth += 1
        try:
            yield self
        finally:
            self._lock_depth -= 1
            if self._lock_depth == 0:
                self._filelock.release()

    def _record_holder(self) -> None:
        fd = os.open(self._path / seg.LOCK_FILE, os.O_WRONLY)
        try:
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
        finally:
            os.close(fd)

    def _holder_pid(self) -> str:
        try:
            return (self._path / seg.LOCK_FILE).read_text().strip() or "unknown"
        except OSError:
            return "unknown"

    # ------------------------------------------------------------------------------------------
    # Catalog views

    def catalog(self) -> dict[str, Any]:
        return seg.read_catalog(self._path)

    def tables(self) -> list[str]:
        """Tables with at least one committed segment, core tables first."""
        names = self.catalog()["tables"].keys()
        return [t for t in CORE_TABLES if t in names] + sorted(set(names) - set(CORE_TABLES))

    def segments(self, table: str, catalog: dict | None = None) -> list[Path]:
        """Committed segment files of `table`, oldest first."""
        catalog = catalog or self.catalog()
        return [self._path / s["file"] for s in catalog["tables"].get(table, [])]

    def verify(self) -> list[str]:
        """Problems with committed segments (missing, changed); empty when all is well."""
        return seg.verify_segments(self._path, self.catalog())

    # ------------------------------------------------------------------------------------------
    # Appending

    def append(self, tasks: list[dict], episodes: list[dict], steps: list[dict]) -> AppendResult:
        """Append validated rows (from schema.validate_task/validate_episode); all or nothing."""
        return self.append_arrow(rows_to_table("tasks", tasks), rows_to_table("episodes", episodes),
                                 rows_to_table("steps", steps))

    def append_episodes(self, records: Sequence[EpisodeRecord]) -> AppendResult:
        """Append validated episode records (from schema.validate_episode); all or nothing."""
        return self.append([r.task for r in records], [r.episode for r in records],
                           [s for r in records for s in r.steps])

    def append_arrow(self, tasks: pa.Table | None = None, episodes: pa.Table | None = None,
                     steps: pa.Table | None = None) -> AppendResult:
        """Append Arrow tables with the v1 schemas (extra columns are dropped); all or nothing."""
        tasks, episodes, steps = (_conform(n, t) for n, t in
                                  (("tasks", tasks), ("episodes", episodes), ("steps", steps)))
        _check_values(episodes, steps)
        with self.lock():
            catalog = self.catalog()
            self._load_keys(catalog)
            new_tasks, task_dups = self._new_tasks(tasks)
            keep, episode_dups = self._new_episodes(episodes)
            kept_episodes = episodes.filter(pa.array(keep, pa.bool_()))
            known = set(self._task_content) | set(new_tasks.column("task_id").to_pylist())
            missing = set(kept_episodes.column("task_id").to_pylist()) - known
            if missing:
                raise InputError(f"episodes refer to task(s) {sorted(missing)[:3]} that are "
                                 "neither in the store nor in this append", field="task_id")
            kept_steps = steps if not episode_dups else steps.filter(
                pc.is_in(steps.column("episode_id"), kept_episodes.column("episode_id")))
            new = {"tasks": new_tasks, "episodes": kept_episodes, "steps": kept_steps}
            self._commit(catalog, {k: v for k, v in new.items() if v.num_rows})
        return AppendResult(new_tasks.num_rows, kept_episodes.num_rows, kept_steps.num_rows,
                            episode_dups, task_dups)

    def append_table(self, name: str, table: pa.Table) -> int:
        """Append rows to an extra table (e.g. `embeddings`); no dedup. Returns rows appended."""
        seg.check_table_name(name)
        if name in CORE_TABLES:
            raise ValueError(f"use append()/append_arrow() for the {name} table")
        with self.lock():
            catalog = self.catalog()
            existing = self.segments(name, catalog)
            if existing:
                schema = pq.read_schema(existing[0])
                if not table.schema.equals(schema, check_metadata=False):
                    try:
                        table = table.select(schema.names).cast(schema)
                    except (KeyError, pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                        raise ValueError(f"rows do not fit table {name!r} ({e})") from None
            if table.num_rows:
                self._commit(catalog, {name: table})
        return table.num_rows

    def _commit(self, catalog: dict[str, Any], tables: dict[str, pa.Table]) -> None:
        if not tables:
            return
        catalog = json.loads(json.dumps(catalog))  # a private copy to extend
        for name, table in tables.items():
            entry = seg.write_segment(self._path, name, table, catalog["next_seq"])
            catalog["next_seq"] += 1
            catalog["tables"].setdefault(name, []).append(entry)
        catalog["generation"] += 1
        catalog["schema_version"] = SCHEMA_VERSION
        seg.write_catalog(self._path, catalog)
        self._load_keys(catalog)

    def _load_keys(self, catalog: dict[str, Any]) -> None:
        for entry in catalog["tables"].get("episodes", []):
            if entry["file"] not in self._loaded_files:
                t = pq.read_table(self._path / entry["file"],
                                  columns=["episode_id", "content_hash"])
                self._episode_ids.update(t.column("episode_id").to_pylist())
                self._episode_hashes.update(t.column("content_hash").to_pylist())
                self._loaded_files.add(entry["file"])
        for entry in catalog["tables"].get("tasks", []):
            if entry["file"] not in self._loaded_files:
                for row in pq.read_table(self._path / entry["file"]).to_pylist():
                    self._task_content[row["task_id"]] = tuple(row[k] for k in _TASK_CONTENT)
                self._loaded_files.add(entry["file"])

    def _new_tasks(self, tasks: pa.Table) -> tuple[pa.Table, int]:
        keep, seen, dups = [], {}, 0
        for row in tasks.to_pylist():
            content = tuple(row[k] for k in _TASK_CONTENT)
            previous = self._task_content.get(row["task_id"], seen.get(row["task_id"]))
            if previous is None:
                seen[row["task_id"]] = content
                keep.append(True)
                continue
            if previous != content:
                field = next(k for k, a, b in zip(_TASK_CONTENT, previous, content) if a != b)
                raise InputError(f"task {row['task_id']!r} already exists with a different "
                                 f"{field}; give a changed task a new task_id",
                                 field=f"task.{field}")
            dups += 1
            keep.append(False)
        return tasks.filter(pa.array(keep, pa.bool_())), dups

    def _new_episodes(self, episodes: pa.Table) -> tuple[list[bool], int]:
        keep, hashes = [], set()
        for eid, h in zip(episodes.column("episode_id").to_pylist(),
                          episodes.column("content_hash").to_pylist()):
            dup = eid in self._episode_ids or h in self._episode_hashes or h in hashes
            keep.append(not dup)
            hashes.add(h)
        return keep, keep.count(False)

    # ------------------------------------------------------------------------------------------
    # Reading

    def connect(self, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB connection with one view per table over the committed segments.

        `read_only` also locks the connection out of every file but those segments.
        """
        catalog = self.catalog()
        con = duckdb.connect()
        files: list[str] = []
        for name in self.tables() + [t for t in CORE_TABLES if t not in catalog["tables"]]:
            paths = [str(p) for p in self.segments(name, catalog)]
            files += paths
            if paths:
                listed = ", ".join("'" + p.replace("'", "''") + "'" for p in paths)
                con.execute(f'CREATE VIEW "{name}" AS SELECT * FROM '
                            f"read_parquet([{listed}], union_by_name = true)")
            else:
                con.register(f"_empty_{name}", SCHEMAS[name].empty_table())
                con.execute(f'CREATE VIEW "{name}" AS SELECT * FROM "_empty_{name}"')
        if read_only:
            listed = ", ".join("'" + p.replace("'", "''") + "'" for p in files)
            con.execute(f"SET allowed_paths = [{listed}]")
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
        return con

    def sql(self, query: str) -> pa.Table:
        """Run a query over the views; InputError quoting DuckDB's message when it fails."""
        con = self.connect(read_only=True)
        try:
            result = con.sql(query)
            return pa.table({}) if result is None else result.to_arrow_table()
        except duckdb.Error as e:
            raise InputError(f"SQL error: {' '.join(str(e).split())}", field="query") from None
        finally:
            con.close()

    def read_table(self, name: str) -> pa.Table | None:
        """All committed rows of a table; None for an extra table with no segments yet."""
        files = self.segments(name)
        if not files:
            return SCHEMAS[name].empty_table() if name in SCHEMAS else None
        return pa.concat_tables([pq.read_table(f) for f in files], promote_options="default")

    def tasks(self) -> list[Task]:
        return [Task.from_row(r) for r in self.read_table("tasks").to_pylist()]

    def iter_episodes(self, where: str | None = None,
                      batch_rows: int = 65536) -> Iterator[EpisodeRecord]:
        """(task row, episode row, step rows ordered by t) per episode, by episode_id; the task
        row is None when the tasks table lacks the episode's task.

        `where` is an SQL condition on the episodes view, e.g. "source = 'real' AND success".
        """
        con = self.connect(read_only=True)
        cond = f"WHERE {where}" if where else ""
        try:
            episodes = con.sql(f"SELECT * FROM episodes {cond} ORDER BY episode_id")
            episodes = episodes.to_arrow_table()
            reader = con.sql(
                f"SELECT s.* FROM steps s SEMI JOIN (SELECT episode_id FROM episodes {cond}) e "
                "ON s.episode_id = e.episode_id ORDER BY s.episode_id, s.t"
            ).to_arrow_reader(batch_rows)
        except duckdb.Error as e:
            raise InputError(f"SQL error: {' '.join(str(e).split())}", field="where") from None
        tasks = {r["task_id"]: r for r in self.read_table("tasks").to_pylist()}
        rows = (row for batch in reader for row in batch.to_pylist())
        upcoming = next(rows, None)
        for episode in episodes.to_pylist():
            steps = []
            while upcoming is not None and upcoming["episode_id"] == episode["episode_id"]:
                steps.append(upcoming)
                upcoming = next(rows, None)
            yield EpisodeRecord(tasks.get(episode["task_id"]), episode, steps)
        con.close()

    def info(self) -> dict[str, Any]:
        """Counts by env/source/split, success rate and mean length (JSON-ready)."""
        return _collect_info(self)

    # ------------------------------------------------------------------------------------------
    # Retrieval (helper module, imported when used)

    def embed(self, **kw):
        from dreamgym_cli.store import retrieval

        return retrieval.embed_pending(self, **kw)

    def retrieve(self, queries, k: int = 5, **kw):
        from dreamgym_cli.store import retrieval

        return retrieval.retrieve(self, queries, k, **kw)


def _collect_info(store: ReplayStore) -> dict[str, Any]:
    """The JSON-ready summary behind `ReplayStore.info()` (shown by `store/render.py`)."""
    catalog = store.catalog()
    con = store.connect(read_only=True)

    def one(query: str) -> Any:
        return con.execute(query).fetchall()[0][0]

    def counts(table: str, column: str) -> dict[str, int]:
        query = f"SELECT {column}, count(*) FROM {table} GROUP BY 1 ORDER BY 1"
        rows = con.execute(query).fetchall()
        return {str(k): int(v) for k, v in rows}

    success = con.execute("SELECT env, avg(success::INT), count(success) FROM episodes "
                          "GROUP BY env ORDER BY env").fetchall()
    rate = one("SELECT avg(success::INT) FROM episodes")
    mean_length = one("SELECT avg(length) FROM episodes")
    info = {
        "path": str(store.path),
        "schema_version": catalog.get("schema_version"),
        "segments": {t: len(s) for t, s in catalog["tables"].items()},
        "bytes": sum(s.get("bytes", 0) for segs in catalog["tables"].values() for s in segs),
        "tasks": {"total": one("SELECT count(*) FROM tasks"), "by_env": counts("tasks", "env"),
                  "by_split": counts("tasks", "split")},
        "episodes": {
            "total": one("SELECT count(*) FROM episodes"),
            "by_env": counts("episodes", "env"),
            "by_source": counts("episodes", "source"),
            "success_rate": None if rate is None else round(float(rate), 6),
            "success_rate_by_env": {env: None if r is None else round(float(r), 6)
                                    for env, r, n in success},
            "success_unknown": one("SELECT count(*) FROM episodes WHERE success IS NULL"),
            "mean_length": None if mean_length is None else round(float(mean_length), 4),
        },
        "steps": {
            "total": one("SELECT count(*) FROM steps"),
            "by_env": counts("steps", "env"),
            "by_source": counts("steps", "source"),
            "reward_unknown": one("SELECT count(*) FROM steps WHERE reward IS NULL"),
        },
        "extra_tables": {t: sum(s["rows"] for s in segs) for t, segs in catalog["tables"].items()
                         if t not in ("tasks", "episodes", "steps")},
    }
    con.close()
    return info


# ----------------------------------------------------------------------------------------------
# Checks of Arrow input (the fast path has no per-row Python validation)


def _conform(name: str, table: pa.Table | None) -> pa.Table:
    schema = SCHEMAS[name]
    if table is None:
        return schema.empty_table()
    for f in schema:  # a nullable column added after v1's first writers: null where absent
        if f.name in OPTIONAL_COLUMNS and f.name not in table.column_names:
            table = table.append_column(f.name, pa.nulls(table.num_rows, f.type))
    missing = [f for f in schema.names if f not in table.column_names]
    if missing:
        raise InputError(f"{name} table lacks column(s) {', '.join(missing)}",
                         field=f"{name}.{missing[0]}")
    for f in schema:
        if not f.nullable and table.column(f.name).null_count:
            raise InputError("must not be null", field=f"{name}.{f.name}")
    try:
        return table.select(schema.names).cast(schema)
    except (ValueError, pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as e:
        raise InputError(f"{name} table does not fit the v1 schema ({e})", field=name) from None


def _check_values(episodes: pa.Table, steps: pa.Table) -> None:
    for name, t in (("episodes", episodes), ("steps", steps)):
        bad = pc.invert(pc.is_in(t.column("source"), pa.array(SOURCES)))
        if pc.any(bad).as_py():
            value = t.column("source").filter(bad)[0].as_py()
            raise InputError(f"expected one of {', '.join(SOURCES)}, got {value!r}",
                             field=f"{name}.source")
    ids = episodes.column("episode_id")
    if pc.count_distinct(ids).as_py() != len(ids):
        seen: set[str] = set()
        dup = next(e for e in ids.to_pylist() if e in seen or seen.add(e))
        raise InputError(f"episode_id {dup!r} appears twice in one append; its steps cannot be "
                         "told apart", field="episodes.episode_id")
    if steps.num_rows and not pc.all(pc.is_in(steps.column("episode_id"),
                                              episodes.column("episode_id"))).as_py():
        raise InputError("steps belong to episodes that are not in this append",
                         field="steps.episode_id")
    counts = steps.group_by("episode_id").aggregate([("t", "count")])
    lengths = dict(zip(episodes.column("episode_id").to_pylist(),
                       episodes.column("length").to_pylist()))
    found = dict(zip(counts.column("episode_id").to_pylist(), counts.column("t_count").to_pylist()))
    for eid, length in lengths.items():
        n = found.get(eid, 0)
        if length != n:
            raise InputError(f"episode {eid!r} has length {length} but {n} steps",
                             field="episodes.length")
