"""The in-process rate limiter, on a fake clock: pacing, adapting, pausing."""

from __future__ import annotations

import asyncio
import contextlib
import math

import pytest

from twochat_voip import AdaptiveRateLimiter, RateLimiter, set_testing
from twochat_voip._gcra import Gcra


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
    """The default limiter satisfies the seam other limiters plug into: acquire says
    when the request left, and feedback's Retry-After holds the next one."""
    assert isinstance(AdaptiveRateLimiter(), RateLimiter)
    time = FakeTime()
    seam: RateLimiter = limiter(time)
    assert await seam.acquire() == 1000.0
    seam.feedback(sent_at=1000.0, status=429, retry_after=2.0)
    assert await seam.acquire() == 1002.0


async def test_paces_evenly_without_a_start_burst() -> None:
    """600/min: one request every 0.1 s from the first, no minute's worth at once."""
    time = FakeTime()
    pacer = limiter(time, 600)
    sent = [await pacer.acquire() - 1000.0 for _ in range(5)]
    assert sent == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])


class LateTime(FakeTime):
    """A clock whose sleepers wake ``late`` seconds after their deadline, as an event
    loop's timers do."""

    def __init__(self, late: float) -> None:
        super().__init__()
        self.late = late

    async def sleep(self, seconds: float) -> None:
        await super().sleep(seconds + self.late)


async def test_sleepers_woken_late_do_not_slow_the_pace() -> None:
    """6,000/min with every wake-up 2 ms late: 101 requests still take 1 s, not 1.2 s
    (each slot follows the one before it, not the moment its sleeper woke)."""
    time = LateTime(late=0.002)
    pacer = limiter(time, 6000)
    sent = await asyncio.gather(*(pacer.acquire() for _ in range(101)))
    assert max(sent) - min(sent) == pytest.approx(1.0 + 0.002, abs=0.001)


async def test_a_stalled_loop_is_not_made_up_for_with_a_burst() -> None:
    """A sleeper woken a whole second late: the next request waits half an interval,
    not none (a second's worth of requests at once would be a 429 storm)."""
    time = LateTime(late=1.0)
    pacer = limiter(time, 600)
    first, second, third = await asyncio.gather(*(pacer.acquire() for _ in range(3)))
    assert second - first == pytest.approx(0.1 + 1.0)
    assert third - second == pytest.approx(0.05 + 1.0)  # its own wake is late too


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


async def test_an_adaptive_limiter_starts_slow_and_doubles() -> None:
    """Without a rate: 4 requests a second from the first request, doubling every half
    second while no limit shows, and unpaced once past 1,000 a second."""
    time = FakeTime()
    pacer = limiter(time)
    assert await pacer.acquire() == 1000.0
    assert pacer.requests_per_minute == pytest.approx(240.0)
    await busy_for(time, pacer, 0.5)
    assert pacer.requests_per_minute == pytest.approx(480.0)
    await busy_for(time, pacer, 0.5)
    assert pacer.requests_per_minute == pytest.approx(960.0)
    await busy_for(time, pacer, 4.0)  # 4 * 2**10 a second by now
    assert pacer.requests_per_minute is None
    assert {await pacer.acquire() for _ in range(10)} == {1005.0}


async def test_a_quiet_client_comes_back_at_the_pace_it_last_used() -> None:
    """The slow start's clock stops a second after the last request: after a call and
    a six-second pause, a burst meets 16/s (where it stopped), not an unpaced client;
    then the doubling resumes from there."""
    time = FakeTime()
    pacer = limiter(time)
    await pacer.acquire()
    time.now += 6.0
    assert pacer.requests_per_minute == pytest.approx(960.0)
    await pacer.acquire()  # the clock runs again from here
    time.now += 0.5
    assert pacer.requests_per_minute == pytest.approx(1920.0)


