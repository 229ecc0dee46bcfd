"""The retry policy, without a network."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from twochat_voip import APIConnectionError, RateLimitError, RetryPolicy, ServerError, set_testing
from twochat_voip._errors import APIStatusError, NotFoundError, TwoChatError
from twochat_voip._retry import RetryNotice, is_retryable, is_testing

pytestmark = pytest.mark.virtual_time  # timeouts, backoff and pacing in the loop's time


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_retryable_statuses(status: int) -> None:
    """Busy and failing gateways are worth another try."""
    assert is_retryable(APIStatusError("x", status_code=status))


@pytest.mark.parametrize("status", [400, 401, 402, 403, 404, 422, 501, 505])
def test_final_statuses(status: int) -> None:
    """The caller's mistakes and final answers are not retried."""
    assert not is_retryable(APIStatusError("x", status_code=status))


def test_connection_errors_are_retryable() -> None:
    """A dropped or refused connection is retried."""
    assert is_retryable(APIConnectionError("reset"))
    assert not is_retryable(ValueError("bad id"))


@pytest.mark.parametrize(("retry", "ceiling"), [(1, 0.5), (2, 1.0), (3, 2.0), (5, 8.0), (9, 8.0)])
def test_backoff_doubles_to_the_cap_with_jitter(retry: int, ceiling: float) -> None:
    """0.5 s doubling to 8 s, jittered into the upper half."""
    policy = RetryPolicy()
    waits = [policy.backoff(retry) for _ in range(200)]
    assert all(ceiling / 2 <= w <= ceiling for w in waits)
    assert len(set(waits)) > 1


def test_retry_after_is_the_limiters_to_wait_out() -> None:
    """With a Retry-After the policy adds no backoff: the limiter holds every request
    for it (one owner of waiting), and the pause it hands on is capped."""
    policy = RetryPolicy(max_retry_wait=10)
    assert policy.wait_before(RateLimitError("x", status_code=429, retry_after=7.5), 1) == 0.0
    assert 0.25 <= policy.wait_before(RateLimitError("x", status_code=429), 1) <= 0.5
    assert policy.pause_for(7.5) == 7.5
    assert policy.pause_for(3600) == 10
    assert policy.pause_for(None) is None


def test_too_long_retry_after_is_detected() -> None:
    """A wait over max_retry_wait is refused."""
    policy = RetryPolicy(max_retry_wait=10)
    assert policy.asks_too_long(RateLimitError("x", status_code=429, retry_after=11))
    assert not policy.asks_too_long(RateLimitError("x", status_code=429, retry_after=10))
    assert not policy.asks_too_long(RateLimitError("x", status_code=429))


def test_negative_max_retries_refused() -> None:
    """max_retries below 0 makes no sense."""
    with pytest.raises(ValueError, match="max_retries"):
        RetryPolicy(max_retries=-1)


def test_set_testing_caps_attempts_and_waits() -> None:
    """Testing mode: no waits, attempts capped; switched back by the context manager."""
    policy = RetryPolicy(max_retries=3)
    error = ServerError("x", status_code=503, retry_after=120)
    with set_testing(True, attempts=2):
        assert is_testing()
        assert policy.attempts() == 2
        assert policy.wait_before(ServerError("x", status_code=503), 1) == 0.0
        assert not policy.asks_too_long(error)
    assert not is_testing()
    assert policy.attempts() == 4
    assert policy.wait_before(ServerError("x", status_code=503), 1) > 0
    assert policy.asks_too_long(error)


def test_set_testing_plain_call_switches_for_the_process() -> None:
    """Called plainly, the switch stays until switched off."""
    set_testing(True)
    try:
        assert RetryPolicy().attempts() == 1
    finally:
        set_testing(False)
    assert RetryPolicy().attempts() == 4


def test_set_testing_refuses_zero_attempts() -> None:
    """At least one attempt is always made."""
    with pytest.raises(ValueError, match="attempts"):
        set_testing(True, attempts=0)


async def attempts_until_done(
    policy: RetryPolicy, outcomes: Iterator[str | TwoChatError], **options: Any
) -> tuple[str, int]:
    """Run ``policy.retrying()`` as the client does: the result, and the attempts made."""
    calls = 0
    result = ""
    async for attempt in policy.retrying(**options):
        with attempt:
            calls += 1
            outcome = next(outcomes)
            if isinstance(outcome, TwoChatError):
                raise outcome
            result = outcome
    return result, calls


async def test_retrying_counts_the_attempts() -> None:
    """Four 503s then a record: the fifth attempt is never made with max_retries=3."""
    calls = 0

    def outcomes() -> Iterator[str | TwoChatError]:
        nonlocal calls
        for _ in range(4):
            calls += 1
            yield ServerError("down", status_code=503)
        calls += 1
        yield "ok"

    with set_testing(True, attempts=5), pytest.raises(ServerError):
        await attempts_until_done(RetryPolicy(max_retries=3), outcomes())
    assert calls == 4


async def test_retry_stops_at_a_final_error() -> None:
    """A non-retryable error on a retry ends the retrying at once."""
    outcomes: Iterator[str | TwoChatError] = iter(
        [ServerError("down", status_code=503), NotFoundError("gone", status_code=404), "ok"]
    )
    with set_testing(True, attempts=4), pytest.raises(NotFoundError):
        await attempts_until_done(RetryPolicy(), outcomes)
    assert next(outcomes) == "ok"


async def test_retry_returns_the_first_success() -> None:
    """A retry that succeeds ends the call; before_sleep is told each retry."""
    outcomes: Iterator[str | TwoChatError] = iter(
        [ServerError("down", status_code=503), ServerError("down", status_code=502), "ok"]
    )
    policy = RetryPolicy()
    told: list[RetryNotice] = []
    with set_testing(True, attempts=4):
        result, calls = await attempts_until_done(
            policy,
            outcomes,
            before_sleep=lambda state: told.append(
                policy.notice(state, rate_limits_are_free=False)
            ),
        )
    assert (result, calls) == ("ok", 3)
    assert [(n.attempt, n.retry, n.retries, n.wait) for n in told] == [
        (1, 1, 3, 0.0),
        (2, 2, 3, 0.0),
    ]
    assert [str(n.error) for n in told] == ["503: down", "502: down"]


async def test_a_bulk_429_uses_no_retry() -> None:
    """With rate_limits_are_free, 429s beyond max_retries are still retried (the
    limiter waits them out), and a notice says it is no retry of the call's."""
    limited = [RateLimitError("slow down", status_code=429)] * 6
    outcomes: Iterator[str | TwoChatError] = iter([*limited, "ok"])
    policy = RetryPolicy(max_retries=1)
    told: list[RetryNotice] = []
    with set_testing(True, attempts=2):
        result, calls = await attempts_until_done(
            policy,
            outcomes,
            rate_limits_are_free=True,
            before_sleep=lambda state: told.append(policy.notice(state, rate_limits_are_free=True)),
        )
    assert (result, calls) == ("ok", 7)
    assert {n.retry for n in told} == {None}
