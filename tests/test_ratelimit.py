"""The in-process rate limiter, on a fake clock: pacing, adapting, pausing."""

from __future__ import annotations

import asyncio

import pytest

from twochat_voip import AdaptiveRateLimiter, RateLimiter


class FakeTime:
    """A clock that only moves when someone sleeps on it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        # Concurrent sleepers wake in order of their deadlines, as on a real clock.
        deadline = self.now + seconds
        await asyncio.sleep(0)
        self.now = max(self.now, deadline)


def limiter(time: FakeTime, rpm: float | None = None, **options: object) -> AdaptiveRateLimiter:
    return AdaptiveRateLimiter(rpm, clock=time, sleep=time.sleep, **options)  # type: ignore[arg-type]


async def test_is_a_rate_limiter() -> None:
    """The default limiter satisfies the seam other limiters plug into."""
    assert isinstance(AdaptiveRateLimiter(), RateLimiter)


async def test_paces_evenly_without_a_start_burst() -> None:
    """600/min: one request every 0.1 s from the first, no minute's worth at once."""
    time = FakeTime()
    pacer = limiter(time, 600)
    sent = [await pacer.acquire() - 1000.0 for _ in range(5)]
    assert sent == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])


async def test_burst_lets_a_few_go_at_once() -> None:
    """burst=3: three leave together after a quiet spell, then the pace holds."""
    time = FakeTime()
    pacer = limiter(time, 60, burst=3)
    sent = [await pacer.acquire() - 1000.0 for _ in range(5)]
    assert sent == pytest.approx([0.0, 0.0, 0.0, 1.0, 2.0])


async def test_concurrent_waiters_get_distinct_slots() -> None:
    """Many tasks acquiring at once are spread out, not sent together."""
    time = FakeTime()
    pacer = limiter(time, 60)
    sent = await asyncio.gather(*(pacer.acquire() for _ in range(4)))
    assert sorted(s - 1000.0 for s in sent) == pytest.approx([0.0, 1.0, 2.0, 3.0])


async def test_unpaced_until_told_otherwise() -> None:
    """Without a rate, requests leave at once and the rate is None."""
    time = FakeTime()
    pacer = limiter(time)
    assert {await pacer.acquire() for _ in range(10)} == {1000.0}
    assert pacer.requests_per_minute is None


def limited(pacer: AdaptiveRateLimiter, sent: float) -> None:
    """Two 429s: a lone one is taken for noise, the second is a limit."""
    pacer.feedback(sent_at=sent, status=429, retry_after=None)
    pacer.feedback(sent_at=sent, status=429, retry_after=None)


async def test_lone_429_is_noise() -> None:
    """One 429 among many accepted answers changes nothing; a second one does."""
    time = FakeTime()
    pacer = limiter(time, 600)
    for _ in range(30):
        sent = await pacer.acquire()
        pacer.feedback(sent_at=sent, status=200, retry_after=None)
    pacer.feedback(sent_at=sent, status=429, retry_after=None)
    assert pacer.requests_per_minute == 600.0
    pacer.feedback(sent_at=sent, status=429, retry_after=None)
    assert pacer.requests_per_minute == pytest.approx(300.0)


async def test_first_limit_halves_the_measured_send_rate() -> None:
    """Unpaced at 10 requests/s, the first real limit sets 5/s (300/min)."""
    time = FakeTime()
    pacer = limiter(time)
    for _ in range(10):
        sent = await pacer.acquire()
        time.now += 0.1
    limited(pacer, sent)
    assert pacer.requests_per_minute == pytest.approx(300.0)


async def test_429s_in_flight_count_once() -> None:
    """Answers to requests sent before the decrease do not decrease again."""
    time = FakeTime()
    pacer = limiter(time, 600)
    early = [await pacer.acquire() for _ in range(5)]
    for sent in early:
        pacer.feedback(sent_at=sent, status=429, retry_after=None)
    assert pacer.requests_per_minute == pytest.approx(300.0)
    later = await pacer.acquire()
    pacer.feedback(sent_at=later, status=429, retry_after=None)
    assert pacer.requests_per_minute == pytest.approx(150.0)


async def test_decrease_leaves_a_gap() -> None:
    """After a decrease the next request waits one new interval."""
    time = FakeTime()
    pacer = limiter(time, 120)
    sent = await pacer.acquire()
    limited(pacer, sent)
    assert await pacer.acquire() - sent == pytest.approx(1.0)


