"""RedisRateLimiter against a real redis-server on 127.0.0.1 (started per test)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

import pytest
import pytest_asyncio
from fake_clock import FakeClock
from redis.asyncio import Redis

from twochat_voip import (
    ClientClosedError,
    MissingAPIKeyError,
    RateLimiter,
    RateLimitError,
    RateLimiterUnavailableError,
    TwoChatError,
    VoIPClient,
    set_testing,
)
from twochat_voip.redis import DEFAULT_KEY_PREFIX, RedisRateLimiter, account_key
from twochat_voip.testing import FakeTwoChatServer, Fault, RedisServer, generate_cdrs

KEY = "test-key-a1b2c3d4e5f6"


@pytest_asyncio.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    """A client of the test's redis-server, for looking at what the limiter keeps."""
    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


MakeLimiter = Callable[..., RedisRateLimiter]


@pytest_asyncio.fixture
async def make_limiter(redis_server: RedisServer) -> AsyncIterator[MakeLimiter]:
    """Build limiters on the test's Redis (each with its own connections, as separate
    processes would have); all closed after the test."""
    made: list[RedisRateLimiter] = []

    def make(**options: Any) -> RedisRateLimiter:
        options.setdefault("api_key", KEY)
        limiter = RedisRateLimiter(redis_server.url, **options)
        made.append(limiter)
        return limiter

    yield make
    for limiter in made:
        await limiter.aclose()


async def test_satisfies_the_rate_limiter_protocol(make_limiter: MakeLimiter, redis: Redis) -> None:
    """A RedisRateLimiter is what VoIPClient(rate_limiter=...) takes: the client's
    requests take their slots in Redis, and a Retry-After it is told is shared."""
    limiter = make_limiter(requests_per_minute=60)
    assert isinstance(limiter, RateLimiter)
    async with (
        FakeTwoChatServer(api_key=KEY) as server,
        VoIPClient(
            api_key=KEY, base_url=server.base_url, rate_limiter=limiter, max_retries=0
        ) as voip,
    ):
        server.fail_next(Fault(status=429, retry_after=30))
        with pytest.raises(RateLimitError):
            await voip.get_call(server.call_uuids[0])
        assert server.request_count == 1
    await limiter.aclose()  # finishes sharing the pause
    stored = await redis.hgetall(limiter.key)
    assert set(stored) == {b"tat", b"paused_until"}


def test_key_is_a_hash_of_the_api_key_never_the_key() -> None:
    """The Redis key names the account by a hash: stable, distinct, and not the key."""
    key = account_key(KEY)
    assert key.startswith(f"{DEFAULT_KEY_PREFIX}:{{")
    assert KEY not in key
    assert account_key(KEY) == key
    assert account_key(f" {KEY}\n") == key
    assert account_key("another-key") != key
    assert account_key(KEY, "app").startswith("app:{")


async def test_repr_and_key_property_hide_the_api_key(
    make_limiter: MakeLimiter,
) -> None:
    """Neither repr nor any attribute of the limiter carries the raw key."""
    limiter = make_limiter(requests_per_minute=600)
    assert limiter.key == account_key(KEY)
    assert KEY not in repr(limiter)
    assert "600" in repr(limiter)
    assert all(KEY not in repr(value) for value in vars(limiter).values())


async def test_key_defaults_to_the_environment(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without api_key the account is TWOCHAT_API_KEY's, as for the client."""
    monkeypatch.setenv("TWOCHAT_API_KEY", KEY)
    async with RedisRateLimiter(redis_server.url, requests_per_minute=60) as limiter:
        assert limiter.key == account_key(KEY)


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"requests_per_minute": 0}, ValueError),
        ({"requests_per_minute": 60, "burst": 0}, ValueError),
        ({"requests_per_minute": 60, "pause_on_rate_limit": -1}, ValueError),
        ({"requests_per_minute": 60, "redis_down_after": -1}, ValueError),
        ({"requests_per_minute": 60, "on_redis_down": "ignore"}, ValueError),
        ({"requests_per_minute": 60, "api_key": " "}, MissingAPIKeyError),
    ],
)
def test_bad_options_are_refused(options: dict[str, object], error: type[Exception]) -> None:
    """Each bad option raises its own clear error before anything connects."""
    options.setdefault("api_key", KEY)
    with pytest.raises(error):
        RedisRateLimiter("redis://127.0.0.1:1/0", **options)  # type: ignore[arg-type]


