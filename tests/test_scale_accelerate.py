"""Training under `accelerate launch` with 2 real gloo processes on CPU: per-step losses equal the
1-process run with the same global batch (relative 1e-4), only rank 0 writes, and a 2-process
run stopped after its checkpoint resumes to the same end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("accelerate")]

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tests" / "scale_train_script.py"
LAUNCH = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
          "2", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
          "--main_process_port", "0"]


def _run(processes: int, *args, cwd: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    env.pop("WORLD_SIZE", None)
    command = (LAUNCH if processes == 2 else [sys.executable]) + [str(SCRIPT), *map(str, args)]
    run = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-4 * max(abs(a), abs(b), 1e-8)


@pytest.fixture(scope="module")
def sft_one_process(tmp_path_factory):
    d = tmp_path_factory.mktemp("sft1")
    _run(1, "sft", d / "out.json", cwd=d)
    return json.loads((d / "out.json").read_text())


def test_sft_on_two_gloo_processes_gives_the_one_process_losses(sft_one_process, tmp_path):
    _run(2, "sft", tmp_path / "out.json", cwd=tmp_path)
    two = json.loads((tmp_path / "out.json").read_text())
    assert two["world"] == 2 and sft_one_process["world"] == 1
    one_curve, two_curve = sft_one_process["curve"], two["curve"]
    assert [p["step"] for p in two_curve] == [p["step"] for p in one_curve] == list(range(1, 7))
    for a, b in zip(one_curve, two_curve):
        assert _close(a["train/loss"], b["train/loss"]), (a, b)
        assert _close(a["lr"], b["lr"])
        if "eval/loss" in a:
            assert _close(a["eval/loss"], b["eval/loss"])
    assert all(_close(a, b) for a, b in zip(sft_one_process["weights"], two["weights"]))


def test_a_two_process_run_resumes_from_its_rank0_checkpoint(sft_one_process, tmp_path):
    checkpoints = tmp_path / "ck"
    _run(2, "sft", tmp_path / "stopped.json", "--checkpoints", checkpoints, "--stop-after", 3,
         cwd=tmp_path)
    assert json.loads((tmp_path / "stopped.json").read_text())["stopped"]
    # written once, by rank 0: one checkpoint, no second rank's temp dir left behind
    assert sorted(p.name for p in checkpoints.iterdir()) == ["last"]
    assert json.loads((checkpoints / "last" / "state.json").read_text())["step"] == 2
    _run(2, "sft", tmp_path / "out.json", "--checkpoints", checkpoints, "--resume", cwd=tmp_path)
    resumed = json.loads((tmp_path / "out.json").read_text())
    assert [p["step"] for p in resumed["curve"]] == list(range(1, 7))
    for a, b in zip(sft_one_process["curve"], resumed["curve"]):
        assert _close(a["train/loss"], b["train/loss"]), (a, b)
    assert all(_close(a, b) for a, b in zip(sft_one_process["weights"], resumed["weights"]))


def test_the_rl_update_on_two_gloo_processes_equals_one_process(tmp_path):
    _run(1, "rl", tmp_path / "one.json", cwd=tmp_path)
    _run(2, "rl", tmp_path / "two.json", cwd=tmp_path)
    one, two = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    assert len(one["steps"]) == len(two["steps"]) == 2
    for a, b in zip(one["steps"], two["steps"]):
        assert set(a) == set(b) and {"train/loss", "train/kl", "train/grad_norm"} <= set(a)
        for key in a:
            assert _close(a[key], b[key]), (key, a[key], b[key])
    assert all(_close(a, b) for a, b in zip(one["weights"], two["weights"]))


# ---- the stages through the real CLI, launched by accelerate -----------------------------------

from tests.agent_fixtures import agent_workdir, one_thread  # noqa: E402, F401
from tests.tw_fixtures import tw_games, tw_simple_file  # noqa: E402, F401

DREAMGYM = Path(sys.executable).parent / "dreamgym"


@pytest.mark.parametrize("stage", ["train-em", "train-agent-sft"])
def test_stage_under_accelerate_launch_writes_once_with_the_one_process_losses(
        stage, agent_workdir, tmp_path):  # noqa: F811
    from dreamgym_cli.artifacts import read_manifest

    store = agent_workdir / "S"
    args = (["train-em", "--retrieval-k", "0", "--max-length", "256"] if stage == "train-em"
            else ["train-agent", "--algo", "sft", "--max-new-tokens", "16"])
    args += ["--store", store, "--base", "tiny:1m", "--max-steps", "3", "--batch-size", "4"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    for name, prefix in (("one", [str(DREAMGYM)]), ("two", LAUNCH + [str(DREAMGYM)])):
        run = subprocess.run(prefix + [str(a) for a in args] + ["--out", str(tmp_path / name)],
                             capture_output=True, text=True, env=env, timeout=600)
        assert run.returncode == 0, run.stderr[-4000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "two"]  # no temp, no checkpoint
    one, two = read_manifest(tmp_path / "one"), read_manifest(tmp_path / "two")
    curve_one, curve_two = one["curve"], two["curve"]
    assert len(curve_one) == len(curve_two) == 3
    for a, b in zip(curve_one, curve_two):
        assert _close(a["train/loss"], b["train/loss"]), (a, b)
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == \
        sorted(p.name for p in (tmp_path / "one").iterdir())
    # a second launch finds the manifest on every rank and skips
    run = subprocess.run(LAUNCH + [str(DREAMGYM)] + [str(a) for a in args] +
                         ["--out", str(tmp_path / "two"), "--json"], capture_output=True,
                         text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    assert [json.loads(line)["skipped"] for line in run.stdout.splitlines()
            if line.startswith("{")] == [True, True]
