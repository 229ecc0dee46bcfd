"""Faults scripted into the fake server, the requests it logs, and answers written to a
socket as a fault says."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Mapping
from http.client import responses
from typing import Any, Literal

import attrs
from aiohttp import web
from multidict import CIMultiDict

from twochat_voip._requests import Response

__all__ = ["Fault", "ReceivedRequest", "error", "write_answer"]

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


def error(status: int, message: str | None = None) -> tuple[int, dict[str, Any]]:
    """2Chat's error envelope; its message, by default the status's phrase."""
    message = message or responses.get(status, "Error")
    return status, {"success": False, "error": True, "error_message": message}


async def write_answer(
    request: web.BaseRequest, answer: Response, fault: Fault, closed: asyncio.Future[None]
) -> web.StreamResponse:
    """Write ``answer`` as ``fault`` says; ``closed`` (the server stopped) cuts it short."""
    body, headers = answer.body, CIMultiDict(answer.headers)
    if fault.gzip:
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    if closed.done() or fault.drop == "before_status":
        return _cut(request)
    if fault.drop == "mid_headers":
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        head = f"HTTP/1.1 {answer.status} \r\n{head}"
        return _cut(request, head[: len(head) // 2].encode("latin-1"))
    if fault.drop is None and not fault.trickle:
        response = web.Response(status=answer.status, body=body, headers=headers)
        if fault.chunked:
            response.enable_chunked_encoding()
        return response
    return await _stream(
        request, web.StreamResponse(status=answer.status, headers=headers), body, fault, closed
    )


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


def _cut(request: web.BaseRequest, sent: bytes = b"") -> web.StreamResponse:
    """Close the connection after ``sent``; aiohttp then writes nothing of the answer."""
    if request.transport is not None:
        request.transport.write(sent)
        request.transport.close()
    return web.Response()