async def test_workers_starting_together_are_spread_and_see_the_rate_climb() -> None:
    """Sixteen workers asking at once do not all go at once; each waiting request gets
    the rate of the moment it is next, not a slot planned at the first rate."""
    time = FakeTime()
    pacer = limiter(time)
    sent = sorted(s - 1000.0 for s in await asyncio.gather(*(pacer.acquire() for _ in range(16))))
    expected = [0.0]
    for _ in range(15):
        expected.append(expected[-1] + 1 / (4.0 * 2 ** (expected[-1] / 0.5)))
    assert sent == pytest.approx(expected)
    assert sum(1 for s in sent if s < 0.5) == 3
    assert sent[-1] < 15 / 4.0 / 2  # a quarter second apart would take 3.75 s


async def test_testing_mode_starts_unpaced() -> None:
    """A limiter made in testing mode sends at once: no slow start."""
    time = FakeTime()
    with set_testing(True):
        pacer = limiter(time)
    assert {await pacer.acquire() for _ in range(10)} == {1000.0}
    assert pacer.requests_per_minute is None


async def answered(
    time: FakeTime, pacer: AdaptiveRateLimiter, statuses: list[int], gap: float = 0.0
) -> float:
    """Send one request per status (``gap`` seconds apart) and feed its answer back;
    the last send time."""
    sent = time.now
    for status in statuses:
        sent = await pacer.acquire()
        pacer.feedback(sent_at=sent, status=status, retry_after=None)
        time.now += gap
    return sent


async def busy_for(time: FakeTime, pacer: AdaptiveRateLimiter, seconds: float) -> None:
    """Let ``seconds`` pass with requests flowing (a climb's clock runs only then): a
    request whenever a slot is free, looked for every tenth of a second."""
    end = time.now + seconds
    while time.now + 0.1 < end:
        time.now += 0.1
        await free_slot(pacer, time)
    time.now = end


async def free_slot(pacer: AdaptiveRateLimiter, time: FakeTime) -> bool:
    """Whether a request asking now leaves at once (one that would wait is withdrawn
    before the clock moves: it takes no slot)."""
    asking = asyncio.ensure_future(pacer.acquire())
    await asyncio.sleep(0)  # it runs up to its slot, or its (fake) sleep
    if asking.done():
        return asking.result() == time.now
    asking.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asking
    return False


def limit(pacer: AdaptiveRateLimiter, sent: float) -> None:
    """Eight 429s in a row: a limit, not noise."""
    for _ in range(8):
        pacer.feedback(sent_at=sent, status=429, retry_after=None)


async def adapting_at_10_a_second(time: FakeTime, pacer: AdaptiveRateLimiter) -> float:
    """A limiter without a rate, past a limit met while it was unpaced and 32 answers
    at 10 a second since (the last send time): paced, adapting, no plan known."""
    sent = await unpaced_accepting_10_a_second(time, pacer)
    limit(pacer, sent)  # a slow start from 9/s
    return await answered(time, pacer, [200] * 32, gap=0.1)


async def test_sporadic_429s_are_noise() -> None:
    """429s now and then (one in 16 answers: never 6 in 64) never change the rate."""
    time = FakeTime()
    pacer = limiter(time, 600)
    for _ in range(40):
        await answered(time, pacer, [200] * 15 + [429])
    assert pacer.requests_per_minute == 600.0


async def test_sporadic_429s_do_not_end_a_slow_start() -> None:
    """Without a rate, stray 429s among accepted answers neither cut the rate nor stop
    the slow start from reaching unpaced."""
    time = FakeTime()
    pacer = limiter(time)
    for _ in range(40):
        await answered(time, pacer, [200] * 15 + [429], gap=0.01)
    assert time.now - 1000.0 < 10.0
    assert pacer.requests_per_minute is None


async def test_a_limit_cuts_to_80_percent_of_what_was_accepted() -> None:
    """No plan known, 10 requests/s accepted, then a limit: 8/s (480/min)."""
    time = FakeTime()
    pacer = limiter(time)
    limit(pacer, await adapting_at_10_a_second(time, pacer))
    assert pacer.requests_per_minute == pytest.approx(480.0)


