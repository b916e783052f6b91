"""`dreamgym serve --em EM`: the dream env behind AgentGym's protocol, with a tiny real model.

The model is built through the real CLI (collect → ingest → annotate → train-em on tiny:1m) and
is far too small to simulate well: its completions rarely parse, so an episode usually ends at
the first step as an explicit invalid transition. The protocol does not care: these tests check
what the server promises — sessions, the abstract state, the reply shapes in both dialects — with
AgentGym's contract client from test_serve.py and with our `agentgym:` client.
"""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest

from dreamgym_cli.envs.agentgym import make_tasks
from dreamgym_cli.envs.registry import make_env
from tests.serve_fixtures import running_server
from tests.test_agentgym import expert_run_start
from tests.test_serve import ContractClient
from tests.tw_fixtures import tw_games, tw_simple_file, tw_simple_tasks  # noqa: F401

FAST = ["--max-new-tokens", "8", "--max-retries", "0"]  # keep a CPU step to about a second


@pytest.fixture(scope="module")
def tiny_em(tmp_path_factory, tw_simple_file) -> Path:  # noqa: F811
    from dreamgym_cli.cli import main

    d = tmp_path_factory.mktemp("dream-serve")
    assert main(["collect", "--tasks", str(tw_simple_file), "--policy", "expert",
                 "--episodes-per-task", "1", "--out", str(d / "E.jsonl")]) == 0
    assert main(["ingest", str(d / "E.jsonl"), "--store", str(d / "S")]) == 0
    assert main(["annotate", "--store", str(d / "S")]) == 0
    assert main(["train-em", "--store", str(d / "S"), "--base", "tiny:1m", "--max-steps", "2",
                 "--max-length", "256", "--retrieval-k", "0", "--out", str(d / "EM")]) == 0
    return d / "EM"


@pytest.fixture(scope="module", params=["id", "env_idx"])
def dream_url(request, tiny_em, tmp_path_factory):
    with running_server(["--em", tiny_em, "--env-name", "textworld", "--dialect", request.param,
                         *FAST], tmp_path_factory.mktemp("logs")) as url:
        yield request.param, url


def test_contract_client_drives_the_dream_env(dream_url, tw_simple_tasks):  # noqa: F811
    dialect, url = dream_url
    assert "3 tasks" in httpx.get(f"{url}/").json()  # the store's textworld tasks
    client = ContractClient(url, dialect=dialect)
    reset = client.reset(1)
    start = reset["observation"] if dialect == "id" else reset[0]
    # the episode starts from the task's real initial state (from the store)
    assert start == expert_run_start(tw_simple_tasks[1])
    assert client.observe() == start
    state, reward, done, info = client.step("open antique trunk")
    assert isinstance(state, str) and state and isinstance(reward, float)
    assert isinstance(done, bool) and "valid" in info and info["task_id"] == \
        tw_simple_tasks[1].task_id
    assert client.observe() == state  # /observation: the current abstract state
    assert client.close() == {"closed": True}


def test_two_dream_sessions_are_independent(dream_url, tw_simple_tasks):  # noqa: F811
    dialect, url = dream_url
    a, b = ContractClient(url, dialect=dialect), ContractClient(url, dialect=dialect)
    a.reset(0)
    b.reset(2)
    b_start = b.observe()
    errors: list[BaseException] = []

    def step(client):
        try:
            client.step("look")
        except BaseException as e:  # noqa: BLE001 — reported below
            errors.append(e)

    a_state = a.step("look")[0]
    assert b.observe() == b_start and a.observe() == a_state  # stepping a leaves b alone
    c = ContractClient(url, dialect=dialect)
    c.reset(1)
    both = [threading.Thread(target=step, args=(x,)) for x in (b, c)]  # generation serialized
    for t in both:
        t.start()
    for t in both:
        t.join(120)
    assert not errors, errors
    for x in (a, b, c):
        x.close()


def test_our_client_plays_the_served_dream_env(dream_url, tw_simple_tasks):  # noqa: F811
    dialect, url = dream_url
    env = make_env(f"agentgym:textworld@{url}", max_steps=3)
    try:
        first = env.reset(make_tasks(env.name, [0])[0])
        assert env._key == dialect
        assert first.text == expert_run_start(tw_simple_tasks[0])
        assert first.admissible and "open antique trunk" in first.admissible
        for _ in range(3):
            result = env.step(first.admissible[0])
            if result.done:
                break
        assert result.done and result.success in (True, False)  # ended within the limit
    finally:
        env.close()