async def test_nothing_in_redis_carries_the_api_key(
    make_limiter: MakeLimiter, redis: Redis
) -> None:
    """After requests and a pause, Redis holds one hashed key and no trace of the key."""
    limiter = make_limiter(requests_per_minute=60_000)
    for _ in range(3):
        await limiter.acquire()
    limiter.feedback(sent_at=time.monotonic(), status=429, retry_after=0.5)
    await limiter.aclose()  # finishes sharing the pause
    keys = [key.decode() async for key in redis.scan_iter()]
    assert keys == [account_key(KEY)]
    stored = await redis.hgetall(keys[0])
    assert b"paused_until" in stored
    assert set(stored) <= {b"tat", b"paused_until"}
    assert all(KEY.encode() not in value for value in stored.values())


async def test_limiters_share_one_schedule(make_limiter: MakeLimiter) -> None:
    """Three limiters (as three processes would) together keep one rate, not three."""
    # The waits Redis hands out are recorded, not slept: twelve requests asked for
    # within milliseconds get slots 50 ms apart on one schedule.
    clock = FakeClock()
    limiters = [  # one per 50 ms
        make_limiter(requests_per_minute=1200, clock=clock, sleep=clock.sleep) for _ in range(3)
    ]

    async def take(limiter: RedisRateLimiter, count: int) -> None:
        for _ in range(count):
            await limiter.acquire()

    await asyncio.gather(*(take(x, 4) for x in limiters))
    waits = sorted([0.0, *clock.slept])  # the first request did not wait
    assert len(waits) == 12
    assert waits[-1] >= 11 * 0.05 * 0.95  # three schedules would end at 3 * 50 ms
    gaps = [b - a for a, b in itertools.pairwise(waits)]
    assert min(gaps) >= 0.05 * 0.8


async def test_one_round_trip_per_request(make_limiter: MakeLimiter, redis: Redis) -> None:
    """Each acquire is one EVALSHA; the reads and writes run inside it, on the server."""
    limiter = make_limiter(requests_per_minute=600_000)
    await limiter.acquire()  # loads the script
    await redis.config_resetstat()
    for _ in range(5):
        await limiter.acquire()
    stats = await redis.info("commandstats")
    calls = {name: entry["calls"] for name, entry in stats.items()}
    calls.pop("cmdstat_config|resetstat", None)
    calls.pop("cmdstat_info", None)
    in_script = ("time", "hmget", "hset", "pexpire")
    assert calls == {"cmdstat_evalsha": 5} | {f"cmdstat_{name}": 5 for name in in_script}


async def test_burst_lets_early_requests_through(make_limiter: MakeLimiter) -> None:
    """burst=3 sends three at once after a quiet spell, then paces."""
    clock = FakeClock()
    limiter = make_limiter(requests_per_minute=60, burst=3, clock=clock, sleep=clock.sleep)
    for _ in range(3):
        await limiter.acquire()
    assert clock.slept == []
    await limiter.acquire()  # the fourth waits for its slot, a second after the first
    (wait,) = clock.slept
    assert 0.5 < wait <= 1.0


async def test_retry_after_pauses_every_limiter(make_limiter: MakeLimiter) -> None:
    """A Retry-After told to one process holds every other one too."""
    clock = FakeClock()
    told = make_limiter(requests_per_minute=60_000)
    other = make_limiter(requests_per_minute=60_000, clock=clock, sleep=clock.sleep)
    sent_at = await told.acquire()
    told.feedback(sent_at=sent_at, status=429, retry_after=0.4)
    await told.aclose()
    await other.acquire()
    (wait,) = clock.slept  # Redis told it to wait out the pause, less the moments since
    assert 0.3 <= wait <= 0.4


