"""The retry policy: whether to try again, how often, and the backoff between tries.

The policy does not wait out a ``Retry-After``: the client hands it to the rate
limiter, which holds every request of the client for that long, so the retry that
follows simply waits for its slot. The policy only refuses a wait longer than
``max_retry_wait`` (the call raises at once) and caps the pause it hands on.

A call that succeeds at once never enters tenacity: measured on the bulk path, an
``AsyncRetrying`` loop around a call that does not retry costs ~40-70 us of CPU and
about half the throughput. So the client makes the first attempt itself and hands a
retryable failure to :meth:`RetryPolicy.retry_after_failure`, which replays it to
tenacity as attempt 1; from there on tenacity counts, waits, logs and stops.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

import attrs
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

from twochat_voip._errors import APIConnectionError, APIStatusError, TwoChatError
from twochat_voip._waits import is_testing, testing_attempts

__all__ = [
    "RETRYABLE_STATUSES",
    "RetryNotice",
    "RetryPolicy",
    "is_rate_limit",
    "is_retryable",
]

logger: Final = logging.getLogger("twochat_voip")

RETRYABLE_STATUSES: Final = frozenset({408, 429, 500, 502, 503, 504})
"""Statuses worth asking again: the server was busy or failed, the request was fine."""

MAX_RATE_LIMITED_WAITS: Final = 50
"""In bulk runs 429s do not use up a record's retries; this many still end it."""

_T = TypeVar("_T")


@attrs.frozen(kw_only=True)
class RetryNotice:
    """A retry about to wait, as :meth:`RetryPolicy.retry_after_failure` tells it.

    Attributes:
        error: Why the attempt failed.
        attempt: The failed attempt, 1-based, every attempt counted.
        retry: The retry this is of ``retries`` allowed; ``None`` for a 429 a bulk run
            waits out with the rate limiter, which uses none of them.
        retries: Retries a call may make.
        wait: Seconds of backoff before the next attempt.
        retry_after: The server's ``Retry-After``, if it named one.
    """

    error: BaseException
    attempt: int
    retry: int | None
    retries: int
    wait: float
    retry_after: float | None


def is_retryable(exc: BaseException) -> bool:
    """Whether another attempt may succeed: connection failures, timeouts, and
    :data:`RETRYABLE_STATUSES`."""
    if isinstance(exc, APIConnectionError):
        return True
    return isinstance(exc, APIStatusError) and exc.status_code in RETRYABLE_STATUSES


