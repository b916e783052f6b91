"""ScienceWorld (real simulator in a JVM): the gold sequence wins, and the fast step is faster."""

from __future__ import annotations

import shutil
import time

import pytest

pytest.importorskip("scienceworld", reason="the `science` extra (scienceworld) is not installed")
pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="Java 17 is not installed")

from dreamgym_cli.trajectories import read_episodes  # noqa: E402
from tests.env_fixtures import make_and_collect_expert  # noqa: E402


def test_tasks_make_and_gold_expert_win(run_cli, tmp_path):
    tasks, episodes = tmp_path / "S.parquet", tmp_path / "SE.jsonl"
    made, collected = make_and_collect_expert(run_cli, "scienceworld", "find-living-thing", "0",
                                              tasks, episodes, "--workers", "1")
    assert made["count"] == 1
    assert collected["success_rate"] == 1.0
    ((task, episode, steps),) = list(read_episodes(episodes))
    assert "living thing" in task["instruction"]
    assert episode["return"] == pytest.approx(1.0)  # score 0 -> 100, in hundredths
    assert steps[0]["state"].splitlines()[0].startswith("Look: This room is called the hallway")
    assert steps[-1]["next_state"].splitlines()[0].startswith("Feedback: ")
    assert "Score: 100" in steps[-1]["next_state"]


def test_fast_step_matches_library_step_and_is_faster():
    from scienceworld import ScienceWorldEnv as Simulator

    from dreamgym_cli.envs.scienceworld import ScienceWorldEnv
    from dreamgym_cli.schema import Task

    task = Task(task_id="sw", env="scienceworld", instruction="", split="test",
                spec={"task": "find-living-thing", "variation": 0, "max_steps": 50})
    env = ScienceWorldEnv()
    library = Simulator("", envStepLimit=100)
    try:
        env.reset(task)
        gold = list(env._gold)
        library.load("find-living-thing", 0, "", generateGoldPath=True)
        library.reset()
        fast_s = slow_s = 0.0
        for action in gold:
            start = time.perf_counter()
            ours = env.step(action)
            fast_s += time.perf_counter() - start
            start = time.perf_counter()
            observation, _, _, info = library.step(action)
            slow_s += time.perf_counter() - start
            assert ours.observation.text.splitlines()[0] == \
                "Feedback: " + " ".join(observation.split())
            assert ours.info["score"] == info["score"]
        assert ours.success and ours.done
        print(f"scienceworld step: fast {1000 * fast_s / len(gold):.1f} ms, "
              f"library {1000 * slow_s / len(gold):.1f} ms over {len(gold)} gold steps")
        assert fast_s < slow_s
        assert "look around" in env.valid_actions()  # the slow full list, on demand
    finally:
        env.close()
        library.close()


def test_bad_variation_is_an_input_error(run_cli, tmp_path):
    code, out, err = run_cli("tasks", "make", "--env", "scienceworld", "--suite", "boil",
                             "--seeds", "99999", "--out", tmp_path / "S.jsonl")
    assert code == 2 and "variations 0-" in err and out == ""
