"""VoIPClient: owns the session, the rate limiter and the counters, and joins
protocol, transport and retry policy into ``get_call``, ``get_calls`` and
``iter_call_history``."""

from __future__ import annotations

import asyncio
import enum
import os
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Iterable
from importlib.metadata import version
from types import TracebackType
from typing import Final, Literal, Self, TypeVar

import aiohttp
import attrs

from twochat_voip._bulk import CallResult, iterate_bulk
from twochat_voip._errors import (
    APIConnectionError,
    ClientClosedError,
    MissingAPIKeyError,
    ResponseValidationError,
    TwoChatError,
)
from twochat_voip._models import CallDetailRecord
from twochat_voip._protocol import (
    API_KEY_HEADER,
    DEFAULT_BASE_URL,
    Request,
    Response,
    call_request,
    history_request,
    normalise_base_url,
    parse_call,
    parse_history,
    parse_retry_after,
    validate_call_uuid,
)
from twochat_voip._ratelimit import AdaptiveRateLimiter, RateLimiter
from twochat_voip._retry import RetryPolicy, is_retryable
from twochat_voip._transport import send

__all__ = ["ClientStats", "VoIPClient"]

DEFAULT_MAX_RESPONSE_SIZE: Final = 1024 * 1024
_USER_AGENT: Final = f"twochat-voip/{version('twochat-voip')} aiohttp/{aiohttp.__version__}"
_T = TypeVar("_T")


class _State(enum.Enum):
    UNOPENED = "unopened"
    OPENED = "opened"
    CLOSED = "closed"


@attrs.frozen(kw_only=True)
class ClientStats:
    """What a client has done so far; every request costs the account a credit.

    Attributes:
        requests: HTTP requests sent, retries and 429s included.
        rate_limited: Answers that were 429.
        retries: Attempts made after a call's first.
        succeeded: Calls (records, history pages) that ended in a result.
        failed: Calls that ended in an error, after any retries.
    """

    requests: int = 0
    rate_limited: int = 0
    retries: int = 0
    succeeded: int = 0
    failed: int = 0


@attrs.define
class _Counters:
    requests: int = 0
    rate_limited: int = 0
    retries: int = 0
    succeeded: int = 0
    failed: int = 0