async def test_429_without_retry_after_pauses_for_pause_on_rate_limit(
    make_limiter: MakeLimiter,
) -> None:
    """A bare 429 holds every process for pause_on_rate_limit seconds."""
    clock = FakeClock()
    told = make_limiter(requests_per_minute=60_000, pause_on_rate_limit=0.4)
    other = make_limiter(requests_per_minute=60_000, clock=clock, sleep=clock.sleep)
    told.feedback(sent_at=await told.acquire(), status=429, retry_after=None)
    await told.aclose()
    await other.acquire()
    (wait,) = clock.slept  # Redis told it to wait out the pause, less the moments since
    assert 0.3 <= wait <= 0.4


async def test_a_503_with_retry_after_pauses_every_limiter(make_limiter: MakeLimiter) -> None:
    """A 503's Retry-After is the limiter's to wait out too (the retry policy does not)."""
    clock = FakeClock()
    told = make_limiter(requests_per_minute=60_000)
    other = make_limiter(requests_per_minute=60_000, clock=clock, sleep=clock.sleep)
    told.feedback(sent_at=await told.acquire(), status=503, retry_after=0.4)
    await told.aclose()
    await other.acquire()
    (wait,) = clock.slept  # Redis told it to wait out the pause, less the moments since
    assert 0.3 <= wait <= 0.4


async def test_testing_mode_skips_the_shared_pause(make_limiter: MakeLimiter, redis: Redis) -> None:
    """set_testing(True): a 429 with Retry-After pauses nobody, here or in Redis."""
    limiter = make_limiter(requests_per_minute=60_000)
    with set_testing(True):
        limiter.feedback(sent_at=await limiter.acquire(), status=429, retry_after=30)
    await limiter.aclose()
    assert await redis.hget(limiter.key, "paused_until") is None


async def test_answers_other_than_429_do_not_pause(make_limiter: MakeLimiter, redis: Redis) -> None:
    """200s and 5xx change nothing in Redis beyond the schedule."""
    limiter = make_limiter(requests_per_minute=60_000)
    for status in (200, 503, 404):
        limiter.feedback(sent_at=await limiter.acquire(), status=status, retry_after=None)
    await limiter.aclose()
    assert await redis.hget(limiter.key, "paused_until") is None


async def test_a_429_for_a_request_sent_before_the_pause_does_not_extend_it(
    make_limiter: MakeLimiter, redis: Redis
) -> None:
    """A volley of 429s for requests already in flight pauses once."""
    limiter = make_limiter(requests_per_minute=60_000, pause_on_rate_limit=5.0)
    early = await limiter.acquire()
    limiter.feedback(sent_at=early, status=429, retry_after=None)
    await limiter.aclose()
    first = await redis.hget(limiter.key, "paused_until")
    limiter.feedback(sent_at=early, status=429, retry_after=None)
    await limiter.aclose()
    assert first is not None
    assert await redis.hget(limiter.key, "paused_until") == first


async def test_a_pause_during_a_wait_makes_the_waiter_plan_again(
    make_limiter: MakeLimiter,
) -> None:
    """A request waiting for its slot when a 429 arrives leaves after the pause."""
    clock = FakeClock()
    limiter = make_limiter(requests_per_minute=600, clock=clock, sleep=clock.sleep)  # 100 ms a slot
    await limiter.acquire()
    clock.hold = True
    waiter = asyncio.create_task(limiter.acquire())
    await clock.asleep.wait()  # it waits for its slot
    limiter.feedback(sent_at=clock(), status=429, retry_after=0.3)
    clock.release()
    left = await waiter
    assert 0 < clock.slept[0] <= 0.1  # it was waiting for its slot...
    assert left >= 1000.0 + 0.3  # ...and left only once the pause was over


