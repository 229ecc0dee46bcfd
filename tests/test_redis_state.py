"""RedisRateLimiter against state it never writes, in a real redis-server: repaired or
named, in bounded time; never a hang, never "unreachable" for a Redis that answers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio
from fake_clock import FakeClock
from redis.asyncio import Redis

from twochat_voip import RateLimiterStoreError, RateLimiterUnavailableError, VoIPClient
from twochat_voip.redis import RedisRateLimiter, account_key
from twochat_voip.testing import FakeTwoChatServer, RedisServer

KEY = "state-key-0f9e8d7c6b5a"
YEAR_US = 365 * 24 * 3600 * 1_000_000


@pytest_asyncio.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    """A client of the test's redis-server, to put state at the limiter's key."""
    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


async def _redis_now_us(redis: Redis) -> int:
    seconds, micros = await redis.time()
    return seconds * 1_000_000 + micros


async def _one_call(redis_server: RedisServer, clock: FakeClock, **options: Any) -> str:
    """One get_call through a limiter on the test's Redis, at 600 a minute."""
    options.setdefault("requests_per_minute", 600)
    async with (
        FakeTwoChatServer(api_key=KEY) as server,
        RedisRateLimiter(
            redis_server.url, api_key=KEY, clock=clock, sleep=clock.sleep, **options
        ) as limiter,
        VoIPClient(
            api_key=KEY,
            base_url=server.base_url,
            transport=server.transport(),
            rate_limiter=limiter,
            max_retries=0,
        ) as voip,
    ):
        try:
            return (await voip.get_call(server.call_uuids[0])).uuid
        finally:
            assert server.request_count <= 1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tat", lambda now: now + 3600 * 1_000_000),  # an hour ahead
        ("tat", lambda now: now + 31 * YEAR_US),  # 31 years ahead
        ("paused_until", lambda now: now + 3600 * 1_000_000),
        ("paused_until", lambda now: now + 31 * YEAR_US),
        ("tat", lambda _: "inf"),
        ("tat", lambda _: "nan"),
        ("paused_until", lambda _: "inf"),
        ("paused_until", lambda _: "nan"),
        ("tat", lambda _: "-inf"),
        ("tat", lambda _: "soon"),
    ],
    ids=[
        "tat-hour",
        "tat-31-years",
        "pause-hour",
        "pause-31-years",
        "tat-inf",
        "tat-nan",
        "pause-inf",
        "pause-nan",
        "tat-minus-inf",
        "tat-text",
    ],
)
async def test_a_schedule_no_limiter_writes_is_reset_and_the_call_goes_at_once(
    redis_server: RedisServer,
    redis: Redis,
    caplog: pytest.LogCaptureFixture,
    field: str,
    value: Callable[[int], object],
) -> None:
    """A schedule or pause far ahead, or not a finite number: one get_call waits no
    more than a slot, the key is repaired, and the log names it."""
    key = account_key(KEY)
    stored = value(await _redis_now_us(redis))
    await redis.hset(key, field, str(stored))
    clock = FakeClock()
    with caplog.at_level(logging.WARNING, logger="twochat_voip"):
        assert await _one_call(redis_server, clock)
    assert max(clock.slept, default=0.0) <= 0.1  # a slot at most, never the hour
    assert key in caplog.text
    assert field in caplog.text
    now = await _redis_now_us(redis)
    kept = [float(raw) for raw in (await redis.hgetall(key)).values()]
    assert all(now - 1_000_000 < v < now + 1_000_000 for v in kept), kept
    assert 0 < await redis.pttl(key) <= 1000


async def test_a_schedule_other_processes_wrote_ahead_is_kept(
    redis_server: RedisServer, redis: Redis
) -> None:
    """Slots booked by other processes (twenty of them, two seconds at 600 a minute)
    are waited for: only what no limiter could write is reset."""
    key = account_key(KEY)
    await redis.hset(key, "tat", str(await _redis_now_us(redis) + 2_000_000))
    clock = FakeClock()
    assert await _one_call(redis_server, clock)
    (wait,) = clock.slept
    assert 1.5 < wait <= 2.0


