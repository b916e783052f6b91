"""`dreamgym serve --env textworld`, driven over HTTP by a client written from AgentGym's contract.

`ContractClient` below is written from AgentGym's `BaseEnvClient` and its env clients
(agentenv/agentenv/envs/sciworld.py for the `id` dialect, webshop.py for `env_idx`): plain httpx
calls create → reset → observe → step → close, asserting HTTP 200 as those clients do. It shares
no code with our server or our `agentgym:` client. Transitions are checked against the same
TextWorld game played directly in this process.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.serve_fixtures import free_port, run_threads, running_server
from tests.tw_fixtures import tw_games, tw_simple_file, tw_simple_tasks  # noqa: F401


class ContractClient:
    """AgentGym's env-client contract in both dialects, from its published client code."""

    def __init__(self, base: str, dialect: str = "id", timeout: float = 30.0):
        self.base, self.dialect, self.timeout = base, dialect, timeout
        ok = httpx.post(f"{base}/create", timeout=timeout)
        assert ok.status_code == 200
        # sciworld/babyai: ok.json()["id"]; webshop: self.env_id = ok.json()
        self.env_id = ok.json()["id"] if dialect == "id" else ok.json()
        self.key = "id" if dialect == "id" else "env_idx"

    def _post(self, path: str, data: dict) -> object:
        data[self.key] = self.env_id
        res = httpx.post(f"{self.base}/{path}", json=data, timeout=self.timeout)
        assert res.status_code == 200
        return res.json()

    def _get(self, path: str) -> object:
        res = httpx.get(f"{self.base}/{path}?{self.key}={self.env_id}", timeout=self.timeout)
        assert res.status_code == 200
        return res.json()

    def reset(self, data_idx: int) -> object:
        body = {"data_idx": data_idx} if self.dialect == "id" else {"session_id": data_idx}
        return self._post("reset", body)

    def observe(self) -> object:
        return self._get("observation")

    def step(self, action: str) -> tuple[str, float, bool, dict]:
        r = self._post("step", {"action": action})
        assert "error" not in r, r
        state = r["observation"] if self.dialect == "id" else r["state"]
        return state, r["reward"], r["done"], r.get("info", {})

    def close(self) -> object:
        return self._post("close", {})


def expert_run(task, limit: int = 30) -> list[tuple[str, str, float, bool]]:
    """(action, next state, reward, done) of TextWorld's expert on the task, played directly."""
    from dreamgym_cli.envs.textworld import TextWorldEnv

    env, out = TextWorldEnv(), []
    try:
        env.reset(task)
        for _ in range(limit):
            action = env.expert_action()
            result = env.step(action)
            out.append((action, result.observation.text, result.reward, result.done))
            if result.done:
                break
    finally:
        env.close()
    return out


@pytest.fixture(scope="module")
def tw_url(tw_simple_file, tmp_path_factory):  # noqa: F811
    with running_server(["--env", "textworld", "--tasks", tw_simple_file, "--max-sessions", "4"],
                        tmp_path_factory.mktemp("logs")) as url:
        yield url


@pytest.fixture(scope="module")
def tw_url_env_idx(tw_simple_file, tmp_path_factory):  # noqa: F811
    """env_idx dialect, 2 sessions at most, idle sessions expire after 2 s, bodies within 2 s."""
    with running_server(["--env", "textworld", "--tasks", tw_simple_file, "--dialect", "env_idx",
                         "--max-sessions", "2", "--idle-timeout", "2", "--body-timeout", "2"],
                        tmp_path_factory.mktemp("logs")) as url:
        yield url


def test_contract_client_plays_a_game_to_a_win_id_dialect(tw_url, tw_simple_tasks):  # noqa: F811
    expected = expert_run(tw_simple_tasks[0])
    client = ContractClient(tw_url)
    first = client.reset(0)
    assert first["task_id"] == tw_simple_tasks[0].task_id and first["done"] is False
    assert first["observation"].startswith("Location: ") and first["available_actions"]
    assert client.observe() == first["observation"]  # /observation: the current abstract state
    total = 0.0
    for action, state, reward, done in expected:
        got_state, got_reward, got_done, info = client.step(action)
        assert (got_state, got_reward, got_done) == (state, reward, done)
        assert client.observe() == got_state
        total += got_reward
    assert got_done and info["success"] is True and total == info["max_score"] > 0
    after = client._post("step", {"action": "look"})  # the episode is over
    assert "over" in after["error"]
    assert client.close() == {"closed": True}
    assert "unknown id" in client.observe()["error"]