class VoIPClient:
    """An async client for 2Chat's VoIP API; one per application, shared by every task.

    Use it as an async context manager, or call :meth:`aclose` when done::

        async with VoIPClient() as voip:  # key from TWOCHAT_API_KEY
            cdr = await voip.get_call("CDR8b3e7a1f-6c94-4d52-ae17-5f2b9d4c8e63")

    Args:
        api_key: The account's key; defaults to ``TWOCHAT_API_KEY``. It is sent only as
            the ``X-User-API-Key`` header to ``base_url``'s origin, and never shown.
        base_url: Defaults to ``TWOCHAT_BASE_URL``, then ``https://api.p.2chat.io``.
            Plain ``http`` is refused except to a loopback host.
        timeout: Seconds one attempt may take, connecting and reading included.
        max_retries: Retries after the first attempt, for 408, 429, 5xx gateway
            statuses, dropped connections and timeouts; 0 turns retrying off.
        max_retry_wait: The longest ``Retry-After`` the client waits out; a longer one
            raises at once.
        session: An ``aiohttp.ClientSession`` you own and close (a web app's shared
            one); without it the client makes one and closes it in :meth:`aclose`.
        max_response_size: Bytes an answer may have; a CDR is ~1.5 KB.
        requests_per_minute: Pace every request of this client evenly at this rate
            (your plan's limit). Without it the client sends freely until a 429, then
            adapts its rate to what the server accepts.
        rate_limiter: Another :class:`RateLimiter` to use instead (one shared between
            processes, say); ``requests_per_minute`` must then be left out.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 3,
        max_retry_wait: float = 60.0,
        session: aiohttp.ClientSession | None = None,
        max_response_size: int = DEFAULT_MAX_RESPONSE_SIZE,
        requests_per_minute: float | None = None,
        rate_limiter: RateLimiter | None = None,
    ) -> None:
        key = api_key if api_key is not None else os.environ.get("TWOCHAT_API_KEY")
        if not key or not key.strip():
            raise MissingAPIKeyError(
                "no API key: pass VoIPClient(api_key=...) or set TWOCHAT_API_KEY"
            )
        if any(ch in key for ch in "\r\n\0"):
            raise ValueError("the API key contains a line break or NUL")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if max_response_size <= 0:
            raise ValueError("max_response_size must be positive")
        if rate_limiter is not None and requests_per_minute is not None:
            raise ValueError("give requests_per_minute or rate_limiter, not both")
        self._base_url = normalise_base_url(
            base_url or os.environ.get("TWOCHAT_BASE_URL") or DEFAULT_BASE_URL
        )
        self._headers: Final = {
            API_KEY_HEADER: key.strip(),
            "Accept": "application/json",
            "User-Agent": _USER_AGENT,
        }
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._retry = RetryPolicy(max_retries=max_retries, max_retry_wait=max_retry_wait)
        self._limiter: RateLimiter = rate_limiter or AdaptiveRateLimiter(requests_per_minute)
        self._max_response_size = max_response_size
        self._session = session
        self._owns_session = session is None
        self._state = _State.UNOPENED
        self._counters = _Counters()
        self._bulk_runs: set[asyncio.Task[None]] = set()

    @property
    def base_url(self) -> str:
        """The API's base URL this client talks to."""
        return self._base_url

    @property
    def retry_policy(self) -> RetryPolicy:
        """The retry policy in force."""
        return self._retry

    @property
    def rate_limiter(self) -> RateLimiter:
        """The rate limiter every request of this client waits on."""
        return self._limiter

    @property
    def stats(self) -> ClientStats:
        """A snapshot of what this client has done (requests, 429s, retries, ...)."""
        return ClientStats(**attrs.asdict(self._counters))

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` has been called."""
        return self._state is _State.CLOSED

    def __repr__(self) -> str:
        return f"<VoIPClient base_url={self._base_url!r} state={self._state.value}>"

    async def __aenter__(self) -> Self:
        self._open_session()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client, and its session if it made one. Idempotent.

        Calls still in flight end with :class:`ClientClosedError`.
        """
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        for run in list(self._bulk_runs):
            run.cancel()
        if self._owns_session and self._session is not None:
            await self._session.close()

    def _open_session(self) -> aiohttp.ClientSession:
        if self._state is _State.CLOSED:
            raise ClientClosedError("this VoIPClient is closed; make a new one")
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=100),
                cookie_jar=aiohttp.DummyCookieJar(),
            )
            # aiohttp silently resends an idempotent request once when a kept-alive
            # connection drops; every request costs the account a credit, so the
            # retry policy must be the one place that resends, counted and logged.
            # (aiohttp's own test client switches it off the same way.)
            if hasattr(self._session, "_retry_connection"):  # pragma: no branch
                self._session._retry_connection = False
        self._state = _State.OPENED
        return self._session

    async def get_call(self, call_uuid: str, *, timeout: float | None = None) -> CallDetailRecord:
        """Fetch one call's detail record.

        Args:
            call_uuid: The record's id, e.g. ``"CDR8b3e7a1f-6c94-4d52-ae17-5f2b9d4c8e63"``.
            timeout: Seconds for each attempt of this call, instead of the client's.

        Raises:
            InvalidCallUUIDError: ``call_uuid`` is not a valid id (nothing is sent);
                it is also a ``ValueError`` and a ``TypeError``.
            TwoChatError: a subclass saying what went wrong, after any retries.
        """
        request = call_request(self._base_url, self._headers, validate_call_uuid(call_uuid))
        return await self._call(request, parse_call, timeout=timeout)

    def get_calls(
        self,
        call_uuids: Iterable[str] | AsyncIterable[str],
        *,
        concurrency: int = 16,
        ordered: bool = False,
    ) -> AsyncGenerator[CallResult, None]:
        """Fetch many records; yield one :class:`CallResult` for every id given.

        Ids are read lazily (a generator of millions is fine), fetched by
        ``concurrency`` workers under the client's rate limit, and answered as they
        complete, or in input order with ``ordered=True``. A malformed id or a failed
        fetch is a result with ``error`` set, never an exception that ends the run.
        429s are waited out by the rate limiter without using up a record's retries.

        Close the generator when you stop early (``contextlib.aclosing``), so its
        workers stop at once::

            async with aclosing(voip.get_calls(ids)) as results:
                async for result in results:
                    ...
        """

        async def fetch(call_uuid: str) -> CallDetailRecord:
            request = call_request(self._base_url, self._headers, validate_call_uuid(call_uuid))
            return await self._call(request, parse_call, rate_limits_are_free=True)

        # Returned, not re-yielded: a wrapping generator would leave this one (and its
        # workers) running until garbage collection after the caller's aclose().
        return iterate_bulk(
            fetch, call_uuids, concurrency=concurrency, ordered=ordered, runs=self._bulk_runs
        )

    async def iter_call_history(
        self, direction: Literal["inbound", "outbound"] | None = None
    ) -> AsyncGenerator[CallDetailRecord, None]:
        """Yield the account's call records from ``GET /open/voip/call-history``, page by
        page from page 0 until an empty page.

        History records carry no ``agent``; fetch a record's details with
        :meth:`get_call` (or many with :meth:`get_calls`) when you need it.
        """
        page = 0
        previous: CallDetailRecord | None = None
        while True:
            request = history_request(self._base_url, self._headers, page, direction)
            records = await self._call(request, parse_history, rate_limits_are_free=True)
            if not records:
                return
            if records[0] == previous:
                # A server that ignored page_number would otherwise be asked forever,
                # a credit a page.
                raise ResponseValidationError(
                    f"page {page} repeats page {page - 1}; stopping", status_code=200
                )
            previous = records[0]
            for record in records:
                yield record
            page += 1

    async def _call(
        self,
        request: Request,
        parse: Callable[[Response, str | None], _T],
        *,
        timeout: float | None = None,
        rate_limits_are_free: bool = False,
    ) -> _T:
        """Send ``request`` and parse its answer, retrying as the policy says.

        The first attempt is made here, outside tenacity: a call that succeeds at once
        (nearly all of them) pays for no retry machinery at all.
        """
        attempt_timeout = self._timeout if timeout is None else aiohttp.ClientTimeout(total=timeout)
        counters = self._counters
        try:
            result = parse(await self._send(request, attempt_timeout), request.call_uuid)
        except TwoChatError as exc:
            if not is_retryable(exc):
                counters.failed += 1
                raise
            result = await self._retry_call(
                request, parse, exc, attempt_timeout, rate_limits_are_free
            )
        counters.succeeded += 1
        return result

    async def _retry_call(
        self,
        request: Request,
        parse: Callable[[Response, str | None], _T],
        first_error: TwoChatError,
        timeout: aiohttp.ClientTimeout,
        rate_limits_are_free: bool,
    ) -> _T:
        counters = self._counters

        async def attempt() -> _T:
            counters.retries += 1
            return parse(await self._send(request, timeout), request.call_uuid)

        try:
            return await self._retry.retry_after_failure(
                attempt,
                first_error,
                describe=f"GET {request.url.removeprefix(self._base_url)}",
                rate_limits_are_free=rate_limits_are_free,
            )
        except TwoChatError:
            counters.failed += 1
            raise

    def _count_request(self) -> None:
        self._counters.requests += 1

    async def _send(self, request: Request, timeout: aiohttp.ClientTimeout) -> Response:
        session = self._open_session()
        sent_at = await self._limiter.acquire()
        try:
            response = await send(
                session,
                request,
                timeout=timeout,
                max_body=self._max_response_size,
                on_request=self._count_request,
            )
        except APIConnectionError as exc:
            if self._state is _State.CLOSED:
                raise ClientClosedError(
                    "the VoIPClient was closed while this request was in flight"
                ) from exc
            raise
        status = response.status
        retry_after = None
        if "Retry-After" in response.headers:
            retry_after = parse_retry_after(response.headers["Retry-After"])
            if retry_after is not None:
                # A longer wait is refused (the call raises), so it must not hold
                # every other request of the client for that long either.
                retry_after = min(retry_after, self._retry.max_retry_wait)
        if status == 429:
            self._counters.rate_limited += 1
        self._limiter.feedback(sent_at=sent_at, status=status, retry_after=retry_after)
        return response
