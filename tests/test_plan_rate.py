"""The plan's limit, learnt at the first 429: an adaptive client asks ``GET /open/info``
once, then never climbs above the plan and climbs back in steps of it, so that several
processes on one account even out their shares (issue 11's fifth problem): the
client's side over sockets, the processes' side in the simulator the bench uses
(virtual time: four processes' limiters against one GCRA, seeded)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import coverage
import pytest

import twochat_voip as tv
from bench.adaptive_sim import simulate
from twochat_voip import AdaptiveRateLimiter, AiohttpTransport, VoIPClient, set_testing
from twochat_voip._plan_rate import PlanRate
from twochat_voip.testing import EXAMPLE_CDR, FakeTwoChatServer, Fault, generate_cdrs

pytestmark = pytest.mark.virtual_time  # pacing, backoff and give-ups in the loop's time

CALL = EXAMPLE_CDR["uuid"]


def client_for(server: FakeTwoChatServer, **options: Any) -> VoIPClient:
    return VoIPClient(api_key=server.api_key or "any-key", base_url=server.base_url, **options)


def asked(server: FakeTwoChatServer) -> int:
    return [r.path for r in server.requests].count("/open/info")


def rate_of(voip: VoIPClient) -> float | None:
    limiter = voip.rate_limiter
    assert isinstance(limiter, AdaptiveRateLimiter)
    return limiter.requests_per_minute


async def test_the_first_429_asks_the_plan_and_the_rate_stays_under_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No rate given: a 429 sends one GET /open/info, in the background; the slow
    start's 4 a second then gives way to the plan's 1 a second, and later 429s ask
    nothing more."""
    caplog.set_level(logging.INFO, logger="twochat_voip")
    async with FakeTwoChatServer(plan_requests_per_minute=60) as server:
        server.fail_next(Fault(status=429), call_uuid=CALL)
        async with client_for(server, max_retries=0) as voip:
            assert rate_of(voip) == 240.0
            with pytest.raises(tv.RateLimitError):
                await voip.get_call(CALL)
            async with asyncio.timeout(5):
                while rate_of(voip) != 60.0:  # noqa: ASYNC110 - a limiter's rate has no event
                    await asyncio.sleep(0.01)
            server.fail_next(Fault(status=429), call_uuid=CALL)
            with pytest.raises(tv.RateLimitError):
                await voip.get_call(CALL)
            await voip.get_call(CALL)
            rate = rate_of(voip)
            assert rate is not None
            assert rate <= 60.0
            assert voip.stats.requests == 4
        assert asked(server) == 1
    assert "the plan allows 60 requests/minute" in caplog.text


@pytest.mark.parametrize("how", ["told a rate", "auto", "testing mode"])
async def test_a_429_asks_nothing_of_a_client_that_does_not_adapt_without_a_plan(
    how: str,
) -> None:
    """Told a rate, told "auto" (asked before the first call already), or in testing
    mode (which paces nothing): a 429 sends no GET /open/info of its own."""
    rpm = {"told a rate": 600, "auto": "auto", "testing mode": None}[how]
    async with FakeTwoChatServer(requests_per_minute=60000) as server:
        server.fail_next(Fault(status=429), call_uuid=CALL)
        with set_testing(how == "testing mode"):
            async with client_for(server, requests_per_minute=rpm, max_retries=0) as voip:
                with pytest.raises(tv.RateLimitError):
                    await voip.get_call(CALL)
                await asyncio.sleep(0.05)
        assert asked(server) == (1 if how == "auto" else 0)


@pytest.mark.parametrize("plan", [None, 1e-9])
async def test_a_plan_the_server_does_not_tell_is_asked_once(
    plan: float | None, caplog: pytest.LogCaptureFixture
) -> None:
    """An answer without limits.requests_per_minute, or with an absurd one: logged,
    the client goes on adapting without it, and asks no more."""
    caplog.set_level(logging.INFO, logger="twochat_voip")
    async with FakeTwoChatServer(plan_requests_per_minute=plan) as server:
        server.fail_next(*[Fault(status=429)] * 3, call_uuid=CALL)
        async with client_for(server, max_retries=0) as voip:
            for _ in range(3):
                with pytest.raises(tv.RateLimitError):
                    await voip.get_call(CALL)
                await asyncio.sleep(0.05)
            assert rate_of(voip) != 1e-9
        assert asked(server) == 1
    assert "adapting to 429s without it" in caplog.text


async def asking_unanswered(server: FakeTwoChatServer) -> VoIPClient:
    """A client whose 429 set off the plan question, which the server never answers:
    returned once the question is in flight."""
    server.fail_next(Fault(status=429), call_uuid=CALL)
    server.fail_next(Fault(hang=True))  # the GET /open/info: no answer
    voip = client_for(server, max_retries=0)
    with pytest.raises(tv.RateLimitError):
        await voip.get_call(CALL)
    await server.wait_for_requests(2)
    return voip