async def test_with_a_plan_a_limit_cuts_to_90_percent_of_what_was_accepted() -> None:
    """Told the plan's 6,000/min, 10 requests/s accepted, then a limit: 9/s."""
    time = FakeTime()
    pacer = limiter(time, 6000)
    sent = await answered(time, pacer, [200] * 20, gap=0.1)
    limit(pacer, sent)
    assert pacer.requests_per_minute == pytest.approx(540.0)


async def unpaced_accepting_10_a_second(time: FakeTime, pacer: AdaptiveRateLimiter) -> float:
    """Run a fresh adaptive limiter past its slow start, then accept 10 requests a
    second for a second; the last send time."""
    await answered(time, pacer, [200] * 60, gap=0.1)
    assert pacer.requests_per_minute is None
    return await answered(time, pacer, [200] * 10, gap=0.1)


async def test_a_limit_while_unpaced_starts_slow_from_what_was_accepted() -> None:
    """Unpaced, then a limit: a slow start from what was accepted in the last second
    (9 answers: the tenth is a second old), doubling every half second."""
    time = FakeTime()
    pacer = limiter(time)
    sent = await unpaced_accepting_10_a_second(time, pacer)
    limit(pacer, sent)
    assert pacer.requests_per_minute == pytest.approx(540.0)
    time.now += 0.5
    assert pacer.requests_per_minute == pytest.approx(1080.0)


async def test_the_cut_follows_what_was_accepted_not_what_was_sent() -> None:
    """Sending 10/s of which the server took one in two: the cut is to 80% of 5/s."""
    time = FakeTime()
    pacer = limiter(time)
    sent = time.now
    for index in range(40):
        sent = await pacer.acquire()
        if index % 2 == 0:
            pacer.feedback(sent_at=sent, status=200, retry_after=None)
        time.now += 0.1
    limit(pacer, sent)
    assert pacer.requests_per_minute == pytest.approx(0.8 * 5 * 60, rel=0.05)


async def test_429s_in_flight_count_once() -> None:
    """Answers to requests sent before a cut do not cut again; a later 429 with nothing
    accepted since is a wall, and halves the pace once."""
    time = FakeTime()
    pacer = limiter(time, 600)
    early = [await pacer.acquire() for _ in range(12)]
    for sent in early:
        pacer.feedback(sent_at=sent, status=429, retry_after=None)
    cut_once = pacer.requests_per_minute
    assert cut_once is not None
    assert cut_once == pytest.approx(540.0)
    later = await pacer.acquire()
    limit(pacer, later)
    assert pacer.requests_per_minute == pytest.approx(0.5 * cut_once)


async def test_cut_leaves_a_gap() -> None:
    """After a cut the next request waits one new interval."""
    time = FakeTime()
    pacer = limiter(time, 120)
    sent = await pacer.acquire()
    limit(pacer, sent)
    assert await pacer.acquire() - sent == pytest.approx(60 / (0.9 * 120))


async def test_the_rate_climbs_back_by_time_not_per_answer() -> None:
    """After a cut: back to what was accepted within 5 s, whatever the answers."""
    time = FakeTime()
    pacer = limiter(time)
    sent = await adapting_at_10_a_second(time, pacer)
    limit(pacer, sent)
    assert pacer.requests_per_minute == pytest.approx(480.0)
    pacer.feedback(sent_at=sent, status=200, retry_after=None)
    assert pacer.requests_per_minute == pytest.approx(480.0)  # answers do not climb
    await busy_for(time, pacer, 2.5)
    assert pacer.requests_per_minute == pytest.approx(540.0)
    await busy_for(time, pacer, 2.5)
    assert pacer.requests_per_minute == pytest.approx(600.0)


def plan_climb(plan: float, seconds: float) -> float:
    """Requests a minute a limiter told the plan climbs in ``seconds`` after a cut: 1%
    of the plan a second, doubling every 2 s, on a clock that runs slower below
    1,536/min."""
    since = seconds / max(1.0, 128 / (plan / 60 * 5))
    return plan * 0.01 * since * 2 ** (since / 2)


