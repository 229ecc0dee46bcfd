"""One call, attempt by attempt, every attempt inside tenacity's ``AsyncRetrying``: the
limiter's slot, the budget, the request, the verdict, the limiter told. Nothing here
knows of bulk runs or of the client's lifecycle."""

from __future__ import annotations

import collections
import functools
from collections.abc import Awaitable, Callable
from typing import TypeVar

import attrs
from tenacity import RetryCallState

from twochat_voip._errors import (
    APIConnectionError,
    APIStatusError,
    BudgetExhaustedError,
    ClientClosedError,
    RedirectError,
    ResponseValidationError,
    TwoChatError,
)
from twochat_voip._observe import CallWatch, Observer
from twochat_voip._options import ClientOptions
from twochat_voip._ratelimit import RateLimiter
from twochat_voip._requests import MAX_REDIRECTS, Request, Response, redirected
from twochat_voip._transport import Transport

_T = TypeVar("_T")


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


class Caller:
    """Makes a client's calls; ``check_open`` raises when the client cannot call now,
    ``on_rate_limited`` is told of each 429. ``counts`` are the :class:`ClientStats`."""

    def __init__(
        self,
        options: ClientOptions,
        *,
        limiter: RateLimiter,
        transport: Transport,
        check_open: Callable[[], Awaitable[None]],
        on_rate_limited: Callable[[], object],
    ) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self._limiter = limiter
        self._retry = options.retry_policy
        self._transport = transport
        self._check_open = check_open
        self._timeout = options.timeout
        self._max_requests = options.max_requests
        self._observer = Observer(options.hooks, options.base_url)
        self._on_rate_limited = on_rate_limited

    async def call(
        self,
        request: Request,
        parse: Callable[[Response, str | None], _T],
        *,
        timeout: float | None = None,
        rate_limits_are_free: bool = False,
        on_retry: Callable[[BaseException], object] | None = None,
        attempts: int | None = None,
    ) -> _T:
        """Send ``request``, ``parse`` its answer (the result, or the error it means),
        retrying as the policy says (at most ``attempts`` in all, if given); in bulk
        runs a 429 uses none of the retries."""
        observer = self._observer
        watch = observer.call_started(request)
        policy = self._retry
        if attempts is not None:
            policy = attrs.evolve(policy, max_retries=min(policy.max_retries, attempts - 1))
        retrying = policy.retrying(
            idempotent=request.idempotent,
            rate_limits_are_free=rate_limits_are_free,
            before_sleep=functools.partial(self._retrying, watch, rate_limits_are_free, on_retry),
        )
        try:
            await self._check_open()
            async for attempt in retrying:
                with attempt:
                    result = await self._attempt(request, parse, timeout or self._timeout, watch)
        except BaseException as exc:
            if isinstance(exc, TwoChatError):
                self.counts["failed"] += 1
            if isinstance(exc, APIConnectionError):
                # Its message says how many attempts were made, over how long.
                exc.attempts = watch.attempts or 1
                exc.elapsed = observer.clock() - watch.started
            observer.call_ended(watch, exc)
            raise
        self.counts["succeeded"] += 1
        observer.call_ended(watch, None)
        return result

    async def _attempt(
        self,
        request: Request,
        parse: Callable[[Response, str | None], _T],
        timeout: float,
        watch: CallWatch,
    ) -> _T:
        if watch.attempts:
            self.counts["retries"] += 1
        self._spend_budget()  # refused before waiting for a slot it cannot use
        waiting_since = self._observer.clock()
        sent_at = await self._limiter.acquire()
        self._spend_budget()  # others' requests may have spent it meanwhile
        self._observer.rate_waited(watch, waiting_since)
        self.counts["requests"] += 1  # before it is written; _send takes it back if never
        self._observer.request_sent(watch)
        try:
            response = await self._send(request, timeout)
        except TwoChatError as exc:  # an answer refused (too large, a redirect), or none
            self._observer.failed(watch, exc)
            raise
        self._observer.answered(watch, response.status)
        try:
            result = parse(response, request.call_uuid)
        except (APIStatusError, ResponseValidationError) as exc:
            retry_after = None
            if isinstance(exc, APIStatusError):
                if exc.status_code == 429:
                    self.counts["rate_limited"] += 1
                    self._on_rate_limited()
                retry_after = self._retry.pause_for(exc.retry_after)
            self._limiter.feedback(sent_at=sent_at, status=exc.status_code, retry_after=retry_after)
            raise
        self._limiter.feedback(sent_at=sent_at, status=response.status, retry_after=None)
        return result

    def _retrying(
        self,
        watch: CallWatch,
        rate_limits_are_free: bool,
        on_retry: Callable[[BaseException], object] | None,
        state: RetryCallState,
    ) -> None:
        notice = self._retry.notice(state, rate_limits_are_free=rate_limits_are_free)
        if on_retry is not None:
            on_retry(notice.error)
        self._observer.retry_scheduled(watch, notice)

    def _spend_budget(self) -> None:
        budget = self._max_requests
        if budget is not None and self.counts["requests"] >= budget:
            self._observer.budget_exhausted(budget)
            raise BudgetExhaustedError(budget)

    async def _send(self, request: Request, timeout: float) -> Response:
        """Send ``request`` (counted already), following same-origin redirects, each
        one counted too if the budget allows it. A request that never reached a
        connection cost nothing, and is taken back."""
        for hop in range(MAX_REDIRECTS + 1):
            if hop:
                self._spend_budget()
                self.counts["requests"] += 1
            try:
                response = await self._transport.send(request, timeout=timeout)
            except (APIConnectionError, ClientClosedError) as exc:
                if isinstance(exc, ClientClosedError) or not exc.sent:
                    self.counts["requests"] -= 1
                raise
            next_request = redirected(request, response)
            if next_request is None:
                return response
            request = next_request
        raise RedirectError(
            f"more than {MAX_REDIRECTS} redirects",
            status_code=response.status,
            call_uuid=request.call_uuid,
        )
