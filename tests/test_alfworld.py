"""ALFWorld on its real engine: dreamgym's own games (envs.alfworld_games) in ALFWorld's format,
played by ALFWorld's env classes and by our adapter; the planner expert wins every one; the
pipeline runs on them; plus the data checks on user data written in ALFWorld's layout.

The `alfworld` extra (alfworld + the compiled fast-downward-textworld) is part of `make test`'s
install: these tests do not skip when it is missing, they fail.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest

from dreamgym_cli.envs.alfworld import SPLITS, make_tasks
from dreamgym_cli.envs.alfworld_games import RECIPES, TASK_TYPES, alfworld_files, \
    ensure_builtin_games
from dreamgym_cli.envs.registry import make_env
from dreamgym_cli.errors import InputError
from dreamgym_cli.trajectories import read_episodes, read_tasks


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


@pytest.fixture(scope="module")
def builtin_root():
    return ensure_builtin_games()


def test_bad_user_data_is_a_clear_error(monkeypatch, tmp_path):
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
                                     "trial_T2019_a/game.tw-pddl", "data": str(alf_data),
                             "games": "user", "max_steps": 30}
    with pytest.raises(InputError, match="seed 2 is out of range: split 'train' has 2 games"):
        make_tasks([2], data=alf_data)
    with pytest.raises(InputError, match="no ALFWorld games for split 'test'"):
        make_tasks([0], split="test", data=alf_data)


def test_builtin_games_are_alfworld_games_of_all_six_task_types(builtin_root):
    files = alfworld_files()
    domain = files["domain"].read_text()
    for split, alfworld_split in SPLITS.items():
        games = sorted((builtin_root / "json_2.1.1" / alfworld_split).glob("*/*/game.tw-pddl"))
        types = Counter(json.loads((g.parent / "traj_data.json").read_text())["task_type"]
                        for g in games)
        assert set(types) == set(TASK_TYPES), split  # all six in every split
        for game in games:
            data = json.loads(game.read_text())
            assert set(data) == {"pddl_domain", "grammar", "pddl_problem", "solvable"}
            assert data["pddl_domain"] == domain and data["solvable"] is True
            assert "UNKNOWN GOAL" not in data["grammar"] and "(:goal" in data["pddl_problem"]
    assert len(list(builtin_root.glob("json_2.1.1/*/*/*/game.tw-pddl"))) == len(RECIPES) == 24
    assert ensure_builtin_games() == builtin_root  # generated once, then reused


def expert_walkthroughs(split: str, count: int) -> dict[str, list[str]]:
    """Game file -> the commands our adapter's planner expert wins it with."""
    env, plans = make_env("alfworld"), {}
    try:
        for task in make_tasks(list(range(count)), split=split):
            env.reset(task)
            plan, result = [], None
            while result is None or not result.done:
                plan.append(env.expert_action())
                result = env.step(plan[-1])
            assert result.success
            plans[str(env.game_path(task).resolve())] = plan
    finally:
        env.close()
    return plans


def test_alfworld_own_env_class_plays_the_builtin_games(builtin_root):
    """ALFWorld's AlfredTWEnv (config as in its base_config.yaml) collects every game of each
    split, and its batched TextWorld env plays each training game to a win."""
    from alfworld.agents.environment.alfred_tw_env import AlfredTWEnv

    base = builtin_root / "json_2.1.1"
    config = {"env": {"goal_desc_human_anns_prob": 0, "task_types": [1, 2, 3, 4, 5, 6],
                      "domain_randomization": False, "expert_type": "planner"},
              "dataset": {"data_path": str(base / "train"),
                          "eval_id_data_path": str(base / "valid_seen"),
                          "eval_ood_data_path": str(base / "valid_unseen"),
                          "num_train_games": -1, "num_eval_games": -1},
              "general": {"training_method": "dqn"},
              "rl": {"training": {"max_nb_steps_per_episode": 50}}}
    counts = {split: AlfredTWEnv(config, train_eval=split).num_games
              for split in ("train", "eval_in_distribution", "eval_out_of_distribution")}
    assert counts == {"train": 12, "eval_in_distribution": 6, "eval_out_of_distribution": 6}
    plans = expert_walkthroughs("train", 12)
    alfred = AlfredTWEnv(config, train_eval="eval_in_distribution")
    alfred.game_files = sorted(plans)  # replay in a fixed order: its batch env picks in order
    env = alfred.init_env(batch_size=1)
    won = {}
    try:
        for _ in plans:
            obs, infos = env.reset()
            game = str(Path(infos["extra.gamefile"][0]).resolve())
            assert obs[0].startswith("-= Welcome to TextWorld, ALFRED! =-")
            for command in plans[game]:
                assert command in infos["admissible_commands"][0]
                obs, _, dones, infos = env.step([command])
            won[game] = bool(infos["won"][0] and dones[0])
    finally:
        env.close()
    assert won == dict.fromkeys(plans, True)


