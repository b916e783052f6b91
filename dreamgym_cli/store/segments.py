"""The on-disk layout of a replay store: marker file, catalog, immutable Parquet segments.

    S/store.json                  {"format": "dreamgym-store", "schema_version": 1, "created_at"}
    S/catalog.json                committed segments per table: THE commit point
    S/<table>/seg-<seq>-<id>.parquet   immutable zstd Parquet, one per table per append
    S/.tmp/                       segments being written (fsync'd, then renamed into <table>/)
    S/.lock                       writers' file lock (holds the holder's pid)
    S/manifests/                  one record per ingest run

A segment is written under `.tmp/`, fsync'd, renamed into its table directory, and only then
named in a new catalog (written to a temporary file, fsync'd, `os.replace`d). Readers that go
through the catalog never see a partial append. A crash between the rename and the catalog
replace leaves an orphan segment file; the next writer removes it when it takes the lock.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from dreamgym_cli.artifacts import atomic_path, write_atomic
from dreamgym_cli.errors import InputError
from dreamgym_cli.schema import SCHEMA_VERSION

STORE_FORMAT = "dreamgym-store"
MARKER = "store.json"
CATALOG = "catalog.json"
TMP_DIR = ".tmp"
LOCK_FILE = ".lock"
MANIFEST_DIR = "manifests"
TABLE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
RESERVED_NAMES = {MANIFEST_DIR, "index", "tmp"}
SEGMENT_NAME = re.compile(r"^seg-\d{8}-[0-9a-f]{12}\.parquet$")


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat()


def check_table_name(name: str) -> None:
    if not TABLE_NAME.match(name) or name in RESERVED_NAMES:
        raise InputError(f"invalid table name {name!r}; expected lowercase letters, digits and "
                         f"'_' (not one of {', '.join(sorted(RESERVED_NAMES))})", field="table")


# ----------------------------------------------------------------------------------------------
# store.json and catalog.json


def read_marker(root: Path) -> dict[str, Any]:
    """The store's marker, checked: a newer schema is refused before anything is touched."""
    path = root / MARKER
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"not a readable replay store marker ({e})", file=path) from None
    if not isinstance(marker, dict) or marker.get("format") != STORE_FORMAT:
        raise InputError(f"not a replay store (expected format {STORE_FORMAT!r})", file=path,
                         field="format")
    version = marker.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise InputError("expected an integer schema_version", file=path, field="schema_version")
    if version > SCHEMA_VERSION:
        raise InputError(f"store {root} has schema version {version}; this dreamgym reads "
                         f"{SCHEMA_VERSION} — upgrade dreamgym", file=path,
                         field="schema_version")
    return marker


def is_blank(root: Path) -> bool:
    """True for a missing or empty directory, or one where a store is being (or was partly) made.

    A creator writes the lock, then the catalog, then the marker last; until the marker exists
    nothing of value is in the directory.
    """
    if not root.is_dir():
        return not root.exists()
    creating = (LOCK_FILE, CATALOG, TMP_DIR)
    return all(p.name in creating or p.name.startswith((f".{CATALOG}.tmp-", f".{MARKER}.tmp-"))
               for p in root.iterdir())


def write_marker(root: Path) -> None:
    marker = {"format": STORE_FORMAT, "schema_version": SCHEMA_VERSION, "created_at": utc_now()}
    write_atomic(root / MARKER, json.dumps(marker, indent=2) + "\n")


def empty_catalog() -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, "generation": 0, "next_seq": 1, "tables": {}}


def read_catalog(root: Path) -> dict[str, Any]:
    path = root / CATALOG
    if not path.exists():
        return empty_catalog()
    try:
        catalog = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"replay store catalog is unreadable ({e})", file=path) from None
    if not isinstance(catalog, dict) or not isinstance(catalog.get("tables"), dict):
        raise InputError("replay store catalog has no 'tables' mapping", file=path, field="tables")
    return catalog


def write_catalog(root: Path, catalog: dict[str, Any]) -> None:
    """The commit point: the new catalog replaces the old one atomically (and the dir is synced)."""
    write_atomic(root / CATALOG, json.dumps(catalog, indent=1) + "\n")


# ----------------------------------------------------------------------------------------------
# Segments


def write_segment(root: Path, table_name: str, table: pa.Table, seq: int) -> dict[str, Any]:
    """Write `table` to .tmp/, fsync it and rename it into <table>/; returns its catalog entry.

    The segment is not committed until a catalog naming it replaces the old one.
    """
    name = f"seg-{seq:08d}-{uuid.uuid4().hex[:12]}.parquet"
    tmp_dir = root / TMP_DIR  # not the table's dir: remove_uncommitted sweeps what a crash left
    tmp_dir.mkdir(exist_ok=True)
    table_dir = root / table_name
    with atomic_path(table_dir / name, tmp_dir=tmp_dir) as tmp:
        pq.write_table(table, tmp, compression="zstd")
        digest = hashlib.sha256()
        with open(tmp, "rb") as f:
            while block := f.read(1 << 22):
                digest.update(block)
        table_dir.mkdir(exist_ok=True)
    return {"file": f"{table_name}/{name}", "rows": table.num_rows, "bytes": (table_dir / name)
            .stat().st_size, "sha256": digest.hexdigest(), "created_at": utc_now()}


def committed_files(catalog: dict[str, Any]) -> set[str]:
    return {seg["file"] for segs in catalog["tables"].values() for seg in segs}


def remove_uncommitted(root: Path, catalog: dict[str, Any]) -> list[str]:
    """Delete what a crashed writer left: temp files and segments no catalog names.

    Only call with the write lock held (a live writer's renamed-but-uncommitted segment would
    look the same).
    """
    removed = []
    keep = committed_files(catalog)
    tmp_dir = root / TMP_DIR
    if tmp_dir.is_dir():
        for p in tmp_dir.iterdir():
            if p.is_file():
                p.unlink()
                removed.append(p.relative_to(root).as_posix())
    for p in root.glob(f".{CATALOG}.tmp-*"):
        p.unlink()
        removed.append(p.name)
    for table_dir in root.iterdir():
        if not table_dir.is_dir() or table_dir.name.startswith(".") or \
                table_dir.name == MANIFEST_DIR:
            continue
        for p in table_dir.iterdir():
            rel = p.relative_to(root).as_posix()
            if SEGMENT_NAME.match(p.name) and rel not in keep:
                p.unlink()
                removed.append(rel)
    return removed


def verify_segments(root: Path, catalog: dict[str, Any]) -> list[str]:
    """Problems with committed segments (missing, wrong size or hash); empty when all is well."""
    problems = []
    for table, segs in catalog["tables"].items():
        for seg in segs:
            path = root / seg["file"]
            if not path.is_file():
                problems.append(f"{seg['file']}: missing")
                continue
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                while block := f.read(1 << 22):
                    digest.update(block)
            if digest.hexdigest() != seg["sha256"]:
                problems.append(f"{seg['file']}: sha256 differs from the catalog")
            elif pq.ParquetFile(path).metadata.num_rows != seg["rows"]:
                problems.append(f"{seg['file']}: row count differs from the catalog")
    return problems
