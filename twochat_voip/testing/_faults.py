"""Faults scripted into the fake server, the requests it logs, and answers written as a
fault says."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, Literal

import attrs
from aiohttp import web
from multidict import CIMultiDict

__all__ = ["Answer", "Fault", "ReceivedRequest", "error_answer", "json_answer", "write_answer"]

_CALL_PREFIX = "/open/voip/call/"


@attrs.frozen(kw_only=True)
class Fault:
    """One scripted misbehaviour, spent on one request.

    Without ``status`` the normal answer is sent, changed by the other options.

    Attributes:
        status: Answer with this status instead of the normal answer.
        body: The body instead: bytes or str as they are, anything else as JSON.
        headers: Extra headers for the answer.
        retry_after: A ``Retry-After`` value: seconds, or an HTTP-date string.
        delay: Seconds to wait before answering.
        drop: Close the connection ``"before_status"``, ``"mid_headers"`` or ``"mid_body"``.
        hang: Never answer; the connection stays open until the server stops.
        trickle: Seconds between bytes of the answer, sent one at a time.
        gzip: Send the body gzip-compressed.
        chunked: Send the body with chunked transfer encoding.
        content_type: The ``Content-Type`` header instead of ``application/json``.
    """

    status: int | None = None
    body: Any = None
    headers: Mapping[str, str] = attrs.field(factory=dict)
    retry_after: str | float | None = None
    delay: float = 0.0
    drop: Literal["before_status", "mid_headers", "mid_body"] | None = None
    hang: bool = False
    trickle: float | None = None
    gzip: bool = False
    chunked: bool = False
    content_type: str | None = None


@attrs.frozen(kw_only=True)
class ReceivedRequest:
    """A request the server received, for tests to inspect.

    Attributes:
        method: The HTTP method.
        path: The path, without the query.
        query: The query parameters (first value of each).
        headers: The request headers, names lower-cased (not in the repr).
        received_at: when it arrived, on the event loop's clock (``loop.time()``).
        status: The status answered, ``None`` if the connection was cut or hung.
    """

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str] = attrs.field(repr=False)
    received_at: float
    status: int | None

    @property
    def call_uuid(self) -> str | None:
        """The id asked for by a ``GET /open/voip/call/{uuid}``."""
        if self.path.startswith(_CALL_PREFIX):
            return self.path[len(_CALL_PREFIX) :]
        return None


@attrs.frozen
class Answer:
    """An answer decided but not yet written, and the fault to write it with."""

    status: int
    body: bytes
    fault: Fault = Fault()

    @property
    def answered_status(self) -> int | None:
        return None if self.fault.hang or self.fault.drop else self.status

    def headers(self) -> CIMultiDict[str]:
        """The answer's headers, as its fault says (not its transfer encoding)."""
        fault = self.fault
        headers = CIMultiDict([("Content-Type", fault.content_type or "application/json")])
        if fault.retry_after is not None:
            headers["Retry-After"] = str(fault.retry_after)
        headers.extend(fault.headers)
        return headers

    def with_fault(self, fault: Fault) -> Answer:
        body = fault.body
        if body is None:
            body = self.body
        elif isinstance(body, str):
            body = body.encode()
        elif not isinstance(body, bytes):
            body = json.dumps(body).encode()
        return attrs.evolve(self, body=body, fault=fault)


def json_answer(status: int, payload: Any) -> Answer:
    return Answer(status, json.dumps(payload).encode())


def error_answer(status: int, message: str | None = None) -> Answer:
    """2Chat's error envelope; its message, by default the status's phrase."""
    if message is None:
        try:
            message = HTTPStatus(status).phrase
        except ValueError:
            message = "Error"
    return json_answer(status, {"success": False, "error": True, "error_message": message})


async def write_answer(
    request: web.BaseRequest, answer: Answer, closed: asyncio.Future[None]
) -> web.StreamResponse:
    """Write ``answer`` as its fault says; ``closed`` (the server stopped) cuts any wait short."""
    fault, body, headers = answer.fault, answer.body, answer.headers()
    if fault.gzip:
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    if fault.hang or fault.delay:
        await asyncio.wait([closed], timeout=None if fault.hang else fault.delay)
    if closed.done() or fault.drop == "before_status":
        return _cut(request)
    if fault.drop == "mid_headers":
        head = f"HTTP/1.1 {answer.status} \r\n" + "".join(
            f"{name}: {value}\r\n" for name, value in headers.items()
        )
        if request.transport is not None:
            request.transport.write(head[: len(head) // 2].encode("latin-1"))
        return _cut(request)
    if fault.drop is None and not fault.trickle:
        response = web.Response(status=answer.status, body=body, headers=headers)
        if fault.chunked:
            response.enable_chunked_encoding()
        return response
    streamed = web.StreamResponse(status=answer.status, headers=headers)
    return await _stream(request, streamed, body, fault, closed)


async def _stream(
    request: web.BaseRequest,
    response: web.StreamResponse,
    body: bytes,
    fault: Fault,
    closed: asyncio.Future[None],
) -> web.StreamResponse:
    if fault.chunked:
        response.enable_chunked_encoding()
    else:
        response.content_length = len(body)  # the whole, even when half is sent
    try:
        await response.prepare(request)
        if fault.drop == "mid_body":
            await response.write(body[: len(body) // 2])
            return _cut(request)
        for index in range(len(body)):
            await response.write(body[index : index + 1])
            # asyncio.wait leaves ``closed`` to the others waiting on it.
            await asyncio.wait([closed], timeout=fault.trickle)
            if closed.done():
                return _cut(request)
    except ConnectionError:  # the client left first: nothing more to write
        return _cut(request)
    return response


def _cut(request: web.BaseRequest) -> web.StreamResponse:
    """Close the connection; aiohttp then writes nothing of the answer returned."""
    if request.transport is not None:
        request.transport.close()
    return web.Response()
