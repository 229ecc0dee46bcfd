"""RedisRateLimiter(requests_per_minute="auto") against a real redis-server: the plan's
rate asked once for every process on the account, and kept in Redis for a day."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from fake_clock import FakeClock
from redis.asyncio import Redis

from twochat_voip import VoIPClient
from twochat_voip.redis import RedisRateLimiter, account_key
from twochat_voip.testing import FakeTwoChatServer, Fault, RedisServer, generate_cdrs

KEY = "plan-key-1a2b3c4d5e6f"
PLAN_KEY = account_key(KEY) + ":plan"
CDRS = generate_cdrs(3, seed=27)


@pytest_asyncio.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    """A client of the test's redis-server, to see what the limiters keep."""
    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


def _info_requests(server: FakeTwoChatServer) -> int:
    return sum(request.path == "/open/info" for request in server.requests)


async def _get_calls(
    server: FakeTwoChatServer, limiters: list[RedisRateLimiter], **options: object
) -> list[str]:
    """One get_call in each of one client per limiter, all at once."""
    clients = [
        VoIPClient(
            api_key=KEY,
            base_url=server.base_url,
            transport=server.transport(),
            rate_limiter=limiter,
            **options,  # type: ignore[arg-type]
        )
        for limiter in limiters
    ]
    try:
        cdrs = await asyncio.gather(
            *(client.get_call(server.call_uuids[i]) for i, client in enumerate(clients))
        )
    finally:
        for client in clients:
            await client.aclose()
    return [cdr.uuid for cdr in cdrs]


async def test_clients_on_one_redis_ask_the_plan_once_in_all(
    redis_server: RedisServer, redis: Redis
) -> None:
    """Two processes' clients with "auto" start at once: one asks GET /open/info, both
    pace at its answer, and a third started later asks nothing."""
    clock = FakeClock()
    limiters = [
        RedisRateLimiter(
            redis_server.url,
            api_key=KEY,
            requests_per_minute="auto",
            clock=clock,
            sleep=clock.sleep,
        )
        for _ in range(3)
    ]
    async with FakeTwoChatServer(api_key=KEY, cdrs=CDRS, plan_requests_per_minute=600) as server:
        assert all(limiter.needs_plan for limiter in limiters)
        assert len(await _get_calls(server, limiters[:2])) == 2
        assert _info_requests(server) == 1
        assert [limiter.requests_per_minute for limiter in limiters[:2]] == [600.0, 600.0]
        assert await _get_calls(server, limiters[2:]) == [server.call_uuids[0]]
        assert _info_requests(server) == 1  # the third read it from Redis
        assert limiters[2].requests_per_minute == 600.0
        assert not any(limiter.needs_plan for limiter in limiters)
    for limiter in limiters:
        await limiter.aclose()
    assert float(await redis.get(PLAN_KEY) or 0) == 600.0
    assert 86_000 < await redis.ttl(PLAN_KEY) <= 86_400  # kept for a day
    assert await redis.exists(account_key(KEY))  # the schedule is shared at that rate


async def test_a_plan_stored_today_is_used_without_asking(
    redis_server: RedisServer, redis: Redis
) -> None:
    """A rate another host stored within the day is taken from Redis: no credit."""
    await redis.set(PLAN_KEY, "1200.0", ex=3600)
    async with (
        FakeTwoChatServer(api_key=KEY, cdrs=CDRS, plan_requests_per_minute=600) as server,
        RedisRateLimiter(redis_server.url, api_key=KEY, requests_per_minute="auto") as limiter,
    ):
        assert await _get_calls(server, [limiter]) == [server.call_uuids[0]]
        assert _info_requests(server) == 0
        assert server.request_count == 1
    assert limiter.requests_per_minute == 1200.0
    assert "1200" in repr(limiter)


@pytest.mark.parametrize("stored", ["soon", "inf", "nan", "-5", "0"])
async def test_a_stored_plan_that_is_no_rate_is_asked_again_and_replaced(
    redis_server: RedisServer, redis: Redis, stored: str
) -> None:
    """What no limiter stores at the plan's key is not a rate: asked again, and replaced."""
    await redis.set(PLAN_KEY, stored)
    async with (
        FakeTwoChatServer(api_key=KEY, cdrs=CDRS, plan_requests_per_minute=600) as server,
        RedisRateLimiter(redis_server.url, api_key=KEY, requests_per_minute="auto") as limiter,
    ):
        await _get_calls(server, [limiter])
        assert _info_requests(server) == 1
    assert await redis.get(PLAN_KEY) == b"600.0"


async def test_a_plan_that_cannot_be_learned_adapts_alone_and_stores_nothing(
    redis_server: RedisServer, redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """GET /open/info answered 500: the call still goes, this process adapts to 429s
    on its own, nothing is stored, and the question's lock is let go."""
    async with (
        FakeTwoChatServer(api_key=KEY, cdrs=CDRS, plan_requests_per_minute=600) as server,
        RedisRateLimiter(redis_server.url, api_key=KEY, requests_per_minute="auto") as limiter,
    ):
        server.fail_next(Fault(status=500))
        with caplog.at_level(logging.WARNING, logger="twochat_voip"):
            assert await _get_calls(server, [limiter], max_retries=0)
        assert _info_requests(server) == 1
    assert limiter.requests_per_minute is None
    assert "adapting to 429s" in caplog.text
    assert await redis.keys("*") == []  # no plan, no lock, no schedule


async def test_a_plan_asked_while_redis_is_down_is_used_here(redis_server: RedisServer) -> None:
    """Redis down when the plan is learned: the client asks it itself and paces at it
    (here, alone: on_redis_down="local")."""
    clock = FakeClock()
    async with (
        FakeTwoChatServer(api_key=KEY, cdrs=CDRS, plan_requests_per_minute=600) as server,
        RedisRateLimiter(
            redis_server.url,
            api_key=KEY,
            requests_per_minute="auto",
            on_redis_down="local",
            clock=clock,
            sleep=clock.sleep,
        ) as limiter,
    ):
        redis_server.stop()
        assert await _get_calls(server, [limiter]) == [server.call_uuids[0]]
        assert _info_requests(server) == 1
        assert limiter.requests_per_minute == 600.0
        assert not limiter.redis_available


@pytest.mark.parametrize("rate", [0, -1, float("nan"), "fast"])
def test_a_rate_that_is_neither_a_number_nor_auto_is_refused(rate: object) -> None:
    """A ValueError saying what is allowed, not a bare TypeError."""
    with pytest.raises(ValueError, match='positive number or "auto"'):
        RedisRateLimiter("redis://127.0.0.1:1/0", api_key=KEY, requests_per_minute=rate)  # type: ignore[arg-type]


async def test_a_server_that_names_no_plan_leaves_nothing_stored(
    redis_server: RedisServer, redis: Redis
) -> None:
    """GET /open/info without limits.requests_per_minute: adapting alone, nothing kept."""
    async with (
        FakeTwoChatServer(api_key=KEY, cdrs=CDRS) as server,
        RedisRateLimiter(redis_server.url, api_key=KEY, requests_per_minute="auto") as limiter,
    ):
        assert await _get_calls(server, [limiter]) == [server.call_uuids[0]]
        assert _info_requests(server) == 1
    assert limiter.requests_per_minute is None
    assert "'auto'" in repr(limiter)
    assert await redis.keys("*") == []
