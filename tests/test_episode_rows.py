"""One episode -> store rows (`schema.episode_record`): collect, the rollout engine and the dream
env build them there, with the fields and values each built on its own before (the old code is
kept below as the reference, fed the same steps)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tw_fixtures import tw_games, tw_simple_file, tw_simple_tasks  # noqa: F401  (fixtures)

from dreamgym_cli.schema import (
    Episode, EpisodeRecord, Step, Task, episode_record, now_utc, validate_episode, validate_task,
)
from tests.dream_fixtures import untrained_em_dir

STATE = "Location: kitchen\nYou see a key.\nActions: look | take key | go north"
STEP_KEYS = {"episode_id", "t", "task_id", "env", "source", "state", "admissible", "action",
             "next_state", "reward", "done", "success", "reasoning", "policy", "created_at",
             "content_hash", "metadata"}
EPISODE_KEYS = {"episode_id", "task_id", "env", "source", "policy", "return", "success", "length",
                "created_at", "content_hash"}


def without_episode_time(record) -> tuple:
    task, episode, steps = record
    return task, {k: v for k, v in episode.items() if k != "created_at"}, steps


def check_shape(record) -> None:
    assert isinstance(record, EpisodeRecord)
    assert set(record.episode) == EPISODE_KEYS
    assert all(set(s) == STEP_KEYS for s in record.steps)
    assert [s["t"] for s in record.steps] == list(range(record.episode["length"]))


# ---- collect ----------------------------------------------------------------------------------


def old_collect_rows(task_row: dict, episode_id: str, policy: str, steps: list[dict]) -> tuple:
    """collect.run_episode's rows as it built them before episode_record."""
    task = Task.from_row(task_row)
    head = dict(episode_id=episode_id, task_id=task.task_id, env=task.env, source="real",
                policy=policy)
    rows = [Step(**head, t=s["t"], state=s["state"], admissible=s["admissible"],
                 action=s["action"], next_state=s["next_state"], reward=s["reward"],
                 done=s["done"], success=s["success"], reasoning=None,
                 created_at=s["created_at"]).to_row() for s in steps]
    episode = Episode(**head, return_=float(sum(s["reward"] for s in rows)),
                      success=rows[-1]["success"] if rows else False, length=len(rows),
                      created_at=now_utc()).to_row(rows)
    return validate_task(task_row), episode, rows


@pytest.mark.parametrize("policy", ["expert", "random"])
def test_collect_rows_are_the_ones_it_built_before(tw_simple_tasks, policy):  # noqa: F811
    from dreamgym_cli.stages.collect import EpisodeJob, close_envs, run_episode

    job = EpisodeJob(tw_simple_tasks[0].to_row(), policy, 0.0, 0, 0, 5)
    try:
        record = run_episode(job)
    finally:
        close_envs()
    check_shape(record)
    old = old_collect_rows(job.task_row, record.episode["episode_id"], policy, record.steps)
    assert without_episode_time(record) == without_episode_time(old)


# ---- the rollout engine -----------------------------------------------------------------------


def old_rollout_rows(e, source: str, policy: str, steps: list[dict]) -> tuple:
    """rl.rollout.episode_records' rows as it built them before episode_record."""
    return validate_episode({"episode_id": e.episode_id, "task": e.task.to_row(),
                             "source": source, "policy": policy, "steps": steps,
                             "success": e.success if e.turns[-1].done else None})


def _turn(action: str, reward: float, done: bool, success: bool | None):
    from dreamgym_cli.rl.rollout import Turn

    return Turn(state=STATE, admissible=["look", "take key"], prompt_ids=[1], token_ids=[2],
                logprobs=[-0.1], text=f"<action>{action}</action>", action=action,
                valid_format=True, in_admissible=True, next_state=STATE, reward=reward,
                done=done, success=success, reasoning="why" if done else None)


@pytest.mark.parametrize("last", [(1.0, True, True), (0.0, True, None), (0.0, False, None)])
def test_rollout_rows_are_the_ones_it_built_before(last):
    from dreamgym_cli.rl.rollout import EpisodeRollout, episode_records

    task = Task("t0", "textworld", "take the key", {"initial_state": STATE})
    e = EpisodeRollout(task, 0, "roll-1",
                       [_turn("look", 0.0, False, None), _turn("take key", *last)])
    (record,) = episode_records([e, EpisodeRollout(task, 0, "roll-2")], "real", "P")
    check_shape(record)
    steps = [{k: s[k] for k in ("t", "state", "admissible", "action", "next_state", "reward",
                                "done", "success", "reasoning", "created_at")}
             for s in record.steps]
    old = old_rollout_rows(e, "real", "P", steps)
    assert without_episode_time(record) == without_episode_time(old)
    assert record.episode["success"] == (bool(last[2]) if last[1] else None)


# ---- the dream env ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def em_dir(tmp_path_factory) -> Path:
    return untrained_em_dir(tmp_path_factory, STATE)


def old_dream_rows(slot, policy: str) -> tuple:
    """DreamEnv.finished_episodes' rows as it built them before episode_record."""
    return validate_episode({"episode_id": slot.episode_id, "task": slot.task.to_row(),
                             "source": "synthetic", "policy": policy, "steps": slot.steps,
                             "success": slot.steps[-1]["success"]})


def test_dream_rows_are_the_ones_it_built_before(em_dir):
    from dreamgym_cli.envs.dream import DreamEnv

    tasks = [Task(f"t{i}", "textworld", f"find the key {i}",
                  {"initial_state": STATE, "max_steps": 2}) for i in range(2)]
    env = DreamEnv(em_dir, max_retries=0, seed=1, policy_name="P")
    env.reset_batch(tasks)
    for _ in range(2):
        env.step_batch([None if env.is_done(i) else "look" for i in range(2)])
    records = env.finished_episodes()
    assert len(records) == 2
    for record, slot in zip(records, env.slots):
        check_shape(record)
        assert without_episode_time(record) == without_episode_time(old_dream_rows(slot, "P"))
        assert record.episode["source"] == "synthetic" and record.episode["policy"] == "P"
    env.close()


def test_episode_record_fills_the_episode_and_takes_the_last_steps_success():
    task = Task("t0", "textworld", "take the key", {})
    steps = [{"t": 0, "state": "a", "admissible": None, "action": "x", "next_state": "b",
              "reward": 0.5, "done": True, "success": None, "reasoning": None,
              "created_at": now_utc()}]
    record = episode_record(task, steps, episode_id="e1", source="real", policy="expert")
    check_shape(record)
    assert record.episode["return"] == 0.5 and record.episode["success"] is None
    assert record.steps[0]["episode_id"] == "e1" and record.steps[0]["policy"] == "expert"
    won = episode_record(task, steps, episode_id="e1", source="real", policy="expert",
                         success=False)
    assert won.episode["success"] is False
