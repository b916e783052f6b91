"""Stage outputs: manifests, content hashes, atomic publish, skip-if-up-to-date.

Every stage output is a directory with `manifest.json` inside, or a file with
`<file>.manifest.json` beside it. The manifest records the stage, its resolved config, its inputs
with content hashes, its outputs, metrics, package versions, git revision and times.

    with ArtifactRun("collect", out, config, inputs={"tasks": path}, kind="file") as run:
        if run.up_to_date:
            return run.previous                 # same stage, config and inputs: skip
        write_everything_to(run.tmp)            # a temporary sibling of `out`
        run.commit(metrics={...})               # manifest, then rename into place

An exception (or leaving the block without commit) removes the temporary sibling: a crash never
leaves a half-written artifact that looks finished.

Every single file the package replaces in place (a store's catalog, segments and index files,
trajectory and task files, the curriculum state) goes through the one atomic writer here:
`atomic_path` (a context manager yielding a temporary path) or `write_atomic` (bytes or text).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from dreamgym_cli import __version__

MANIFEST = "manifest.json"
_VERSIONED = ("torch", "transformers", "peft", "trl", "accelerate", "datasets", "pyarrow",
              "duckdb", "tokenizers", "textworld", "numpy", "typer", "rich", "usearch", "vllm")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def content_hash(path: str | Path) -> str:
    """sha256 of a file, or of a directory's files (relative names + contents).

    A directory that carries a manifest with `output_hash` (an artifact) or a replay store's
    catalog is identified by that, so hashing a large artifact stays cheap.
    """
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    if not path.is_dir():
        raise FileNotFoundError(path)
    manifest = path / MANIFEST
    if manifest.is_file():
        try:
            recorded = json.loads(manifest.read_text()).get("output_hash")
        except (json.JSONDecodeError, OSError):
            recorded = None
        if recorded:
            return recorded
    catalog = path / "catalog.json"
    if catalog.is_file():
        return _store_hash(catalog)
    return _hash_tree(path)


DERIVED_STORE_TABLES = ("embeddings",)  # caches rebuilt from the data: not part of its identity


def _store_hash(catalog: Path) -> str:
    """A replay store's identity: the content hashes of its data segments (not of caches)."""
    data = json.loads(catalog.read_text())
    tables = data.get("tables", {})
    blob = {name: sorted(seg.get("sha256", seg.get("file")) for seg in segments)
            for name, segments in tables.items() if name not in DERIVED_STORE_TABLES}
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


def _hash_tree(root: Path, skip: tuple[str, ...] = (MANIFEST,)) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and rel not in skip and not any(part.startswith(".") for part in
                                                       p.relative_to(root).parts):
            h.update(rel.encode() + b"\0" + sha256_file(p).encode() + b"\n")
    return h.hexdigest()


def manifest_path(out: Path) -> Path:
    return out / MANIFEST if out.is_dir() else out.with_name(out.name + "." + MANIFEST)


