"""BabyAI (minigrid) with our text rendering: the bot expert wins real levels through the CLI."""

from __future__ import annotations

import pytest

pytest.importorskip("minigrid", reason="the `babyai` extra (minigrid) is not installed")

from dreamgym_cli.envs.babyai import ACTION_WORDS, BabyAIEnv, make_tasks  # noqa: E402
from dreamgym_cli.trajectories import read_episodes  # noqa: E402
from tests.env_fixtures import make_and_collect_expert  # noqa: E402

LEVELS = "BabyAI-GoToLocal-v0,BabyAI-PickupLoc-v0,BabyAI-OpenDoor-v0"


def test_tasks_make_and_expert_collect_win(run_cli, tmp_path):
    tasks, episodes = tmp_path / "B.parquet", tmp_path / "BE.jsonl"
    made, collected = make_and_collect_expert(run_cli, "babyai", LEVELS, "1-3", tasks, episodes,
                                              "--workers", "1")
    assert made["count"] == 9
    assert collected["success_rate"] == 1.0
    for task, episode, steps in read_episodes(episodes):
        first = steps[0]["state"].splitlines()
        assert first[0] == f"Mission: {task['instruction']}"
        assert [line.split(":")[0] for line in first] == \
            ["Mission", "Front", "Left", "Right", "Carrying", "Visible", "Actions"]
        assert all(s["action"] in ACTION_WORDS for s in steps)
        assert steps[-1]["done"] and steps[-1]["reward"] == 1.0
        assert all(s["next_state"].startswith("Feedback: ") for s in steps)


def test_rendering_follows_the_agent_and_bot_recovers():
    (task,) = make_tasks(["BabyAI-PickupLoc-v0"], [5], "train", None)
    env = BabyAIEnv()
    try:
        start = env.reset(task)
        turned = env.step("turn left")
        assert turned.observation.text.splitlines()[0] == "Feedback: turn left: done"
        assert turned.observation.text.split("\n", 1)[1] != start.text  # the view turned
        back = env.step("turn right")
        assert back.observation.text.split("\n", 1)[1] == start.text
        bad = env.step("jump")
        assert "not an action" in bad.observation.text and not bad.done
        result = bad
        for _ in range(60):  # the bot re-plans from wherever the random moves left it
            result = env.step(env.expert_action())
            if result.done:
                break
        assert result.success and "Carrying: a " in result.observation.text
    finally:
        env.close()


def test_unknown_level_exits_2(run_cli, tmp_path):
    code, out, err = run_cli("tasks", "make", "--env", "babyai", "--suite",
                             "BabyAI-GoToLocl-v0", "--seeds", "1", "--out", tmp_path / "B.jsonl")
    assert code == 2 and "did you mean 'BabyAI-GoToLocal-v0'" in err and out == ""