def _finite_seconds(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    # NaN or infinity would make a backoff that never ends (call_later(nan) never
    # fires): refused here, not found as a hang.
    if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
        raise ValueError(f"{attribute.name} must be a finite number of seconds, 0 or more")


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How a client retries: exponential backoff with equal jitter, Retry-After honoured.

    Attributes:
        max_retries: Retries after the first attempt; 0 turns retrying off.
        initial_wait: The first backoff, in seconds; each later one doubles it.
        max_backoff: The cap on a backoff, in seconds.
        max_retry_wait: The longest ``Retry-After`` the client sleeps through; a server
            asking for longer gets its error raised at once.
    """

    max_retries: int = attrs.field(default=3, validator=attrs.validators.ge(0))
    initial_wait: float = attrs.field(default=0.5, validator=_finite_seconds)
    max_backoff: float = attrs.field(default=8.0, validator=_finite_seconds)
    max_retry_wait: float = attrs.field(default=60.0, validator=attrs.validators.ge(0))
    """The longest ``Retry-After`` accepted; also the longest pause handed to the
    rate limiter."""

    def backoff(self, retry_number: int) -> float:
        """The wait before retry ``retry_number`` (1-based) when the server named none:
        ``initial_wait * 2**(n-1)``, capped, then jittered into its upper half."""
        ceiling = min(self.max_backoff, self.initial_wait * 2.0 ** (retry_number - 1))
        # Jitter, not secrecy: the standard generator is the right tool.
        return ceiling * random.uniform(0.5, 1.0)  # noqa: S311  # nosec B311

    def wait_before(self, error: BaseException, retry_number: int) -> float:
        """The backoff before retry ``retry_number`` after ``error``: none in testing
        mode, and none when the server named a wait (``Retry-After``), because the rate
        limiter already holds every request for that long."""
        if is_testing() or _retry_after(error) is not None:
            return 0.0
        return self.backoff(retry_number)

    def pause_for(self, retry_after: float | None) -> float | None:
        """The pause to hand the rate limiter for a ``Retry-After``: capped at
        ``max_retry_wait``, since a longer one makes the call raise at once and must
        not hold every other request for that long either."""
        if retry_after is None or retry_after <= self.max_retry_wait:
            return retry_after
        return self.max_retry_wait

    def asks_too_long(self, error: BaseException) -> bool:
        """Whether the server asked (Retry-After) for a longer wait than we accept."""
        retry_after = _retry_after(error)
        return retry_after is not None and retry_after > self.max_retry_wait and not is_testing()

    def attempts(self) -> int:
        """Attempts per call, the first included."""
        testing = testing_attempts()
        if testing is not None:
            return min(testing, self.max_retries + 1)
        return self.max_retries + 1

    async def retry_after_failure(
        self,
        attempt: Callable[[], Awaitable[_T]],
        first_error: TwoChatError,
        *,
        describe: str = "a request",
        on_retry: Callable[[RetryNotice], object] | None = None,
        rate_limits_are_free: bool = False,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        retryable: Callable[[BaseException], bool] = is_retryable,
    ) -> _T:
        """Retry ``attempt`` after its first try failed with ``first_error``.

        Raises the last error when attempts run out, when an error is not retryable,
        or at once when the server asks for a wait beyond ``max_retry_wait``.

        With ``rate_limits_are_free`` (bulk runs) a 429 is waited out by the client's
        rate limiter instead: it costs none of the record's retries and no backoff,
        up to :data:`MAX_RATE_LIMITED_WAITS` of them. ``sleep`` waits out the backoff
        (a client passes its own, which its close interrupts). ``retryable`` says which
        errors are worth another attempt (:func:`is_rate_limit` for a request that
        must not be sent twice once the server may have acted on it).
        ``on_retry`` is told of each retry before its wait (a client's tells its hooks
        and its log); without it, each is logged at INFO as a retry of ``describe``.
        """
        attempts = self.attempts()
        if self.asks_too_long(first_error) or not retryable(first_error):
            raise first_error
        if attempts <= 1 and not (rate_limits_are_free and _is_rate_limit(first_error)):
            raise first_error
        pending: list[TwoChatError] = [first_error]
        failures = {"counted": 0, "rate_limited": 0}

        async def replay_then_attempt() -> _T:
            if pending:
                raise pending.pop()
            return await attempt()

        # tenacity calls wait, then stop, once for each retryable failure: wait counts
        # the failure, stop judges the counts.
        def wait(state: RetryCallState) -> float:
            error = _error_of(state)
            if rate_limits_are_free and _is_rate_limit(error):
                failures["rate_limited"] += 1
                return 0.0  # the limiter has slowed down, or paused for Retry-After
            failures["counted"] += 1
            return self.wait_before(error, failures["counted"])

        def stop(state: RetryCallState) -> bool:
            return (
                failures["counted"] >= attempts
                or failures["rate_limited"] >= MAX_RATE_LIMITED_WAITS
                or self.asks_too_long(_error_of(state))
            )

        def log_retry(state: RetryCallState) -> None:
            error = _error_of(state)
            free = rate_limits_are_free and _is_rate_limit(error)
            retry_after = None if is_testing() else _retry_after(error)
            if on_retry is not None:
                on_retry(
                    RetryNotice(
                        error=error,
                        attempt=state.attempt_number,
                        retry=None if free else failures["counted"],
                        retries=attempts - 1,
                        wait=state.upcoming_sleep,
                        retry_after=retry_after,
                    )
                )
                return
            if free:
                when = "when the rate limiter allows"
            elif retry_after is not None:
                when = f"after the server's Retry-After of {retry_after:.2f} s"
            else:
                when = f"in {state.upcoming_sleep:.2f} s"
            of = "" if free else f" (attempt {failures['counted'] + 1} of {attempts})"
            logger.info("retrying %s %s%s: %s", describe, when, of, error)

        retrying = AsyncRetrying(
            sleep=sleep,
            stop=stop,
            wait=wait,
            retry=retry_if_exception(retryable),
            before_sleep=log_retry,
            reraise=True,
        )
        return await retrying(replay_then_attempt)


def is_rate_limit(error: BaseException) -> bool:
    """Whether ``error`` is a 429: the one failure a server surely did not act on."""
    return isinstance(error, APIStatusError) and error.status_code == 429


_is_rate_limit = is_rate_limit


def _retry_after(error: BaseException) -> float | None:
    return error.retry_after if isinstance(error, APIStatusError) else None


def _error_of(state: RetryCallState) -> BaseException:
    # tenacity calls wait, stop and before_sleep only after a failed attempt.
    error = state.outcome.exception() if state.outcome is not None else None
    if error is None:  # pragma: no cover - would be a tenacity bug
        raise RuntimeError("tenacity asked about an attempt that did not fail")
    return error
