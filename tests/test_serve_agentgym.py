"""`dreamgym serve --agentgym-env NAME` on a real env, driven the way AgentGym's clients drive it.

For each of textcraft, babyai, sciworld, alfworld and webshop the server is the real CLI serving
TextWorld; the clients (tests/serve_fixtures.py) follow agentenv's `<Name>EnvClient` code and
AgentGym-RL's rollout loop. Transitions are checked against the same game played directly; the
first observation the agent is shown must contain the task's instruction; with the default
sparse rewards the last step's reward (AgentGym-RL's score) is the episode's success.
"""

from __future__ import annotations

import time

import pytest
import requests

from tests.serve_fixtures import (CLIENTS, BabyAIClient, _action_line, agent_text,
                                  agentgym_rl_rollout, read_json, running_server)
from tests.test_serve import expert_run
from tests.tw_fixtures import tw_games, tw_simple_file, tw_simple_tasks  # noqa: F401

SHAPES = ("textcraft", "babyai", "sciworld", "alfworld", "webshop")
SCALE = {"sciworld": 100.0}  # sciworld scores run 0-100


@pytest.fixture(scope="module")
def expert(tw_simple_tasks):  # noqa: F811
    return [expert_run(t) for t in tw_simple_tasks]


@pytest.fixture(scope="module", params=SHAPES)
def shaped(request, tw_simple_file, tmp_path_factory):  # noqa: F811
    d = tmp_path_factory.mktemp(f"serve-{request.param}")
    with running_server(["--env", "textworld", "--tasks", tw_simple_file, "--agentgym-env",
                         request.param, "--item-ids", d / "items.json"], d) as url:
        yield request.param, url, read_json(d / "items.json")


def _reset(client, name: str, idx: int):
    return client.reset(idx) if name != "alfworld" else client.reset(idx, "Text")


def test_client_plays_a_whole_episode_and_sees_the_instruction(shaped, tw_simple_tasks,
                                                               expert):  # noqa: F811
    name, url, items = shaped
    assert items == [{"item_id": f"{name}_{i}"} for i in range(3)]
    task, run = tw_simple_tasks[2], expert[2]
    client = CLIENTS[name](url)
    _reset(client, name, 2)
    first = client.observe()
    assert task.instruction and task.instruction in first  # what the agent is shown first
    outputs = []
    for action, state, _reward, done in run:
        if name in ("textcraft", "babyai"):  # their clients strip punctuation from the action
            assert _action_line(agent_text(action)) == action
        out = client.step(agent_text(action))
        assert state in out.state and out.done == done
        outputs.append(out)
    scale = SCALE.get(name, 1.0)
    assert outputs[-1].done and outputs[-1].reward == scale  # won: the last reward is success
    assert all(o.reward == 0 for o in outputs[:-1])
    assert client.close() is True


def test_agentgym_rl_loop_scores_only_success(shaped, tw_simple_tasks, expert):  # noqa: F811
    name, url, _ = shaped
    # a rollout cut right after a move that scores (dense reward > 0) without winning
    cut = next(t for t, (_, _, reward, done) in enumerate(expert[1]) if reward > 0 and not done)
    prefix = [a for a, *_ in expert[1][:cut + 1]]
    scores, messages = agentgym_rl_rollout(name, url, [f"{name}_1"], [prefix],
                                           max_rounds=len(prefix))
    assert scores == [0.0] and len(messages[0]) == len(prefix) + 1
    full = [[a for a, *_ in run] for run in expert]
    scores, messages = agentgym_rl_rollout(name, url, [f"{name}_{i}" for i in range(3)], full,
                                           max_rounds=max(map(len, full)) + 1)
    assert scores == [SCALE.get(name, 1.0)] * 3
    for task, transcript in zip(tw_simple_tasks, messages):
        assert task.instruction in transcript[0]


