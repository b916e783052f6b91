"""Shared test fixtures. Tests run the real code on tiny real data; nothing here is a mock."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def dreamgym_home(tmp_path_factory) -> Path:
    """One DREAMGYM_HOME (game cache, embeddings cache) shared by all xdist workers of a run."""
    root = tmp_path_factory.getbasetemp()
    shared = (root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root) / "dreamgym_home"
    shared.mkdir(parents=True, exist_ok=True)
    os.environ["DREAMGYM_HOME"] = str(shared)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return shared


@pytest.fixture
def run_cli(capsys):
    """Run `dreamgym ARGS...` in this process: returns (exit_code, stdout, stderr)."""
    from dreamgym_cli.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture(scope="session")
def one_torch_thread():
    """Tiny models are all per-op overhead: on a shared 2-core machine two torch threads contend
    (4-25x slower measured). `make test` also sets OMP_NUM_THREADS=1 for its xdist workers."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
