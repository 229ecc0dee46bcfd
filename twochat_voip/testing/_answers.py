"""What the fake server answers (:class:`Answer`), and how aiohttp.web writes it:
plainly, or misbehaving where its :class:`Fault` says (late, never, byte by byte, or
cut short before the status line, inside the headers or halfway through the body)."""

from __future__ import annotations

import asyncio
import gzip
import json
from http import HTTPStatus
from typing import Any

import attrs
from aiohttp import web
from multidict import CIMultiDict

from twochat_voip.testing._faults import Fault

__all__ = [
    "Answer",
    "encode_body",
    "error_answer",
    "fault_answer",
    "json_answer",
    "write_answer",
]


@attrs.define
class Answer:
    """An answer decided but not yet written, and the fault to write it with."""

    status: int
    body: bytes
    headers: list[tuple[str, str]] = attrs.field(factory=list)
    fault: Fault | None = None

    @property
    def answered_status(self) -> int | None:
        """The status the client will read; ``None``: it hangs or is cut."""
        fault = self.fault
        if fault is not None and (fault.hang or fault.drop is not None):
            return None
        return self.status


def encode_body(body: Any) -> bytes:
    """A fault's body as bytes: bytes and str as they are, anything else as JSON."""
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return json.dumps(body).encode()


def json_answer(status: int, payload: Any) -> Answer:
    return Answer(status, json.dumps(payload).encode())


def error_answer(status: int, message: str) -> Answer:
    """2Chat's error envelope."""
    return json_answer(status, {"success": False, "error": True, "error_message": message})


def fault_answer(fault: Fault, status: int) -> Answer:
    """The answer to a fault with a status: its body, or 2Chat's envelope."""
    if fault.body is not None:
        answer = Answer(status, encode_body(fault.body))
    else:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        answer = error_answer(status, phrase)
    answer.fault = fault
    return answer


async def write_answer(
    request: web.BaseRequest, answer: Answer, closed: asyncio.Future[None]
) -> web.StreamResponse:
    """Write ``answer`` as its fault says; ``closed`` (done when the server stops) ends
    any wait early, and cuts the connection."""
    fault = answer.fault or Fault()
    headers = CIMultiDict([("Content-Type", fault.content_type or "application/json")])
    body = answer.body
    if fault.gzip:
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    if fault.retry_after is not None:
        headers["Retry-After"] = str(fault.retry_after)
    headers.extend(answer.headers)
    headers.extend(fault.headers)
    if fault.hang or fault.delay:
        await _closed_within(closed, None if fault.hang else fault.delay)
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
    """Write the body in pieces: half of it then cut, or byte by byte."""
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
            if await _closed_within(closed, fault.trickle):
                return _cut(request)
    except ConnectionError:  # the client left first: nothing more to write
        return _cut(request)
    return response


async def _closed_within(closed: asyncio.Future[None], seconds: float | None) -> bool:
    """Wait ``seconds`` (``None``: until the server stops), or less if the server
    stops first; whether it did. ``asyncio.wait`` leaves ``closed`` to the others
    waiting on it, and cancels nothing."""
    await asyncio.wait([closed], timeout=seconds)
    return closed.done()


def _cut(request: web.BaseRequest) -> web.StreamResponse:
    """Close the connection; aiohttp finds it closed and writes nothing more of the
    answer returned, which is only there to end the handler."""
    if request.transport is not None:
        request.transport.close()
    return web.Response()
