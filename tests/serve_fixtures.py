"""Start `dreamgym serve` for real (a subprocess running the CLI) and always stop it.

Used by the serve and agentgym tests. The server binds a free 127.0.0.1 port; readiness is
`GET /` answering, waited for at most `READY_SECONDS`; the process is terminated (then killed)
when the test module is done, and its stderr is shown when it fails to start.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.vllm_server import free_port  # noqa: F401  (also used by the serve tests)

READY_SECONDS = 120  # the dream env loads a model; 2 busy cores can be slow


def run_threads(threads: list, timeout: float, hint: str) -> None:
    """Start `threads` and join each; fail naming one still running after `timeout` s and why
    that could be (`hint`)."""
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
        assert not t.is_alive(), f"{t.name} still running after {timeout:g} s ({hint})"


@contextlib.contextmanager
def running_server(args: list[str], logdir: Path) -> Iterator[str]:
    """`dreamgym serve ARGS --port P` in a subprocess; yields its base URL."""
    port = free_port()
    logdir.mkdir(parents=True, exist_ok=True)
    err_path = logdir / f"serve-{port}.err"
    cmd = [sys.executable, "-m", "dreamgym_cli.cli", "serve", *map(str, args), "--port", str(port)]
    with open(err_path, "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=dict(os.environ),
                                cwd=Path(__file__).resolve().parents[1])
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(proc, url, err_path)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _wait_ready(proc: subprocess.Popen, url: str, err_path: Path) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dreamgym serve exited with {proc.returncode}:\n"
                               f"{err_path.read_text()[-3000:]}")
        try:
            ready = httpx.get(f"{url}/", timeout=1.0).status_code == 200
        except httpx.TransportError:
            ready = False  # not listening yet
        if ready:
            return
        time.sleep(0.2)
    raise RuntimeError(f"dreamgym serve not ready after {READY_SECONDS}s:\n"
                       f"{err_path.read_text()[-3000:]}")


# ---- AgentGym's env clients, as their code behaves -----------------------------------------
#
# Written from agentenv/agentenv/envs/{textcraft,babyai,sciworld,alfworld,webshop}.py and
# AgentGym-RL's rollout loop (verl/workers/rollout/agent_vllm_rollout/vllm_rollout.py): `requests`
# calls, the same create / reset / observe / step / close, the same fields read, the same parsing
# of the agent's text into an action, the same status checks (assert 200). Our own code; nothing
# here knows our server.

import json  # noqa: E402
import re  # noqa: E402
from typing import Any, NamedTuple  # noqa: E402

import requests  # noqa: E402


class StepOutput(NamedTuple):
    state: str
    reward: float
    done: bool


def agent_text(action: str) -> str:
    """What an agent following the clients' ReAct prompt writes for `action`."""
    return f"Thought:\nI will {action}.\n\nAction:\n{action}"


def _action_line(text: str) -> str | None:
    """textcraft/babyai: the one `Action:` line, reduced to letters, digits, ',' and spaces."""
    found = re.findall(r"Action:\s*(.*?)(?=\n|$)", text, re.DOTALL)
    if len(found) > 1:
        return None
    action = re.sub(r"[^A-Za-z0-9, ]+", "", found[-1] if found else "")
    return " ".join(action.split()).strip()


def _react_action(text: str) -> str:
    """sciworld/alfworld/webshop ReAct parsing: what follows the last `Action:`."""
    return text.rsplit("Action:", 1)[-1].strip()


class AgentGymClient:
    key = "id"
    create_body: dict | None = None

    def __init__(self, base: str, timeout: float = 60.0):
        self.base, self.timeout = base, timeout
        ok = requests.post(f"{base}/create", json=self.create_body, timeout=timeout)
        if ok.status_code != 200:
            raise requests.RequestException(f"Failed to create environment: {ok}")
        self.created = ok.json()
        self.env_id = self.created["id"] if self.key == "id" else self.created
        self.info: dict[str, Any] = {}

    def _post(self, path: str, data: dict) -> Any:
        data[self.key] = self.env_id
        res = requests.post(f"{self.base}/{path}", json=data, timeout=self.timeout)
        assert res.status_code == 200, (res.status_code, res.text[:300])
        return res.json()

    def _get(self, path: str) -> Any:
        res = requests.get(f"{self.base}/{path}?{self.key}={self.env_id}", timeout=self.timeout)
        assert res.status_code == 200, (res.status_code, res.text[:300])
        return res.json()

    def observe(self) -> str:
        return self.info["observation"]

    def close(self) -> Any:
        return self._post("close", {})


class TextCraftClient(AgentGymClient):
    create_body = {"minecraft_dir": "agentenv_textcraft/", "commands": None, "goal": None}

    def __init__(self, base: str, timeout: float = 60.0):
        super().__init__(base, timeout)
        self.info = {"observation": self.created["observation"], "reward": 0, "done": False}

    def step(self, text: str) -> StepOutput:
        action = _action_line(text)
        if action is None:
            return StepOutput("Error: Only one 'Action' is allowed per response.", 0, False)
        r = self._post("step", {"action": action})
        self.info = {"observation": r["observation"], "reward": r["reward"], "done": r["done"]}
        return StepOutput(r["observation"], r["reward"], r["done"])

    def reset(self, idx: int = 0) -> Any:
        r = self._post("reset", {"data_idx": idx})
        self.info.update({"observation": r["observation"], "reward": 0, "done": False})
        return r