async def test_closing_while_the_plan_is_asked_leaves_nothing_behind(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The client closes while the question the 429 set off waits for its answer: the
    background request ends with it at once, and nothing is logged as lost."""
    caplog.set_level(logging.DEBUG)
    async with FakeTwoChatServer(plan_requests_per_minute=600) as server:
        voip = await asking_unanswered(server)
        started = asyncio.get_running_loop().time()
        await voip.aclose()
        assert asyncio.get_running_loop().time() - started < 1.0
        await asyncio.sleep(0.05)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "never retrieved" not in caplog.text


# The simulator: four processes' limiters against one GCRA, in virtual time.


@contextlib.contextmanager
def untraced() -> Iterator[None]:
    """Pause coverage's tracing, if it runs: it triples the time of a CPU-bound
    simulation, whose code the tests above cover anyway."""
    cov = coverage.Coverage.current()
    if cov is None:
        yield
        return
    cov.stop()
    try:
        yield
    finally:
        cov.start()


@pytest.mark.slow
@pytest.mark.parametrize(("per_minute", "most_429s"), [(3000, 0.10), (1200, 0.12)])
async def test_four_adaptive_processes_converge_in_the_simulator(
    per_minute: int, most_429s: float
) -> None:
    """Eight seeded runs of four processes starting up to 10 ms apart, each learning
    the plan at its first 429: every run within 1.3x N/R. Without the plan, climbing
    in shares of their own rates, they kept the shares their slow starts gave them:
    up to 1.46x at 3,000 a minute, 1.75x at 1,200 (these same seeds)."""
    with untraced():
        runs = [
            await simulate(
                processes=4, ids=per_minute // 3, per_minute=per_minute, jitter=0.01, seed=seed
            )
            for seed in range(1, 9)
        ]
    assert max(wall for wall, _, _ in runs) <= 1.3
    assert max(share for _, share, _ in runs) <= most_429s


@pytest.mark.parametrize("seed", [1, 2])
async def test_the_plan_spares_a_lone_process_its_429s_in_the_simulator(seed: int) -> None:
    """One process at a plan of 600 a minute: learning the plan at its first 429, it
    stops probing above it; without it, 7.4% of its requests are answered 429."""
    with untraced():
        wall, share, _ = await simulate(
            processes=1, ids=300, per_minute=600, jitter=0.01, seed=seed
        )
        _, share_without, _ = await simulate(
            processes=1, ids=300, per_minute=600, jitter=0.01, seed=seed, plan=False
        )
    assert wall <= 1.01
    assert share < 0.01
    assert share_without > 0.05


async def test_a_close_cancelled_while_the_plan_is_asked_still_closes_the_session() -> None:
    """A close cut short (a cancel scope around ``async with``, ``wait_for``) while the
    question waits for its answer: the client's session is closed all the same, and
    a 429 answered after the close asks nothing."""
    async with FakeTwoChatServer(plan_requests_per_minute=600) as server:
        voip = await asking_unanswered(server)
        transport = voip._transport
        assert isinstance(transport, AiohttpTransport)
        session = transport.session
        assert session is not None
        closing = asyncio.ensure_future(voip.aclose())
        await asyncio.sleep(0)
        closing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await closing
        assert session.closed
        voip._plan.limit_met()
        assert voip._plan.at_a_limit is False
        assert asked(server) == 1


async def test_a_question_that_fails_unexpectedly_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No one awaits the background question: an error of the SDK's own (not the
    API's answer) is logged as an error, not lost or left "never retrieved"."""

    asked: list[None] = []

    async def ask() -> float | None:
        asked.append(None)
        raise RuntimeError("a bug")

    plan = PlanRate(ask, AdaptiveRateLimiter(), when="limit")
    plan.limit_met()
    plan.limit_met()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert len(asked) == 1
    assert "asking the plan's limit failed" in caplog.text
    assert "a bug" in caplog.text
    await plan.aclose()


@pytest.mark.socket
async def test_a_plan_question_that_never_answers_is_asked_twice_then_the_run_adapts() -> None:
    """``"auto"`` when ``GET /open/info`` hangs: two questions of 5 s each, then the
    run adapts at once and stores every record (it asked 15 times and stored none)."""
    async with FakeTwoChatServer(cdrs=generate_cdrs(100, seed=3)) as server:
        server.fail_next(Fault(hang=True), Fault(hang=True))  # the first two: the question
        async with VoIPClient(
            api_key=server.api_key, base_url=server.base_url, requests_per_minute="auto"
        ) as voip:
            loop = asyncio.get_running_loop()
            started = loop.time()
            results = [r async for r in voip.get_calls(server.call_uuids)]
            first_call = min(r.received_at for r in server.requests if r.call_uuid)
    asked = [r for r in server.requests if r.path == "/open/info"]
    assert len(asked) == 2
    assert all(result.ok for result in results)
    assert first_call - started < 12  # two 5 s questions and a backoff
