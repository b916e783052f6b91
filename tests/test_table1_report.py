"""pipelines/table1_report.py on small hand-written `make table1` run directories (3 seeds × 4
games), through the real script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "pipelines" / "table1_report.py"
PYTHON = Path(sys.executable)  # the interpreter running the tests (the project venv)
GAMES = ["g1", "g2", "g3", "g4"]

# success per (seed, game) of each row; a shorter list means the seed was evaluated on fewer games
SUCCESS = {
    "sft": {0: [1, 0, 0, 0], 1: [0, 1, 0, 0], 2: [0, 0, 0, 1]},
    "grpo_real": {0: [1, 1, 0, 0], 1: [1, 1, 0, 1], 2: [0, 0, 1, 1]},
    "grpo_dream": {0: [1, 0, 0, 0], 1: [0, 1, 0, 0], 2: [0, 0, 0, 1]},  # = SFT, pair by pair
    "s2r": {0: [1, 1, 1, 0.5], 1: [1, 1, 0]},  # seed 2 missing; seed 1 played 3 games
    "ppo_dream": {0: [0, 0, 0, 0], 1: [1, 1, 1, 1], 2: [0, 1, 0, 1]},
    "dream_no_taskgen": {0: [1, 0, 0, 0], 1: [0, 0, 0, 0], 2: [0, 0, 0, 0]},
    "dream_full": {0: [1, 1, 0, 0], 1: [0, 1, 0, 0], 2: [0, 0, 0, 1]},
}
# real_steps_used per seed, optimizer steps, seconds of the row itself
COST = {"sft": (None, 600, 100), "grpo_real": ([470, 480, 460], 12, 300),
        "grpo_dream": ([0, 0, 0], 12, 200), "s2r": ([30, 28, 0], 4, 50),
        "ppo_dream": ([0, 0, 0], 24, 250), "dream_no_taskgen": ([0, 0, 0], 12, 180),
        "dream_full": ([0, 0, 0], 12, 190)}
# curriculum/zero_variance_share per iteration and seed
ZERO_VARIANCE = {"grpo_dream": {0: [0.5, 0.25], 1: [0.25, 0.25], 2: [0.0, 0.5]},
                 "dream_no_taskgen": {0: [0.75, 0.75], 1: [0.5, 0.5], 2: [0.5, 0.5]}}


def write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def write_lines(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def results(successes: list[float], games: list[str]) -> dict:
    per_task = [{"task_id": g, "episodes": 2 if s == 0.5 else 1, "success_rate": s,
                 "mean_return": s, "mean_length": 5} for g, s in zip(games, successes)]
    return {"success_rate": sum(successes) / len(successes), "episodes": len(successes),
            "invalid_action_rate": 0.2, "per_task": per_task}


def policy(run: Path, seed: int, row: str, successes: list[float], games: list[str]) -> None:
    """seed<k>/<row>/ (manifest, metrics.jsonl for RL rows) and seed<k>/eval_<row>/results.json."""
    real, updates, secs = COST[row]
    if real is None:
        metrics = {"steps": updates, "train/loss": 1.0}
    else:
        lines = [{"iteration": 0, "eval/success_rate": 0.1}]
        shares = ZERO_VARIANCE.get(row, {}).get(seed, [0.5, 0.5])
        for i, share in enumerate(shares, start=1):
            lines.append({"iteration": i, "real_steps_used": real[seed] * i // len(shares),
                          "train/updates": updates * i // len(shares),
                          "rollout/success_rate": 0.2 * i, "rollout/return_mean": 1.0,
                          "rollout/invalid_action_rate": 0.3, "eval/success_rate": 0.1 * i,
                          "curriculum/zero_variance_share": share,
                          "curriculum/generated_solved_share": 0.5,
                          "time/rollout_s": 10.0, "time/train_s": 2.0})
        write_lines(run / f"seed{seed}" / row / "metrics.jsonl", lines)
        metrics = {"real_steps_used": real[seed], "iterations_run": len(shares),
                   "train/updates": updates}
    write(run / f"seed{seed}" / row / "manifest.json",
          {"stage": "train-agent", "metrics": metrics, "started_at": "2026-11-30T10:00:00+00:00",
           "finished_at": f"2026-11-30T10:{secs // 60:02d}:{secs % 60:02d}+00:00"})
    write(run / f"seed{seed}" / f"eval_{row}" / "results.json", results(successes, games))


def fidelity(run: Path, folder: str, variant: str, reward_acc: float, done_acc: float) -> None:
    write(run / folder / variant / "fidelity.json",
          {"metrics": {"em/transitions": 40, "em/reward_accuracy": reward_acc,
                       "em/done_accuracy": done_acc, "em/next_state_token_f1": 0.8,
                       "em/parse_failure_rate": 0.05, "em/eps_R": 1 - reward_acc,
                       "em/eps_P": 0.2, "em/multistep_success_agreement": 0.5},
           "multistep": []})


def example(action: str, gold_r: float, pred_r: float, f1: float) -> dict:
    return {"episode_id": "ep-1", "t": 3, "action": action,
            "gold_next_state": "Location: Garden\n" + "flowers everywhere " * 40,
            "pred_next_state": "Location: Garden\nYou see a shovel.",
            "gold_reward": gold_r, "pred_reward": pred_r, "gold_done": False, "pred_done": False,
            "reward_ok": gold_r == pred_r, "done_ok": True, "token_f1": f1}


def make_run(run: Path) -> None:
    write(run / "table1.json", {"challenge": "tw-simple", "demo_seeds": "1-32", "B": 480,
                                "B_s2r": 30, "offline_real_transitions": 1000,
                                "em_policy_transitions": 200, "iterations": 2})
    for row, per_seed in SUCCESS.items():
        for seed, successes in per_seed.items():
            policy(run, seed, row, successes, GAMES)
    fidelity(run, "fidelity", "full", 0.85, 0.97)
    fidelity(run, "fidelity", "no_retrieval", 0.75, 0.90)
    fidelity(run, "fidelity_sft", "full", 0.93, 0.90)
    write_lines(run / "fidelity" / "full" / "examples.jsonl",
                [example("go east", 1.0, 0.0, 0.9), example("look", 0.0, 0.0, 0.95),
                 example("open chest", 0.0, 0.0, 0.2)])
    write_lines(run / "seed0" / "grpo_dream" / "generated_tasks.jsonl",
                [{"task_id": "gen-1", "instruction": "Find the key twice.", "parent_id": "t-1",
                  "generation": 1}, {"task_id": "gen-2", "instruction": "Open the chest.",
                                     "parent_id": "t-2", "generation": 1}])


def run_report(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(PYTHON), str(SCRIPT), *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def report_rows(path: Path) -> dict[str, dict]:
    return {r["row"]: r for r in json.loads(path.read_text())["rows"]}


def table_row(report: str, label: str) -> list[str]:
    line = next(x for x in report.splitlines() if x.startswith(f"| {label} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_table1_paired_differences_costs_targets_and_docs(tmp_path):
    run, docs = tmp_path / "run", tmp_path / "docs" / "results.md"
    make_run(run)
    done = run_report(run, "--table", "1", "--docs", docs, "--command", "make table1 X=1")
    assert done.returncode == 0, done.stderr
    record = json.loads((docs.parent / "results" / "table1.json").read_text())
    assert record["command"] == "make table1 X=1" and record["settings"]["B"] == 480
    rows = {r["row"]: r for r in record["rows"]}
    assert list(rows) == ["sft", "grpo_real", "grpo_dream", "s2r"]

    # GRPO real − SFT, pair by pair: seed 0 [0, 1, 0, 0], seed 1 [1, 0, 0, 1], seed 2 [0, 0, 1, 0]
    real = rows["grpo_real"]
    assert real["diff_vs_sft"] == pytest.approx(4 / 12)
    assert real["success"] == pytest.approx(7 / 12)
    assert (real["games"], real["seeds"]) == (4, 3)
    assert real["ci_low"] <= real["diff_vs_sft"] <= real["ci_high"]
    # S2R: seed 2 missing, seed 1 played g1-g3 only: seed 0 [0, 1, 1, 0.5], seed 1 [1, 0, 0]
    s2r = rows["s2r"]
    assert s2r["diff_vs_sft"] == pytest.approx(3.5 / 7)
    assert s2r["success"] == pytest.approx(5.5 / 7)
    assert (s2r["games"], s2r["seeds"]) == (4, 2)
    # GRPO DreamGym equals SFT on every pair: the difference and its interval are exactly zero
    dream = rows["grpo_dream"]
    assert (dream["diff_vs_sft"], dream["ci_low"], dream["ci_high"]) == (0.0, 0.0, 0.0)

    # real transitions: offline 1000 (+200 of the SFT policy's rollouts for the dream rows)
    assert (rows["sft"]["real_transitions_offline"], rows["sft"]["real_transitions_online"],
            rows["sft"]["real_transitions"]) == (1000, 0, 1000)
    assert (real["real_transitions_offline"], real["real_transitions_online"],
            real["real_transitions"]) == (1000, 470, 1470)
    assert (dream["real_transitions_offline"], dream["real_transitions"]) == (1200, 1200)
    assert (s2r["real_transitions_online"], s2r["real_transitions"]) == (29, 1229)
    assert (rows["sft"]["updates"], real["updates"], s2r["updates"]) == (600, 12, 4)
    # seconds: the row itself; with its start policies (S2R: 50 + GRPO DreamGym 200 + SFT 100)
    assert (s2r["seconds"], s2r["seconds_cumulative"]) == (50, 350)
    assert (dream["seconds"], dream["seconds_cumulative"]) == (200, 300)

    report = (run / "REPORT_table1.md").read_text()
    assert table_row(report, "GRPO real env (B = 480 real)")[1] == "0.58"
    assert table_row(report, "DreamGym-S2R (B_s2r = 30 real)")[3] == "4 × 2"
    assert "- DreamGym-S2R (B_s2r = 30 real): `seed2/eval_s2r/results.json`" in report
    targets = report.split("### Targets")[1].split("###")[0]
    real_met = "met" if real["ci_low"] > 0 else "**NOT met**"
    assert f"- {real_met}: GRPO real − SFT" in targets
    assert "- **NOT met**: GRPO DreamGym − SFT" in targets  # CI [0, 0]
    assert ("- **NOT met**: GRPO DreamGym ≥ GRPO real − 0.03 (means) — measured 0.250 vs "
            "0.583") in targets
    assert "- met: DreamGym-S2R ≥ GRPO real" in targets
    assert "- met: Experience model (full) reward accuracy ≥ 0.90" in targets  # 0.93
    assert "- **NOT met**: Experience model (full) done accuracy ≥ 0.95" in targets  # 0.90
    assert [t["met"] for t in record["targets"]] == [real["ci_low"] > 0, False, False, True,
                                                     True, False]

    # fidelity on both held-out sets, per variant; missing ones as dashes with a note
    expert = report.split("on held-out expert episodes")[1].split("###")[0]
    assert "| reward accuracy | 0.850 | 0.750 | — |" in expert
    own = report.split("on the SFT policy's held-out real rollouts")[1].split("###")[0]
    assert "| done accuracy | 0.900 | — | — |" in own and "`fidelity_sft/no_reasoning/" in own
    wrong = report.split("is wrong on held-out expert episodes")[1].split("\n### ")[0]
    assert "`go east`" in wrong and "`open chest`" in wrong and "`look`" not in wrong

    # curriculum per seed: on (0.375, 0.25, 0.25) vs off (0.75, 0.5, 0.5)
    curriculum = report.split("### Curriculum")[1]
    assert "| 0 | 0.375 | 0.750 | −0.375 | 0.500 | 2 |" in curriculum
    assert "| mean | — | — | −0.292 | 0.500 | |" in curriculum
    assert '"Find the key twice." (from "t-1")' in curriculum

    for name in ("curves_updates", "curves_real", "success_vs_real"):
        assert (run / f"table1_{name}.png").read_bytes()[:4] == b"\x89PNG"
        assert (docs.parent / "results" / f"table1_{name}.png").is_file()
    page = docs.read_text()
    assert "make table1 X=1" in page and " UTC" in page and "(results/table1_curves_real.png)" \
        in page
    assert "not run yet: `make table2`" in page
    # on the page the fidelity tables go with Table 1, the curriculum with Table 2
    assert "### Experience-model fidelity" in page and "### Curriculum" not in page


def test_table2_keeps_table1_section(tmp_path):
    run, docs = tmp_path / "run", tmp_path / "docs" / "results.md"
    make_run(run)
    assert run_report(run, "--table", "1", "--docs", docs, "--command", "make table1").returncode \
        == 0
    done = run_report(run, "--table", "2", "--docs", docs, "--command", "make table2")
    assert done.returncode == 0, done.stderr
    page = docs.read_text()
    assert "Command: `make table1`" in page and "Command: `make table2`" in page
    assert page.index("## Table 1") < page.index("## Table 2")
    assert page.index("## Table 2") < page.index("### Curriculum")
    assert page.count("### Experience-model fidelity on held-out expert episodes") == 1
    assert (docs.parent / "results" / "table1.json").is_file()
    rows = report_rows(docs.parent / "results" / "table2.json")
    # reference rows first; a row with no files at all is all dashes / nulls, with a note
    assert list(rows)[:3] == ["sft", "grpo_real", "grpo_dream"]
    assert rows["ppo_real"]["success"] is None and rows["ppo_real"]["diff_vs_sft"] is None
    # PPO DreamGym − SFT: seed 0 [-1, 0, 0, 0], seed 1 [1, 0, 1, 1], seed 2 [0, 1, 0, 0]
    assert rows["ppo_dream"]["diff_vs_sft"] == pytest.approx(3 / 12)
    report = (run / "REPORT_table2.md").read_text()
    assert table_row(report, "PPO real env (B = 480 real)")[1:4] == ["—", "—", "—"]
    assert "- PPO real env (B = 480 real): not run: no `seed<k>/ppo_real/manifest.json`" in report
    assert "GRPO DreamGym (0 real) (reference)" in report
    # the ablations, paired with the full DreamGym row of the same budget:
    # w/o task generation − full: seed 0 [0, -1, 0, 0], seed 1 [0, -1, 0, 0],
    # seed 2 [0, 0, 0, -1]
    ablations = {a["row"]: a for a in
                 json.loads((docs.parent / "results" / "table2.json").read_text())
                 ["ablations_vs_full"]}
    assert ablations["dream_no_taskgen"]["diff"] == pytest.approx(-3 / 12)
    low, high = (ablations["dream_no_taskgen"][k] for k in ("ci_low", "ci_high"))
    assert low <= -3 / 12 <= high and high <= 0
    # PPO DreamGym − full: seed 0 [-1, -1, 0, 0], seed 1 [1, 0, 1, 1], seed 2 [0, 1, 0, 0]
    assert ablations["ppo_dream"]["diff"] == pytest.approx(2 / 12)
    assert ablations.get("dream_no_retrieval", {"diff": None})["diff"] is None
    assert "### Ablations against the full DreamGym row of the same budget" in report
    section = report[report.index("### Ablations against"):]
    assert table_row(section, "DreamGym w/o task generation")[1].startswith("−0.25 [")
    # running table 1 again keeps table 2's section
    assert run_report(run, "--table", "1", "--docs", docs, "--command", "make table1 again"
                      ).returncode == 0
    page = docs.read_text()
    assert "Command: `make table1 again`" in page and "Command: `make table2`" in page


def make_pattern_run(run: Path, n_games: int) -> None:
    """3 seeds, SFT fails every game, the row wins games in a pattern whose mean is 0.5."""
    games = [f"g{i:03d}" for i in range(n_games)]
    pattern = [1, 0, 0, 1, 1, 1, 0, 0]
    for seed in range(3):
        policy(run, seed, "sft", [0] * n_games, games)
        policy(run, seed, "grpo_real",
               [pattern[(i + 3 * seed) % len(pattern)] for i in range(n_games)], games)


def test_interval_contains_the_estimate_and_shrinks_with_more_games(tmp_path):
    widths = []
    for n_games in (8, 64):
        run = tmp_path / f"run{n_games}"
        make_pattern_run(run, n_games)
        done = run_report(run, "--table", "1")
        assert done.returncode == 0, done.stderr
        real = report_rows(run / "results_table1.json")["grpo_real"]
        assert real["diff_vs_sft"] == pytest.approx(0.5)
        assert real["ci_low"] < real["diff_vs_sft"] < real["ci_high"]
        assert (real["games"], real["seeds"]) == (n_games, 3)
        widths.append(real["ci_high"] - real["ci_low"])
    # 8x the games: the interval narrows (about sqrt(8) = 2.8x for independent games)
    assert widths[1] < widths[0] / 2


def test_bad_json_names_the_file_and_line(tmp_path):
    run = tmp_path / "run"
    make_run(run)
    (run / "seed1" / "eval_sft" / "results.json").write_text("{\n  \"success_rate\": \n")
    done = run_report(run)
    assert done.returncode == 2
    assert "seed1/eval_sft/results.json:3" in done.stderr and "Traceback" not in done.stderr
    (run / "seed1" / "eval_sft" / "results.json").write_text(json.dumps(results([1], ["g1"])))
    with open(run / "seed2" / "grpo_real" / "metrics.jsonl", "a") as f:
        f.write("{not json}\n")
    done = run_report(run)
    assert done.returncode == 2 and "seed2/grpo_real/metrics.jsonl:4" in done.stderr


def test_empty_run_directory_reports_dashes(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    done = run_report(run, "--table", "2")
    assert done.returncode == 0, done.stderr
    rows = report_rows(run / "results_table2.json")
    assert all(r["success"] is None and r["real_transitions"] is None for r in rows.values())
    assert "no `seed<k>/` directories" in (run / "REPORT_table2.md").read_text()


def test_a_real_rows_label_shows_its_own_budget(tmp_path, monkeypatch):
    """Table 2's PPO real row runs fewer iterations than Table 1's: its label shows the budget
    its manifest recorded (max_real_steps), not Table 1's B."""
    run = tmp_path / "run"
    make_run(run)
    monkeypatch.setitem(COST, "ppo_real", ([100, 100, 100], 8, 60))
    for seed in range(3):
        policy(run, seed, "ppo_real", [0, 1, 0, 0], GAMES)
        path = run / f"seed{seed}" / "ppo_real" / "manifest.json"
        manifest = json.loads(path.read_text())
        path.write_text(json.dumps({**manifest, "config": {"max_real_steps": 160}}))
    done = run_report(run, "--table", "2")
    assert done.returncode == 0, done.stderr
    report = (run / "REPORT_table2.md").read_text()
    assert table_row(report, "PPO real env (B = 160 real)")[1] == "0.25"
    assert table_row(report, "GRPO real env (B = 480 real) (reference)")
