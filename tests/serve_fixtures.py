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
