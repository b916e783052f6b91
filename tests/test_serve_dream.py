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
import requests

from dreamgym_cli.envs.agentgym import make_tasks
from dreamgym_cli.envs.registry import make_env
from tests.serve_fixtures import (CLIENTS, BabyAIClient, TextCraftClient, agent_text,
                                  agentgym_rl_rollout, run_threads, running_server)
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
    stepped: list[str] = []  # the state each thread's step returned; one per finished thread

    def step(client):
        try:
            stepped.append(client.step("look")[0])
        except BaseException as e:  # noqa: BLE001 — reported below
            errors.append(e)

    a_state = a.step("look")[0]
    assert b.observe() == b_start and a.observe() == a_state  # stepping a leaves b alone
    c = ContractClient(url, dialect=dialect)
    c.reset(1)
    both = [threading.Thread(target=step, args=(x,)) for x in (b, c)]  # generation serialized
    run_threads(both, 120, "generation deadlocked?")
    assert not errors, errors
    assert len(stepped) == 2 and all(isinstance(s, str) and s for s in stepped), stepped
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


# ---- --agentgym-env shapes on the dream env ---------------------------------------------------

SHAPES = ("textcraft", "babyai", "sciworld", "alfworld", "webshop")


@pytest.fixture(scope="module", params=SHAPES)
def dream_shaped(request, tiny_em, tmp_path_factory):
    with running_server(["--em", tiny_em, "--env-name", "textworld", "--agentgym-env",
                         request.param, "--max-steps", "2", *FAST],
                        tmp_path_factory.mktemp("logs")) as url:
        yield request.param, url


def test_agentgym_clients_play_dream_episodes_to_the_end(dream_shaped, tw_simple_tasks):  # noqa: F811
    """AgentGym's client for each shape, one episode by hand and AgentGym-RL's loop over three:
    the instruction is in the first observation, every episode ends (--max-steps 2), and the
    sparse score is 0 or full marks, never a partial reward."""
    name, url = dream_shaped
    full = 100.0 if name == "sciworld" else 1.0
    client = CLIENTS[name](url)
    client.reset(1) if name != "alfworld" else client.reset(1, "Text")
    assert tw_simple_tasks[1].instruction in client.observe()
    assert expert_run_start(tw_simple_tasks[1]) in client.observe()  # the real initial state
    outs = [client.step(agent_text("open antique trunk"))]
    if not outs[-1].done:
        outs.append(client.step(agent_text("look")))
    assert outs[-1].done and outs[-1].reward in (0.0, full)
    assert all(o.reward == 0.0 for o in outs[:-1])
    client.close()
    scores, messages = agentgym_rl_rollout(name, url, [f"{name}_{i}" for i in range(3)],
                                           [["open antique trunk", "look"]] * 3, max_rounds=3)
    assert all(s in (0.0, full) for s in scores)
    for task, transcript in zip(tw_simple_tasks, messages):
        assert task.instruction in transcript[0] and 2 <= len(transcript) <= 3


def test_a_hundred_concurrent_dream_sessions(tiny_em, tmp_path):
    """A hundred and ten clients created first, reset and observed at once, a few stepping
    concurrently: the model is shared, generation serialized, no session disturbs another."""
    from concurrent.futures import ThreadPoolExecutor

    with running_server(["--em", tiny_em, "--env-name", "textworld", "--agentgym-env", "babyai",
                         "--max-steps", "1", *FAST], tmp_path) as url:
        clients = [BabyAIClient(url) for _ in range(110)]
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda ic: ic[1].reset(ic[0] % 3), enumerate(clients)))
            firsts = list(pool.map(lambda c: c._get("observation")["observation"], clients))
            assert all(f.startswith("Your goal: ") for f in firsts)
            outs = list(pool.map(lambda c: c.step(agent_text("look")), clients[:8]))
        assert all(o.done for o in outs)  # --max-steps 1
        assert [c._get("observation")["observation"] for c in clients[8:]] == firsts[8:]
        assert len(requests.get(f"{url}/list_envs", timeout=30).json()) == 110


def test_dream_generation_is_bounded_in_time(tiny_em, tmp_path):
    """--step-timeout: a step the model cannot finish in time answers 504 within the bound,
    and its episode is over (the client never saw the state it led to)."""
    import time

    with running_server(["--em", tiny_em, "--env-name", "textworld", "--agentgym-env",
                         "textcraft", "--step-timeout", "0.5", "--max-new-tokens", "4000",
                         "--max-retries", "3"], tmp_path) as url:
        for _ in range(5):  # create + reset are quick, but 0.5 s on two busy cores may not be
            try:
                client = TextCraftClient(url)  # its /create begins an episode
                break
            except requests.RequestException:
                time.sleep(1.0)
        started = time.monotonic()
        reply = requests.post(f"{url}/step", json={"id": client.env_id, "action": "look"},
                              timeout=60)
        seconds = time.monotonic() - started
        assert reply.status_code == 504 and "--step-timeout" in reply.json()["error"]
        assert seconds < 0.5 + 2.0 + 1.0  # the bound, the handler's grace, HTTP
        time.sleep(1.0)
        after = requests.post(f"{url}/step", json={"id": client.env_id, "action": "look"},
                              timeout=60)
        assert after.status_code in (200, 504)
        if after.status_code == 200:
            assert "over" in after.json()["error"]