@pytest.mark.slow
async def test_keys_expire_when_their_schedule_is_over(
    make_limiter: MakeLimiter, redis: Redis
) -> None:
    """The account's key lives as long as its schedule or pause, then Redis is empty."""
    limiter = make_limiter(requests_per_minute=600)  # 100 ms a slot
    for _ in range(3):
        await limiter.acquire()
    assert 0 < await redis.pttl(limiter.key) <= 100
    limiter.feedback(sent_at=time.monotonic(), status=429, retry_after=0.3)
    await limiter.aclose()
    ttl = await redis.pttl(limiter.key)
    assert 150 < ttl <= 300
    # Expiry runs on redis-server's own clock: this is a real wait by nature.
    await asyncio.sleep(ttl / 1000 + 0.01)
    assert not await redis.exists(limiter.key)
    # Redis's own expiry cycle (10 a second) frees the memory too, unasked:
    for _ in range(20):
        if not await redis.dbsize():
            break
        await asyncio.sleep(0.05)
    assert await redis.dbsize() == 0


async def test_redis_down_fails_closed_without_sending(
    make_limiter: MakeLimiter, redis_server: RedisServer
) -> None:
    """By default a Redis that stays down raises a typed error and no request leaves."""
    clock = FakeClock()
    limiter = make_limiter(
        requests_per_minute=600, redis_down_after=0.2, clock=clock, sleep=clock.sleep
    )
    redis_server.stop()
    async with (
        FakeTwoChatServer(api_key=KEY) as server,
        VoIPClient(api_key=KEY, base_url=server.base_url, rate_limiter=limiter) as voip,
    ):
        with pytest.raises(RateLimiterUnavailableError, match="nothing was sent") as caught:
            await voip.get_call("CDR1")
        # Tried (with backoff) for redis_down_after on the clock...
        assert sum(clock.slept) >= 0.2
        tried_for = len(clock.slept)
        with pytest.raises(RateLimiterUnavailableError):
            await voip.get_call("CDR2")  # known down: fails at once
        assert len(clock.slept) == tried_for  # ...and not tried again so soon
        assert server.request_count == 0
        assert voip.stats.failed == 2
    assert isinstance(caught.value, TwoChatError)
    assert not limiter.redis_available
    assert KEY not in str(caught.value) + repr(caught.value) + repr(caught.value.__cause__)


async def test_redis_down_in_bulk_answers_every_id_once_with_the_error(
    make_limiter: MakeLimiter, redis_server: RedisServer
) -> None:
    """A bulk run with Redis down loses nothing: each id gets the typed error."""
    limiter = make_limiter(requests_per_minute=600, redis_down_after=0.1)
    redis_server.stop()
    ids = [f"CDR{i}" for i in range(20)]
    async with (
        FakeTwoChatServer(api_key=KEY) as server,
        VoIPClient(api_key=KEY, base_url=server.base_url, rate_limiter=limiter) as voip,
        aclosing(voip.get_calls(ids, concurrency=4)) as results,
    ):
        answered = [(r.call_uuid, type(r.error)) async for r in results]
        assert server.request_count == 0
    assert sorted(answered) == sorted((i, RateLimiterUnavailableError) for i in ids)


async def test_redis_down_with_local_fallback_paces_locally_then_returns(
    make_limiter: MakeLimiter, redis_server: RedisServer
) -> None:
    """on_redis_down="local" keeps sending at the local rate, and goes back to Redis."""
    clock = FakeClock()
    limiter = make_limiter(
        requests_per_minute=60,
        on_redis_down="local",
        local_requests_per_minute=1200,
        redis_down_after=0.1,
        clock=clock,
        sleep=clock.sleep,
    )
    redis_server.stop()
    await limiter.acquire()  # tries Redis for redis_down_after, then goes local
    assert not limiter.redis_available
    trying = len(clock.slept)
    for _ in range(4):
        await limiter.acquire()
    assert clock.slept[trying:] == pytest.approx([0.05] * 4)  # 1200/min, not 60/min
    redis_server.start()
    await limiter.acquire()  # Redis is tried again only once a second
    assert not limiter.redis_available
    clock.now += 1.5
    await limiter.acquire()
    assert limiter.redis_available