@pytest.mark.parametrize(
    ("kind", "put"),
    [
        ("list", lambda r, k: r.rpush(k, "a")),
        ("string", lambda r, k: r.set(k, "12")),
        ("set", lambda r, k: r.sadd(k, "a")),
    ],
)
async def test_a_key_of_another_kind_is_named_at_once(
    redis_server: RedisServer,
    redis: Redis,
    kind: str,
    put: Callable[[Redis, str], Awaitable[object]],
) -> None:
    """A list, string or set at the limiter's key: RateLimiterStoreError naming the key
    and what it holds, at once, nothing sent, and the value left alone."""
    key = account_key(KEY)
    await put(redis, key)
    clock = FakeClock()
    with pytest.raises(RateLimiterStoreError) as raised:
        await _one_call(redis_server, clock)
    assert isinstance(raised.value, RateLimiterUnavailableError)  # handlers still catch it
    assert raised.value.key == key
    message = str(raised.value)
    assert key in message
    assert f"holds a {kind}" in message
    assert "unreachable" not in message
    assert clock.slept == []  # no tries for redis_down_after seconds: it answered
    assert await redis.type(key) == kind.encode()


async def test_a_key_of_another_kind_with_local_fallback_paces_alone(
    redis_server: RedisServer, redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """on_redis_down="local": a refusal paces this process alone, and says so once."""
    key = account_key(KEY)
    await redis.rpush(key, "a")
    clock = FakeClock()
    with caplog.at_level(logging.WARNING, logger="twochat_voip"):
        assert await _one_call(redis_server, clock, on_redis_down="local")
    warnings = [r.getMessage() for r in caplog.records if "pacing this process alone" in r.message]
    assert len(warnings) == 1
    assert "holds a list" in warnings[0]


async def test_a_long_retry_after_is_shared_for_ten_minutes_at_most(
    redis_server: RedisServer, redis: Redis
) -> None:
    """A pause no longer than MAX_PAUSE is ever written, so the check above can tell
    a pause the limiter wrote from one it never would."""
    async with RedisRateLimiter(redis_server.url, api_key=KEY, requests_per_minute=600) as limiter:
        limiter.feedback(sent_at=await limiter.acquire(), status=429, retry_after=3 * 3600.0)
    assert 590_000 < await redis.pttl(account_key(KEY)) <= 600_000


async def test_a_read_only_replica_counts_as_down_not_refused(
    redis_server: RedisServer, redis: Redis
) -> None:
    """READONLY (a replica, as in a failover) passes: tried for redis_down_after, then
    RateLimiterUnavailableError, not RateLimiterStoreError."""
    await redis.replicaof("127.0.0.1", "1")
    clock = FakeClock()
    with pytest.raises(RateLimiterUnavailableError, match="unreachable") as raised:
        await _one_call(redis_server, clock)
    assert not isinstance(raised.value, RateLimiterStoreError)
    assert sum(clock.slept) >= 5.0  # tried for redis_down_after


async def test_a_pause_refused_by_redis_is_kept_here_and_logged(
    redis_server: RedisServer, redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """A list at the key when a 429's pause is shared: logged, the process still holds."""
    async with RedisRateLimiter(redis_server.url, api_key=KEY, requests_per_minute=600) as limiter:
        sent_at = await limiter.acquire()
        await redis.delete(account_key(KEY))  # (the schedule's hash, replaced by a list)
        await redis.rpush(account_key(KEY), "a")
        with caplog.at_level(logging.WARNING, logger="twochat_voip"):
            limiter.feedback(sent_at=sent_at, status=429, retry_after=30.0)
            await limiter.aclose()
    assert "could not share a" in caplog.text
    assert "RateLimiterStoreError" in caplog.text