def test_contract_client_env_idx_dialect(tw_url_env_idx, tw_simple_tasks):  # noqa: F811
    expected = expert_run(tw_simple_tasks[1], limit=3)
    client = ContractClient(tw_url_env_idx, dialect="env_idx")
    assert isinstance(client.env_id, int)  # webshop: /create returns a bare int
    reset = client.reset(1)  # webshop: [observation, None]
    assert isinstance(reset, list) and reset[1] is None and reset[0].startswith("Location: ")
    assert client.observe() == reset[0]
    for action, state, reward, done in expected:
        assert client.step(action)[:3] == (state, reward, done)
    raw = client._post("step", {"action": "look"})
    assert set(raw) == {"state", "reward", "done", "info"}
    assert client.close() == {"closed": True}


def test_two_sessions_interleaved_match_separate_runs(tw_url, tw_simple_tasks):  # noqa: F811
    runs = [expert_run(tw_simple_tasks[0], limit=4), expert_run(tw_simple_tasks[2], limit=4)]
    a, b = ContractClient(tw_url), ContractClient(tw_url)
    assert a.env_id != b.env_id
    a.reset(0)
    b.reset(2)
    for (act_a, st_a, r_a, _), (act_b, st_b, r_b, _) in zip(*runs):
        assert a.step(act_a)[:2] == (st_a, r_a)
        assert b.step(act_b)[:2] == (st_b, r_b)
    a.close()
    b.close()


def test_parallel_requests_on_separate_sessions(tw_url, tw_simple_tasks):  # noqa: F811
    expected = expert_run(tw_simple_tasks[1], limit=5)
    assert expected  # a game with no steps would prove nothing
    errors: list[BaseException] = []
    played: list[int] = []  # steps each thread checked; one entry per thread that finished

    def play():
        try:
            c = ContractClient(tw_url)
            c.reset(1)
            checked = 0
            for action, state, reward, _ in expected:
                assert c.step(action)[:2] == (state, reward)
                checked += 1
            c.close()
            played.append(checked)
        except BaseException as e:  # noqa: BLE001 — reported below
            errors.append(e)

    run_threads([threading.Thread(target=play) for _ in range(3)], 60, "a session blocked?")
    assert not errors, errors
    assert played == [len(expected)] * 3, played  # every thread played the whole game


def test_env_errors_are_http_200_and_malformed_bodies_422_naming_the_field(tw_url):
    """As AgentGym's servers: what the env cannot serve is 200 + `error`; what is not the typed
    request body is 422 (pydantic's `detail`, plus an `error` line naming the field)."""
    with httpx.Client(base_url=tw_url, timeout=10) as http:
        created = http.post("/create").json()["id"]
        served = [
            http.post("/step", json={"id": 987654, "action": "look"}),
            http.get("/observation", params={"id": 987654}),
            http.post("/step", json={"id": created, "action": "look"}),  # before any reset
            http.post("/reset", json={"id": created, "data_idx": 99}),
            http.post("/reset", json={"id": created}),
        ]
        messages = [r.json().get("error") for r in served]
        assert all(r.status_code == 200 for r in served)
        assert "unknown id 987654" in messages[0] and "unknown id" in messages[1]
        assert "reset" in messages[2] and "out of range" in messages[3]
        assert "data_idx" in messages[4]
        malformed = {
            "body.id": http.post("/step", json={"action": "look"}),
            "body.action": http.post("/step", json={"id": created, "action": 7}),
            "body.data_idx": http.post("/reset", json={"id": created, "data_idx": "first"}),
            "query.id": http.get("/observation"),
            "JSON decode": http.post("/step", content=b"{not json",
                                     headers={"content-type": "application/json"}),
        }
        for field, reply in malformed.items():
            assert reply.status_code == 422 and field in reply.json()["error"], field
            assert reply.json()["detail"]
        long = http.post("/step", json={"id": created, "action": "x" * 5000})
        assert long.status_code == 422 and "body.action" in long.json()["error"]
        assert "4096" in long.json()["error"] and "xxxx" not in long.text  # input not echoed
        http.post("/close", json={"id": created})


def _raw_request(url: str, head: bytes, body: bytes = b"", wait: float = 15.0) -> tuple[int, float]:
    """Send a request by hand (a lying Content-Length, a stalled body); (status, seconds)."""
    import socket

    host, port = url.rsplit("/", 1)[-1].split(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=wait) as sock:
        sock.sendall(head + body)
        reply = sock.recv(4096)
    return int(reply.split(b" ", 2)[1]), time.monotonic() - started