async def test_with_a_plan_the_climb_is_the_same_for_every_rate() -> None:
    """Told the plan's rate, every process climbs back by the same steps of it,
    whatever its own rate (so that unequal shares even out), up to the plan."""
    climbs = []
    for gap in (0.1, 0.4):  # 10/s and 2.5/s accepted of a plan of 1200/min
        time = FakeTime()
        pacer = limiter(time, 1200)
        limit(pacer, await answered(time, pacer, [200] * 40, gap=gap))
        cut_to = pacer.requests_per_minute
        assert cut_to is not None
        assert cut_to == pytest.approx(0.9 * 60 / gap)
        await busy_for(time, pacer, 3)
        assert pacer.requests_per_minute is not None
        climbs.append(pacer.requests_per_minute - cut_to)
        await busy_for(time, pacer, 30)
        assert pacer.requests_per_minute == 1200.0
    assert climbs == pytest.approx([plan_climb(1200, 3)] * 2)


async def test_beyond_what_was_accepted_the_rate_probes_then_speeds_up() -> None:
    """A limit in a slow start ends it: a cut to 80% of what was accepted, back to it
    in 5 s, 1% of it a second for 2 s more, then doubling every second."""
    time = FakeTime()
    pacer = limiter(time)
    limit(pacer, await adapting_at_10_a_second(time, pacer))
    assert pacer.requests_per_minute == pytest.approx(480.0)
    await busy_for(time, pacer, 5)
    assert pacer.requests_per_minute == pytest.approx(600.0)
    await busy_for(time, pacer, 2)
    assert pacer.requests_per_minute == pytest.approx(600.0 * 1.02)
    await busy_for(time, pacer, 1)
    assert pacer.requests_per_minute == pytest.approx(600.0 * 1.03 * 2)


async def test_at_a_low_rate_the_climb_stretches_over_answers() -> None:
    """At 1 request a second the regain spans 32 answers (32 s), not 5 s: a limit
    shows within a few requests of being reached, not after a burst of 429s."""
    time = FakeTime()
    pacer = limiter(time)
    limit(pacer, await pacer.acquire())  # the slow start ends, at 3.2/s
    sent = await answered(time, pacer, [200] * 3, gap=1.0)  # 1/s accepted
    limit(pacer, sent)
    assert pacer.requests_per_minute == pytest.approx(48.0)
    await busy_for(time, pacer, 16)  # half of the stretched regain
    assert pacer.requests_per_minute == pytest.approx(54.0)
    await busy_for(time, pacer, 16)
    assert pacer.requests_per_minute == pytest.approx(60.0)


async def test_with_a_low_plan_the_climb_spans_the_accounts_answers() -> None:
    """At a plan of 80 a minute a climb's clock runs 128 / (80 / 60 * 5) = 19.2 times
    slower: a tenth of the plan back in about a minute and a half, not 5 s."""
    time = FakeTime()
    pacer = limiter(time, 80)
    limit(pacer, await answered(time, pacer, [200] * 40, gap=1.0))  # 1/s accepted
    assert pacer.requests_per_minute == pytest.approx(54.0)
    await busy_for(time, pacer, 19.2)
    assert pacer.requests_per_minute == pytest.approx(54.0 + 80 * 0.01 * 2**0.5)
    await busy_for(time, pacer, 4 * 19.2)
    assert pacer.requests_per_minute == pytest.approx(54.0 + 80 * 0.01 * 5 * 2**2.5)


async def test_with_a_plan_two_429s_close_together_are_a_limit() -> None:
    """Told the plan: two 429s among 16 answers are a limit; two 16 answers apart are
    not (stray 429s), nor is one alone."""
    time = FakeTime()
    pacer = limiter(time, 600)
    await answered(time, pacer, [200] * 4 + [429] + [200] * 15 + [429] + [200] * 4, gap=0.1)
    assert pacer.requests_per_minute == 600.0
    await answered(time, pacer, [429] + [200] * 14 + [429], gap=0.1)
    cut = pacer.requests_per_minute
    assert cut is not None
    assert 500.0 < cut <= 0.9 * 600.0  # 90% of what was accepted, a little under 10/s


