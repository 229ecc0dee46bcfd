"""The way one call goes through a client, attempt by attempt.

Each attempt goes one way: wait for the limiter's slot, count the request against
the budget, send it, let the protocol judge the answer (a model, or an error carrying
a ``Retry-After`` only for 429 and 503), tell the limiter that one verdict, and let
the retry policy decide whether to go again.

:class:`Sender` holds what that needs (the limiter, the waits, the retry policy, the
counters) and nothing of the client's lifecycle: the client hands it the session
when it opens and takes it back when it closes.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Final, Literal, TypeVar

import aiohttp

from twochat_voip._bulk import note_failure
from twochat_voip._errors import (
    APIConnectionError,
    APIStatusError,
    BudgetExhaustedError,
    ClientClosedError,
    ResponseValidationError,
    TwoChatError,
)
from twochat_voip._observe import CallWatch, Observer
from twochat_voip._plan import PlanRate
from twochat_voip._protocol import Request, Requests, Response, parse_requests_per_minute
from twochat_voip._ratelimit import AdaptiveRateLimiter, RateLimiter
from twochat_voip._retry import RetryPolicy, is_rate_limit, is_retryable
from twochat_voip._stats import ClientStats, Counters
from twochat_voip._transport import send
from twochat_voip._waits import RunStopped, Waits, current_stop

__all__ = ["ClientStats", "Counters", "Sender"]

logger: Final = logging.getLogger("twochat_voip")
_DEBUG: Final = logging.DEBUG
_T = TypeVar("_T")


class Sender:
    """Sends a client's requests, one call at a time, as its settings say.

    Args:
        requests: Builds the requests (base URL and headers).
        limiter: The limiter every attempt waits on.
        own_limiter: The same limiter when it is the client's own (its fast path
            skips a coroutine when a slot is free), else ``None``.
        retry: The retry policy.
        waits: The client's waits, which its close interrupts.
        open_session: Called when :attr:`session` is ``None``: sets it, or raises
            :class:`ClientClosedError`.
        other_loop: Called when a call runs in a loop other than :attr:`loop`:
            raises :class:`EventLoopMismatchError`.
        timeout: An attempt's timeout unless a call gives its own.
        max_response_size: Bytes an answer may have.
        max_requests: The request budget, or ``None``.
        headers_in_session: Whether the session sends the client's headers itself.
        learn_plan: When to ask ``GET /open/info`` for the plan's limit: before the
            first call (``"first"``), at the first 429 (``"limit"``), or never.
        observer: Told what each call does (the client's hooks and log).
    """

    def __init__(
        self,
        requests: Requests,
        *,
        limiter: RateLimiter,
        own_limiter: AdaptiveRateLimiter | None,
        retry: RetryPolicy,
        waits: Waits,
        open_session: Callable[[], aiohttp.ClientSession],
        other_loop: Callable[[], Awaitable[None]],
        timeout: aiohttp.ClientTimeout,
        max_response_size: int,
        max_requests: int | None,
        headers_in_session: bool,
        learn_plan: Literal["first", "limit"] | None,
        observer: Observer,
    ) -> None:
        self.session: aiohttp.ClientSession | None = None
        """The open session; ``None`` before the first call and after closing."""
        self.loop: asyncio.AbstractEventLoop | None = None
        """The event loop the session was opened in (its connections are that loop's)."""
        self.closed = False
        self.counters = Counters()
        self._requests = requests
        self._limiter = limiter
        self._own_limiter = own_limiter
        self._retry = retry
        self._waits = waits
        self._open_session = open_session
        self._other_loop = other_loop
        self._timeout = timeout
        self._max_response_size = max_response_size
        self._max_requests = max_requests
        self._headers_in_session = headers_in_session
        self.plan = PlanRate(
            functools.partial(self.call, requests.info(), parse_requests_per_minute),
            own_limiter,
            when=learn_plan,
        )
        """The plan's limit, asked of ``GET /open/info`` (see :mod:`twochat_voip._plan`)."""
        self._observer = observer
        # Bound once: send() takes them on every request.
        self._on_redirect = self._count_request
        self._on_not_sent = self._uncount_request

    async def call(  # noqa: PLR0912, PLR0915, PLR0917 - the hot path: one function, positional
        self,
        request: Request,
        parse: Callable[[Response, str | None], _T],
        timeout: aiohttp.ClientTimeout | None = None,
        rate_limits_are_free: bool = False,
        attempt: int = 1,
        watch: CallWatch | Literal[False] | None = None,
    ) -> _T:
        """Send ``request`` and parse its answer, retrying as the policy says.

        One attempt is: the limiter's slot, the budget, the request, and the answer's
        one verdict told back to the limiter. The first attempt is made here, outside
        tenacity, and hands a retryable failure to the retry policy, whose attempts
        come back here with their ``attempt`` number: a call that succeeds at once
        (nearly all of them) pays for no retry machinery, nor for a coroutine layer
        per attempt. A call someone listens to (hooks, or the log at DEBUG) is told
        through ``watch`` (see :mod:`twochat_voip._observe`): ``None`` asks whether
        anyone does, ``False`` says no one does (a bulk run asks once, not per id).
        """
        if watch is None:
            if self.watching():
                return await self._watched_call(request, parse, timeout, rate_limits_are_free)
            watch = False
        retrying = attempt > 1
        timeout = timeout or self._timeout
        sent_at: float | None = None  # when the attempt left: a failed call's elapsed
        if not retrying and self.loop is not None and self.loop is not asyncio.get_running_loop():
            await self._other_loop()
        if not retrying and self.plan.first and parse is not parse_requests_per_minute:
            await self.plan.before_first_call()
            self._waits.check()  # closed, or the bulk run gave up, meanwhile
        try:
            session = self.session
            if session is None:
                session = self._open_session()
            if self._max_requests is not None:
                self._check_budget()
            limiter = self._limiter
            own = self._own_limiter
            sent_at = own.try_acquire() if own is not None else None
            if sent_at is None:
                sent_at = await self._wait_for_slot(watch, attempt)
            elif retrying:
                self._waits.check()  # the backoff before this attempt may have been 0 s
            # Counted before it is written; on_not_sent takes it back if it never is.
            self.counters.requests += 1
            if watch:
                sent = self._observer.request_sent(watch, attempt)
            try:
                response = await send(
                    session,
                    request,
                    timeout=timeout,
                    max_body=self._max_response_size,
                    headers_in_session=self._headers_in_session,
                    on_redirect=self._on_redirect,
                    on_not_sent=self._on_not_sent,
                )
            except TwoChatError as exc:
                if self.closed and isinstance(exc, APIConnectionError):
                    closed = ClientClosedError(
                        "the VoIPClient was closed while this request was in flight"
                    )
                    if watch:
                        self._observer.failed(watch, attempt, closed, sent)
                    raise closed from exc
                if watch:  # an answer refused (too large, a redirect), or none at all
                    self._observer.failed(watch, attempt, exc, sent)
                raise
            if watch:
                self._observer.answered(watch, attempt, response.status, sent)
            try:
                result = parse(response, request.call_uuid)
            except TwoChatError as exc:
                self._judged(exc, limiter, sent_at)
                raise
            if own is not None:
                own.accepted(sent_at)
            else:
                limiter.feedback(sent_at=sent_at, status=response.status, retry_after=None)
        except TwoChatError as exc:
            retryable = is_retryable if request.idempotent else is_rate_limit
            started = 0.0 if sent_at is None else sent_at
            self._raise_unless_retried(exc, retrying, retryable, started)
            return await self._retry_call(
                request,
                parse,
                exc,
                timeout,
                rate_limits_are_free,
                retryable=retryable,
                watch=watch,
                started=started,
            )
        self.counters.succeeded += 1  # once a call: only its successful attempt gets here
        return result

    async def _watched_call(
        self,
        request: Request,
        parse: Callable[[Response, str | None], _T],
        timeout: aiohttp.ClientTimeout | None,
        rate_limits_are_free: bool,
    ) -> _T:
        """:meth:`call`, told to the hooks and the log from start to end."""
        observer = self._observer
        watch = observer.call_started(request)
        try:
            result = await self.call(request, parse, timeout, rate_limits_are_free, watch=watch)
        except BaseException as exc:
            observer.call_ended(watch, _reason(exc))
            raise
        observer.call_ended(watch, None)
        return result

    def _raise_unless_retried(
        self,
        error: TwoChatError,
        retrying: bool,
        retryable: Callable[[BaseException], bool],
        started: float,
    ) -> None:
        """Raise a failed attempt's ``error``, unless it is a first attempt's that the
        retry policy is to try again."""
        note_failure(error)
        if retrying:
            raise error  # tenacity judges it
        if not retryable(error):
            self.counters.failed += 1
            _gave_up(error, 1, started)
            raise error

    async def _wait_for_slot(self, watch: CallWatch | Literal[False], attempt: int) -> float:
        """Wait for the limiter's slot: the time the request leaves. Guarded, even for
        the client's own limiter: a request queued behind another's (its head sleeps,
        the rest wait their turn) must end when the client closes or its run stops."""
        if watch:
            waiting_since = self._observer.clock()
        sent_at = await self._waits.guard(self._limiter.acquire())
        self._waits.check()  # closed, or the bulk run gave up, while waiting
        if self._max_requests is not None:
            self._check_budget()  # others' requests spent it meanwhile
        if watch:
            self._observer.rate_waited(watch, attempt, self._observer.clock() - waiting_since)
        return sent_at

    def _judged(self, error: TwoChatError, limiter: RateLimiter, sent_at: float) -> None:
        """Tell the limiter what a failed answer says: a 429 or a 503's pause, or
        just that the request was answered."""
        if isinstance(error, APIStatusError):
            status = error.status_code
            if status == 429:
                self.counters.rate_limited += 1
                if self.plan.at_a_limit:
                    self.plan.limit_met()
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
        *,
        retryable: Callable[[BaseException], bool],
        watch: CallWatch | Literal[False],
        started: float,
    ) -> _T:
        counters = self.counters
        attempts = 1

        async def attempt() -> _T:
            nonlocal attempts
            counters.retries += 1
            attempts += 1
            return await self.call(request, parse, timeout, attempt=attempts, watch=watch)

        try:
            return await self._retry.retry_after_failure(
                attempt,
                first_error,
                on_retry=functools.partial(
                    self._observer.retry_scheduled, request, bulk=rate_limits_are_free
                ),
                rate_limits_are_free=rate_limits_are_free,
                sleep=self._waits.sleep,
                retryable=retryable,
            )
        except TwoChatError as exc:
            counters.failed += 1
            _gave_up(exc, attempts, started)
            raise

    def watching(self) -> bool:
        """Whether anyone listens to calls now (hooks, or the log at DEBUG)."""
        return bool(self._observer.hooks) or logger.isEnabledFor(_DEBUG)

    def _check_budget(self) -> None:
        budget = self._max_requests
        if budget is not None and self.counters.requests >= budget:
            self._observer.budget_exhausted(budget)
            raise BudgetExhaustedError(budget)

    def _count_request(self) -> None:
        """A redirect's request is about to be written: it counts, if the budget
        allows it."""
        if self._max_requests is not None:
            self._check_budget()
        self.counters.requests += 1

    def _uncount_request(self) -> None:
        """The request never reached a connection: it cost nothing."""
        self.counters.requests -= 1


def _reason(error: BaseException) -> BaseException:
    """Why a watched call ended: a bulk run's own reason when the run stopped it (the
    error its ids are answered with), not the signal that stopped it."""
    if isinstance(error, RunStopped | asyncio.CancelledError):
        stop = current_stop().get()
        if stop is not None and stop.error is not None:
            return stop.error
    return error


def _gave_up(error: TwoChatError, attempts: int, started: float) -> None:
    """Note on a connection error how many attempts the call made, over how long
    (its message says so)."""
    if isinstance(error, APIConnectionError):
        error.attempts = attempts
        # From the first attempt's slot (the limiter's monotonic time it left).
        error.elapsed = max(0.0, time.monotonic() - started)