def test_oversized_and_stalled_bodies_do_not_stall_other_sessions(tw_url_env_idx):
    url = tw_url_env_idx
    big = httpx.post(f"{url}/step", json={"env_idx": 0, "action": "x" * (2 << 20)}, timeout=30)
    assert big.status_code == 413 and "--max-body-bytes" in big.json()["error"]
    # a Content-Length of 1e9 with a short body: refused at once, not waited for
    status, seconds = _raw_request(url, b"POST /step HTTP/1.1\r\nHost: x\r\nContent-Type: "
                                   b"application/json\r\nContent-Length: 1000000000\r\n\r\n",
                                   b'{"env_idx": 0}')
    assert status == 413 and seconds < 3
    # a body that stalls half way: 408 after --body-timeout (2 s); others are served meanwhile
    result: dict = {}
    stalled = threading.Thread(target=lambda: result.update(reply=_raw_request(
        url, b"POST /step HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
             b"Content-Length: 40\r\n\r\n", b'{"env_idx": 0, ')))
    stalled.start()
    time.sleep(0.3)
    client = ContractClient(url, dialect="env_idx")
    served_at = time.monotonic()
    client.reset(0)
    assert client.observe().startswith("Location: ")
    client.close()
    assert time.monotonic() - served_at < 1.5  # not queued behind the stalled body
    stalled.join(20)
    status, seconds = result["reply"]
    assert status == 408 and 1.5 < seconds < 6


def test_idle_sessions_expire_and_live_episodes_are_never_evicted(tw_url_env_idx):
    old = ContractClient(tw_url_env_idx, dialect="env_idx")
    old.reset(0)
    time.sleep(2.6)  # > --idle-timeout 2
    assert "unknown id" in old.observe()["error"]
    a = ContractClient(tw_url_env_idx, dialect="env_idx")
    a.reset(0)
    b = ContractClient(tw_url_env_idx, dialect="env_idx")
    b.reset(1)
    full = httpx.post(f"{tw_url_env_idx}/create")  # --max-sessions 2, both mid-episode
    assert full.status_code == 503 and "--max-sessions" in full.json()["error"]
    assert isinstance(a.observe(), str) and isinstance(b.observe(), str)
    listed = httpx.get(f"{tw_url_env_idx}/list_envs").json()
    assert sorted(listed) == sorted([a.env_id, b.env_id])
    a.close()
    b.close()


def test_serve_rejects_bad_input_before_serving(run_cli, tw_simple_file, tmp_path):  # noqa: F811
    port = str(free_port())
    code, _, err = run_cli("serve", "--port", port)
    assert code == 2 and "--em" in err
    code, _, err = run_cli("serve", "--env", "textworld", "--port", port)
    assert code == 2 and "--tasks" in err
    code, _, err = run_cli("serve", "--env", "textwrld", "--tasks", tw_simple_file, "--port",
                           port)
    assert code == 2 and "did you mean 'textworld'" in err
    code, _, err = run_cli("serve", "--env", "textworld", "--tasks", tw_simple_file,
                           "--dialect", "state", "--port", port)
    assert code == 2 and "dialect" in err
    code, _, err = run_cli("serve", "--em", tmp_path, "--port", port)
    assert code == 2 and "em.json" in err
    code, _, err = run_cli("serve", "--env", "textworld", "--tasks", tw_simple_file,
                           "--agentgym-env", "textcrafts", "--port", port)
    assert code == 2 and "agentgym_env" in err and "textcraft" in err
    code, _, err = run_cli("serve", "--env", "textworld", "--tasks", tw_simple_file,
                           "--reward", "final", "--port", port)
    assert code == 2 and "dense or sparse" in err
    code, _, err = run_cli("serve", "--env", "textworld", "--tasks", tw_simple_file,
                           "--item-ids", tmp_path / "ids.json", "--port", port)
    assert code == 2 and "--agentgym-env" in err
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        code, _, err = run_cli("serve", "--env", "textworld", "--tasks", tw_simple_file,
                               "--port", taken.getsockname()[1])
    assert code == 2 and "cannot listen" in err


def test_sigterm_stops_the_server_and_prints_the_json_summary(tw_simple_file, tmp_path):  # noqa: F811
    import json
    import os
    import subprocess
    import sys

    from tests.serve_fixtures import _wait_ready

    port = free_port()
    err_path = tmp_path / "serve.err"
    with open(err_path, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "dreamgym_cli.cli", "serve", "--env",
                                 "textworld", "--tasks", str(tw_simple_file), "--port", str(port),
                                 "--json"], stdout=subprocess.PIPE, stderr=err,
                                env=dict(os.environ), text=True)
    try:
        _wait_ready(proc, f"http://127.0.0.1:{port}", err_path)
        assert httpx.post(f"http://127.0.0.1:{port}/create").json() == {"id": 0}
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    summary = json.loads(out)
    assert summary["created"] == 1 and summary["closed"] == 1 and summary["tasks"] == 3
    assert summary["url"] == f"http://127.0.0.1:{port}" and summary["dialect"] == "id"
    assert summary["shape"] == "id" and summary["reward"] == "dense"