async def test_three_429s_that_are_half_the_answers_are_a_limit() -> None:
    """No plan known: three 429s among the first answers since the last cut are
    enough, two are not."""
    time = FakeTime()
    pacer = limiter(time)
    limit(pacer, await pacer.acquire())  # the slow start ends, at 3.2/s
    time.now += 1.0
    sent = await answered(time, pacer, [200, 429, 429, 200])
    before = pacer.requests_per_minute
    assert before is not None
    assert before > 0.8 * 240.0  # climbing back, not cut
    pacer.feedback(sent_at=sent, status=429, retry_after=None)
    assert pacer.requests_per_minute is not None
    assert pacer.requests_per_minute < before


async def test_rate_never_goes_under_the_floor() -> None:
    """However many 429s, the rate stays at or above the floor."""
    time = FakeTime()
    pacer = limiter(time, 60, min_requests_per_minute=30)
    for _ in range(8):
        sent = await pacer.acquire()
        limit(pacer, sent)
    assert pacer.requests_per_minute == 30.0


async def test_a_limit_at_the_first_request_cuts_the_slow_start() -> None:
    """429s for the very first request: 80% of the starting rate, no longer doubling."""
    time = FakeTime()
    pacer = limiter(time)
    sent = await pacer.acquire()
    limit(pacer, sent)
    assert pacer.requests_per_minute == pytest.approx(0.8 * 240.0)
    time.now += 0.5  # climbing back to what it sent at, no longer doubling; at 4/s
    # the climb's clock runs 32 / (4 * 5) = 1.6 times slower
    assert pacer.requests_per_minute == pytest.approx(192.0 + 48.0 * (0.5 / 1.6) / 5)


async def test_set_requests_per_minute_paces_from_now() -> None:
    """A rate learnt later (the plan's, from GET /open/info) paces at once."""
    time = FakeTime()
    pacer = limiter(time)
    pacer.set_requests_per_minute(120)
    sent = [await pacer.acquire() - 1000.0 for _ in range(3)]
    assert sent == pytest.approx([0.5, 1.0, 1.5])  # the request that asked was one
    assert pacer.requests_per_minute == 120.0
    with pytest.raises(ValueError, match="positive"):
        pacer.set_requests_per_minute(0)


async def test_a_rate_learnt_after_a_slow_start_paces_from_the_request_that_asked() -> None:
    """The request that asked for the plan went at the slow start's 4/s; the next one
    is due at the plan's rate after it (1 ms at 60,000/min), not a quarter second."""
    time = FakeTime()
    pacer = limiter(time)
    asked = await pacer.acquire()
    pacer.set_requests_per_minute(60000)
    assert await pacer.acquire() - asked == pytest.approx(0.001)


async def test_a_plan_learnt_caps_the_rate_and_keeps_the_pace() -> None:
    """learn_plan (the plan asked at the first 429): a slow start goes on under it and
    stops at it; an unpaced limiter is paced at it from now; nonsense is refused."""
    time = FakeTime()
    pacer = limiter(time)
    await pacer.acquire()
    pacer.learn_plan(600)
    assert pacer.requests_per_minute == 240.0  # the pace in force stays
    await busy_for(time, pacer, 1.0)
    assert pacer.requests_per_minute == 600.0  # 240 doubled twice is 960: capped
    unpaced = limiter(time)
    await unpaced_accepting_10_a_second(time, unpaced)
    unpaced.learn_plan(60)
    assert unpaced.requests_per_minute == 60.0
    first = await unpaced.acquire()
    assert await unpaced.acquire() - first == pytest.approx(1.0)
    with pytest.raises(ValueError, match="positive"):
        pacer.learn_plan(0)


