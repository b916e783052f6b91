"""`dreamgym ingest` through the real CLI: formats, dedup, reports, and every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dreamgym_cli import trajectories, trajectory_io
from dreamgym_cli.schema import validate_episode
from dreamgym_cli.store import ReplayStore, synthetic
from test_store import snapshot


def write_lines(path: Path, objects, raw_tail: bytes = b"") -> Path:
    with open(path, "wb") as f:
        for obj in objects:
            f.write(json.dumps(obj).encode() + b"\n")
        f.write(raw_tail)
    return path


@pytest.fixture
def episodes_file(tmp_path) -> Path:
    records = [validate_episode(synthetic.episode_object(i, 3)) for i in range(8)]
    path = tmp_path / "E.jsonl"
    assert trajectories.write_episodes(path, records) == 8
    return path


@pytest.fixture
def store_dir(tmp_path, episodes_file, run_cli) -> Path:
    code, _, err = run_cli("ingest", episodes_file, "--store", tmp_path / "S")
    assert code == 0, err
    return tmp_path / "S"


def test_ingest_info_sql_and_reingest(tmp_path, episodes_file, run_cli):
    store = tmp_path / "S"
    code, out, err = run_cli("ingest", episodes_file, "--store", store, "--json")
    assert code == 0, err
    report = json.loads(out)  # exactly one JSON object on stdout
    assert report["totals"]["episodes_added"] == 8 and report["totals"]["steps_added"] == 24
    manifest = json.loads(Path(report["manifest"]).read_text())
    assert manifest["stage"] == "ingest" and manifest["metrics"]["steps_added"] == 24
    assert manifest["inputs"]["files"][0]["sha256"] == trajectories_sha(episodes_file)
    assert {"versions", "git_revision", "config", "started_at", "finished_at"} <= manifest.keys()

    code, out, _ = run_cli("store", "info", store, "--json")
    assert code == 0
    info = json.loads(out)
    assert info["episodes"]["total"] == 8 and info["steps"]["total"] == 24
    assert info["tasks"]["by_split"] == {"train": 8}
    code, out, _ = run_cli("store", "sql", store, "SELECT count(*) AS n FROM steps", "--json")
    assert code == 0 and json.loads(out)["rows"] == [{"n": 24}]
    code, out, _ = run_cli("store", "sql", store, "SELECT count(*) FROM steps")
    assert code == 0 and "24" in out

    code, out, _ = run_cli("ingest", episodes_file, episodes_file, "--store", store, "--json")
    totals = json.loads(out)["totals"]
    assert code == 0 and totals["episodes_added"] == 0 and totals["episodes_duplicate"] == 16
    assert ReplayStore.open(store).info()["steps"]["total"] == 24


def trajectories_sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_sql_error_exits_2(store_dir, run_cli):
    code, out, err = run_cli("store", "sql", store_dir, "SELECT nope FROM steps")
    assert code == 2 and out == ""
    assert "SQL error" in err and "nope" in err and len(err.strip().splitlines()) == 1


# ----------------------------------------------------------------------------------------------
# Bad input: exit 2, one line naming file, line and field; the store is byte-identical.


def _good(i: int = 0) -> dict:
    return synthetic.episode_object(100 + i, 3)


def _case_truncated(d: Path):
    line = json.dumps(_good(1)).encode()
    return write_lines(d / "bad.jsonl", [_good()], line[: len(line) // 2]), 2, None, "truncated"


def _case_not_json(d: Path):
    return write_lines(d / "bad.jsonl", [_good()], b"this is not json\n"), 2, None, "not valid JSON"


def _case_wrong_type(d: Path):
    bad = _good(1)
    bad["steps"][1]["reward"] = "high"
    return write_lines(d / "bad.jsonl", [_good(), bad]), 2, "steps[1].reward", "expected a number"


def _case_missing_field(d: Path):
    bad = _good(1)
    del bad["steps"][2]["action"]
    return write_lines(d / "bad.jsonl", [_good(), bad]), 2, "steps[2].action", "missing"


def _case_schema_version(d: Path):
    return write_lines(d / "bad.jsonl", [dict(_good(), schema_version=2)]), 1, "schema_version", \
        "unknown schema version 2"


def _case_not_utf8(d: Path):
    return write_lines(d / "bad.jsonl", [_good()], b'{"episode_id": "caf\xe9"}\n'), 2, None, \
        "not UTF-8"


def _case_empty(d: Path):
    (d / "empty.jsonl").write_bytes(b"")
    return d / "empty.jsonl", None, None, "empty"


def _case_directory(d: Path):
    (d / "adir").mkdir()
    return d / "adir", None, None, "is a directory"


def _case_missing_file(d: Path):
    return d / "nowhere.jsonl", None, None, "no such file"


def _case_duplicate_ids(d: Path):
    dup = dict(_good(1), episode_id=_good()["episode_id"])
    return write_lines(d / "bad.jsonl", [_good(), dup]), 2, "episode_id", "duplicate episode_id"


def _case_escaping_game_path(d: Path):
    bad = _good(1)
    bad["task"]["spec"] = {"game": "../../x"}
    return write_lines(d / "bad.jsonl", [_good(), bad]), 2, "task.spec.game", "escapes"


def _case_task_conflict(d: Path):
    bad = _good(1)
    bad["task"] = dict(synthetic.task_object(0), instruction="a different task")  # id in store
    return write_lines(d / "bad.jsonl", [_good(), bad]), 2, "task.instruction", "synthetic-task-0"


def _case_agentgym_role(d: Path):
    items = [{"item_id": "webshop_1", "conversations": [
        {"from": "human", "value": "shop"}, {"from": "gpt", "value": "Action: search[x]"}]},
        {"item_id": "webshop_2", "conversations": [
            {"from": "human", "value": "shop"}, {"from": "robot", "value": "Action: click[y]"}]}]
    path = d / "ag.json"
    path.write_text(json.dumps(items, indent=1))
    return path, 15, "conversations[1].from", "expected a role"


def _case_agentgym_truncated(d: Path):
    path = d / "ag.json"
    path.write_text('[\n {"item_id": "webshop_1", "conversations": [\n  {"from": "human"')
    return path, 3, None, "truncated"


BAD_INPUTS = {name[6:]: fn for name, fn in globals().items() if name.startswith("_case_")}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_exits_2_and_leaves_store_untouched(case, store_dir, tmp_path, run_cli):
    path, line, field, words = BAD_INPUTS[case](tmp_path)
    before = snapshot(store_dir)
    code, out, err = run_cli("ingest", path, "--store", store_dir)
    assert code == 2, err
    assert out == ""
    message = err.strip()
    assert len(message.splitlines()) == 1 and "Traceback" not in err
    assert str(path) in message and words in message
    if line is not None:
        assert f"{path}:{line}" in message
    if field is not None:
        assert f"field '{field}'" in message
    assert snapshot(store_dir) == before


def test_enormous_line(store_dir, tmp_path, run_cli, monkeypatch):
    monkeypatch.setattr(trajectory_io, "MAX_LINE_BYTES", 4096)
    huge = _good(1)
    huge["steps"][0]["state"] = "x" * 10_000
    path = write_lines(tmp_path / "big.jsonl", [_good(), huge])
    before = snapshot(store_dir)
    code, _, err = run_cli("ingest", path, "--store", store_dir)
    assert code == 2 and f"{path}:2" in err and "longer than" in err
    assert snapshot(store_dir) == before


def test_store_from_newer_schema(store_dir, episodes_file, run_cli):
    marker = store_dir / "store.json"
    marker.write_text(json.dumps(dict(json.loads(marker.read_text()), schema_version=2)))
    before = snapshot(store_dir)
    for args in (("ingest", episodes_file, "--store", store_dir), ("store", "info", store_dir)):
        code, _, err = run_cli(*args)
        assert code == 2
        assert f"store {store_dir} has schema version 2; this dreamgym reads 1 — upgrade" in err
        assert "field 'schema_version'" in err and len(err.strip().splitlines()) == 1
    assert snapshot(store_dir) == before


def test_bad_input_never_creates_the_store(tmp_path, run_cli):
    path, *_ = _case_wrong_type(tmp_path)
    code, _, _ = run_cli("ingest", path, "--store", tmp_path / "new")
    assert code == 2 and not (tmp_path / "new").exists()


def test_bad_options(store_dir, episodes_file, run_cli):
    code, _, err = run_cli("ingest", episodes_file, "--store", store_dir, "--format", "agentgim")
    assert code == 2 and "did you mean 'agentgym'" in err
    code, _, err = run_cli("ingest", episodes_file, "--store", store_dir, "--source", "fake")
    assert code == 2 and "unknown source 'fake'" in err
    (store_dir.parent / "other").mkdir()
    (store_dir.parent / "other" / "keep.txt").write_text("mine")
    code, _, err = run_cli("ingest", episodes_file, "--store", store_dir.parent / "other")
    assert code == 2 and "not a replay store" in err