class BabyAIClient(AgentGymClient):
    def step(self, text: str) -> StepOutput:
        action = _action_line(text)
        if action is None:
            return StepOutput("Error: Only one 'Action' is allowed per response.", 0, False)
        r = self._post("step", {"action": action})
        self.info = {k: r[k] for k in ("observation", "reward", "score", "done")}
        return StepOutput(r["observation"], r["score"], r["done"])

    def reset(self, data_idx: int = 0) -> Any:
        r = self._post("reset", {"data_idx": data_idx})
        self.info = {k: r[k] for k in ("observation", "reward", "score", "done")}
        return r


class SciworldClient(AgentGymClient):
    def step(self, text: str) -> StepOutput:
        r = self._post("step", {"action": _react_action(text)})
        self.info = {k: r[k] for k in ("observation", "reward", "score", "done")}
        return StepOutput(r["observation"], r["score"], r["done"])

    def reset(self, data_idx: int = 0) -> Any:
        r = self._post("reset", {"data_idx": data_idx})
        self.info = {"observation": r["task_description"] + "\n" + r["observation"],
                     "reward": 0, "score": 0, "done": False}
        return r


class AlfWorldClient(AgentGymClient):
    def observe(self) -> str:
        return (f"{self.info['observation']}\nAVAILABLE ACTIONS: "
                f"{','.join(self.info['available_actions'])}")

    def step(self, text: str) -> StepOutput:
        r = self._post("step", {"action": _react_action(text)})
        self.info = {k: r[k] for k in ("observation", "available_actions", "reward", "done")}
        return StepOutput(r["observation"], r["reward"], r["done"])

    def reset(self, game: int, world_type: str = "Text") -> Any:
        r = self._post("reset", {"game": game, "world_type": world_type})
        self.info = {"observation": r["observation"],
                     "available_actions": r["available_actions"], "reward": 0, "done": False}
        return r


class WebshopClient(AgentGymClient):
    key = "env_idx"

    def _post(self, path: str, data: dict) -> Any:
        data[self.key] = self.env_id
        for _ in range(5):  # its client retries a 503 five times
            res = requests.post(f"{self.base}/{path}", json=data, timeout=self.timeout)
            if res.status_code != 503:
                break
            time.sleep(0.1)
        assert res.status_code == 200, (res.status_code, res.text[:300])
        return res.json()

    def observe(self) -> str:
        return self._get("observation")

    def step(self, text: str) -> StepOutput:
        r = self._post("step", {"action": _react_action(text)})
        return StepOutput(r["state"], r["reward"], r["done"])

    def reset(self, idx: int) -> Any:
        r = self._post("reset", {"session_id": idx})
        r[0] = self.observe()
        return r


CLIENTS = {"textcraft": TextCraftClient, "babyai": BabyAIClient, "sciworld": SciworldClient,
           "alfworld": AlfWorldClient, "webshop": WebshopClient}


def agentgym_rl_rollout(task_name: str, base: str, item_ids: list[str],
                        policies: list[list[str]], max_rounds: int) -> tuple[list[float], list]:
    """AgentGym-RL's rollout: every client created first, then reset(item index) and observe()
    as the first user message, then rounds of steps in a thread pool until all are done or
    `max_rounds`; a trajectory's score is the reward of its last step; clients closed at the
    end. `policies[i]` is the i-th rollout's action sequence. (scores, transcripts)"""
    from concurrent.futures import ThreadPoolExecutor

    clients = [CLIENTS[task_name](base) for _ in item_ids]
    messages: list[list[str]] = []
    done, scores = [False] * len(item_ids), [0.0] * len(item_ids)
    for client, item in zip(clients, item_ids):
        client.reset(int(item.split("_")[-1]))
        messages.append([client.observe()])

    def agent_step(i: int, round_: int) -> bool:
        moves = policies[i]
        text = agent_text(moves[round_] if round_ < len(moves) else "look")
        try:
            out = clients[i].step(text)
        except Exception as e:  # noqa: BLE001 — AgentGym-RL scores a failed step 0 and stops
            messages[i].append(f"error: {e}")
            scores[i], done[i] = 0.0, True
            return True
        scores[i], done[i] = out.reward, out.done
        messages[i].append(out.state)
        return out.done

    for round_ in range(max_rounds):
        live = [i for i in range(len(clients)) if not done[i]]
        if not live:
            break
        with ThreadPoolExecutor(max_workers=min(16, len(live))) as pool:
            list(pool.map(lambda i: agent_step(i, round_), live))
    for client in clients:
        try:
            client.close()
        except Exception:  # noqa: BLE001 — AgentGym-RL ignores close failures too
            pass
    return scores, messages


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())