async def test_testing_mode_skips_pauses() -> None:
    """set_testing(True): a Retry-After holds nothing."""
    time = FakeTime()
    pacer = limiter(time)
    with set_testing(True):
        pacer.feedback(sent_at=time.now, status=429, retry_after=30.0)
    assert await pacer.acquire() == 1000.0


async def test_a_stray_429_keeps_the_configured_rate() -> None:
    """One 429 is noise, not a limit: the pace stays."""
    time = FakeTime()
    pacer = limiter(time, 600)
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
    pacer = limiter(time)
    pacer.feedback(sent_at=time.now, status=429, retry_after=3.0)
    assert await pacer.acquire() == pytest.approx(1003.0)


def test_shorter_pause_does_not_shorten_a_longer_one() -> None:
    """Pauses only ever extend."""
    time = FakeTime()
    pacer = limiter(time)
    pacer.pause(10)
    pacer.pause(2)
    assert pacer._paused_until == 1010.0


@pytest.mark.parametrize(
    ("rpm", "options"),
    [(0, {}), (-5, {}), (math.nan, {}), (math.inf, {}), (60, {"burst": 0})],
)
def test_nonsense_settings_are_refused(rpm: float, options: dict[str, int]) -> None:
    """A rate must be a positive number and a burst at least 1."""
    with pytest.raises(ValueError):  # noqa: PT011 - each names its setting
        AdaptiveRateLimiter(rpm, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("rpm", [0, -1, math.nan, math.inf])
def test_a_rate_told_later_must_be_a_positive_number(rpm: float) -> None:
    """set_requests_per_minute and learn_plan refuse what no pace can be, NaN too,
    and leave the limiter as it was."""
    pacer = limiter(FakeTime(), 600)
    for tell in (pacer.set_requests_per_minute, pacer.learn_plan):
        with pytest.raises(ValueError, match="positive number"):
            tell(rpm)
    assert pacer.requests_per_minute == 600.0


@pytest.mark.parametrize(("rpm", "burst"), [(600, 1), (600, 3), (6000, 5)])
async def test_free_slots_are_exactly_what_the_gcra_admits(rpm: float, burst: int) -> None:
    """At a fixed rate, the limiter's schedule is the GCRA the fake servers police with:
    over irregular arrivals it sends at once exactly the requests the GCRA admits."""
    time = FakeTime()
    pacer = limiter(time, rpm, burst=burst)
    gcra = Gcra(interval=60.0 / rpm, burst=burst)
    arrivals = [0.0, 0.001, 0.002, 0.05, 0.051, 0.2, 0.2, 0.2, 0.21, 0.5, 0.5, 0.55, 2.0, 2.0]
    arrivals += [2.0 + k * 0.013 for k in range(40)] + [3.0] * 10
    admitted_by = {"limiter": [], "gcra": []}  # type: dict[str, list[float]]
    for offset in arrivals:
        time.now = 1000.0 + offset
        if await free_slot(pacer, time):
            admitted_by["limiter"].append(offset)
        if gcra.police(1000.0 + offset) == 0.0:
            admitted_by["gcra"].append(offset)
    assert admitted_by["limiter"] == admitted_by["gcra"]
    assert 0 < len(admitted_by["gcra"]) < len(arrivals)  # some let through, some not


@pytest.mark.parametrize("rpm", [None, 600])
async def test_after_a_quiet_spell_the_pace_is_where_the_climb_stopped(rpm: float | None) -> None:
    """A climb's clock stops in a quiet spell and resumes after it: the first requests
    after it leave at the rate the climb had reached, not at the rate of the cut."""
    time = FakeTime()
    pacer = limiter(time, rpm)
    limit(pacer, await answered(time, pacer, [200] * 20, gap=0.1))
    cut = pacer.requests_per_minute
    await busy_for(time, pacer, 3)
    time.now += 30
    reached = pacer.requests_per_minute
    assert cut is not None
    assert reached is not None
    assert reached > 1.02 * cut
    first = await pacer.acquire()
    second = await pacer.acquire()
    assert second - first == pytest.approx(60 / reached, rel=0.01)
