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
    assert main(["ingest", str(d / "E.jsonl"), str(d / "M.jsonl"), "--store", str(d / "S")]) == 0
    assert main(["annotate", "--store", str(d / "S")]) == 0
    return d


@pytest.fixture(scope="session")
def em_dir(agent_workdir) -> Path:
    """A tiny experience model (2 optimizer steps), short answers so dream steps stay quick."""
    import json

    from dreamgym_cli.cli import main

    out = agent_workdir / "EM"
    assert main(["train-em", "--store", str(agent_workdir / "S"), "--base", "tiny:1m",
                 "--max-steps", "2", "--batch-size", "2", "--max-length", "512",
                 "--retrieval-k", "0", "--out", str(out)]) == 0
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
