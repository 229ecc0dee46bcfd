"""Event hooks: what a client does, told as it happens, for tracing and metrics.

``VoIPClient(hooks=[...])`` takes plain callables (not ``async def``), told every
:data:`ClientEvent` in order, in the task and context of the call; keep them quick. A
hook that raises is logged and the call goes on. No event carries the API key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

import attrs

from twochat_voip._errors import TwoChatError

__all__ = [
    "BudgetExhausted",
    "CallEnded",
    "CallStarted",
    "ClientEvent",
    "Hook",
    "RateLimitWait",
    "RequestFailed",
    "RequestSent",
    "ResponseReceived",
    "RetryScheduled",
]


@attrs.frozen(kw_only=True)
class _AboutCall:
    method: str
    route: str
    path: str
    call_uuid: str | None


@attrs.frozen(kw_only=True)
class _AboutAttempt(_AboutCall):
    attempt: int


@attrs.frozen(kw_only=True)
class CallStarted(_AboutCall):
    """A call begins.

    Attributes:
        method: The HTTP method.
        route: The path's template, the same for every call of a kind (a metric's
            label): ``/open/voip/call/{call_uuid}``.
        path: The path asked for, with its query.
        call_uuid: The record asked for, if any.
        base_url: The client's base URL (the path is relative to it).
    """

    base_url: str


@attrs.frozen(kw_only=True)
class RequestSent(_AboutAttempt):
    """An attempt's request leaves (it may still fail to connect).

    Attributes:
        method, route, path, call_uuid: As for :class:`CallStarted`.
        attempt: 1 for a call's first attempt, 2 for its first retry, ...
    """


@attrs.frozen(kw_only=True)
class ResponseReceived(_AboutAttempt):
    """An attempt's answer came in (any status, 429s included).

    Attributes:
        method, route, path, call_uuid, attempt: As for :class:`RequestSent`.
        status_code: The HTTP status.
        elapsed: Seconds from sending to the whole answer read.
    """

    status_code: int
    elapsed: float


@attrs.frozen(kw_only=True)
class RequestFailed(_AboutAttempt):
    """An attempt got no answer: the connection failed, dropped or timed out.

    Attributes:
        method, route, path, call_uuid, attempt: As for :class:`RequestSent`.
        error: The error (an :class:`~twochat_voip.APIConnectionError`, ...).
        elapsed: Seconds from sending to the failure.
    """

    error: TwoChatError
    elapsed: float


@attrs.frozen(kw_only=True)
class RetryScheduled(_AboutAttempt):
    """A failed attempt is to be retried.

    Attributes:
        method, route, path, call_uuid: As for :class:`CallStarted`.
        attempt: The attempt that failed.
        error: Why it failed.
        wait: Seconds of backoff before the next attempt; 0 when the rate limiter
            holds it instead (a ``retry_after``, or a 429 in a bulk run).
        retry_after: The server's ``Retry-After`` in seconds, if it sent one.
        retries: The retries the call may make in all; ``None`` for a 429 a bulk run
            waits out with its rate limiter, which uses none of them.
    """

    error: TwoChatError
    wait: float
    retry_after: float | None = None
    retries: int | None = None


@attrs.frozen(kw_only=True)
class RateLimitWait(_AboutAttempt):
    """A request waited for the rate limiter (pacing, or a ``Retry-After``) and leaves.

    Attributes:
        method, route, path, call_uuid, attempt: As for :class:`RequestSent`.
        seconds: How long it waited.
    """

    seconds: float


@attrs.frozen(kw_only=True)
class BudgetExhausted:
    """The client's request budget (``max_requests``) refused a request: told once,
    though every later call raises :class:`~twochat_voip.BudgetExhaustedError` too.

    Attributes:
        budget: The budget, in requests.
    """

    budget: int


@attrs.frozen(kw_only=True)
class CallEnded(_AboutCall):
    """A call ended, with a result or an error.

    Attributes:
        method, route, path, call_uuid: As for :class:`CallStarted`.
        attempts: Requests the call made (0: a closed client, a spent budget).
        status_code: The last answer's status, or ``None`` when no answer came.
        error: The error the call raised, or ``None`` when it succeeded.
        elapsed: Seconds from :class:`CallStarted`, waits and retries included.
    """

    attempts: int
    status_code: int | None
    error: BaseException | None
    elapsed: float


ClientEvent: TypeAlias = (
    CallStarted
    | RequestSent
    | ResponseReceived
    | RequestFailed
    | RetryScheduled
    | RateLimitWait
    | BudgetExhausted
    | CallEnded
)
"""Every event a hook may be told."""

Hook: TypeAlias = Callable[[ClientEvent], object]
"""A callable told every :data:`ClientEvent`; what it returns is ignored."""
