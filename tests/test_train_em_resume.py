"""`dreamgym train-em --resume`: a run cut short continues from its last checkpoint.

A run of TOTAL steps checkpoints every EVERY steps into `.<out>.checkpoints/last` (model,
optimizer, scheduler, step, loss curve) and removes the checkpoints once the model is written. The
interruption is an exception raised from the progress callback after step CRASH_AT, as a Ctrl-C
or a killed job would stop it: step 3's checkpoint is the last one on disk. The resumed run must
take steps 4..TOTAL only, end at TOTAL steps, and (the batch order is fixed up front and the
optimizer and scheduler come back from the checkpoint) leave the weights of a run that was never
interrupted. All on the tiny:1m model and the agent tests' small real store.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.agent_fixtures import agent_workdir, one_thread  # noqa: F401
from tests.tw_fixtures import tw_games, tw_simple_file  # noqa: F401

TOTAL, EVERY, CRASH_AT = 8, 3, 5  # checkpoints after steps 3 and 6; the crash leaves step 3's
SMALL = {"base": "tiny:1m", "max_steps": TOTAL, "batch_size": 2, "max_length": 256,
         "retrieval_k": 0, "task_examples": 0, "checkpoint_every": EVERY, "eval_every": 4,
         "seed": 0}


class Interrupted(Exception):
    """Stands for the Ctrl-C / kill that stops a run between two steps."""


def _config(store: Path, out: Path, **extra):
    from dreamgym_cli.stages.train_em import TrainEMConfig

    return TrainEMConfig(store=store, out=out, **{**SMALL, **extra})


def _train(store: Path, out: Path, crash_after: int | None = None, **extra
           ) -> tuple[dict, list[int]]:
    """stage.run; (its result, the steps it reported taking). crash_after: raise after that step."""
    from dreamgym_cli.stages import train_em

    steps: list[int] = []

    def progress(step, total, point):
        assert total == TOTAL and point["step"] == step
        steps.append(step)
        if step == crash_after:
            raise Interrupted(step)

    return train_em.run(_config(store, out, **extra), progress=progress), steps


def _checkpoints(out: Path) -> Path:
    return out.with_name(f".{out.name}.checkpoints")


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    files = sorted(model_dir.glob("*.safetensors"))
    assert files, f"no weights in {model_dir}"
    return {k: v for f in files for k, v in load_file(str(f)).items()}


def _curve(model_dir: Path) -> list[dict]:
    return json.loads((model_dir / "manifest.json").read_text())["curve"]


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert set(wa) == set(wb)
    for name in wa:
        assert torch.isfinite(wa[name]).all(), name
        torch.testing.assert_close(wa[name], wb[name], rtol=1e-5, atol=1e-6, msg=name)


@pytest.fixture(scope="module")
def uninterrupted(agent_workdir, tmp_path_factory) -> Path:  # noqa: F811
    """TOTAL steps in one go: the run the resumed ones must reproduce."""
    out = tmp_path_factory.mktemp("em-resume") / "EM"
    result, steps = _train(agent_workdir / "S", out)
    assert steps == list(range(1, TOTAL + 1)) and result["steps"] == TOTAL
    assert not _checkpoints(out).exists()  # removed once the model is written
    return out


def test_a_resumed_run_continues_from_the_checkpoint_step_to_the_same_weights(
        agent_workdir, uninterrupted, tmp_path):  # noqa: F811
    store, out = agent_workdir / "S", tmp_path / "EM"
    with pytest.raises(Interrupted):
        _train(store, out, crash_after=CRASH_AT)
    assert not out.exists()  # nothing half-written where the model goes
    last = _checkpoints(out) / "last"
    state = json.loads((last / "state.json").read_text())
    assert state["step"] == EVERY  # step 6 was never reached; step 3's checkpoint is the last
    full_curve = _curve(uninterrupted)
    assert [p["step"] for p in state["curve"]] == [1, 2, 3]
    assert [p["train/loss"] for p in state["curve"]] == \
        pytest.approx([p["train/loss"] for p in full_curve[:EVERY]], rel=1e-5)

    result, steps = _train(store, out, resume=True)
    assert steps == list(range(EVERY + 1, TOTAL + 1))  # steps 4..8: not again from step 1
    assert result["steps"] == TOTAL and not result["skipped"]
    curve = _curve(out)
    assert [p["step"] for p in curve] == list(range(1, TOTAL + 1))  # the checkpoint's 3 + 5 new
    assert [p["train/loss"] for p in curve] == \
        pytest.approx([p["train/loss"] for p in full_curve], rel=1e-4)
    assert result["eval/loss"] == pytest.approx(json.loads(
        (uninterrupted / "manifest.json").read_text())["metrics"]["eval/loss"], rel=1e-4)
    _assert_same_weights(out, uninterrupted)
    assert not _checkpoints(out).exists()


def test_resume_through_the_cli_after_an_interruption(agent_workdir, uninterrupted, tmp_path,
                                                      run_cli):  # noqa: F811
    """--resume on the command line, checkpoint_every from --config."""
    store, out = agent_workdir / "S", tmp_path / "EM"
    with pytest.raises(Interrupted):
        _train(store, out, crash_after=CRASH_AT)
    state_file = _checkpoints(out) / "last" / "state.json"
    state = json.loads(state_file.read_text())
    assert state["step"] == EVERY
    # a restart from step 1 would make the same weights; the checkpoint's curve points, marked
    # here, show that this run took its first EVERY steps from the checkpoint
    state["curve"] = [{**p, "from_checkpoint": True} for p in state["curve"]]
    state_file.write_text(json.dumps(state))
    config = tmp_path / "em.yaml"
    config.write_text("".join(f"{k}: {v}\n" for k, v in SMALL.items()))
    code, stdout, err = run_cli("train-em", "--store", store, "--out", out, "--config", config,
                                "--resume", "--json")
    assert code == 0, err
    result = json.loads(stdout)
    assert result["steps"] == TOTAL and not result["skipped"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["resume"] is True and manifest["config"]["checkpoint_every"] == EVERY
    assert [p["step"] for p in manifest["curve"]] == list(range(1, TOTAL + 1))
    assert [p.get("from_checkpoint", False) for p in manifest["curve"]] == \
        [True] * EVERY + [False] * (TOTAL - EVERY)
    _assert_same_weights(out, uninterrupted)
    assert not _checkpoints(out).exists()


def test_resume_without_a_checkpoint_starts_fresh(agent_workdir, uninterrupted,
                                                   tmp_path):  # noqa: F811
    """No checkpoint to continue from is not an error: sft.train starts at step 1."""
    out = tmp_path / "EM"
    assert not _checkpoints(out).exists()
    result, steps = _train(agent_workdir / "S", out, resume=True)
    assert steps == list(range(1, TOTAL + 1)) and result["steps"] == TOTAL
    _assert_same_weights(out, uninterrupted)


def test_resume_with_other_settings_is_refused_and_keeps_the_checkpoint(agent_workdir, tmp_path
                                                                        ):  # noqa: F811
    """A checkpoint records the settings that made it: resuming it with another learning rate
    would mix two runs (the schedule and the optimizer state belong to the first), so it is an
    InputError naming the setting, and the checkpoint is left as it was."""
    from dreamgym_cli.errors import InputError

    store, out = agent_workdir / "S", tmp_path / "EM"
    with pytest.raises(Interrupted):
        _train(store, out, crash_after=CRASH_AT)
    state_file = _checkpoints(out) / "last" / "state.json"
    before = state_file.read_bytes()
    assert json.loads(before)["made_by"]["lr"] is not None
    with pytest.raises(InputError, match=r"lr: .* there, 0\.5 now"):
        _train(store, out, resume=True, lr=0.5)
    assert state_file.read_bytes() == before and not out.exists()
    # the same settings (checkpoint/eval cadence may differ) resume
    result, steps = _train(store, out, resume=True, eval_every=2)
    assert steps == list(range(EVERY + 1, TOTAL + 1)) and result["steps"] == TOTAL