def read_manifest(out: str | Path) -> dict[str, Any] | None:
    out = Path(out)
    path = out / MANIFEST if out.is_dir() else out.with_name(out.name + "." + MANIFEST)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, OSError):
        return None


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "dreamgym": __version__}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def git_revision() -> str | None:
    here = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if rev.returncode != 0:
        return None
    return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def fingerprint(stage: str, config: dict[str, Any], input_hashes: dict[str, str]) -> str:
    blob = json.dumps({"stage": stage, "config": config, "inputs": input_hashes}, sort_keys=True,
                      default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _utc() -> str:
    return datetime.now(timezone.utc).isoformat()


class ArtifactRun:
    """One stage run producing `out` (kind 'dir' or 'file'); see the module doc."""

    def __init__(self, stage: str, out: str | Path, config: dict[str, Any], *,
                 inputs: dict[str, str | Path | list] | None = None, kind: str = "dir",
                 force: bool = False, fingerprint_config: dict[str, Any] | None = None):
        if kind not in ("dir", "file"):
            raise ValueError(kind)
        self.stage, self.kind, self.force = stage, kind, force
        self.out = Path(out)
        self.config = config
        self.inputs = self._describe_inputs(inputs or {})
        # Fields that do not change the result (e.g. worker count) may be left out of the key.
        key_config = config if fingerprint_config is None else fingerprint_config
        self.fingerprint = fingerprint(stage, key_config,
                                       {k: v["sha256"] for k, v in self._flat_inputs()})
        self.started_at = _utc()
        self.previous = self._matching_manifest()
        self.up_to_date = self.previous is not None and not force
        # Keep the suffix: writers pick the format (.parquet/.jsonl) from the path they write.
        self.tmp = self.out.with_name(f".{self.out.name}.tmp-{os.getpid()}{self.out.suffix}")
        self.committed = False

    @staticmethod
    def _describe_inputs(inputs: dict[str, Any]) -> dict[str, Any]:
        described = {}
        for name, value in inputs.items():
            paths = value if isinstance(value, (list, tuple)) else [value]
            entries = [{"path": str(Path(p).resolve()), "sha256": content_hash(p)} for p in paths]
            described[name] = entries if isinstance(value, (list, tuple)) else entries[0]
        return described

    def _flat_inputs(self):
        for name, entry in self.inputs.items():
            if isinstance(entry, list):
                for i, e in enumerate(entry):
                    yield f"{name}[{i}]", e
            else:
                yield name, entry

    def _matching_manifest(self) -> dict[str, Any] | None:
        if not self.out.exists():
            return None
        previous = read_manifest(self.out)
        if not previous or previous.get("fingerprint") != self.fingerprint:
            return None
        try:  # the output must still be what the manifest says was written
            actual = sha256_file(self.out) if self.out.is_file() else _hash_tree(self.out)
        except OSError:
            return None
        return previous if actual == previous.get("output_hash") else None

    def __enter__(self) -> "ArtifactRun":
        if not self.up_to_date:
            self._remove(self.tmp)
            if self.kind == "dir":
                self.tmp.mkdir(parents=True)
            else:
                self.tmp.parent.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.committed:
            self._remove(self.tmp)

    @staticmethod
    def _remove(path: Path) -> None:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists() or path.is_symlink():
            path.unlink()

    def commit(self, metrics: dict[str, Any] | None = None,
               outputs: list[str] | None = None, extra: dict[str, Any] | None = None) -> dict:
        """Write the manifest and move the finished output into place."""
        if self.kind == "dir":
            output_hash = _hash_tree(self.tmp)
            files = outputs or sorted(p.relative_to(self.tmp).as_posix()
                                      for p in self.tmp.rglob("*") if p.is_file())
        else:
            output_hash = sha256_file(self.tmp)
            files = outputs or [self.out.name]
        manifest = {
            "stage": self.stage,
            "config": self.config,
            "inputs": self.inputs,
            "outputs": files,
            "output_hash": output_hash,
            "metrics": metrics or {},
            "fingerprint": self.fingerprint,
            "versions": package_versions(),
            "git_revision": git_revision(),
            "command": sys.argv,
            "started_at": self.started_at,
            "finished_at": _utc(),
        }
        if extra:
            manifest.update(extra)
        text = json.dumps(manifest, indent=2, sort_keys=False, default=str) + "\n"
        if self.kind == "dir":
            _write_synced(self.tmp / MANIFEST, text)
            self._swap_into_place(self.tmp, self.out)
        else:
            mpath = self.out.with_name(self.out.name + "." + MANIFEST)
            _fsync_file(self.tmp)
            if mpath.exists():
                mpath.unlink()  # a file without its manifest is never taken as up to date
            os.replace(self.tmp, self.out)
            write_atomic(mpath, text)  # also syncs the directory, so both renames are durable
        self.committed = True
        return manifest

    @staticmethod
    def _swap_into_place(tmp: Path, out: Path) -> None:
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            ArtifactRun._remove(old)
            os.replace(out, old)
            os.replace(tmp, out)
            ArtifactRun._remove(old)
        else:
            os.replace(tmp, out)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_synced(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


@contextmanager
def atomic_path(path: str | Path, *, tmp_dir: str | Path | None = None) -> Iterator[Path]:
    """The one atomic writer: yields a temporary path to write the new content of `path` to.

        with atomic_path(out) as tmp:
            pq.write_table(table, tmp)          # any writer that takes a path or opens one

    When the block ends normally the temporary file is fsync'd, `os.replace`d over `path` and the
    directory is fsync'd: readers, and a crash at any point, see the old content or the new, never
    a mix. When the block raises, the temporary file is removed and `path` is untouched.

    The temporary file is the hidden sibling `.<name>.tmp-<pid>`, or has that name in `tmp_dir`
    (same filesystem) for a writer whose crash cleanup sweeps that directory.
    """
    path = Path(path)
    tmp = (path.parent if tmp_dir is None else Path(tmp_dir)) / f".{path.name}.tmp-{os.getpid()}"
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_file(path.parent)  # makes the rename itself durable


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """A directory replaced whole (a training checkpoint): yields an empty temporary directory.

    When the block ends normally every file in it is fsync'd, the old `path` is renamed to
    `<path>.old`, the new one renamed to `path`, the old one removed and the parent fsync'd.
    A crash leaves `path` complete (old or new), or only `<path>.old` complete for the moment
    between the two renames: readers use `readable_dir`, which falls back to it. When the block
    raises, the temporary directory is removed and `path` is untouched.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    old = path.with_name(path.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        for f in tmp.rglob("*"):
            if f.is_file():
                _fsync_file(f)
        _fsync_file(tmp)
        shutil.rmtree(old, ignore_errors=True)
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        _fsync_file(path.parent)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def readable_dir(path: str | Path) -> Path | None:
    """`path` as `atomic_dir` left it: itself, or its `.old` twin after a crash mid-swap."""
    path = Path(path)
    for candidate in (path, path.with_name(path.name + ".old")):
        if candidate.is_dir():
            return candidate
    return None


def write_atomic(path: str | Path, data: bytes | str) -> None:
    """Write `data` (text as UTF-8) to `path` with `atomic_path`'s guarantees."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)


def write_run_record(directory: str | Path, stage: str, config: dict[str, Any],
                     metrics: dict[str, Any], *, inputs: dict[str, Any] | None = None,
                     outputs: list[str] | None = None, started_at: str | None = None) -> Path:
    """A manifest for a run that adds to a growing artifact (a replay store) rather than making
    one: `<directory>/<stage>-<utc>.json`, with the same fields as an ArtifactRun manifest."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    finished = datetime.now(timezone.utc)
    record = {"stage": stage, "config": config, "inputs": inputs or {}, "outputs": outputs or [],
              "metrics": metrics, "versions": package_versions(), "git_revision": git_revision(),
              "command": sys.argv, "started_at": started_at or finished.isoformat(),
              "finished_at": finished.isoformat()}
    path = directory / f"{stage}-{finished.strftime('%Y%m%dT%H%M%S.%fZ')}.json"
    write_atomic(path, json.dumps(record, indent=2, default=str) + "\n")
    return path
