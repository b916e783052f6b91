"""Request-body limits, as plain ASGI middleware in front of the app.

A body is read whole before the app sees it: at most `max_bytes` (a larger `Content-Length` is
refused at once, a chunked body as soon as it grows past the cap: HTTP 413) and within
`timeout` seconds (HTTP 408). Every connection is its own coroutine, so a client that sends its
body slowly, or never, holds only its own connection, and for at most `timeout` seconds.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any


class BodyLimit:
    def __init__(self, app: Any, *, max_bytes: int, timeout: float):
        self.app, self.max_bytes, self.timeout = app, max_bytes, timeout

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await _refuse(send, 400, f"bad Content-Length {declared[:40]!r}")
                return
            if size > self.max_bytes:
                await _refuse(send, 413, self._too_large(size))
                return
        body = await self._read(receive, send)
        if body is None:
            return
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect

        await self.app(scope, replay, send)

    async def _read(self, receive, send) -> bytes | None:
        loop = asyncio.get_running_loop()
        deadline, chunks, size = loop.time() + self.timeout, [], 0
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                await _refuse(send, 408, f"the request body did not arrive within "
                                         f"{self.timeout:g}s (--body-timeout)")
                return None
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _refuse(send, 413, self._too_large(size, at_least=True))
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _too_large(self, size: int, at_least: bool = False) -> str:
        return (f"request body of {'more than ' if at_least else ''}{size} bytes is over the "
                f"limit of {self.max_bytes} bytes (--max-body-bytes)")


async def _refuse(send, status: int, message: str) -> None:
    payload = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": payload})
