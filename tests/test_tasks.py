"""`dreamgym tasks make`: seeds parsing, the task file, the game cache, bad input."""

from __future__ import annotations

import json

import pytest
from tw_fixtures import tw_games  # noqa: F401  (fixture)

from dreamgym_cli.artifacts import read_manifest
from dreamgym_cli.errors import InputError
from dreamgym_cli.stages.tasks import parse_seeds
from dreamgym_cli.trajectories import read_tasks


@pytest.mark.parametrize("text, seeds", [
    ("1-3", [1, 2, 3]), ("1,2,5-7", [1, 2, 5, 6, 7]), (" 4 ", [4]), ("3,1-2,2", [1, 2, 3]),
    ("0", [0]),
])
def test_parse_seeds(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["", "a", "1-", "-3", "3-1", "1..4", "1;2", "1-99999999999",
                                  "0-200000"])
def test_parse_seeds_rejects_nonsense(text):
    with pytest.raises(InputError) as e:
        parse_seeds(text)
    assert e.value.field == "seeds"


def test_design_invocation_writes_tasks_and_a_rerun_is_skipped(run_cli, tmp_path, tw_games):
    out = tmp_path / "T.parquet"
    args = ["tasks", "make", "--env", "textworld", "--challenge", "tw-simple", "--seeds", "1-3",
            "--split", "test", "--out", out]
    code, stdout, stderr = run_cli(*args, "--json")
    assert code == 0, stderr
    result = json.loads(stdout)  # exactly one JSON object on stdout
    assert stdout.strip().count("\n") == 0
    assert result["count"] == 3 and result["generated"] + result["cached"] == 3
    assert result["settings"] == {"rewards": "dense", "goal": "detailed", "test": False}
    tasks = read_tasks(out)
    assert [t.task_id for t in tasks] == [
        f"tw-simple/rewards=dense,goal=detailed,test=false/seed-{s}" for s in (1, 2, 3)]
    for task in tasks:
        assert task.env == "textworld" and task.split == "test" and task.origin == "seed"
        assert task.instruction and "  " not in task.instruction
        assert set(task.spec) == {"challenge", "settings", "seed", "game", "max_steps"}
        assert task.spec["max_steps"] == 50
        assert (tw_games / task.spec["game"]).is_file()
    assert read_manifest(out)["metrics"]["count"] == 3
    before = out.read_bytes()

    code, stdout, _ = run_cli(*args, "--json")
    again = json.loads(stdout)
    assert code == 0 and again["skipped"] is True and again["generated"] == 0
    assert out.read_bytes() == before

    code, stdout, _ = run_cli(*args, "--json", "--force")
    forced = json.loads(stdout)
    assert code == 0 and forced["skipped"] is False
    assert forced["generated"] == 0 and forced["cached"] == 3  # games come from the cache
    assert [t.to_row() for t in read_tasks(out)] == [t.to_row() for t in tasks]


def test_settings_and_limits_reach_the_task_spec(run_cli, tmp_path, tw_games):
    out = tmp_path / "T.jsonl"
    code, stdout, stderr = run_cli("tasks", "make", "--env", "textworld", "--challenge",
                                   "tw-coin_collector", "--settings", "level=2", "--seeds", "1",
                                   "--max-steps", "7", "--out", out, "--json")
    assert code == 0, stderr
    (task,) = read_tasks(out)
    assert task.task_id == "tw-coin_collector/level=2/seed-1"
    assert task.spec["settings"] == {"level": 2} and task.spec["max_steps"] == 7
    assert json.loads(out.read_text())["spec"]["seed"] == 1  # JSONL task file, spec as object


@pytest.mark.parametrize("extra, words", [
    (["--env", "minwob", "--suite", "click-button"], ["did you mean 'miniwob'"]),
    (["--env", "textworld", "--challenge", "tw-simpel"], ["did you mean 'tw-simple'"]),
    (["--env", "textworld", "--settings", "rewards=lots"], ["invalid choice"]),
    (["--env", "textworld", "--seeds", "3-1"], ["runs backwards"]),
    (["--env", "textworld", "--split", "dev"], ["train, valid, test"]),
    (["--env", "textworld", "--max-steps", "0"], [">= 1"]),
    (["--env", "textworld", "--settings", "level=500", "--challenge", "tw-coin_collector"],
     ["cannot make a game", "level"]),
])
def test_bad_input_exits_2_and_writes_nothing(run_cli, tmp_path, extra, words, tw_games):
    out = tmp_path / "T.parquet"
    code, stdout, stderr = run_cli("tasks", "make", "--out", out, "--seeds", "1", *extra)
    assert code == 2, stderr
    assert all(w in stderr for w in words), stderr
    assert "Traceback" not in stderr and stdout == ""
    assert not list(tmp_path.iterdir())
