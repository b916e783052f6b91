"""Our `agentgym:<name>@<url>` client env, end to end against `dreamgym serve` in both dialects.

The server is the real `dreamgym serve --env textworld` (a subprocess); every transition the
client reports is compared with the same game played directly. Transport behaviour (retries,
backoff, no re-sent step) is checked against plain sockets that refuse or never answer.
"""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from dreamgym_cli.envs.agentgym import (AgentGymEnv, AgentGymError, data_index, make_tasks,
                                        parse_env_name)
from dreamgym_cli.envs.registry import make_env
from dreamgym_cli.errors import InputError
from dreamgym_cli.schema import Task
from tests.serve_fixtures import free_port, running_server
from tests.test_serve import expert_run
from tests.tw_fixtures import tw_games, tw_simple_file, tw_simple_tasks  # noqa: F401


@pytest.fixture(scope="module", params=["id", "env_idx"])
def served(request, tw_simple_file, tmp_path_factory):  # noqa: F811
    with running_server(["--env", "textworld", "--tasks", tw_simple_file, "--dialect",
                         request.param], tmp_path_factory.mktemp("logs")) as url:
        yield request.param, url


def test_names_and_tasks_without_a_server():
    assert parse_env_name("agentgym:webshop@127.0.0.1:36001") == ("webshop",
                                                                  "http://127.0.0.1:36001")
    assert parse_env_name("agentgym:sciworld@https://h.example/x/") == ("sciworld",
                                                                        "https://h.example/x")
    for bad in ("agentgym:webshop", "agentgym:@http://x", "agentgym:web shop@x",
                "agentgym:webshop@ftp://x"):
        with pytest.raises(InputError, match="agentgym:<name>@<url>|http"):
            parse_env_name(bad)
    tasks = make_tasks("agentgym:webshop@localhost:9", [0, 6], split="test", max_steps=7)
    assert [t.task_id for t in tasks] == ["webshop_0", "webshop_6"]
    assert tasks[1].env == "agentgym:webshop@http://localhost:9" and tasks[1].split == "test"
    assert tasks[1].spec == {"data_idx": 6, "max_steps": 7}
    # an AgentGym item_id is enough when the spec has no index (ingested conversations)
    bare = Task(task_id="webshop_12", env="agentgym:webshop@x", instruction="i", spec={})
    assert data_index(bare, "webshop") == 12
    with pytest.raises(InputError, match="data_idx"):
        data_index(Task(task_id="other", env="e", instruction="i", spec={}), "webshop")
    # building the env contacts nothing (callers build envs just to check the name)
    env = make_env("agentgym:webshop@127.0.0.1:1")
    assert isinstance(env, AgentGymEnv) and env.profile.webshop_extras
    env.close()


def test_client_plays_served_textworld_in_both_dialects(served, tw_simple_tasks):  # noqa: F811
    dialect, url = served
    expected = expert_run(tw_simple_tasks[2])
    env = make_env(f"agentgym:textworld@{url}")
    task = make_tasks(env.name, [2])[0]
    try:
        first = env.reset(task)
        assert env._key == dialect and first.info["data_idx"] == 2
        assert first.text.startswith("Location: ") and first.admissible  # in both dialects
        assert expected[0][0] in first.admissible
        total = 0.0
        for action, state, reward, done in expected:
            result = env.step(action)
            assert (result.observation.text, result.reward, result.done) == (state, reward, done)
            total += result.reward
        assert result.done and result.success is True and total > 0
        with pytest.raises(RuntimeError, match="reset"):
            env.step("look")
        # a new episode on the same server env
        again = env.reset(make_tasks(env.name, [0])[0])
        assert again.text == expert_run_start(tw_simple_tasks[0])
    finally:
        env.close()


def expert_run_start(task) -> str:
    from dreamgym_cli.envs.textworld import TextWorldEnv

    env = TextWorldEnv()
    try:
        return env.reset(task).text
    finally:
        env.close()


def test_client_step_limit_truncates_as_failure(served):
    _, url = served
    env = make_env(f"agentgym:textworld@{url}", max_steps=2)
    try:
        env.reset(make_tasks(env.name, [1])[0])
        assert env.step("look").done is False
        last = env.step("look")
        assert last.done and last.success is False and last.info["truncated"]
    finally:
        env.close()


