"""The retry policy, without a network."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from twochat_voip import APIConnectionError, RateLimitError, RetryPolicy, ServerError, set_testing
from twochat_voip._errors import APIStatusError, NotFoundError, TwoChatError
from twochat_voip._retry import is_retryable
from twochat_voip._waits import is_testing


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


async def test_retry_after_failure_counts_the_first_attempt() -> None:
    """The failure that led here is attempt 1: max_retries more attempts follow."""
    calls = 0

    async def attempt() -> str:
        nonlocal calls
        calls += 1
        raise ServerError("down", status_code=503)

    with set_testing(True, attempts=4), pytest.raises(ServerError):
        await RetryPolicy(max_retries=3).retry_after_failure(
            attempt, ServerError("down", status_code=503), describe="test"
        )
    assert calls == 3


async def test_retry_stops_at_a_final_error() -> None:
    """A non-retryable error on a retry ends the retrying at once."""
    calls = 0

    async def attempt() -> str:
        nonlocal calls
        calls += 1
        raise NotFoundError("gone", status_code=404)

    with set_testing(True, attempts=4), pytest.raises(NotFoundError):
        await RetryPolicy().retry_after_failure(
            attempt, ServerError("down", status_code=503), describe="test"
        )
    assert calls == 1


async def test_retry_returns_the_first_success(caplog: pytest.LogCaptureFixture) -> None:
    """A retry that succeeds ends the call; each retry is logged with reason and wait."""
    results: Iterator[str | TwoChatError] = iter([ServerError("down", status_code=502), "ok"])

    async def attempt() -> str:
        result = next(results)
        if isinstance(result, TwoChatError):
            raise result
        return result

    caplog.set_level(logging.INFO, logger="twochat_voip")
    with set_testing(True, attempts=4):
        outcome = await RetryPolicy().retry_after_failure(
            attempt, ServerError("down", status_code=503), describe="GET call X"
        )
    assert outcome == "ok"
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "retrying GET call X in 0.00 s (attempt 2 of 4): 503: down",
        "retrying GET call X in 0.00 s (attempt 3 of 4): 502: down",
    ]
