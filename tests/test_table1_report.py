"""pipelines/table1_report.py on a small hand-written `make table1` run directory (2 seeds)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "pipelines" / "table1_report.py"
PYTHON = Path(sys.executable)  # the interpreter running the tests (the project venv)


def write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def write_lines(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def policy(run: Path, seed: int, row: str, success: float, *, real: int | None, seconds: int,
           curve: list[tuple[float, float]] | None = None, curriculum: dict | None = None):
    """seed<k>/<row>/ (manifest, metrics.jsonl for RL rows) and seed<k>/eval_<row>/results.json.
    `curve` is [(rollout/success_rate, curriculum/zero_variance_share)] per iteration."""
    steps = 0
    lines = []
    for i, (rate, share) in enumerate(curve or [], start=1):
        steps += real or 0
        lines.append({"iteration": i, "real_steps_used": steps, "time/rollout_s": 20.0,
                      "time/train_s": 3.0, "rollout/success_rate": rate,
                      "curriculum/zero_variance_share": share})
    metrics = {"train/loss": 1.2, "steps": 80} if curve is None else \
        {**lines[-1], "iterations_run": len(lines), "real_steps_used": steps}
    manifest = {"stage": "train-agent", "config": {"seed": seed}, "metrics": metrics,
                "started_at": "2026-11-24T03:00:00+00:00",
                "finished_at": f"2026-11-24T03:{seconds // 60:02d}:{seconds % 60:02d}+00:00"}
    if curriculum is not None:
        manifest["curriculum"] = curriculum
    write(run / f"seed{seed}" / row / "manifest.json", manifest)
    if curve is not None:
        write_lines(run / f"seed{seed}" / row / "metrics.jsonl", lines)
    write(run / f"seed{seed}" / f"eval_{row}" / "results.json",
          {"success_rate": success, "successes": int(success * 10), "episodes": 10,
           "success_ci95": [0.0, 1.0], "mean_return": 2.5, "invalid_action_rate": 0.1 * (seed + 1),
           "per_task": []})


def fidelity(run: Path, variant: str, eps_r: float, eps_p: float) -> None:
    write(run / "fidelity" / variant / "fidelity.json",
          {"metrics": {"em/reward_accuracy": 1 - eps_r, "em/done_accuracy": 0.9,
                       "em/next_state_token_f1": 1 - eps_p, "em/parse_failure_rate": 0.05,
                       "em/eps_R": eps_r, "em/eps_P": eps_p,
                       "em/multistep_success_agreement": 0.5},
           "multistep": []})


def example(action: str, gold_r: float, pred_r: float, f1: float) -> dict:
    return {"episode_id": "ep-1", "t": 3, "action": action, "state": "Location: Kitchen",
            "gold_next_state": "Location: Garden\n" + "flowers everywhere " * 40,
            "pred_next_state": "Location: Garden\nYou see a shovel.",
            "gold_reward": gold_r, "pred_reward": pred_r, "gold_done": False, "pred_done": False,
            "reward_ok": gold_r == pred_r, "done_ok": True, "token_f1": f1}


def make_run(run: Path) -> None:
    write(run / "table1.json", {"challenge": "tw-simple", "train_seeds": [1, 2, 3],
                                "test_seeds": [1001, 1002], "B": 4096, "iterations": 2})
    fidelity(run, "full", 0.15, 0.25)
    fidelity(run, "no_retrieval", 0.35, 0.45)
    write_lines(run / "fidelity" / "full" / "examples.jsonl",
                [example("go east", 1.0, 0.0, 0.9), example("look", 0.0, 0.0, 0.95),
                 example("open chest", 0.0, 0.0, 0.2)])
    generated = {"status": "on", "generated_tasks": "generated_tasks.jsonl",
                 "examples": [{"iteration": 2, "task_id": "gen-1", "parent_id": "t-1",
                               "parent": "Find the key.", "instruction": "Find the key twice.",
                               "generation": 1}]}
    for seed in (0, 1):
        policy(run, seed, "sft", 0.1, real=None, seconds=90)
        policy(run, seed, "grpo_dream", [0.30, 0.50][seed], real=0, seconds=[100, 120][seed],
               curve=[(0.1, [0.5, 0.25][seed]), (0.2, [0.25, 0.0][seed])], curriculum=generated)
        policy(run, seed, "s2r", 0.6, real=128, seconds=60, curve=[(0.3, 0.5), (0.4, 0.5)])
        policy(run, seed, "dream_no_taskgen", 0.2, real=0, seconds=100,
               curve=[(0.1, 0.75), (0.1, 0.75)])
    policy(run, 0, "grpo_real", 0.2, real=2048, seconds=300, curve=[(0.1, 0.5), (0.2, 0.5)])


def run_report(*args) -> subprocess.CompletedProcess:
    python = PYTHON
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(python), str(SCRIPT), *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def table_row(report: str, label: str) -> list[str]:
    line = next(x for x in report.splitlines() if x.startswith(f"| {label} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_report_tables_plots_and_docs(tmp_path):
    run = tmp_path / "run"
    make_run(run)
    docs = tmp_path / "docs" / "results.md"
    done = run_report(run, "--docs", docs, "--command", "make table1 SEEDS=2")
    assert done.returncode == 0, done.stderr
    report = (run / "REPORT.md").read_text()

    # GRPO DreamGym: seeds 0.30, 0.50 -> mean 0.40, sd 0.1414, t(0.975, 1) = 12.706,
    # half-width 12.706 * 0.1414 / sqrt(2) = 1.27; wall-clock (100 + 120) / 2 = 110 s.
    dream = table_row(report, "GRPO DreamGym (0 real)")
    assert dream[1:6] == ["0.40 ± 1.27", "0.30 / 0.50", "0", "2", "110"]
    assert dream[6:] == ["0.15", "0.15", "0.25"]  # invalid (0.1 + 0.2) / 2, ε of the full EM
    # GRPO real env ran for seed 0 only: one value, n=1, a dash for seed 1, and a note.
    real = table_row(report, "GRPO real env (4096 real transitions)")
    assert real[1:4] == ["0.20 (n=1)", "0.20 / —", "4096"]
    assert real[7:] == ["—", "—"]
    assert "- GRPO real env (4096 real transitions): `seed1/eval_grpo_real/results.json`" in report
    s2r = table_row(report, "DreamGym-S2R (B/16 = 256 real)")
    assert s2r[1:5] == ["0.60 ± 0.00", "0.60 / 0.60", "256", "2"]
    sft = table_row(report, "SFT on offline data")
    assert sft[1:6] == ["0.10 ± 0.00", "0.10 / 0.10", "0", "—", "90"]
    # rows with no directory at all
    assert table_row(report, "PPO real env")[1:3] == ["—", "— / —"]
    assert "- PPO DreamGym: `seed0/ppo_dream/manifest.json`" in report

    # fidelity: one column per variant, the missing one as dashes
    assert table_row(report, "ε_R") == ["ε_R", "0.150", "0.350", "—"]
    assert table_row(report, "next-state token F1") == ["next-state token F1", "0.750", "0.550",
                                                        "—"]
    assert "full: ε_R = 0.15, ε_P = 0.25; no_retrieval: ε_R = 0.35, ε_P = 0.45" in report
    assert "`fidelity/no_reasoning/fidelity.json`" in report

    # wrong predictions: a reward error and a low-F1 state, not the correct one, truncated
    wrong = report.split("## Where the experience model is wrong")[1].split("## Curriculum")[0]
    assert "`go east`" in wrong and "`open chest`" in wrong and "`look`" not in wrong
    assert "reward gold 1.0 vs predicted 0.0" in wrong
    assert max(len(x) for x in wrong.splitlines()) <= 405

    # curriculum: zero-variance share on (0.5, 0.25, 0.25, 0.0 -> 0.25) vs off (0.75)
    curriculum = report.split("## Curriculum")[1]
    assert "| on | 0.250 |" in curriculum and "| off | 0.750 |" in curriculum
    assert '"Find the key twice." (from "Find the key.")' in curriculum
    assert "| B | 4096 |" in report and "| train_seeds | [1, 2, 3] |" in report
    assert "make table1 SEEDS=2" in report

    for name in ("success_vs_real.png", "success_vs_time.png", "curves.png"):
        assert (run / name).read_bytes()[:4] == b"\x89PNG"
        assert (docs.parent / "results" / name).is_file()
    page = docs.read_text()
    assert page.startswith("# ") and "make table1 SEEDS=2" in page and " UTC" in page
    assert "0.40 ± 1.27" in page and "| ε_R | 0.150 | 0.350 | — |" in page
    assert "(results/curves.png)" in page and "](../" not in page and "](/" not in page


def test_bad_json_names_the_file(tmp_path):
    run = tmp_path / "run"
    make_run(run)
    (run / "seed1" / "eval_sft" / "results.json").write_text("{\n  \"success_rate\": \n")
    done = run_report(run)
    assert done.returncode == 2
    assert "seed1/eval_sft/results.json:3" in done.stderr
