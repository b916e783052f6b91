"""ALFWorld adapter: data checks and task listing on files in ALFWorld's layout.

Playing a game needs the `alfworld` package and TextWorld's PDDL engine (`fast-downward-textworld`),
which does not build here; `test_reset_needs_the_alfworld_package` checks the error a user gets
then, and is skipped where the package is installed.
"""

from __future__ import annotations

import importlib.util
import json

import pytest

from dreamgym_cli.envs.alfworld import make_tasks
from dreamgym_cli.envs.registry import make_env
from dreamgym_cli.errors import InputError


def write_game(root, split, task, trial, desc, solvable=True):
    d = root / "json_2.1.1" / split / task / trial
    d.mkdir(parents=True)
    (d / "game.tw-pddl").write_text(json.dumps({"pddl_domain": "(define (domain alfred))",
                                                "pddl_problem": "(define (problem p))",
                                                "grammar": "", "solvable": solvable}))
    (d / "traj_data.json").write_text(json.dumps({
        "task_type": task.split("-")[0],
        "turk_annotations": {"anns": [{"task_desc": desc, "high_descs": []}]}}))


@pytest.fixture
def alf_data(tmp_path):
    root = tmp_path / "alfworld"
    write_game(root, "train", "pick_and_place_simple-Mug-None-Desk-308", "trial_T2019_a",
               "Put a  mug on the desk.")
    write_game(root, "train", "look_at_obj_in_light-Book-None-DeskLamp-301", "trial_T2019_b",
               "Examine a book under the lamp.")
    write_game(root, "train", "pick_clean_then_place-Cup-None-Shelf-1", "trial_T2019_c",
               "Clean a cup.", solvable=False)
    return root


def test_missing_data_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv("ALFWORLD_DATA", raising=False)
    with pytest.raises(InputError, match="--data DIR or set ALFWORLD_DATA"):
        make_env("alfworld")
    monkeypatch.setenv("ALFWORLD_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(InputError, match="not found"):
        make_env("alfworld")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no ALFWorld games for split 'train'"):
        make_tasks([0], data=tmp_path / "empty")


def test_tasks_are_the_solvable_games_in_path_order(alf_data, monkeypatch):
    monkeypatch.setenv("ALFWORLD_DATA", str(alf_data))
    tasks = make_tasks([0, 1], split="train", max_steps=30)
    assert [t.instruction for t in tasks] == ["Examine a book under the lamp.",
                                              "Put a mug on the desk."]
    assert tasks[1].task_id == ("alfworld/json_2.1.1/train/pick_and_place_simple-Mug-None-"
                                "Desk-308/trial_T2019_a")
    assert tasks[1].spec == {"game": "json_2.1.1/train/pick_and_place_simple-Mug-None-Desk-308/"
                                     "trial_T2019_a/game.tw-pddl", "max_steps": 30}
    with pytest.raises(InputError, match="seed 2 is out of range: split 'train' has 2 games"):
        make_tasks([2], data=alf_data)
    with pytest.raises(InputError, match="no ALFWorld games for split 'test'"):
        make_tasks([0], split="test", data=alf_data)


@pytest.mark.skipif(importlib.util.find_spec("alfworld") is not None,
                    reason="alfworld is installed: the missing-package error cannot happen")
def test_reset_needs_the_alfworld_package(alf_data):
    env = make_env("alfworld", data=alf_data)
    task = make_tasks([0], data=alf_data)[0]
    with pytest.raises(InputError, match="needs the alfworld package"):
        env.reset(task)
    env.close()
