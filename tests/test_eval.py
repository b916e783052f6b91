"""eval (real-env success with a Wilson interval, report, plot) and the rollout command."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.agent_fixtures import agent_workdir, em_dir, one_thread, sft_policy  # noqa: F401
from tests.tw_fixtures import tw_games, tw_simple_file, tw_simple_tasks  # noqa: F401


@pytest.mark.parametrize("successes, n, low, high", [
    # by hand: center = (p + z²/2n) / (1 + z²/n), half = z/(1 + z²/n) · sqrt(p(1−p)/n + z²/4n²)
    (0, 6, 0.0, 0.390334),
    (5, 10, 0.236593, 0.763407),
    (3, 3, 0.438503, 1.0),
    (1, 20, 0.008882, 0.236131),
])
def test_wilson_interval_against_hand_computed_values(successes, n, low, high):
    from dreamgym_cli.stages.eval import wilson_interval

    lo, hi = wilson_interval(successes, n)
    assert lo == pytest.approx(low, abs=1e-5) and hi == pytest.approx(high, abs=1e-5)


def test_wilson_interval_without_episodes_is_uninformative():
    from dreamgym_cli.stages.eval import wilson_interval

    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_eval_design_invocation_writes_report_and_skips_when_up_to_date(
        run_cli, sft_policy, tw_simple_file, tmp_path):  # noqa: F811
    code, out, err = run_cli("eval", "--policy", sft_policy, "--tasks", tw_simple_file,
                             "--out", tmp_path / "R", "--max-steps-per-episode", "3",
                             "--episodes-per-task", "2", "--sample", "--json")
    assert code == 0, err
    result = json.loads(out)  # exactly one JSON object on stdout
    assert result["episodes"] == 6 and result["greedy"] is False
    assert sum(t["episodes"] for t in result["per_task"]) == 6
    assert result["successes"] == round(result["success_rate"] * 6)
    low, high = result["success_ci95"]
    assert 0.0 <= low <= result["success_rate"] <= high <= 1.0
    assert 1.0 <= result["mean_length"] <= 3.0
    assert 0.0 <= result["invalid_action_rate"] <= 1.0
    saved = json.loads((tmp_path / "R" / "results.json").read_text())
    assert saved["success_ci95"] == result["success_ci95"]
    report = (tmp_path / "R" / "report.md").read_text()
    assert "95% CI" in report and all(t["task_id"] in report for t in result["per_task"])
    assert (tmp_path / "R" / "success.png").read_bytes()[:4] == b"\x89PNG"
    code, out, _ = run_cli("eval", "--policy", sft_policy, "--tasks", tw_simple_file,
                           "--out", tmp_path / "R", "--max-steps-per-episode", "3",
                           "--episodes-per-task", "2", "--sample", "--json")
    assert code == 0 and json.loads(out)["skipped"] is True


def test_eval_of_something_that_is_not_a_policy_exits_2(run_cli, tw_simple_file, tmp_path):  # noqa: F811
    code, out, err = run_cli("eval", "--policy", tmp_path, "--tasks", tw_simple_file,
                             "--out", tmp_path / "R")
    assert code == 2 and "policy.json" in err and out == ""
    assert not (tmp_path / "R").exists()


def test_eval_refuses_the_dream_env(run_cli, sft_policy, em_dir, tw_simple_file, tmp_path):  # noqa: F811
    code, _, err = run_cli("eval", "--policy", sft_policy, "--tasks", tw_simple_file,
                           "--env", f"dream:{em_dir}", "--out", tmp_path / "R")
    assert code == 2 and "real env" in err


def test_rollout_design_invocation_appends_synthetic_episodes(run_cli, agent_workdir, em_dir,
                                                              sft_policy, tw_simple_file,
                                                              tmp_path):  # noqa: F811
    from dreamgym_cli.store import ReplayStore

    store = tmp_path / "S"
    shutil.copytree(agent_workdir / "S", store)
    code, out, err = run_cli("rollout", "--policy", sft_policy, "--env", f"dream:{em_dir}",
                             "--tasks", tw_simple_file, "--store", store,
                             "--episodes-per-task", "2", "--max-steps-per-episode", "2",
                             "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["rollout/episodes"] == 6 and result["store/episodes_added"] == 6
    rows = ReplayStore.open(store).sql(
        "SELECT policy, count(*) AS n FROM episodes WHERE source = 'synthetic' GROUP BY ALL")
    assert rows.to_pylist() == [{"policy": sft_policy.name, "n": 6}]
    assert list((store / "manifests").glob("rollout-*.json"))


def test_rollout_names_its_episodes_reproducibly(run_cli, sft_policy, tw_simple_file,
                                                 tmp_path):  # noqa: F811
    from dreamgym_cli.store import ReplayStore

    def rollout(store, *extra):
        code, out, err = run_cli("rollout", "--policy", sft_policy, "--tasks", tw_simple_file,
                                 "--store", store, "--episodes-per-task", "2",
                                 "--max-steps-per-episode", "2", "--workers", "0", "--json",
                                 *extra)
        assert code == 0, err
        return json.loads(out)

    def ids(store):
        rows = ReplayStore.open(store).sql("SELECT episode_id FROM episodes ORDER BY episode_id")
        return [r["episode_id"] for r in rows.to_pylist()]

    for name in ("A", "B"):
        ReplayStore.open(tmp_path / name, create=True)
        rollout(tmp_path / name)
    assert ids(tmp_path / "A") == ids(tmp_path / "B") and len(ids(tmp_path / "A")) == 6
    again = rollout(tmp_path / "A")  # the same episodes again: skipped, not stored twice
    assert again["store/episodes_added"] == 0 and len(ids(tmp_path / "A")) == 6
    other = rollout(tmp_path / "A", "--seed", "1")
    assert other["store/episodes_added"] == 6 and len(ids(tmp_path / "A")) == 12
