"""MiniWoB++ in real headless Chromium: state/action format, the scripted expert, and the
DESIGN §12 `tasks make` + `collect` commands end to end."""

from __future__ import annotations

import pytest

from dreamgym_cli.trajectories import read_episodes
from dreamgym_cli.envs.miniwob_expert import Element, admissible_actions, parse_action, render_state
from tests.env_fixtures import make_and_collect_expert

pytest.importorskip("miniwob", reason="the `web` extra (miniwob, selenium) is not installed")
from dreamgym_cli.envs.miniwob import browser_paths  # noqa: E402

needs_browser = pytest.mark.skipif(browser_paths() is None,
                                   reason="chromium + chromedriver not found (make system-deps)")


def test_actions_parse_and_render():
    assert parse_action('type [5] "Jerald"') == ("type", 5, "Jerald")
    assert parse_action("click [12]") == ("click", 12, None)
    assert parse_action("click [x]") is None and parse_action('click [3] "a"') is None
    assert parse_action("type [3]") is None
    box = Element(8, "input_checkbox", "DKkQH", True)
    field = Element(5, "input_text", "", "Jer")
    text = render_state("Do it.", [box, field, Element(9, "button", "Submit", "")])
    assert text.splitlines() == ["Task: Do it.", "[8] input_checkbox: DKkQH (checked)",
                                 '[5] input_text: value "Jer"', "[9] button: Submit"]
    assert admissible_actions([box, field], [("target", "Jerald")]) == \
        ["click [8]", "click [5]", 'type [5] "Jerald"']
    assert render_state("Do it.", [box], done=True, success=False).endswith("Status: done, failure")


@needs_browser
def test_design_commands_expert_wins_every_task(run_cli, tmp_path):
    w, we = tmp_path / "W.parquet", tmp_path / "WE.jsonl"
    made, result = make_and_collect_expert(run_cli, "miniwob",
                                           "click-button,click-link,enter-text", "1-3", w, we,
                                           "--episodes-per-task", "1")
    assert made["count"] == 9 and made["env"] == "miniwob"
    assert result["episodes"] == 9 and result["success_rate"] == 1.0
    steps = [s for _, _, episode_steps in read_episodes(we) for s in episode_steps]
    assert len(steps) >= 9
    for step in steps:
        lines = step["state"].splitlines()
        assert lines[0].startswith("Task: ") and all(line.startswith("[") for line in lines[1:])
        assert step["action"] in step["admissible"]
    enter = [s for s in steps if "/enter-text/" in s["task_id"]]
    assert [s["action"].split()[0] for s in enter] == ["type", "click"] * 3
    assert all(s["next_state"].endswith("Status: done, success") for s in steps if s["done"])


@needs_browser
def test_invalid_moves_are_reported_and_the_expert_recovers():
    from dreamgym_cli.envs.miniwob import MiniWoBEnv, make_tasks

    (task,) = make_tasks(["enter-text"], [2], "test", None)
    env = MiniWoBEnv()
    try:
        observation = env.reset(task)
        target = task.instruction.split('"')[1]
        field = next(a for a in observation.admissible if a.startswith("type")).split("]")[0]
        bad = env.step("press the button")
        assert "Feedback: not an action" in bad.observation.text and not bad.done
        wrong = env.step(f'{field}] "wrong text"')
        assert 'value "wrong text"' in wrong.observation.text
        assert env.expert_action() == f'{field}] "{target}"'  # typing replaces the text
        fixed = env.step(env.expert_action())
        assert f'value "{target}"' in fixed.observation.text
        assert "wrong" not in fixed.observation.text
        final = env.step(env.expert_action())
        assert final.done and final.success and final.reward == 1.0
    finally:
        env.close()


@needs_browser
def test_same_seed_same_page_and_step_limit():
    from dreamgym_cli.envs.miniwob import MiniWoBEnv, make_tasks

    (task,) = make_tasks(["click-checkboxes"], [4], "train", 1)
    env = MiniWoBEnv()
    try:
        first = env.reset(task)
        assert first.info["utterance"] == task.instruction
        assert env.reset(task).text == first.text  # the seed fixes utterance and layout
        box = next(a for a in first.admissible if a != env.expert_action() and
                   "input_checkbox" in first.text.split(a.split()[1])[1].splitlines()[0])
        result = env.step(box)  # a checkbox click does not end the task: the limit (1) does
        assert result.done and not result.success and result.info["truncated"]
        assert result.reward == 0.0 and result.observation.admissible == []
    finally:
        env.close()


def test_unknown_task_name_exits_2(run_cli, tmp_path):
    code, out, err = run_cli("tasks", "make", "--env", "miniwob", "--suite", "click-buton",
                             "--seeds", "1", "--out", tmp_path / "W.parquet")
    assert code == 2 and "did you mean 'click-button'" in err and out == ""
    assert not list(tmp_path.iterdir())
