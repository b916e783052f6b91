"""`dreamgym collect` on real TextWorld games: expert/random/mixed, workers, output, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tw_fixtures import tw_games, tw_simple_file, tw_simple_tasks  # noqa: F401  (fixtures)

from dreamgym_cli.stages.collect import CollectConfig, run
from dreamgym_cli.trajectories import read_episodes


def actions_by_task(path: Path) -> dict[tuple[str, str], list[str]]:
    return {(e["task_id"], e["policy"]): [s["action"] for s in steps]
            for _, e, steps in read_episodes(path)}


def collect(tasks: Path, out: Path, **kw) -> dict:
    return run(CollectConfig(tasks=tasks, out=out, **kw))


def test_design_invocation_expert_wins_every_game(run_cli, tmp_path, tw_simple_file,
                                                  tw_simple_tasks):
    out = tmp_path / "E.jsonl"
    code, stdout, stderr = run_cli("collect", "--tasks", tw_simple_file, "--policy", "expert",
                                   "--episodes-per-task", "1", "--out", out, "--json")
    assert code == 0, stderr
    result = json.loads(stdout)  # exactly one JSON object on stdout
    assert result["episodes"] == 3 and result["success_rate"] == 1.0
    assert result["per_policy"]["expert"]["episodes"] == 3
    records = list(read_episodes(out))
    assert [t["task_id"] for t, _, _ in records] == [t.task_id for t in tw_simple_tasks]
    assert result["steps"] == sum(len(steps) for _, _, steps in records)
    for task, episode, steps in records:
        assert episode["source"] == "real" and episode["policy"] == "expert"
        assert episode["success"] is True and steps[-1]["done"] and steps[-1]["success"]
        assert episode["return"] == sum(s["reward"] for s in steps) > 0
        for i, s in enumerate(steps):
            assert s["admissible"] and s["action"] in s["admissible"]
            assert s["state"].startswith("Location: ") if i == 0 else \
                s["state"].startswith("Feedback: ")
            assert s["next_state"].startswith("Feedback: ")
            if i:
                assert s["state"] == steps[i - 1]["next_state"]
    assert len({e["episode_id"] for _, e, _ in records}) == 3

    # Same inputs: skipped; the pool (2 workers above) and one process give the same episodes.
    again = collect(tw_simple_file, out)
    assert again["skipped"] is True
    single = collect(tw_simple_file, tmp_path / "E1.parquet", workers=1)
    assert single["skipped"] is False
    assert actions_by_task(tmp_path / "E1.parquet") == actions_by_task(out)


def test_random_and_mixed_differ_from_expert_and_are_seeded(tmp_path, tw_simple_file):
    out = tmp_path / "E.jsonl"
    result = collect(tw_simple_file, out, policy="expert,random,mixed", workers=1, max_steps=20,
                     seed=7)
    per = result["per_policy"]
    assert set(per) == {"expert", "random", "mixed-0.3"}
    assert per["expert"]["success_rate"] == 1.0
    assert per["mixed-0.3"]["mean_length"] > per["expert"]["mean_length"]  # detours
    actions = actions_by_task(out)
    tasks = sorted({task for task, _ in actions})
    for task in tasks:
        assert actions[(task, "random")] != actions[(task, "expert")]
        assert actions[(task, "mixed-0.3")] != actions[(task, "expert")]
    for _, episode, steps in read_episodes(out):  # the step limit ends an episode as a failure
        assert episode["length"] <= 20
        if episode["length"] == 20 and not steps[-1]["success"]:
            assert steps[-1]["done"] and episode["success"] is False

    same = tmp_path / "same.jsonl"
    collect(tw_simple_file, same, policy="random", workers=1, max_steps=20, seed=7)
    other = tmp_path / "other.jsonl"
    collect(tw_simple_file, other, policy="random", workers=1, max_steps=20, seed=8)
    random_only = {k: v for k, v in actions.items() if k[1] == "random"}
    assert actions_by_task(same) == random_only
    assert actions_by_task(other) != random_only


def test_step_limit_marks_failures(tmp_path, tw_simple_file):
    out = tmp_path / "E.parquet"
    result = collect(tw_simple_file, out, policy="expert", workers=1, max_steps=3,
                     episodes_per_task=2)
    assert result["episodes"] == 6 and result["success_rate"] == 0.0
    for _, episode, steps in read_episodes(out):
        assert episode["length"] == 3 and episode["success"] is False
        assert [s["done"] for s in steps] == [False, False, True]


@pytest.mark.parametrize("extra, words", [
    (["--policy", "exprt"], ["did you mean 'expert'"]),
    (["--policy", "mixed", "--epsilon", "1.5"], ["[0, 1]"]),
    (["--episodes-per-task", "0"], ["at least 1"]),
    (["--max-steps", "0"], [">= 1"]),
])
def test_bad_input_exits_2_and_writes_nothing(run_cli, tmp_path, tw_simple_file, extra, words):
    out = tmp_path / "E.jsonl"
    code, stdout, stderr = run_cli("collect", "--tasks", tw_simple_file, "--out", out, *extra)
    assert code == 2, stderr
    assert all(w in stderr for w in words), stderr
    assert stdout == "" and not out.exists()


def test_policy_directory_is_not_accepted_yet(run_cli, tmp_path, tw_simple_file):
    policy_dir = tmp_path / "P0"
    policy_dir.mkdir()
    code, _, stderr = run_cli("collect", "--tasks", tw_simple_file, "--policy", policy_dir,
                              "--out", tmp_path / "E.jsonl")
    assert code == 2 and "expert, random, mixed" in stderr


def test_missing_task_file_exits_2(run_cli, tmp_path):
    code, _, stderr = run_cli("collect", "--tasks", tmp_path / "nope.parquet", "--out",
                              tmp_path / "E.jsonl")
    assert code == 2 and "no such file" in stderr


def test_a_task_the_env_cannot_reset_exits_2_naming_it(run_cli, tmp_path):
    tasks = tmp_path / "T.jsonl"
    tasks.write_text(json.dumps({"task_id": "t1", "env": "textworld", "instruction": "",
                                 "spec": {"challenge": "tw-simpel", "seed": 1}}) + "\n")
    code, _, stderr = run_cli("collect", "--tasks", tasks, "--out", tmp_path / "E.jsonl")
    assert code == 2
    assert "T.jsonl" in stderr and "'t1'" in stderr and "did you mean 'tw-simple'" in stderr
    assert not (tmp_path / "E.jsonl").exists()
