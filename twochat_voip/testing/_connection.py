"""One connection to the fake server: HTTP/1.1 parsed by hand, answers written (or
cut short) exactly where a fault says."""

from __future__ import annotations

import asyncio
import gzip as gzip_module
from http import HTTPStatus
from typing import TYPE_CHECKING, cast

import attrs

from twochat_voip.testing._faults import Fault

if TYPE_CHECKING:
    from twochat_voip.testing._server import FakeTwoChatServer

__all__ = ["MAX_HEAD", "Answer", "Connection"]

MAX_HEAD = 64 * 1024
MAX_BODY = 1024 * 1024


@attrs.define
class Answer:
    status: int
    body: bytes
    headers: list[tuple[str, str]] = attrs.field(factory=list)
    fault: Fault | None = None


class Connection(asyncio.Protocol):
    """One client connection: parse requests, write answers, misbehave on cue."""

    def __init__(self, server: FakeTwoChatServer) -> None:
        self._server = server
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast("asyncio.Transport", transport)  # a TCP server's always is
        self._server._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server._connections.discard(self)
        self._transport = None

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._serve_buffered()

    def _refuse(self, status: int) -> None:
        if self._transport is not None:
            phrase = HTTPStatus(status).phrase
            self._transport.write(
                f"HTTP/1.1 {status} {phrase}\r\nContent-Length: 0\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            self._transport.close()
        self._buffer.clear()

    def _serve_buffered(self) -> None:
        while not self._busy and self._transport is not None:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > MAX_HEAD:
                    self.abort()
                return
            head = bytes(self._buffer[:end]).decode("latin-1")
            request_line, *header_lines = head.split("\r\n")
            headers = {}
            for line in header_lines:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length_text = headers.get("content-length", "0") or "0"
            parts = request_line.split(" ", 2)
            if len(parts) != 3 or "transfer-encoding" in headers or not length_text.isdigit():
                # Not what this server reads (2Chat's clients send a Content-Length):
                # refused, and the connection closed rather than read out of step.
                self._refuse(411 if "transfer-encoding" in headers else 400)
                return
            method, target, _version = parts
            length = int(length_text)
            if len(self._buffer) < end + 4 + length:
                if length > MAX_BODY:
                    self.abort()
                return  # the body is still on its way
            body = bytes(self._buffer[end + 4 : end + 4 + length])
            del self._buffer[: end + 4 + length]
            keep_alive = headers.get("connection", "").lower() != "close"
            answer = self._server._answer(method, target, headers, body)
            fault = answer.fault
            if fault is None or not (fault.delay or fault.hang or fault.trickle or fault.drop):
                head_bytes, body = _render(answer, keep_alive)
                self._server.max_in_flight = max(self._server.max_in_flight, 1)
                self._transport.write(head_bytes + body)
                if not keep_alive:
                    self._transport.close()
                continue
            self._busy = True
            server = self._server
            server._in_flight += 1
            server.max_in_flight = max(server.max_in_flight, server._in_flight)
            task = asyncio.get_running_loop().create_task(self._misbehave(answer, keep_alive))
            self._server._tasks.add(task)
            task.add_done_callback(self._server._tasks.discard)

    async def _misbehave(self, answer: Answer, keep_alive: bool) -> None:
        try:
            await self._misbehave_now(answer, keep_alive)
        finally:
            self._server._in_flight -= 1

    async def _misbehave_now(self, answer: Answer, keep_alive: bool) -> None:
        fault = answer.fault or Fault()
        if fault.hang:
            return  # stays busy: nothing more is answered on this connection
        if fault.delay:
            await asyncio.sleep(fault.delay)
        head, body = _render(answer, keep_alive)
        transport = self._transport
        if transport is None:
            return
        if fault.drop == "before_status":
            transport.abort()
            return
        if fault.drop == "mid_headers":
            transport.write(head[: len(head) // 2])
            transport.abort()
            return
        if fault.drop == "mid_body":
            transport.write(head + body[: len(body) // 2])
            transport.abort()
            return
        if fault.trickle:
            for byte in head + body:
                if self._transport is None:
                    return
                self._transport.write(bytes((byte,)))
                await asyncio.sleep(fault.trickle)
        else:
            transport.write(head + body)
        self._busy = False
        if not keep_alive and self._transport is not None:
            self._transport.close()
        self._serve_buffered()


def _render(answer: Answer, keep_alive: bool) -> tuple[bytes, bytes]:
    """The head and body bytes of an answer."""
    fault = answer.fault or Fault()
    body = answer.body
    try:
        phrase = HTTPStatus(answer.status).phrase
    except ValueError:
        phrase = "Unknown"
    lines = [f"HTTP/1.1 {answer.status} {phrase}"]
    lines.append(f"Content-Type: {fault.content_type or 'application/json'}")
    if fault.gzip:
        body = gzip_module.compress(body)
        lines.append("Content-Encoding: gzip")
    if fault.chunked:
        lines.append("Transfer-Encoding: chunked")
        half = len(body) // 2
        parts = [p for p in (body[:half], body[half:]) if p]
        body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
    else:
        lines.append(f"Content-Length: {len(body)}")
    if fault.retry_after is not None:
        lines.append(f"Retry-After: {fault.retry_after}")
    lines.extend(f"{name}: {value}" for name, value in (*answer.headers, *fault.headers.items()))
    lines.append("Connection: keep-alive" if keep_alive else "Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head, body