@pytest.mark.slow
async def test_a_redis_restart_mid_run_loses_nothing(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis going away for half a second in a bulk run: every id fetched once, no 429s."""
    caplog.set_level(logging.WARNING, logger="twochat_voip")
    records = generate_cdrs(60, seed=7)
    async with (
        FakeTwoChatServer(cdrs=records, api_key=KEY, requests_per_minute=1200) as server,
        RedisRateLimiter(redis_server.url, api_key=KEY, requests_per_minute=1200) as limiter,
        VoIPClient(api_key=KEY, base_url=server.base_url, rate_limiter=limiter) as voip,
        aclosing(voip.get_calls(server.call_uuids, concurrency=8)) as results,
    ):

        async def restart() -> None:
            await server.wait_for_requests(20)
            redis_server.stop()
            await asyncio.sleep(0.5)  # the outage itself, in real time: not a synchronisation
            redis_server.start()

        restarting = asyncio.create_task(restart())
        fetched = [r.call_uuid async for r in results if r.ok]
        await restarting
        assert sorted(fetched) == sorted(server.call_uuids)
        assert server.status_counts[429] == 0
        assert server.request_count == 60
    assert limiter.redis_available
    messages = [record.getMessage() for record in caplog.records]
    assert any("unreachable" in m for m in messages)
    assert any("reachable again" in m for m in messages)
    assert all(KEY not in m for m in messages)


async def test_a_pause_that_cannot_be_shared_is_kept_locally(
    make_limiter: MakeLimiter,
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Redis down when a 429 arrives: a warning, and this process still holds off."""
    clock = FakeClock()
    limiter = make_limiter(
        requests_per_minute=60_000,
        on_redis_down="local",
        redis_down_after=0.0,
        clock=clock,
        sleep=clock.sleep,
    )
    await limiter.acquire()
    redis_server.stop()
    limiter.feedback(sent_at=clock(), status=429, retry_after=0.3)
    await limiter.acquire()
    assert clock.slept == [pytest.approx(0.3)]
    for _ in range(500):  # the sharer's try may still be failing: a guard, not a wait
        if any("only this process holds off" in r.getMessage() for r in caplog.records):
            break
        await asyncio.sleep(0.01)
    assert any("only this process holds off" in r.getMessage() for r in caplog.records)


async def test_a_client_passed_in_is_left_open(redis_server: RedisServer, redis: Redis) -> None:
    """aclose() closes only a Redis client the limiter made from a URL."""
    async with RedisRateLimiter(redis, api_key=KEY, requests_per_minute=60) as limiter:
        await limiter.acquire()
    assert await redis.ping()


WORKER = """
import asyncio, json, os, sys
from contextlib import aclosing
from typing import Any
from twochat_voip import VoIPClient
from twochat_voip.redis import RedisRateLimiter

async def main(redis_url, base_url, rate, ids):
    async with (
        RedisRateLimiter(redis_url, requests_per_minute=rate) as limiter,
        VoIPClient(base_url=base_url, rate_limiter=limiter) as voip,
        aclosing(voip.get_calls(ids, concurrency=4)) as results,
    ):
        fetched = [r.call_uuid async for r in results if r.ok]
        print(json.dumps({"fetched": fetched, "requests": voip.stats.requests}))

asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4].split(",")))
"""


@pytest.mark.slow
async def test_processes_share_one_limit(redis_server: RedisServer) -> None:
    """Four OS processes, each with its own limiter, keep the account's one rate."""
    per_minute, processes = 1200.0, 4  # one request per 50 ms for all of them
    async with FakeTwoChatServer(
        cdrs=generate_cdrs(48, seed=3), api_key=KEY, requests_per_minute=per_minute
    ) as server:
        ids = server.call_uuids
        shares = [ids[i::processes] for i in range(processes)]
        workers = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                WORKER,
                redis_server.url,
                server.base_url,
                str(per_minute),
                ",".join(share),
                stdout=asyncio.subprocess.PIPE,
                env={**os.environ, "TWOCHAT_API_KEY": KEY},
            )
            for share in shares
        ]
        outputs = [json.loads((await worker.communicate())[0]) for worker in workers]
        assert [worker.returncode for worker in workers] == [0] * processes
        received = sorted(request.received_at for request in server.requests)
    assert sorted(i for output in outputs for i in output["fetched"]) == sorted(ids)
    # Pacing at 1200/min each, four processes would have drawn ~35 429s.
    assert server.status_counts[429] <= 1
    assert sum(output["requests"] for output in outputs) == server.request_count
    # 48 requests at one per 50 ms span at least 47 intervals, less the burst of 5.
    assert received[-1] - received[0] >= (48 - 5) * 0.05 * 0.9