async def test_with_a_full_window_a_429_backs_off_to_what_was_accepted() -> None:
    """After 64 accepted answers at 2/s, a 429 sets 90% of 2/s and slow growth."""
    time = FakeTime()
    pacer = limiter(time)
    for _ in range(64):
        sent = await pacer.acquire()
        pacer.feedback(sent_at=sent, status=200, retry_after=None)
        time.now += 0.5
    sent = await pacer.acquire()
    limited(pacer, sent)
    assert pacer.requests_per_minute == pytest.approx(0.9 * 120)
    pacer.feedback(sent_at=sent, status=200, retry_after=None)
    assert pacer.requests_per_minute == pytest.approx(0.9 * 120 * 1.002)


async def test_accepted_answers_grow_the_rate_up_to_the_ceiling() -> None:
    """The rate recovers with accepted answers but never passes the configured one."""
    time = FakeTime()
    pacer = limiter(time, 600)
    sent = await pacer.acquire()
    limited(pacer, sent)
    assert pacer.requests_per_minute == pytest.approx(300.0)
    pacer.feedback(sent_at=sent, status=200, retry_after=None)
    assert pacer.requests_per_minute == pytest.approx(306.0)
    for _ in range(100):
        pacer.feedback(sent_at=sent, status=200, retry_after=None)
    assert pacer.requests_per_minute == 600.0


async def test_rate_never_goes_under_the_floor() -> None:
    """However many 429s, the rate stays at or above the floor."""
    time = FakeTime()
    pacer = limiter(time, 60, min_requests_per_minute=30)
    for _ in range(5):
        sent = await pacer.acquire()
        pacer.feedback(sent_at=sent, status=429, retry_after=None)
    assert pacer.requests_per_minute == 30.0


async def test_a_429_for_the_very_first_request_sets_no_rate() -> None:
    """With nothing to measure yet, a 429 leaves the pace to backoff and Retry-After."""
    time = FakeTime()
    pacer = limiter(time)
    sent = await pacer.acquire()
    pacer.feedback(sent_at=sent, status=429, retry_after=None)
    assert pacer.requests_per_minute is None
    time.now += 0.5
    second = await pacer.acquire()
    pacer.feedback(sent_at=second, status=429, retry_after=None)
    assert pacer.requests_per_minute == pytest.approx(60.0)


async def test_not_adaptive_keeps_the_configured_rate() -> None:
    """adaptive=False: 429s do not change the pace."""
    time = FakeTime()
    pacer = limiter(time, 600, adaptive=False)
    sent = await pacer.acquire()
    pacer.feedback(sent_at=sent, status=429, retry_after=None)
    assert pacer.requests_per_minute == 600.0


async def test_retry_after_holds_every_request() -> None:
    """A Retry-After holds new requests and re-plans waiters that were queued."""
    time = FakeTime()
    pacer = limiter(time, 60)
    first = await pacer.acquire()
    waiting = asyncio.ensure_future(pacer.acquire())  # planned for t+1
    await asyncio.sleep(0)
    pacer.feedback(sent_at=first, status=503, retry_after=5.0)
    assert await waiting >= first + 5.0
    assert await pacer.acquire() >= first + 6.0


async def test_retry_after_pauses_unpaced_clients_too() -> None:
    """Even with no rate, nothing leaves during a Retry-After."""
    time = FakeTime()
    pacer = limiter(time, adaptive=False)
    pacer.feedback(sent_at=time.now, status=429, retry_after=3.0)
    assert await pacer.acquire() == pytest.approx(1003.0)


def test_shorter_pause_does_not_shorten_a_longer_one() -> None:
    """Pauses only ever extend."""
    time = FakeTime()
    pacer = limiter(time)
    pacer.pause(10)
    pacer.pause(2)
    assert pacer._paused_until == 1010.0


@pytest.mark.parametrize(("rpm", "options"), [(0, {}), (-5, {}), (60, {"burst": 0})])
def test_nonsense_settings_are_refused(rpm: float, options: dict[str, int]) -> None:
    """A rate must be positive and a burst at least 1."""
    with pytest.raises(ValueError):  # noqa: PT011 - each names its setting
        AdaptiveRateLimiter(rpm, **options)  # type: ignore[arg-type]