def test_shape_specific_fields(shaped, tw_simple_tasks):  # noqa: F811
    name, url, _ = shaped
    client = CLIENTS[name](url)
    reply = _reset(client, name, 0)
    key = "id" if name != "webshop" else "env_idx"
    raw = requests.get(f"{url}/observation", params={key: client.env_id}, timeout=30).json()
    if name == "textcraft":
        assert set(client.created) == {"id", "observation", "done", "reward"}
        assert set(reply) == {"id", "observation", "done", "reward"} and raw == reply["observation"]
    elif name == "babyai":
        assert set(reply) == {"observation", "reward", "score", "deleted", "done"}
        assert raw["observation"].startswith("Your goal: ")
        assert '\nAvailable actions: ["' in raw["observation"]
    elif name == "sciworld":
        assert reply["task_description"] == tw_simple_tasks[0].instruction
        assert {"task_name", "var_num", "score", "deleted"} <= set(reply)
        assert isinstance(raw, str) and raw == reply["observation"]
    elif name == "alfworld":
        assert set(reply) == {"id", "observation", "available_actions", "task_type"}
        actions = requests.get(f"{url}/available_actions", params={"id": client.env_id},
                               timeout=30).json()
        assert actions == reply["available_actions"] and "open antique trunk" in actions
        bad = requests.post(f"{url}/reset", json={"id": client.env_id, "game": 0,
                                                   "world_type": "Visual"}, timeout=30).json()
        assert "world_type" in bad["error"]
    else:
        assert isinstance(client.env_id, int) and reply[1] is None
        acts = requests.get(f"{url}/available_actions", params={"env_idx": client.env_id},
                            timeout=30).json()
        assert acts["has_search_bar"] is False and "open antique trunk" in acts["clickables"]
        text = requests.get(f"{url}/instruction_text", params={"env_idx": client.env_id},
                            timeout=30).json()
        assert text == tw_simple_tasks[0].instruction
        step = requests.post(f"{url}/step", json={"env_idx": client.env_id, "action": "look"},
                             timeout=30).json()
        assert set(step) == {"state", "reward", "done", "info"} and step["info"] is None
    client.close()


def test_a_hundred_and_twenty_concurrent_sessions(tw_simple_file, tmp_path,
                                                  expert):  # noqa: F811
    """AgentGym-RL's batch of 120 clients (all created before any reset) plays to the end."""
    with running_server(["--env", "textworld", "--tasks", tw_simple_file, "--agentgym-env",
                         "textcraft", "--max-sessions", "130"], tmp_path) as url:
        full = [[a for a, *_ in run] for run in expert]
        n = 120
        started = time.monotonic()
        scores, messages = agentgym_rl_rollout(
            "textcraft", url, [f"textcraft_{i % 3}" for i in range(n)],
            [full[i % 3] for i in range(n)], max_rounds=max(map(len, full)) + 1)
        assert scores == [1.0] * n, [m[-1] for s, m in zip(scores, messages) if s != 1.0][:3]
        assert requests.get(f"{url}/list_envs", timeout=30).json() == []  # all closed
        print(f"120 sessions played in {time.monotonic() - started:.1f}s")


def test_capacity_never_evicts_a_live_episode(tw_simple_file, tmp_path, expert):  # noqa: F811
    with running_server(["--env", "textworld", "--tasks", tw_simple_file, "--agentgym-env",
                         "babyai", "--max-sessions", "3", "--idle-timeout", "20"],
                        tmp_path) as url:
        a, b, c = (BabyAIClient(url) for _ in range(3))  # created, none reset yet
        refused = requests.post(f"{url}/create", timeout=30)
        assert refused.status_code == 503 and "--max-sessions" in refused.json()["error"]
        with pytest.raises(requests.RequestException, match="Failed to create"):
            BabyAIClient(url)
        b.reset(1)
        refused = requests.post(f"{url}/create", timeout=30)
        assert refused.status_code == 503  # b is mid-episode, a and c wait for their reset
        a.reset(0)
        for action, *_ in expert[0]:
            out = a.step(agent_text(action))
        assert out.done and out.reward == 1.0  # a's episode ended: its slot may be taken now
        d = BabyAIClient(url)
        assert requests.post(f"{url}/close", json={"id": a.env_id}, timeout=30).json()["error"]
        b_state = b.step(agent_text(expert[1][0][0]))
        assert expert[1][0][1] in b_state.state  # b played on, untouched
        c.reset(2)
        d.reset(0)
        # > --idle-timeout 20: all idle sessions expire (20 s, so that on a loaded machine c does
        # not expire while a plays its episode, which would free a slot without reclaiming a)
        time.sleep(21)
        gone = requests.post(f"{url}/step", json={"id": b.env_id, "action": "look"},
                             timeout=30).json()
        assert "unknown id" in gone["error"]
        assert requests.get(f"{url}/list_envs", timeout=30).json() == []