CORE_WITHOUT_REDIS = """
import asyncio, sys
sys.modules["redis"] = None  # as if the redis extra were not installed

import twochat_voip
from twochat_voip import VoIPClient
from twochat_voip.testing import FakeTwoChatServer

async def main():
    async with FakeTwoChatServer() as server, VoIPClient(
        api_key=server.api_key, base_url=server.base_url, requests_per_minute=600
    ) as voip:
        cdr = await voip.get_call(server.call_uuids[0])
    print("fetched", cdr.uuid)

asyncio.run(main())
try:
    import twochat_voip.redis
except ImportError as exc:
    print("ImportError:", exc)
"""


@pytest.mark.slow
async def test_core_works_without_the_redis_package() -> None:
    """Without redis installed the SDK imports and fetches; only twochat_voip.redis says
    what to install."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CORE_WITHOUT_REDIS,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert lines[0] == "fetched CDR8b3e7a1f-6c94-4d52-ae17-5f2b9d4c8e63"
    assert "pip install 'twochat-voip[redis]'" in lines[1]


async def test_a_shorter_pause_within_a_longer_one_is_not_sent_again(
    make_limiter: MakeLimiter, redis: Redis
) -> None:
    """Only a 429 that lengthens the pause costs a round trip to Redis."""
    limiter = make_limiter(requests_per_minute=60_000)
    assert limiter.requests_per_minute == 60_000
    limiter.feedback(sent_at=await limiter.acquire(), status=429, retry_after=0.2)
    await asyncio.wait_for(_paused_until(redis, limiter.key), timeout=5)  # shared: both
    await redis.config_resetstat()  # scripts are loaded now
    limiter.feedback(sent_at=time.monotonic(), status=429, retry_after=2.0)
    limiter.feedback(sent_at=time.monotonic(), status=429, retry_after=0.5)
    limiter.feedback(sent_at=time.monotonic(), status=429, retry_after=0.0)
    await limiter.aclose()  # shares what the sharer has not
    stats = await redis.info("commandstats")
    assert stats["cmdstat_evalsha"]["calls"] == 1


def test_redis_server_restarts_on_the_same_port(redis_server: RedisServer) -> None:
    """The helper's server stops and comes back where it was."""
    port = redis_server.port
    assert redis_server.running
    assert redis_server.start() is redis_server  # already running: nothing to do
    redis_server.stop()
    assert not redis_server.running
    redis_server.stop()  # stopping twice is harmless
    redis_server.start()
    assert redis_server.running
    assert redis_server.port == port
    assert redis_server.url == f"redis://127.0.0.1:{port}/0"


def test_redis_server_without_the_binary_says_so() -> None:
    """A missing redis-server is a clear FileNotFoundError, not a hang."""
    with pytest.raises(FileNotFoundError, match="no-such-redis-server"):
        RedisServer(executable="no-such-redis-server")
    with pytest.raises(RuntimeError, match="did not start"), RedisServer(executable="/bin/false"):
        pass


async def test_a_cancelled_wait_frees_the_process_queue(make_limiter: MakeLimiter) -> None:
    """Cancelling a request that waits for its slot lets the next one through."""
    clock = FakeClock()
    limiter = make_limiter(requests_per_minute=600, clock=clock, sleep=clock.sleep)  # 100 ms a slot
    await limiter.acquire()
    clock.hold = True
    waiting = asyncio.create_task(limiter.acquire())
    await clock.asleep.wait()  # it waits for its slot (100 ms on)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    clock.release()
    queued = asyncio.create_task(limiter.acquire())
    # A stuck queue would never let it through; the timeout only turns that into a
    # failure instead of a hang.
    done, _ = await asyncio.wait([queued], timeout=5.0)
    assert done == {queued}
    _, wait = clock.slept
    assert 0.1 < wait <= 0.2  # it took the next free slot (200 ms on): no stuck queue


