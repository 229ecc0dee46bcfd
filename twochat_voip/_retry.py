"""The retry policy: tenacity's ``AsyncRetrying`` for one call, its ``retry``, ``stop``
and ``wait`` pure functions of the ``RetryCallState``; and testing mode. A
``Retry-After`` is waited out by the rate limiter, which holds every request that long."""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Callable
from typing import Final

import attrs
from tenacity import AsyncRetrying, RetryCallState

from twochat_voip._errors import APIConnectionError, APIStatusError

RETRYABLE_STATUSES: Final = frozenset({408, 429, 500, 502, 503, 504})
MAX_RATE_LIMITED_WAITS: Final = 50
"""In bulk runs a 429 does not use up a record's retries: a call answered 429 ends
after this many attempts in all."""

_testing_attempts: int | None = None


def set_testing(testing: bool, *, attempts: int = 1) -> contextlib.AbstractContextManager[None]:
    """Turn retry waits off (and cap attempts) for your own tests, like stamina's.

    With ``testing=True`` every client makes at most ``attempts`` attempts per call
    (1: no retries) and never waits for a retry: no backoff, no ``Retry-After`` pause,
    no pause after a 429, and a client made while it is on sends at once instead of
    starting slow. Pacing at a rate you configured is kept. Call it plainly to
    switch for the process, or use it as a context manager to switch back on exit::

        with twochat_voip.set_testing(True, attempts=3):
            ...  # up to 3 attempts, no waiting
    """
    global _testing_attempts  # noqa: PLW0603 - the switch is process-wide on purpose
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    restore = _Restore(_testing_attempts)
    _testing_attempts = attempts if testing else None
    return restore


class _Restore(contextlib.AbstractContextManager[None]):
    def __init__(self, attempts: int | None) -> None:
        self._attempts = attempts

    def __exit__(self, *exc_info: object) -> None:
        global _testing_attempts  # noqa: PLW0603 - the switch is process-wide on purpose
        _testing_attempts = self._attempts


def is_testing() -> bool:  # whether set_testing is on
    return _testing_attempts is not None


@attrs.frozen(kw_only=True)
class RetryNotice:
    """A retry about to wait, as the client tells its observer.

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
    """Whether another attempt may succeed (no answer, or :data:`RETRYABLE_STATUSES`)."""
    if isinstance(exc, APIConnectionError):
        return True
    return isinstance(exc, APIStatusError) and exc.status_code in RETRYABLE_STATUSES


def is_rate_limit(error: BaseException) -> bool:
    """Whether ``error`` is a 429: the one failure a server surely did not act on."""
    return isinstance(error, APIStatusError) and error.status_code == 429


def _finite_seconds(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    # NaN or infinity would make a backoff that never ends: refused, not found as a hang.
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

    def backoff(self, retry_number: int) -> float:
        """The wait before retry ``retry_number`` (1-based) when the server named none:
        ``initial_wait * 2**(n-1)``, capped, then jittered into its upper half."""
        ceiling = min(self.max_backoff, self.initial_wait * 2.0 ** (retry_number - 1))
        # Jitter, not secrecy: the standard generator is the right tool.
        return ceiling * random.uniform(0.5, 1.0)  # noqa: S311  # nosec B311

    def wait_before(self, error: BaseException, retry_number: int) -> float:
        """The backoff before retry ``retry_number``: none in testing mode, and none
        when the server named a wait, which the rate limiter already holds for."""
        if is_testing() or _retry_after(error) is not None:
            return 0.0
        return self.backoff(retry_number)

    def pause_for(self, retry_after: float | None) -> float | None:
        """The pause to hand the rate limiter for a ``Retry-After``, capped at
        ``max_retry_wait`` (a longer one makes the call raise at once, and must not
        hold every other request that long either)."""
        if retry_after is None or retry_after <= self.max_retry_wait:
            return retry_after
        return self.max_retry_wait

    def asks_too_long(self, error: BaseException) -> bool:
        """Whether the server asked (Retry-After) for a longer wait than we accept."""
        retry_after = _retry_after(error)
        return retry_after is not None and retry_after > self.max_retry_wait and not is_testing()

    def attempts(self) -> int:
        """Attempts per call, the first included."""
        if _testing_attempts is not None:
            return min(_testing_attempts, self.max_retries + 1)
        return self.max_retries + 1

    def retrying(
        self,
        *,
        idempotent: bool = True,
        rate_limits_are_free: bool = False,
        before_sleep: Callable[[RetryCallState], None] | None = None,
    ) -> AsyncRetrying:
        """The ``AsyncRetrying`` for one call; iterate it and make each attempt inside.

        Args:
            idempotent: Whether the request may be sent again after a failure the
                server may have acted on; otherwise only a 429 is retried.
            rate_limits_are_free: A 429 is waited out by the rate limiter with no
                backoff and uses none of the call's retries: a call answered 429 ends
                after :data:`MAX_RATE_LIMITED_WAITS` attempts in all (bulk runs).
            before_sleep: Told of each retry before its wait.
        """
        retryable = is_retryable if idempotent else is_rate_limit
        attempts = self.attempts()

        def retry(state: RetryCallState) -> bool:  # asked after a success too
            error = state.outcome.exception() if state.outcome is not None else None
            return error is not None and retryable(error) and not self.asks_too_long(error)

        def stop(state: RetryCallState) -> bool:
            allowed = attempts
            if rate_limits_are_free and is_rate_limit(_error_of(state)):
                allowed = max(attempts, MAX_RATE_LIMITED_WAITS)
            return state.attempt_number >= allowed

        def wait(state: RetryCallState) -> float:
            error = _error_of(state)
            if rate_limits_are_free and is_rate_limit(error):
                return 0.0  # the limiter has slowed down
            return self.wait_before(error, state.attempt_number)

        return AsyncRetrying(
            retry=retry, stop=stop, wait=wait, before_sleep=before_sleep, reraise=True
        )

    def notice(self, state: RetryCallState, *, rate_limits_are_free: bool) -> RetryNotice:
        """What tenacity's ``before_sleep`` is told, as a :class:`RetryNotice`."""
        error = _error_of(state)
        free = rate_limits_are_free and is_rate_limit(error)
        return RetryNotice(
            error=error,
            attempt=state.attempt_number,
            retry=None if free else state.attempt_number,
            retries=self.attempts() - 1,
            wait=state.upcoming_sleep,
            retry_after=None if is_testing() else _retry_after(error),
        )


def _retry_after(error: BaseException) -> float | None:
    return error.retry_after if isinstance(error, APIStatusError) else None


def _error_of(state: RetryCallState) -> BaseException:
    # tenacity asks stop, wait and before_sleep only after a failed attempt.
    error = state.outcome.exception() if state.outcome is not None else None
    if error is None:  # pragma: no cover - would be a tenacity bug
        raise RuntimeError("tenacity asked about an attempt that did not succeed or fail")
    return error
