"""`dreamgym train-em --eval-every N --checkpoint-every M` reach the stage's config (and the run).

A tiny:1m model, 3 optimizer steps, on a store of synthetic "real" episodes (no reasoning, so no
annotate step): seconds on one CPU thread.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dreamgym_cli.store import synthetic

SMALL = ["--base", "tiny:1m", "--max-steps", "3", "--batch-size", "2", "--max-length", "256",
         "--retrieval-k", "0", "--task-examples", "0", "--no-reasoning"]


@pytest.fixture
def store(tmp_path, run_cli, one_torch_thread) -> Path:
    synthetic.write_jsonl(tmp_path / "E.jsonl", episodes=12, steps=3, state_chars=40)
    code, _, err = run_cli("ingest", tmp_path / "E.jsonl", "--store", tmp_path / "S")
    assert code == 0, err
    return tmp_path / "S"


def test_eval_and_checkpoint_cadence_flags_reach_the_config(store, tmp_path, run_cli):
    config = tmp_path / "em.yaml"
    config.write_text("checkpoint_every: 5\neval_every: 7\n")  # the flags below win
    out = tmp_path / "EM"
    code, stdout, err = run_cli("train-em", "--store", store, "--out", out, *SMALL,
                                "--config", config, "--eval-every", "1",
                                "--checkpoint-every", "2", "--json")
    assert code == 0, err
    assert json.loads(stdout)["steps"] == 3
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["checkpoint_every"] == 2 and manifest["config"]["eval_every"] == 1
    # held-out loss after every step, not only after the last (the default of 50 would)
    assert [("eval/loss" in p) for p in manifest["curve"]] == [True, True, True]