def test_server_errors_become_clear_exceptions(served):
    _, url = served
    env = AgentGymEnv(f"agentgym:textworld@{url}")
    try:
        with pytest.raises(AgentGymError, match="out of range: this server has 3 tasks"):
            env.reset(make_tasks(env.name, [99])[0])
        env.reset(make_tasks(env.name, [0])[0])
        env._id = 424242  # the server no longer knows this env (e.g. it expired)
        with pytest.raises(AgentGymError, match="server error: unknown id 424242"):
            env.step("look")
        # reset recovers by creating a fresh server env
        assert env.reset(make_tasks(env.name, [0])[0]).text.startswith("Location: ")
    finally:
        env.close()


def test_collect_runs_through_the_client(served, tmp_path, run_cli):
    from dreamgym_cli.trajectories import read_episodes, write_tasks

    _, url = served
    tasks = make_tasks(f"agentgym:textworld@{url}", [0, 1], split="test")
    write_tasks(tmp_path / "AG.jsonl", tasks)
    code, out, err = run_cli("collect", "--tasks", tmp_path / "AG.jsonl", "--policy", "random",
                             "--max-steps", "3", "--seed", "1", "--workers", "1",
                             "--out", tmp_path / "E.jsonl", "--json")
    assert code == 0, err
    assert json.loads(out)["episodes"] == 2
    episodes = list(read_episodes(tmp_path / "E.jsonl"))
    assert {task["task_id"] for task, _, _ in episodes} == {"textworld_0", "textworld_1"}
    assert all(len(steps) == 3 and steps[0]["admissible"] for _, _, steps in episodes)
    assert all(steps[1]["action"] in steps[1]["admissible"] for _, _, steps in episodes)


# ---- transport: refused connections are retried with backoff; a lost step is not re-sent --


def test_unreachable_server_is_retried_with_backoff_then_reported():
    env = AgentGymEnv(f"agentgym:babyai@127.0.0.1:{free_port()}", retries=2, backoff=0.2,
                      timeout=2)
    start = time.monotonic()
    with pytest.raises(AgentGymError, match=r"cannot reach .* after 3 tries.*is it running"):
        env.reset(make_tasks(env.name, [0])[0])
    assert time.monotonic() - start >= 0.2 + 0.4  # two backoffs: 0.2 s, then 0.4 s
    env.close()


def test_a_step_whose_reply_is_lost_is_not_resent():
    """A socket server that answers create/reset like AgentGym's babyai and then goes silent."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    seen: list[str] = []

    replies = {"/create": {"id": 0}, "/reset": {"observation": "You see a red ball.",
                                                "reward": 0, "score": 0, "done": False}}

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                while True:
                    request = _read_request(conn)
                    if request is None:
                        break
                    seen.append(request)
                    path = request.split()[1].split("?")[0]
                    if path == "/step":
                        time.sleep(3)  # never answered in time
                        break
                    body = json.dumps(replies.get(path, {"detail": "Not Found"})).encode()
                    status = b"200 OK" if path in replies else b"404 Not Found"
                    conn.sendall(b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json"
                                 b"\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n"
                                 + body)

    threading.Thread(target=serve, daemon=True).start()
    env = AgentGymEnv(f"agentgym:babyai@127.0.0.1:{listener.getsockname()[1]}", retries=3,
                      backoff=0.05, timeout=0.5)
    try:
        obs = env.reset(make_tasks(env.name, [3])[0])
        assert obs.text == "You see a red ball." and obs.admissible is None
        with pytest.raises(AgentGymError, match="not retried"):
            env.step("go to red ball 1")
        paths = [r.split()[1].split("?")[0] for r in seen]
        assert paths == ["/create", "/reset", "/available_actions", "/step"]  # one step only
        assert json.loads(seen[1].split("\r\n\r\n", 1)[1]) == {"data_idx": 3, "id": 0}
    finally:
        env._http.close()
        env._http = None
        listener.close()


def _read_request(conn) -> str | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length")), 0)
    while len(body) < length:
        body += conn.recv(4096)
    return (head + b"\r\n\r\n" + body).decode()


def test_tasks_make_for_agentgym_needs_no_server(tmp_path, run_cli):
    import json

    from dreamgym_cli.trajectories import read_tasks

    out = tmp_path / "W.parquet"
    code, stdout, err = run_cli("tasks", "make", "--env", "agentgym:webshop@http://127.0.0.1:9",
                                "--seeds", "3-5", "--split", "test", "--out", out, "--json")
    assert code == 0, err
    assert json.loads(stdout)["count"] == 3
    tasks = read_tasks(out)
    assert [t.task_id for t in tasks] == ["webshop_3", "webshop_4", "webshop_5"]
    assert [t.spec["data_idx"] for t in tasks] == [3, 4, 5] and tasks[0].split == "test"
