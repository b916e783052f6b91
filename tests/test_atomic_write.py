"""The one atomic writer (`artifacts.atomic_path` / `write_atomic`) and the writers built on it:
a writer that fails part way leaves the old target byte-identical and no temporary file, and a
successful write fsyncs the new file and its directory."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from dreamgym_cli.artifacts import atomic_path, write_atomic
from dreamgym_cli.curriculum.sampler import STATE_FILE, CurriculumSampler, CurriculumSettings
from dreamgym_cli.schema import Task
from dreamgym_cli.store.index import VectorIndex
from dreamgym_cli.store.segments import TMP_DIR, write_segment
from dreamgym_cli.trajectories import read_tasks, write_tasks

OLD = b"the old content\n"


class Boom(Exception):
    """Stands for any failure of a writer part way through."""


@pytest.fixture
def fsynced(monkeypatch):
    """(device, inode) of every file or directory passed to os.fsync from now on."""
    synced: set[tuple[int, int]] = set()
    real = os.fsync

    def record(fd):
        st = os.fstat(fd)
        synced.add((st.st_dev, st.st_ino))
        return real(fd)

    monkeypatch.setattr(os, "fsync", record)
    return synced


def identity(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_dev, st.st_ino


def leftovers(directory: Path, target: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p != target)


@pytest.mark.parametrize("data", [b"\x00bytes\xff", "text, é\n"])
def test_write_atomic_replaces_and_syncs_file_and_directory(tmp_path, fsynced, data):
    target = tmp_path / "f.json"
    target.write_bytes(OLD)
    write_atomic(target, data)
    assert target.read_bytes() == (data.encode() if isinstance(data, str) else data)
    assert identity(target) in fsynced and identity(tmp_path) in fsynced
    assert leftovers(tmp_path, target) == []


def test_a_writer_that_raises_leaves_the_old_target_and_no_temp_file(tmp_path):
    target = tmp_path / "data.bin"
    target.write_bytes(OLD)
    with pytest.raises(Boom):
        with atomic_path(target) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"half of the new cont")
            assert tmp.parent == tmp_path and tmp.exists()
            raise Boom
    assert target.read_bytes() == OLD
    assert leftovers(tmp_path, target) == []


def test_a_failed_first_write_leaves_nothing(tmp_path):
    with pytest.raises(Boom):
        with atomic_path(tmp_path / "new.bin") as tmp:
            tmp.write_bytes(b"x")
            raise Boom
    assert list(tmp_path.iterdir()) == []


def test_tmp_dir_holds_the_temporary_file(tmp_path, fsynced):
    (tmp_path / "t").mkdir()
    (tmp_path / ".tmp").mkdir()
    target = tmp_path / "t" / "seg.parquet"
    with atomic_path(target, tmp_dir=tmp_path / ".tmp") as tmp:
        assert tmp.parent == tmp_path / ".tmp"
        tmp.write_bytes(b"segment")
    assert target.read_bytes() == b"segment" and identity(target) in fsynced
    assert identity(target.parent) in fsynced
    assert list((tmp_path / ".tmp").iterdir()) == []


def _tasks(n: int) -> list[Task]:
    return [Task(task_id=f"t{i}", env="babyai", instruction=f"go to box {i}", spec={"level": i})
            for i in range(n)]


def _raising(items, after):
    for i, item in enumerate(items):
        if i == after:
            raise Boom
        yield item


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_write_tasks_is_atomic(tmp_path, fsynced, suffix):
    target = tmp_path / f"tasks{suffix}"
    write_tasks(target, _tasks(3))
    before = target.read_bytes()
    assert identity(target) in fsynced and identity(tmp_path) in fsynced
    with pytest.raises(Boom):
        write_tasks(target, _raising(_tasks(5), after=4))
    assert target.read_bytes() == before and leftovers(tmp_path, target) == []
    assert [t.task_id for t in read_tasks(target)] == ["t0", "t1", "t2"]


def test_the_curriculum_sampler_state_is_fsynced(tmp_path, fsynced):
    sampler = CurriculumSampler(_tasks(2), CurriculumSettings(enabled=False))
    sampler.save(tmp_path)
    target = tmp_path / STATE_FILE
    assert target.read_text() == '{"generated": []}'
    assert identity(target) in fsynced and identity(tmp_path) in fsynced
    assert leftovers(tmp_path, target) == []


def test_vector_index_files_are_fsynced(tmp_path, fsynced):
    index = VectorIndex(4, embedder="test")
    vectors = np.eye(4, dtype=np.float32)
    index.add(np.arange(4, dtype=np.int64), vectors)
    index.save(tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["header.json", "ids.npy", "vectors.npy"]
    assert all(identity(tmp_path / name) in fsynced for name in names)
    assert len(VectorIndex.load(tmp_path, embedder="test", dim=4)) == 4


def test_a_segment_is_fsynced_into_its_table_and_leaves_no_temp(tmp_path, fsynced):
    entry = write_segment(tmp_path, "steps", pa.table({"x": [1, 2, 3]}), seq=1)
    segment = tmp_path / entry["file"]
    assert entry["rows"] == 3 and entry["bytes"] == segment.stat().st_size
    assert identity(segment) in fsynced and identity(segment.parent) in fsynced
    assert list((tmp_path / TMP_DIR).iterdir()) == []


def test_atomic_dir_replaces_a_whole_directory_or_leaves_it(tmp_path):
    from dreamgym_cli.artifacts import atomic_dir, readable_dir

    target = tmp_path / "last"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("one")
    assert (target / "a.txt").read_text() == "one"
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "a.txt").write_text("half")
            raise RuntimeError("crash while writing")
    assert (target / "a.txt").read_text() == "one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]  # no temporary left
    with atomic_dir(target) as tmp:
        (tmp / "b.txt").write_text("two")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]  # replaced whole, not merged
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]
    # a crash between the two renames leaves only the old twin: readers fall back to it
    target.rename(tmp_path / "last.old")
    assert readable_dir(target) == tmp_path / "last.old"
    assert readable_dir(tmp_path / "missing") is None

