"""Fixtures for the policy tests (rollout, train-agent, eval): real games, a real store, tiny models.

Everything is made through the real CLI on the tw-simple games of `tw_fixtures`: expert and mixed
episodes → store → rules annotation → a tiny experience model (2 steps) and a tiny SFT policy
(3 steps). Nearly untrained, which is all the plumbing tests need. Torch runs one thread here:
the machine is shared, and oversubscribed threads make tiny models many times slower.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tw_fixtures import tw_games, tw_simple_file, tw_simple_tasks  # noqa: F401


def annotated_store(workdir: Path, *episode_files: str) -> Path:
    """Ingest WORKDIR's `episode_files` into the store WORKDIR/S and annotate it; `workdir`."""
    from dreamgym_cli.cli import main

    files = [str(workdir / name) for name in episode_files]
    assert main(["ingest", *files, "--store", str(workdir / "S")]) == 0
    assert main(["annotate", "--store", str(workdir / "S")]) == 0
    return workdir


def train_tiny_em(workdir: Path, *extra: str) -> Path:
    """`dreamgym train-em` on the store WORKDIR/S from a tiny:1m base (512-token examples) into
    WORKDIR/EM; `extra`: the test's steps, batch size and other options. The model dir."""
    from dreamgym_cli.cli import main

    out = workdir / "EM"
    assert main(["train-em", "--store", str(workdir / "S"), "--base", "tiny:1m",
                 "--max-length", "512", *extra, "--out", str(out)]) == 0
    return out


def train_tiny_rl(run_cli, policy: Path, env: str, tasks: Path, out: Path, *extra,
                  algo: str = "grpo"):
    """`dreamgym train-agent --algo ALGO --init POLICY` on `env`: groups of 2 episodes of at
    most 2 turns, written to `out`; `extra`: the test's own options. (code, stdout, stderr)"""
    return run_cli("train-agent", "--algo", algo, "--init", policy, "--env", env, "--tasks",
                   tasks, "--group-size", "2", "--max-steps-per-episode", "2", *extra, "--out",
                   out)


@pytest.fixture(scope="session")
def one_thread(one_torch_thread):
    """One torch thread (see conftest.one_torch_thread)."""


@pytest.fixture(scope="session")
def agent_workdir(tmp_path_factory, tw_simple_file, one_thread) -> Path:  # noqa: F811
    """A store of real expert + mixed episodes on the 3 games, annotated."""
    from dreamgym_cli.cli import main

    d = tmp_path_factory.mktemp("agent")
    assert main(["collect", "--tasks", str(tw_simple_file), "--policy", "expert",
                 "--episodes-per-task", "1", "--workers", "1", "--out", str(d / "E.jsonl")]) == 0
    assert main(["collect", "--tasks", str(tw_simple_file), "--policy", "mixed", "--epsilon",
                 "0.5", "--episodes-per-task", "1", "--max-steps", "6", "--seed", "3",
                 "--workers", "1", "--out", str(d / "M.jsonl")]) == 0
    return annotated_store(d, "E.jsonl", "M.jsonl")


@pytest.fixture(scope="session")
def em_dir(agent_workdir) -> Path:
    """A tiny experience model (2 optimizer steps), short answers so dream steps stay quick."""
    import json

    out = train_tiny_em(agent_workdir, "--max-steps", "2", "--batch-size", "2",
                        "--retrieval-k", "0")
    settings = json.loads((out / "em.json").read_text())
    settings["max_new_tokens"] = 64  # an untrained model rambles: cap what each dream step costs
    (out / "em.json").write_text(json.dumps(settings))
    return out


@pytest.fixture(scope="session")
def sft_policy(agent_workdir) -> Path:
    from dreamgym_cli.cli import main

    out = agent_workdir / "P0"
    assert main(["train-agent", "--algo", "sft", "--store", str(agent_workdir / "S"),
                 "--base", "tiny:1m", "--max-steps", "3", "--batch-size", "2",
                 "--max-new-tokens", "16", "--out", str(out)]) == 0
    return out
