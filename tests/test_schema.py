"""Records: validation names the offending field; content hashes; JSONL/Parquet round trips."""

from __future__ import annotations

import copy

import pyarrow as pa
import pytest

from dreamgym_cli.errors import InputError
from dreamgym_cli.schema import (
    SCHEMA_VERSION, STEP_SCHEMA, episode_to_json, read_schema_version, rows_to_table,
    validate_episode, validate_task,
)
from dreamgym_cli.trajectories import read_episodes, read_tasks, write_episodes, write_tasks

EPISODE = {
    "schema_version": 1,
    "episode_id": "ep-1",
    "source": "real",
    "policy": "expert",
    "task": {"task_id": "tw/1", "env": "textworld", "instruction": "Take the key.",
             "spec": {"game": "textworld/tw-simple/x/seed-1.z8", "seed": 1}, "split": "test"},
    "steps": [
        {"t": 0, "state": "Location: Hall", "admissible": ["take key", "go east"],
         "action": "take key", "next_state": "Feedback: Taken.", "reward": 1.0, "done": False,
         "success": None},
        {"t": 1, "state": "Feedback: Taken.", "admissible": ["go east"], "action": "go east",
         "next_state": "Feedback: You win.", "reward": 0, "done": True, "success": True},
    ],
}


def test_valid_episode_fills_episode_fields_into_steps():
    task, episode, steps = validate_episode(copy.deepcopy(EPISODE))
    assert task["split"] == "test" and task["origin"] == "seed" and task["generation"] == 0
    assert episode["return"] == 1.0 and episode["success"] is True and episode["length"] == 2
    assert [s["episode_id"] for s in steps] == ["ep-1", "ep-1"]
    assert all(s["task_id"] == "tw/1" and s["policy"] == "expert" for s in steps)
    table = rows_to_table("steps", steps)
    assert table.schema.equals(STEP_SCHEMA, check_metadata=True)
    assert read_schema_version(table.schema) == SCHEMA_VERSION


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda e: e["steps"][1].__setitem__("reward", "one"), "steps[1].reward"),
        (lambda e: e["steps"][0].pop("action"), "steps[0].action"),
        (lambda e: e["steps"][0].__setitem__("done", "yes"), "steps[0].done"),
        (lambda e: e.__setitem__("source", "imagined"), "source"),
        (lambda e: e.__setitem__("schema_version", 2), "schema_version"),
        (lambda e: e["task"].pop("task_id"), "task.task_id"),
        (lambda e: e["task"].__setitem__("split", "dev"), "task.split"),
        (lambda e: e["steps"][1].__setitem__("t", 5), "steps[1].t"),
        (lambda e: e["steps"][0].__setitem__("admissible", "take key"), "steps[0].admissible"),
        (lambda e: e["task"]["spec"].__setitem__("game", "../../etc/passwd"), "task.spec.game"),
        (lambda e: e["task"]["spec"].__setitem__("game", "/abs/game.z8"), "task.spec.game"),
        (lambda e: e.__setitem__("length", 7), "length"),
        (lambda e: e["steps"][0].__setitem__("reward", float("nan")), "steps[0].reward"),
    ],
)
def test_invalid_field_is_named(mutate, field):
    rec = copy.deepcopy(EPISODE)
    mutate(rec)
    with pytest.raises(InputError) as info:
        validate_episode(rec)
    assert info.value.field == field
    assert f"field '{field}'" in info.value.one_line()


def test_content_hash_ignores_identity_but_not_content():
    _, e1, s1 = validate_episode(copy.deepcopy(EPISODE))
    other = copy.deepcopy(EPISODE)
    other["episode_id"] = "ep-2"
    _, e2, s2 = validate_episode(other)
    assert e1["content_hash"] == e2["content_hash"]
    changed = copy.deepcopy(EPISODE)
    changed["steps"][0]["reward"] = 0.5
    _, e3, _ = validate_episode(changed)
    assert e3["content_hash"] != e1["content_hash"]


def test_unknown_reward_gives_unknown_return():
    rec = copy.deepcopy(EPISODE)
    rec["steps"][0]["reward"] = None
    _, episode, _ = validate_episode(rec)
    assert episode["return"] is None


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_trajectory_file_round_trip(tmp_path, suffix):
    record = validate_episode(copy.deepcopy(EPISODE))
    path = tmp_path / f"e{suffix}"
    assert write_episodes(path, [record]) == 1
    [(task, episode, steps)] = list(read_episodes(path))
    assert episode["content_hash"] == record[1]["content_hash"]
    assert steps[0]["admissible"] == ["take key", "go east"]
    assert task == record[0]
    assert episode_to_json(task, episode, steps)["steps"][1]["success"] is True


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_task_file_round_trip_and_duplicates(tmp_path, suffix):
    from dreamgym_cli.schema import Task

    task = Task.from_row(validate_task(EPISODE["task"]))
    path = tmp_path / f"t{suffix}"
    write_tasks(path, [task])
    assert read_tasks(path) == [task]
    write_tasks(path, [task, task])
    with pytest.raises(InputError, match="duplicate task_id"):
        read_tasks(path)


def test_arrow_schema_rejects_missing_non_nullable():
    _, _, steps = validate_episode(copy.deepcopy(EPISODE))
    steps[0]["state"] = None
    with pytest.raises((pa.ArrowInvalid, pa.ArrowTypeError, ValueError)):
        rows_to_table("steps", steps).validate(full=True)


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_episode_record_is_the_currency_and_reads_like_the_old_tuple(tmp_path, suffix):
    from dreamgym_cli.schema import EpisodeRecord

    record = validate_episode(copy.deepcopy(EPISODE))
    assert isinstance(record, EpisodeRecord)
    task, episode, steps = record  # unpacks as (task, episode, steps) did
    assert (record.task, record.episode, record.steps) == (task, episode, steps)
    assert record[1] is record.episode and record == (task, episode, steps)
    write_episodes(tmp_path / f"e{suffix}", [record])
    (back,) = read_episodes(tmp_path / f"e{suffix}")
    assert isinstance(back, EpisodeRecord) and back.episode["episode_id"] == "ep-1"
