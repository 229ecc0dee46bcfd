"""A fast canned 2Chat for benchmarks: a raw asyncio protocol in its own process.

Every GET gets the documented example answer over HTTP/1.1 keep-alive, so the server
costs next to nothing and the client is what is measured. With a rate it answers 429
(2Chat's envelope, no Retry-After) to requests over a GCRA limit, like the API does,
and ``GET /open/info`` names that rate as the plan's limit.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
from importlib.resources import files
from multiprocessing.connection import Connection
from typing import Any

from twochat_voip._gcra import Gcra

BODY = files("twochat_voip.testing").joinpath("example_answer.json").read_bytes()
INFO_PATH = b"GET /open/info "
LIMITED_BODY = b'{"success": false, "error": true, "error_message": "Too many requests"}'
LIMITED = (
    b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\nConnection: keep-alive\r\n\r\n" % len(LIMITED_BODY)
) + LIMITED_BODY


def _ok(body: bytes) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
        b"Connection: keep-alive\r\n\r\n" % len(body)
    ) + body


OK = _ok(BODY)


class _Limit:
    def __init__(self, per_minute: float | None, burst: int) -> None:
        self.gcra = Gcra(60.0 / per_minute, burst) if per_minute else None
        self.limited = 0
        self.served = 0
        limits = b', "limits": {"requests_per_minute": %g}' % per_minute if per_minute else b""
        self.info = _ok(b'{"success": true%s}' % limits)

    def allows(self) -> bool:
        if self.gcra is not None and self.gcra.police(time.monotonic()):
            self.limited += 1
            return False
        self.served += 1
        return True


class _Canned(asyncio.Protocol):
    def __init__(self, limit: _Limit) -> None:
        self.limit = limit
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        answers = []
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            info = self.buffer.startswith(INFO_PATH)
            self.buffer = self.buffer[end + 4 :]
            if not self.limit.allows():
                answers.append(LIMITED)
            else:
                answers.append(self.limit.info if info else OK)
        if answers:
            self.transport.write(b"".join(answers))  # type: ignore[attr-defined]


def _serve(conn: Connection, per_minute: float | None, burst: int, cpu: int | None) -> None:
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})

    async def main() -> None:
        limit = _Limit(per_minute, burst)
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _Canned(limit), "127.0.0.1", 0)
        conn.send(server.sockets[0].getsockname()[1])
        cpu_since = time.process_time()
        while True:  # answer "stats" requests from the parent until it says "stop"
            command = await loop.run_in_executor(None, conn.recv)
            if command == "stop":
                break
            cpu_now = time.process_time()
            conn.send(
                {"served": limit.served, "limited": limit.limited, "cpu_s": cpu_now - cpu_since}
            )
            cpu_since = cpu_now
            limit.served = limit.limited = 0
            if limit.gcra is not None:
                limit.gcra.tat = 0.0
        server.close()

    asyncio.run(main())


class CannedServer:
    """The canned server in a child process: ``with CannedServer() as url: ...``."""

    def __init__(
        self, per_minute: float | None = None, *, burst: int = 5, cpu: int | None = None
    ) -> None:
        context = multiprocessing.get_context("spawn")
        self._parent, child = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(child, per_minute, burst, cpu), daemon=True
        )

    def __enter__(self) -> CannedServer:
        self._process.start()
        self.base_url = f"http://127.0.0.1:{self._parent.recv()}"
        return self

    def take_stats(self) -> dict[str, Any]:
        """Since the last call (or the start): requests ``served``, requests answered 429
        (``limited``), and the server process's CPU seconds (``cpu_s``, from
        ``time.process_time()``). Resets the counts and the limit."""
        self._parent.send("stats")
        stats: dict[str, Any] = self._parent.recv()
        return stats

    def __exit__(self, *exc_info: object) -> None:
        self._parent.send("stop")
        self._process.join(5)
        if self._process.is_alive():
            self._process.kill()
