"""VoIPClient: owns the session, the rate limiter, the waits and the counters, and
joins protocol, transport and retry policy into ``get_call``, ``get_calls`` and
``iter_call_history``.

Each attempt goes one way: wait for the limiter's slot, count the request against
the budget, send it, let the protocol judge the answer (a model, or an error carrying
a ``Retry-After`` only for 429 and 503), tell the limiter that one verdict, and let
the retry policy decide whether to go again.
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
import logging
import os
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable, Iterable
from importlib.metadata import version
from types import TracebackType
from typing import Any, Final, Literal, Self, TypeVar

import aiohttp
import attrs

from twochat_voip._bulk import CallResult, iterate_bulk, note_failure
from twochat_voip._errors import (
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    BudgetExhaustedError,
    ClientClosedError,
    MissingAPIKeyError,
    PaymentRequiredError,
    ResponseValidationError,
    TwoChatError,
)
from twochat_voip._models import CallDetailRecord
from twochat_voip._protocol import (
    API_KEY_HEADER,
    DEFAULT_BASE_URL,
    Request,
    Requests,
    Response,
    normalise_base_url,
    parse_call,
    parse_history,
    parse_requests_per_minute,
)
from twochat_voip._ratelimit import AdaptiveRateLimiter, RateLimiter
from twochat_voip._retry import RetryPolicy, is_retryable
from twochat_voip._transport import request_headers, send
from twochat_voip._waits import Waits
from twochat_voip._wire import parse_call_wire

__all__ = ["DEFAULT_GIVE_UP_AFTER", "ClientStats", "VoIPClient"]

logger: Final = logging.getLogger("twochat_voip")

DEFAULT_MAX_RESPONSE_SIZE: Final = 1024 * 1024
DEFAULT_GIVE_UP_AFTER: Final = 300.0
"""Seconds a bulk run goes on with nothing succeeding before it gives up."""
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
        requests: HTTP requests written to a connection, retries and 429s included
            (one that never connected costs nothing and is not counted).
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
            (your plan's limit). ``"auto"``: ask the API once (``GET /open/info``, one
            credit, before the client's first request) and pace at the plan's limit.
            Without it the client finds the limit: it starts at 4 requests a second,
            doubles that every half second until 429s show a limit, then adapts.
        rate_limiter: Another :class:`RateLimiter` to use instead (one shared between
            processes, say); ``requests_per_minute`` must then be left out.
        max_requests: Never send more than this many requests (credits), 429s and
            retries included; after that every call raises
            :class:`BudgetExhaustedError`.
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
        requests_per_minute: float | Literal["auto"] | None = None,
        rate_limiter: RateLimiter | None = None,
        max_requests: int | None = None,
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
        if max_requests is not None and (type(max_requests) is not int or max_requests < 0):
            raise ValueError("max_requests must be a whole number, 0 or more")
        auto = requests_per_minute == "auto"
        if isinstance(requests_per_minute, str) and not auto:
            raise ValueError('requests_per_minute must be a number, "auto" or None')
        self._base_url = normalise_base_url(
            base_url or os.environ.get("TWOCHAT_BASE_URL") or DEFAULT_BASE_URL
        )
        self._headers: Final = request_headers(
            {
                API_KEY_HEADER: key.strip(),
                "Accept": "application/json",
                "User-Agent": _USER_AGENT,
            }
        )
        self._requests = Requests(self._base_url, self._headers)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._retry = RetryPolicy(max_retries=max_retries, max_retry_wait=max_retry_wait)
        self._waits = Waits()
        self._owns_limiter = rate_limiter is None
        self._own_limiter = AdaptiveRateLimiter(
            None if auto else requests_per_minute,  # type: ignore[arg-type]
            sleep=self._waits.sleep,
        )
        self._limiter: RateLimiter = rate_limiter or self._own_limiter
        self._rate_unknown = auto
        self._learning_rate: asyncio.Future[None] | None = None
        self._max_requests = max_requests
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
    def max_requests(self) -> int | None:
        """The request budget (``None``: unlimited)."""
        return self._max_requests

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
        self._waits.close()
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
                # Sent by the session, so not merged into every request (see send()).
                headers=self._headers,
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
        request = self._requests.call(call_uuid)
        attempt_timeout = None if timeout is None else aiohttp.ClientTimeout(total=timeout)
        return await self._call(request, parse_call, attempt_timeout)

    def get_calls(
        self,
        call_uuids: Iterable[str] | AsyncIterable[str],
        *,
        concurrency: int = 16,
        ordered: bool = False,
        give_up_after: float | None = DEFAULT_GIVE_UP_AFTER,
    ) -> AsyncGenerator[CallResult, None]:
        """Fetch many records; yield one :class:`CallResult` for every id given.

        Ids are read lazily (a generator of millions is fine), fetched by
        ``concurrency`` workers under the client's rate limit, and answered as they
        complete, or in input order with ``ordered=True``. A malformed id or a failed
        fetch is a result with ``error`` set, never an exception that ends the run.
        429s are waited out by the rate limiter without using up a record's retries.

        The run gives up rather than spend credits on what cannot succeed: on a 401
        (the key is refused), a 402 (no credits) or :class:`BudgetExhaustedError`,
        and when nothing has succeeded for ``give_up_after`` seconds (``None``:
        never), it sends nothing more and answers every id not yet sent with that
        error (the last one, after ``give_up_after``).

        Close the generator when you stop early (``contextlib.aclosing``), so its
        workers stop at once::

            async with aclosing(voip.get_calls(ids)) as results:
                async for result in results:
                    ...
        """

        return self._get_calls(
            call_uuids, concurrency=concurrency, ordered=ordered, give_up_after=give_up_after
        )

    def _get_calls(
        self,
        call_uuids: Iterable[str] | AsyncIterable[str],
        *,
        concurrency: int,
        ordered: bool,
        give_up_after: float | None,
        parse_wire: bool = False,
    ) -> AsyncGenerator[CallResult, None]:
        """:meth:`get_calls`; with ``parse_wire`` (for exports) each result's ``cdr``
        is a ``(record, wire)`` pair (see :func:`~twochat_voip._wire.parse_call_wire`)."""
        # A plain function handing back _call's coroutine: one coroutine layer fewer
        # per id (a bad id still raises inside the worker's try, when it is called).
        make_request = self._requests.call
        call = self._call
        parse: Callable[[Response, str | None], Any] = parse_call_wire if parse_wire else parse_call

        def fetch(call_uuid: str) -> Awaitable[CallDetailRecord]:
            return call(make_request(call_uuid), parse, None, True)

        # Returned, not re-yielded: a wrapping generator would leave this one (and its
        # workers) running until garbage collection after the caller's aclose().
        return iterate_bulk(
            fetch,
            call_uuids,
            concurrency=concurrency,
            ordered=ordered,
            runs=self._bulk_runs,
            give_up_after=give_up_after,
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
            request = self._requests.history(page, direction)
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
        timeout: aiohttp.ClientTimeout | None = None,
        rate_limits_are_free: bool = False,
        *,
        retrying: bool = False,
    ) -> _T:
        """Send ``request`` and parse its answer, retrying as the policy says.

        One attempt is: the limiter's slot, the budget, the request, and the answer's
        one verdict told back to the limiter. The first attempt is made here, outside
        tenacity, and hands a retryable failure to the retry policy, whose attempts
        come back here with ``retrying``: a call that succeeds at once (nearly all of
        them) pays for no retry machinery, nor for a coroutine layer per attempt.
        """
        timeout = timeout or self._timeout
        if not retrying and self._rate_unknown and parse is not parse_requests_per_minute:
            await self._learn_rate()
            self._waits.check()  # closed, or the bulk run gave up, meanwhile
        try:
            session = self._session
            if session is None or self._state is not _State.OPENED:
                session = self._open_session()
            if self._max_requests is not None:
                self._check_budget()
            limiter = self._limiter
            sent_at = self._own_limiter.try_acquire() if self._owns_limiter else None
            if sent_at is None:
                sent_at = await self._wait_for_slot()
            elif retrying:
                self._waits.check()  # the backoff before this attempt may have been 0 s
            # Counted before it is written; on_not_sent takes it back if it never is.
            self._counters.requests += 1
            try:
                response = await send(
                    session,
                    request,
                    timeout=timeout,
                    max_body=self._max_response_size,
                    headers_in_session=self._owns_session,
                    on_redirect=self._count_request,
                    on_not_sent=self._uncount_request,
                )
            except APIConnectionError as exc:
                if self._state is _State.CLOSED:
                    raise ClientClosedError(
                        "the VoIPClient was closed while this request was in flight"
                    ) from exc
                raise
            try:
                result = parse(response, request.call_uuid)
            except TwoChatError as exc:
                self._judged(exc, limiter, sent_at)
                raise
            if self._owns_limiter:
                self._own_limiter.accepted(sent_at)
            else:
                limiter.feedback(sent_at=sent_at, status=response.status, retry_after=None)
        except TwoChatError as exc:
            self._raise_unless_retried(exc, retrying)
            return await self._retry_call(request, parse, exc, timeout, rate_limits_are_free)
        self._counters.succeeded += 1  # once a call: only its successful attempt gets here
        return result

    def _raise_unless_retried(self, error: TwoChatError, retrying: bool) -> None:
        """Raise a failed attempt's ``error``, unless it is a first attempt's that the
        retry policy is to try again."""
        note_failure(error)
        if retrying:
            raise error  # tenacity judges it
        if not is_retryable(error):
            self._counters.failed += 1
            raise error

    async def _wait_for_slot(self) -> float:
        """Wait for the limiter's slot: the time the request leaves. Guarded, even for
        the client's own limiter: a request queued behind another's (its head sleeps,
        the rest wait their turn) must end when the client closes or its run stops."""
        sent_at = await self._waits.guard(self._limiter.acquire())
        self._waits.check()  # closed, or the bulk run gave up, while waiting
        if self._max_requests is not None:
            self._check_budget()  # others' requests spent it meanwhile
        return sent_at

    def _judged(self, error: TwoChatError, limiter: RateLimiter, sent_at: float) -> None:
        """Tell the limiter what a failed answer says: a 429 or a 503's pause, or
        just that the request was answered."""
        if isinstance(error, APIStatusError):
            status = error.status_code
            if status == 429:
                self._counters.rate_limited += 1
            pause = self._retry.pause_for(error.retry_after)
            limiter.feedback(sent_at=sent_at, status=status, retry_after=pause)
        elif isinstance(error, ResponseValidationError):
            limiter.feedback(sent_at=sent_at, status=error.status_code, retry_after=None)

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
            return await self._call(request, parse, timeout, retrying=True)

        try:
            return await self._retry.retry_after_failure(
                attempt,
                first_error,
                describe=f"GET {request.url.removeprefix(self._base_url)}",
                rate_limits_are_free=rate_limits_are_free,
                sleep=self._waits.sleep,
            )
        except TwoChatError:
            counters.failed += 1
            raise

    def _check_budget(self) -> None:
        budget = self._max_requests
        if budget is not None and self._counters.requests >= budget:
            raise BudgetExhaustedError(budget)

    def _count_request(self) -> None:
        """A redirect's request is about to be written: it counts, if the budget
        allows it."""
        if self._max_requests is not None:
            self._check_budget()
        self._counters.requests += 1

    def _uncount_request(self) -> None:
        """The request never reached a connection: it cost nothing."""
        self._counters.requests -= 1

    async def _learn_rate(self) -> None:
        """``requests_per_minute="auto"``: ask ``GET /open/info`` once for the plan's
        limit; concurrent first calls share the one request."""
        learning = self._learning_rate
        if learning is None:
            # In a context of its own: the request is every caller's, so a bulk run
            # that gives up must not stop it for the others.
            learning = self._learning_rate = asyncio.get_running_loop().create_task(
                self._ask_rate(), context=contextvars.Context()
            )
            learning.add_done_callback(self._forget_failed_rate_request)
        await asyncio.shield(learning)

    def _forget_failed_rate_request(self, learning: asyncio.Future[None]) -> None:
        """A failed ``GET /open/info`` is asked again by the next call, even when every
        caller that waited for it was cancelled (its error is taken here, not logged
        as never retrieved)."""
        failed = learning.cancelled() or learning.exception() is not None
        if failed and self._learning_rate is learning:
            self._learning_rate = None

    async def _ask_rate(self) -> None:
        try:
            rpm = await self._call(self._requests.info(), parse_requests_per_minute)
        except (
            AuthenticationError,
            PaymentRequiredError,
            BudgetExhaustedError,
            ClientClosedError,
            APIConnectionError,
        ):
            raise  # no request would do better; the next call asks again
        except TwoChatError as exc:
            rpm = None
            reason = str(exc)
        else:
            reason = "the answer names no limits.requests_per_minute"
        self._rate_unknown = False
        if rpm is None:
            logger.warning(
                "requests_per_minute='auto': could not learn the plan's limit (%s); "
                "adapting to 429s instead",
                reason,
            )
            return
        self._own_limiter.set_requests_per_minute(rpm)
        logger.info("requests_per_minute='auto': pacing at the plan's %g requests/minute", rpm)
