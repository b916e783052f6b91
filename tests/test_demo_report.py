"""pipelines/report.py (the demo's report) on a hand-written run directory: the paired verdict of
each RL row against SFT, game by game."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _eval(run: Path, key: str, wins: dict[str, int]) -> None:
    d = run / f"eval_{key}"
    d.mkdir(parents=True)
    n = len(wins)
    result = {"success_rate": sum(wins.values()) / n, "success_ci95": [0.0, 1.0], "episodes": n,
              "mean_return": 1.0, "invalid_action_rate": 0.1,
              "per_task": [{"task_id": g, "episodes": 1, "success_rate": float(w),
                            "mean_return": 1.0, "mean_length": 5.0} for g, w in wins.items()]}
    (d / "results.json").write_text(json.dumps(result))


def test_demo_report_says_game_by_game_what_rl_changed(tmp_path):
    _eval(tmp_path, "sft", {"g1": 1, "g2": 0, "g3": 0, "g4": 1})
    _eval(tmp_path, "real", {"g1": 1, "g2": 1, "g3": 1, "g4": 0})
    _eval(tmp_path, "dream", {"g1": 1, "g2": 0, "g3": 0, "g4": 1})
    done = subprocess.run([sys.executable, str(REPO / "pipelines" / "report.py"), str(tmp_path)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    report = (tmp_path / "REPORT.md").read_text()
    assert "GRPO in the real env: +0.25 success against SFT on the same 4 games (won 2 that " \
           "SFT lost, lost 1 that SFT won)" in report
    assert "GRPO in DreamGym (0 real steps): +0.00" in report and "**not** that RL" in report