def test_planner_expert_wins_every_builtin_game(builtin_root):
    """Through our adapter: every built-in game of every split, won by ALFWorld's planner expert;
    prints the game-load time (reset) and step latency measured on the way."""
    env = make_env("alfworld")
    loads, steps, lengths = [], [], []
    try:
        for split in SPLITS:
            tasks = make_tasks(list(range(12 if split == "train" else 6)), split=split)
            for task in tasks:
                start = time.perf_counter()
                observation = env.reset(task)
                loads.append(time.perf_counter() - start)
                assert observation.text.startswith("Observation: -= Welcome to TextWorld")
                assert f"your task is to: {task.instruction[:-1].lower()}" in \
                    observation.text.lower()
                result, length = None, 0
                while result is None or not result.done:
                    action = env.expert_action()
                    assert action in env_admissible(result, observation), action
                    start = time.perf_counter()
                    result = env.step(action)
                    steps.append(time.perf_counter() - start)
                    length += 1
                assert result.success and result.reward == 1.0, task.task_id
                lengths.append(length)
    finally:
        env.close()
    assert len(lengths) == 24 and max(lengths) <= 12
    print(f"alfworld: 24/24 won, {sum(lengths)} expert steps; game load "
          f"{1000 * sum(loads) / len(loads):.0f} ms mean (max {1000 * max(loads):.0f}); step "
          f"{1000 * sum(steps) / len(steps):.0f} ms mean (max {1000 * max(steps):.0f})")


def env_admissible(result, first):
    return (result.observation if result is not None else first).admissible


def test_pipeline_on_builtin_games(run_cli, tmp_path, builtin_root, monkeypatch, one_torch_thread):
    """tasks make → collect → ingest → annotate → train-em → eval-em (held-out ALFWorld
    transitions) → train-agent sft → grpo in the dream env → eval on the real ALFWorld games."""
    monkeypatch.delenv("ALFWORLD_DATA", raising=False)
    d = tmp_path

    def ok(*args):
        code, out, err = run_cli(*args, "--json")
        assert code == 0, err
        return json.loads(out)

    made = ok("tasks", "make", "--env", "alfworld", "--seeds", "0-11", "--split", "train",
              "--out", d / "T.parquet")
    assert made["count"] == 12 and made["games"] == "dreamgym"
    assert made["data"] == str(builtin_root.resolve())
    ok("tasks", "make", "--env", "alfworld", "--seeds", "0-5", "--split", "test",
       "--out", d / "H.parquet")
    assert {t.spec["games"] for t in read_tasks(d / "H.parquet")} == {"dreamgym"}
    collected = ok("collect", "--tasks", d / "T.parquet", "--policy", "expert",
                   "--episodes-per-task", "1", "--workers", "1", "--out", d / "E.jsonl")
    assert collected["success_rate"] == 1.0 and collected["episodes"] == 12
    held = ok("collect", "--tasks", d / "H.parquet", "--policy", "mixed", "--epsilon", "0.3",
              "--episodes-per-task", "1", "--workers", "1", "--out", d / "HE.jsonl")
    assert held["episodes"] == 6
    (task, episode, steps), *_ = list(read_episodes(d / "E.jsonl"))
    assert steps[0]["state"].startswith("Observation: -= Welcome to TextWorld, ALFRED! =-")
    assert steps[-1]["next_state"].startswith("Feedback: You ") and steps[-1]["success"]
    assert ok("ingest", d / "E.jsonl", "--store", d / "S")["totals"]["episodes_added"] == 12
    ok("annotate", "--store", d / "S")
    ok("train-em", "--store", d / "S", "--base", "tiny:1m", "--max-steps", "2", "--batch-size",
       "2", "--max-length", "512", "--retrieval-k", "0", "--out", d / "EM")
    settings = json.loads((d / "EM" / "em.json").read_text())
    settings["max_new_tokens"] = 64  # an untrained model rambles: cap each dream step
    (d / "EM" / "em.json").write_text(json.dumps(settings))
    fidelity = ok("eval-em", "--em", d / "EM", "--episodes", d / "HE.jsonl", "--out", d / "D")
    assert fidelity["em/transitions"] == held["steps"]
    assert 0.0 <= fidelity["em/reward_accuracy"] <= 1.0
    ok("train-agent", "--algo", "sft", "--store", d / "S", "--base", "tiny:1m", "--max-steps",
       "2", "--batch-size", "2", "--max-new-tokens", "16", "--out", d / "P0")
    grpo = ok("train-agent", "--algo", "grpo", "--init", d / "P0", "--env", f"dream:{d / 'EM'}",
              "--tasks", d / "T.parquet", "--store", d / "S", "--iterations", "1",
              "--group-size", "2", "--batch-tasks", "2", "--max-steps-per-episode", "2",
              "--mini-batches", "1", "--out", d / "P1")
    assert grpo["iterations_run"] == 1 and grpo["real_steps_used"] == 0
    report = ok("eval", "--policy", d / "P1", "--tasks", d / "H.parquet", "--out", d / "R",
                "--max-steps-per-episode", "3")
    assert report["episodes"] == 6 and len(report["per_task"]) == 6


def test_tasks_make_takes_the_users_alfworld_data(run_cli, alf_data, monkeypatch, tmp_path):
    monkeypatch.setenv("ALFWORLD_DATA", str(alf_data))
    code, out, err = run_cli("tasks", "make", "--env", "alfworld", "--seeds", "0-1", "--out",
                             tmp_path / "U.jsonl", "--json")
    assert code == 0, err
    assert json.loads(out)["games"] == "user"
    tasks = read_tasks(tmp_path / "U.jsonl")
    assert [t.spec["data"] for t in tasks] == [str(alf_data)] * 2
    code, out, err = run_cli("tasks", "make", "--env", "alfworld", "--seeds", "5", "--out",
                             tmp_path / "V.jsonl")
    assert code == 2 and "seed 5 is out of range" in err and out == ""
