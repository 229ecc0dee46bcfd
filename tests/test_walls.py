"""A wall of 429s costs almost nothing: the rate falls to its floor, in every mode."""

from __future__ import annotations

import itertools
from contextlib import aclosing
from typing import Any

import pytest
from fake_clock import FakeClock

from twochat_voip import AdaptiveRateLimiter, VoIPClient
from twochat_voip.testing import FakeTwoChatServer, Fault, generate_cdrs

pytestmark = pytest.mark.virtual_time  # pacing and give-ups in the loop's time

MODES = [
    pytest.param(600, id="given-600"),
    pytest.param(6_000, id="given-6000"),
    pytest.param(60_000, id="given-60000"),
    pytest.param("auto", id="auto"),
    pytest.param(None, id="adaptive"),
]


def limiter(clock: FakeClock, rpm: float | None, **options: Any) -> AdaptiveRateLimiter:
    return AdaptiveRateLimiter(rpm, clock=clock, sleep=clock.sleep, **options)


async def answer(pacer: AdaptiveRateLimiter, *statuses: int) -> float:
    """Send one request per status, in turn, and tell each answer; the last send time."""
    sent = 0.0
    for status in statuses:
        sent = await pacer.acquire()
        pacer.feedback(sent_at=sent, status=status, retry_after=None)
    return sent


async def test_each_429_after_a_cut_halves_the_pace_down_to_the_floor() -> None:
    """Two 429s cut a plan's 600/min to 540; from the second after the cut on, nothing
    accepted between, every 429 halves it, down to the floor of 6 a minute, where it
    stays."""
    clock = FakeClock()
    pacer = limiter(clock, 600)
    await answer(pacer, 429, 429)
    assert pacer.requests_per_minute == pytest.approx(540)
    await answer(pacer, 429)  # one 429 after a cut may be a neighbour's share
    assert pacer.requests_per_minute == pytest.approx(540, rel=0.01)
    rates = []
    for _ in range(8):
        await answer(pacer, 429)
        rates.append(pacer.requests_per_minute)
    assert rates == pytest.approx([270, 135, 67.5, 33.75, 16.875, 8.4375, 6, 6])
    clock.now += 600  # no climb while the wall stands
    assert pacer.requests_per_minute == pytest.approx(6)
    sent = await pacer.acquire()
    assert await pacer.acquire() - sent == pytest.approx(10.0)


async def test_the_floor_is_min_requests_per_minute() -> None:
    """A wall stops at the floor given as ``min_requests_per_minute``."""
    pacer = limiter(FakeClock(), 600, min_requests_per_minute=60)
    await answer(pacer, *[429] * 12)
    assert pacer.requests_per_minute == pytest.approx(60)


@pytest.mark.parametrize(("rpm", "regained"), [(600, 600), (None, 3000)])
async def test_an_accepted_answer_after_a_wall_starts_the_climb(
    rpm: float | None, regained: float
) -> None:
    """Past the wall, the first accepted answer starts the climb from the floor: back
    to the plan, or (adapting) to what was accepted before the wall, within seconds."""
    clock = FakeClock()
    pacer = limiter(clock, rpm)
    await answer(pacer, *[200] * 40)  # adapting: a second or so of slow start
    await answer(pacer, *[429] * 20)
    assert pacer.requests_per_minute == pytest.approx(6)
    await answer(pacer, 200)
    start = clock.now
    while clock.now < start + 20 and pacer.requests_per_minute is not None:
        await answer(pacer, 200)
        clock.now += 0.01  # (unpaced past the plan: the loop ends)
    assert pacer.requests_per_minute is None or pacer.requests_per_minute >= regained


async def run_into_wall(server: FakeTwoChatServer, rpm: Any, **options: Any) -> int:
    """A bulk run of 200 ids that gives up after 30 s; the requests it sent."""
    ids = server.call_uuids
    async with VoIPClient(
        api_key=server.api_key,
        base_url=server.base_url,
        transport=server.transport(),
        requests_per_minute=rpm,
        **options,
    ) as voip:
        async with aclosing(voip.get_calls(ids, give_up_after=30)) as results:
            outcomes = [result.ok async for result in results]
        assert voip.stats.requests == server.request_count
    assert outcomes == [False] * len(ids)
    return server.request_count


@pytest.mark.parametrize("rpm", MODES)
@pytest.mark.parametrize("plan", [600, 60_000])
async def test_a_wall_of_429s_on_calls_costs_at_most_40_requests(rpm: Any, plan: int) -> None:
    """Every call answered 429 without Retry-After (the plan question answered): 200 ids
    with give_up_after=30 send at most 40 requests in all."""
    async with FakeTwoChatServer(
        cdrs=generate_cdrs(200, seed=1), plan_requests_per_minute=plan
    ) as server:
        for call_uuid in server.call_uuids:
            server.fail_next(*[Fault(status=429)] * 50, call_uuid=call_uuid)
        sent = await run_into_wall(server, rpm)
    assert sent <= 40


@pytest.mark.parametrize("rpm", MODES)
async def test_a_wall_of_429s_on_everything_costs_at_most_40_requests(rpm: Any) -> None:
    """Every request answered 429, the plan question too: at most 40 requests."""
    async with FakeTwoChatServer(cdrs=generate_cdrs(200, seed=1)) as server:
        server.fail_randomly(1.0, [Fault(status=429)])
        sent = await run_into_wall(server, rpm)
    assert sent <= 40


async def test_a_wall_with_retry_after_is_waited_out() -> None:
    """Every request answered 429 with ``Retry-After: 5``: no two requests closer than
    5 s, so 30 s of wall cost at most 7 requests."""
    async with FakeTwoChatServer(cdrs=generate_cdrs(200, seed=1)) as server:
        server.fail_randomly(1.0, [Fault(status=429, retry_after=5)])
        sent = await run_into_wall(server, 600)
        arrivals = [request.received_at for request in server.requests]
    assert sent <= 7
    assert min(later - earlier for earlier, later in itertools.pairwise(arrivals)) >= 5
