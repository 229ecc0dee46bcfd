"""What a test scripts into the fake server (:class:`Fault`) and what it reads back
from it (:class:`ReceivedRequest`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import attrs

__all__ = ["CALL_PREFIX", "Drop", "Fault", "ReceivedRequest"]

CALL_PREFIX = "/open/voip/call/"

Drop = Literal["before_status", "mid_headers", "mid_body"]


@attrs.frozen(kw_only=True)
class Fault:
    """One scripted misbehaviour, spent on one request.

    With ``status`` left ``None`` the request gets its normal answer, changed by the
    other options; with a status it gets that status and 2Chat's error envelope
    (or ``body``).

    Attributes:
        status: Answer with this status instead of the normal answer.
        body: The body instead: bytes or str as they are, anything else as JSON.
        headers: Extra headers for the answer.
        retry_after: A ``Retry-After`` value: seconds, or an HTTP-date string.
        delay: Seconds to wait before answering.
        drop: Close the connection ``"before_status"``, ``"mid_headers"`` or
            ``"mid_body"`` (the body cut short).
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
    drop: Drop | None = None
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
        headers: The request headers, names lower-cased. The key is left out of the
            repr, and is the test key anyway.
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
        if self.path.startswith(CALL_PREFIX):
            return self.path[len(CALL_PREFIX) :]
        return None
