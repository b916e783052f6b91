"""Ingest under SIGKILL, concurrent writers and a held lock (real `dreamgym` processes)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb

from dreamgym_cli.store import ReplayStore, synthetic
from test_store import snapshot, store_lock_held

DREAMGYM = str(Path(sys.executable).with_name("dreamgym"))


def committed_step_segments(store: Path) -> int:
    try:
        catalog = json.loads((store / "catalog.json").read_text())
    except (OSError, json.JSONDecodeError):
        return 0
    return len(catalog["tables"].get("steps", []))


def check_consistent(store: Path) -> tuple[int, int]:
    """Committed data verifies and holds only whole episodes; returns (episodes, steps)."""
    s = ReplayStore.open(store)
    assert s.verify() == []
    row = s.sql("SELECT count(*) AS n, count(DISTINCT episode_id) AS ids, coalesce(sum(length), 0) "
                "AS total FROM episodes").to_pylist()[0]
    steps = s.sql("SELECT count(*) AS n FROM steps").column("n")[0].as_py()
    assert row["n"] == row["ids"] and row["total"] == steps
    orphans = s.sql("SELECT count(*) AS n FROM steps WHERE episode_id NOT IN "
                    "(SELECT episode_id FROM episodes)").column("n")[0].as_py()
    assert orphans == 0
    return row["n"], steps


def test_sigkill_mid_ingest_then_rerun_completes(tmp_path, run_cli):
    episodes, per_episode = 3000, 4
    data = tmp_path / "big.jsonl"
    synthetic.write_jsonl(data, episodes, per_episode)
    store = tmp_path / "S"
    proc = subprocess.Popen([DREAMGYM, "ingest", str(data), "--store", str(store),
                             "--batch-steps", "200"], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while committed_step_segments(store) < 1 and proc.poll() is None:
        assert time.monotonic() < deadline, "no commit within 120 s"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()

    done_episodes, done_steps = check_consistent(store)
    assert 0 < done_episodes < episodes  # killed part way: some batches in, not all
    glob = str(store / "steps" / "*.parquet")  # plain readers see complete files only
    assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{glob}')").fetchall()[0][0] >= done_steps

    code, out, err = run_cli("ingest", data, "--store", store, "--batch-steps", "200", "--json")
    assert code == 0, err
    totals = json.loads(out)["totals"]
    assert totals["episodes_duplicate"] == done_episodes
    assert totals["episodes_added"] == episodes - done_episodes
    assert check_consistent(store) == (episodes, episodes * per_episode)
    assert not any((store / ".tmp").iterdir())


def test_two_concurrent_ingests_both_land(tmp_path):
    files = []
    for k in range(2):  # distinct episodes, shared tasks (task ids repeat every 50 episodes)
        files.append(tmp_path / f"part{k}.jsonl")
        synthetic.write_jsonl(files[-1], 400, 3, start=k * 400)
    store = tmp_path / "S"
    procs = [subprocess.Popen([DREAMGYM, "ingest", str(f), "--store", str(store),
                               "--batch-steps", "150", "--json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for f in files]
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err
        assert json.loads(out)["totals"]["episodes_added"] == 400
    assert check_consistent(store) == (800, 2400)
    assert ReplayStore.open(store).info()["tasks"]["total"] == 50


def test_held_lock_makes_ingest_fail_clearly(tmp_path, run_cli, monkeypatch):
    data = tmp_path / "E.jsonl"
    synthetic.write_jsonl(data, 5, 2)
    store = tmp_path / "S"
    assert run_cli("ingest", data, "--store", store)[0] == 0
    with store_lock_held(store) as holder:
        before = snapshot(store)
        synthetic.write_jsonl(tmp_path / "more.jsonl", 5, 2, start=5)
        monkeypatch.setenv("DREAMGYM_LOCK_TIMEOUT", "0.5")
        code, _, err = run_cli("ingest", tmp_path / "more.jsonl", "--store", store)
        assert code == 1
        assert f"store {store} is locked by another writer (pid {holder.pid})" in err
        assert snapshot(store) == before
    monkeypatch.delenv("DREAMGYM_LOCK_TIMEOUT")
    assert run_cli("ingest", tmp_path / "more.jsonl", "--store", store)[0] == 0
    assert check_consistent(store) == (10, 20)