async def test_a_pause_is_shared_by_the_waiter_it_wakes(
    make_limiter: MakeLimiter, redis: Redis
) -> None:
    """A 429 while a request waits for a slot a second away: the waiter wakes, tells
    Redis of the pause at once (no task of its own), and the other process holds off."""
    clock, other_clock = FakeClock(), FakeClock()
    told = make_limiter(requests_per_minute=60, clock=clock, sleep=clock.sleep)
    other = make_limiter(requests_per_minute=60, clock=other_clock, sleep=other_clock.sleep)
    await told.acquire()
    clock.hold = True  # the waiter's sleep toward its slot lasts until the test says
    waiter = asyncio.create_task(told.acquire())
    await clock.asleep.wait()
    tasks = len(asyncio.all_tasks())
    told.feedback(sent_at=clock(), status=429, retry_after=3.0)
    assert len(asyncio.all_tasks()) == tasks  # nothing left running in the background
    # Shared before the slot the waiter slept toward would have come (a second on).
    shared = await asyncio.wait_for(_paused_until(redis, told.key), timeout=0.5)
    assert shared > 0
    assert not waiter.done()  # it waits out the pause now
    assert clock.slept[-1] == 3.0
    await other.acquire()
    assert 2.5 < other_clock.slept[-1] <= 3.0  # Redis held the other process too
    waiter.cancel()


async def _paused_until(redis: Redis, key: str) -> int:
    """Poll until the account's schedule holds a pause; its end (Redis microseconds)."""
    while True:
        value = await redis.hget(key, "paused_until")
        if value is not None:
            return int(value)
        await asyncio.sleep(0.01)


async def test_a_pause_is_shared_even_if_this_process_sends_nothing_more(
    make_limiter: MakeLimiter, redis: Redis
) -> None:
    """A 429 that ends a call (no retry, no further request) still holds every other
    process: the limiter's sharer tells Redis at once."""
    told = make_limiter(requests_per_minute=60_000)
    other_clock = FakeClock()
    other = make_limiter(requests_per_minute=60_000, clock=other_clock, sleep=other_clock.sleep)
    told.feedback(sent_at=await told.acquire(), status=429, retry_after=3.0)
    # A guard against a hang, not a wait: the sharer runs within a few loop steps.
    assert await asyncio.wait_for(_paused_until(redis, told.key), timeout=5) > 0
    await other.acquire()
    assert 2.5 < other_clock.slept[-1] <= 3.0


async def test_a_closed_limiter_sends_nothing_more(make_limiter: MakeLimiter, redis: Redis) -> None:
    """After aclose() an acquire raises ClientClosedError and opens no connection."""
    limiter = make_limiter(requests_per_minute=60_000)
    await limiter.acquire()
    await limiter.aclose()
    await limiter.aclose()  # idempotent
    await redis.config_resetstat()
    with pytest.raises(ClientClosedError, match="closed"):
        await limiter.acquire()
    stats = await redis.info("commandstats")
    assert "cmdstat_evalsha" not in stats


async def test_closing_waits_out_a_share_that_swallows_cancellation(
    make_limiter: MakeLimiter,
) -> None:
    """redis-py can swallow a cancellation that lands in a command; closing must not
    hang on the sharer then (it did, once in a few runs of the whole suite)."""
    limiter = make_limiter(requests_per_minute=60_000)
    sharing = asyncio.Event()

    async def stubborn(_seconds: float) -> None:
        sharing.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0.3)  # as a command that ignores its cancellation

    limiter._schedule.pause = stubborn  # type: ignore[method-assign,assignment]
    limiter.feedback(sent_at=await limiter.acquire(), status=429, retry_after=5.0)
    await asyncio.wait_for(sharing.wait(), timeout=5)
    await asyncio.wait_for(limiter.aclose(), timeout=5)  # a guard: it hung for ever
