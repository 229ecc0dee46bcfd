"""get_calls and iter_call_history against the fake 2Chat server: every id answered
once, order, laziness, cancellation, rate limits, counters."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from typing import Any

import pytest
from fake_clock import FakeClock

import twochat_voip as tv
from twochat_voip import CallResult, VoIPClient, set_testing
from twochat_voip.testing import FakeTwoChatServer, Fault, generate_cdrs

pytestmark = pytest.mark.virtual_time  # pacing, backoff and give-ups in the loop's time


def client_for(server: FakeTwoChatServer, *, socket: bool = False, **options: Any) -> VoIPClient:
    """A client of ``server``, in memory unless the test needs a socket."""
    if not socket:
        options["transport"] = server.transport()
    return VoIPClient(api_key=server.api_key or "any-key", base_url=server.base_url, **options)


def client_tasks() -> set[asyncio.Task[Any]]:
    """Running tasks, less the fake server's own (aiohttp.web's request handlers)."""
    return {t for t in asyncio.all_tasks() if "RequestHandler." not in repr(t.get_coro())}


async def drain(results: AsyncIterator[CallResult]) -> None:
    async for result in results:
        assert result.ok


async def collect(client: VoIPClient, ids: Any, **options: Any) -> list[CallResult]:
    async with aclosing(client.get_calls(ids, **options)) as results:
        return [result async for result in results]


@pytest.mark.slow
async def test_every_id_answered_exactly_once_despite_faults() -> None:
    """500 ids with 404s, 503s and dropped connections: 500 results, one per id."""
    records = generate_cdrs(500, seed=11)
    async with FakeTwoChatServer(cdrs=records) as server:
        missing = [f"CDRgone{n}" for n in range(20)]
        server.fail_randomly(
            0.15, [Fault(status=503), Fault(drop="before_status"), Fault(drop="mid_body")], seed=4
        )
        ids = [r["uuid"] for r in records] + missing
        with set_testing(True, attempts=10):
            async with client_for(server, socket=True) as voip:
                results = await collect(voip, ids, concurrency=16)
                stats = voip.stats
    assert collections.Counter(r.call_uuid for r in results) == collections.Counter(ids)
    failed = {r.call_uuid for r in results if not r.ok}
    assert failed == set(missing)
    assert all(isinstance(r.error, tv.NotFoundError) for r in results if not r.ok)
    fetched = {r.cdr.uuid: r.cdr for r in results if r.cdr is not None}
    assert [tv.converter.unstructure(fetched[r["uuid"]]) for r in records] == records
    assert stats.requests == len(server.requests)
    assert stats.retries == len(server.requests) - len(ids)
    assert stats.failed == len(missing)
    assert stats.succeeded == len(records)


async def test_malformed_ids_become_failed_results() -> None:
    """Bad ids are answered with InvalidCallUUIDError (a ValueError); nothing is sent."""
    async with FakeTwoChatServer() as server, client_for(server) as voip:
        good = server.call_uuids[0]
        results = await collect(voip, ["../x", good, 42, ""], ordered=True)
    assert [r.ok for r in results] == [False, True, False, False]
    assert [r.call_uuid for r in results] == ["../x", good, "42", ""]
    assert all(isinstance(r.error, ValueError) for r in results if not r.ok)
    assert [r.index for r in results] == [0, 1, 2, 3]
    assert len(server.requests) == 1


async def test_ordered_results_follow_the_input() -> None:
    """ordered=True yields in input order even when answers finish out of order."""
    records = generate_cdrs(60, seed=5)
    async with FakeTwoChatServer(cdrs=records) as server:
        server.fail_randomly(0.3, [Fault(delay=0.05), Fault(delay=0.01)], seed=2)
        # A rate far above the run's: no slow start, whose pacing only added waits.
        async with client_for(server, requests_per_minute=60_000) as voip:
            results = await collect(voip, server.call_uuids, concurrency=8, ordered=True)
    assert [r.call_uuid for r in results] == server.call_uuids


async def test_unordered_results_come_as_they_complete() -> None:
    """Without ordered, a slow first id does not hold back the rest."""
    records = generate_cdrs(10, seed=6)
    async with FakeTwoChatServer(cdrs=records) as server:
        server.fail_next(Fault(delay=0.3), call_uuid=records[0]["uuid"])
        # Paced far above what it sends: not the slow start of an adaptive client.
        async with client_for(server, requests_per_minute=60_000) as voip:
            results = await collect(voip, server.call_uuids, concurrency=4)
    assert results[-1].call_uuid == records[0]["uuid"]


async def test_never_more_than_concurrency_in_flight() -> None:
    """A pool of `concurrency` workers: the server never holds more requests at once."""
    records = generate_cdrs(80, seed=7)
    async with FakeTwoChatServer(cdrs=records) as server:
        server.fail_randomly(1.0, [Fault(delay=0.02)])
        async with client_for(server, requests_per_minute=60_000) as voip:
            results = await collect(voip, server.call_uuids, concurrency=5)
    assert len(results) == 80
    assert server.max_in_flight == 5


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_input_is_read_lazily(kind: str) -> None:
    """A huge id stream is read only a small window ahead of what was consumed."""
    async with FakeTwoChatServer(api_key=None) as server:
        read = 0
        template = server.call_uuids[0]

        def plain() -> Iterator[str]:
            nonlocal read
            while True:
                read += 1
                yield template

        async def streamed() -> AsyncIterator[str]:
            for value in plain():
                yield value

        source = plain() if kind == "sync" else streamed()
        taken = 0
        async with (
            client_for(server, requests_per_minute=60_000) as voip,  # no slow start
            aclosing(voip.get_calls(source, concurrency=4)) as results,
        ):
            async for _ in results:
                taken += 1
                assert read <= taken + 2 * 4 + 1
                if taken == 50:
                    break
    assert read <= 50 + 2 * 4 + 1


async def test_ten_million_id_generator_just_works() -> None:
    """A generator of ten million ids is not materialised: the first results come at once."""
    read = 0

    def ids(uuid: str) -> Iterator[str]:
        nonlocal read
        for _ in range(10_000_000):
            read += 1
            yield uuid

    async with FakeTwoChatServer(api_key=None) as server, client_for(server) as voip:
        async with aclosing(voip.get_calls(ids(server.call_uuids[0]))) as results:
            first = await anext(results)
            # The first result came after reading a few ids ahead of 16 workers, not
            # ten million (what "at once" meant, counted instead of timed).
            assert read <= 1 + 2 * 16 + 1
        assert first.ok


async def test_input_error_ends_the_run_after_answering_what_was_read() -> None:
    """An exception from the input is raised once the ids read before it are answered."""
    async with FakeTwoChatServer() as server:
        good = server.call_uuids[0]

        def broken() -> Iterator[str]:
            yield good
            yield good
            raise OSError("disk gone")

        seen: list[CallResult] = []

        async def consume(voip: VoIPClient) -> None:
            async for result in voip.get_calls(broken()):
                seen.append(result)  # noqa: PERF401 - kept as they come, before the raise

        async with client_for(server) as voip:
            with pytest.raises(OSError, match="disk gone"):
                await consume(voip)
    assert [r.ok for r in seen] == [True, True]


async def test_breaking_out_stops_every_worker() -> None:
    """aclose() after a break cancels the workers and in-flight requests promptly."""
    records = generate_cdrs(200, seed=8)
    async with FakeTwoChatServer(cdrs=records) as server:
        # The rest are never answered: a run that waited for its requests in flight
        # would never end. The timeout only turns that into a failure, not a hang.
        server.fail_randomly(1.0, [Fault(hang=True)])
        server.fail_next(*[Fault()] * 3)
        before = client_tasks()
        async with client_for(server, socket=True) as voip, asyncio.timeout(10):
            async with aclosing(voip.get_calls(server.call_uuids, concurrency=8)) as results:
                async for _ in results:
                    break
            assert client_tasks() == before
        assert len(server.requests) <= 3 + 8


async def test_cancelling_the_consumer_stops_the_run() -> None:
    """Cancelling the task that iterates leaves no task behind."""
    records = generate_cdrs(100, seed=9)
    async with FakeTwoChatServer(cdrs=records) as server:
        server.fail_randomly(1.0, [Fault(delay=5)])
        before = client_tasks()
        async with client_for(server) as voip:
            consumer = asyncio.create_task(collect(voip, server.call_uuids, concurrency=4))
            await server.wait_for_requests(4)
            consumer.cancel()
            with pytest.raises(asyncio.CancelledError):
                await consumer
            assert client_tasks() == before


async def test_closing_the_client_ends_a_run() -> None:
    """aclose() during a run ends it with ClientClosedError, not a flood of failures."""
    records = generate_cdrs(50, seed=10)
    async with FakeTwoChatServer(cdrs=records) as server:
        server.fail_randomly(1.0, [Fault(delay=5)])
        voip = client_for(server)
        consumer = asyncio.create_task(collect(voip, server.call_uuids, concurrency=4))
        await server.wait_for_requests(4)
        await voip.aclose()
        with pytest.raises(tv.ClientClosedError):
            await consumer


async def test_configured_rate_is_held_without_429s() -> None:
    """requests_per_minute at the server's limit: N/R, no 429s."""
    records = generate_cdrs(40, seed=12)
    loop = asyncio.get_running_loop()
    async with (
        FakeTwoChatServer(cdrs=records, requests_per_minute=1200) as server,
        client_for(server, requests_per_minute=1200) as voip,
    ):
        started = loop.time()
        results = await collect(voip, server.call_uuids, concurrency=8)
        took = loop.time() - started
        stats = voip.stats
    assert all(r.ok for r in results)
    assert stats.rate_limited == 0
    assert took == pytest.approx(39 / 20)  # 39 intervals of 50 ms, in the loop's time


@pytest.mark.slow
async def test_unknown_rate_is_found_with_zero_failures() -> None:
    """No rate given: the client adapts to the server's limit and loses nothing."""
    records = generate_cdrs(400, seed=13)
    async with (
        FakeTwoChatServer(cdrs=records, requests_per_minute=6000) as server,
        client_for(server, max_retries=0) as voip,
    ):
        started = asyncio.get_running_loop().time()
        results = await collect(voip, server.call_uuids, concurrency=16)
        wall = asyncio.get_running_loop().time() - started
        stats = voip.stats
    ideal = 400 / 100
    assert all(r.ok for r in results)
    assert stats.rate_limited < 0.15 * stats.requests
    # Finding a real server's limit is the behaviour: a throughput measured in wall
    # time, against the 4 s that limit allows, with a generous margin.
    assert wall < 1.6 * ideal
    assert voip.rate_limiter.requests_per_minute is not None  # type: ignore[attr-defined]


@pytest.mark.slow
async def test_retry_after_pauses_every_worker() -> None:
    """One 429 with Retry-After: 1 stops all workers, not only the one told."""
    records = generate_cdrs(200, seed=14)
    async with FakeTwoChatServer(cdrs=records) as server:
        server.fail_next(Fault(status=429, retry_after=1, delay=0.2))
        async with client_for(server) as voip:
            results = await collect(voip, server.call_uuids, concurrency=8)
    assert all(r.ok for r in results)
    told = next(r for r in server.requests if r.status == 429)
    told_at = told.received_at + 0.2
    quiet = [r for r in server.requests if told_at + 0.05 < r.received_at < told_at + 0.95]
    assert quiet == []
    assert any(r.received_at >= told_at + 0.95 for r in server.requests)


async def test_429s_do_not_use_up_retries_in_bulk() -> None:
    """A record answered 429 five times is still fetched with max_retries=1."""
    async with FakeTwoChatServer() as server:
        server.fail_next(*[Fault(status=429)] * 5)
        async with client_for(server, max_retries=1, requests_per_minute=6000) as voip:
            (result,) = await collect(voip, server.call_uuids)
            stats = voip.stats
    assert result.ok
    assert stats.rate_limited == 5
    assert stats.requests == 6


async def test_endless_429s_end_the_record() -> None:
    """A server that only says 429 ends the record's run with RateLimitError."""
    async with FakeTwoChatServer() as server:
        server.fail_randomly(1.0, [Fault(status=429)])
        clock = FakeClock()  # the cuts the 429s cause pass in virtual time
        pace = tv.AdaptiveRateLimiter(60000, clock=clock, sleep=clock.sleep)
        async with client_for(server, rate_limiter=pace) as voip:
            (result,) = await collect(voip, server.call_uuids)
    assert isinstance(result.error, tv.RateLimitError)
    assert len(server.requests) == 50


async def test_bad_concurrency_is_refused() -> None:
    """concurrency must be at least 1."""
    async with FakeTwoChatServer() as server, client_for(server) as voip:
        with pytest.raises(ValueError, match="concurrency"):
            await collect(voip, [], concurrency=0)
        assert await collect(voip, []) == []


async def test_call_history_pages_until_empty() -> None:
    """iter_call_history walks the pages, filtered by direction when asked."""
    records = generate_cdrs(23, seed=15)
    async with (
        FakeTwoChatServer(cdrs=records, history_page_size=10) as server,
        client_for(server) as voip,
    ):
        everything = [r async for r in voip.iter_call_history()]
        inbound = [r async for r in voip.iter_call_history("inbound")]
        with pytest.raises(ValueError, match="direction"):
            await anext(voip.iter_call_history("sideways"))  # type: ignore[arg-type]
    assert [r.uuid for r in everything] == [r["uuid"] for r in records]
    assert all(r.agent is None for r in everything)
    assert {r.uuid for r in inbound} == {r["uuid"] for r in records if r["direction"] == "I"}
    pages = [r.query.get("page_number") for r in server.requests]
    assert pages[:4] == ["0", "1", "2", "3"]


async def test_history_page_that_is_not_a_list_is_invalid() -> None:
    """A history answer without a 'cdrs' list is a ResponseValidationError."""
    async with FakeTwoChatServer() as server:
        server.fail_next(Fault(body={"success": True, "cdrs": None}))
        async with client_for(server) as voip:
            with pytest.raises(tv.ResponseValidationError, match="'cdrs' list"):
                await anext(voip.iter_call_history())


def test_call_result_ok() -> None:
    """ok is True for a success, with its record, and False for a failure, with its error."""
    assert tv.CallSuccess(call_uuid="x", cdr=tv.CallDetailRecord(uuid="x")).ok
    assert not tv.CallFailure(call_uuid="x", error=ValueError("bad")).ok


async def test_an_unexpected_failure_is_still_an_answer() -> None:
    """Even a bug in a fetch answers its id (as a TwoChatError that keeps the cause)."""
    from twochat_voip._bulk_engine import iterate_bulk

    async def fetch(call_uuid: str, on_retry: object) -> tv.CallDetailRecord:
        if call_uuid == "boom":
            raise RuntimeError("bug")
        return tv.CallDetailRecord(uuid=call_uuid)

    results = [
        r async for r in iterate_bulk(fetch, ["a", "boom", "b"], concurrency=2, ordered=True)
    ]
    assert [r.ok for r in results] == [True, False, True]
    assert isinstance(results[1].error, tv.TwoChatError)
    assert isinstance(results[1].error.__cause__, RuntimeError)


def test_client_exposes_its_rate_limiter() -> None:
    """The limiter in force can be read (to log the adapted rate, say)."""
    pace = tv.AdaptiveRateLimiter(120)
    assert VoIPClient(api_key="k", rate_limiter=pace).rate_limiter is pace
    paced = VoIPClient(api_key="k", requests_per_minute=90).rate_limiter
    assert isinstance(paced, tv.AdaptiveRateLimiter)
    assert paced.requests_per_minute == 90
    with pytest.raises(ValueError, match="not both"):
        VoIPClient(api_key="k", rate_limiter=pace, requests_per_minute=60)


async def test_closing_the_client_stops_a_run_nobody_closed() -> None:
    """A break that keeps the generator referenced still leaves nothing running once
    the client closes."""
    records = generate_cdrs(100, seed=16)
    async with FakeTwoChatServer(cdrs=records) as server:
        before = client_tasks()
        voip = client_for(server)
        results = voip.get_calls(server.call_uuids, concurrency=4)
        async for _ in results:
            break
        await voip.aclose()
        await asyncio.sleep(0)  # one step for the cancelled workers to end: a yield, not a wait
        assert client_tasks() == before
        with pytest.raises(tv.ClientClosedError, match="closed during this run"):
            await drain(results)  # what was fetched already still comes first


async def test_break_without_aclosing_is_cleaned_up_promptly() -> None:
    """A plain break drops the generator; asyncio closes it and its workers at once."""
    records = generate_cdrs(100, seed=17)
    async with FakeTwoChatServer(cdrs=records) as server, client_for(server) as voip:
        server.fail_randomly(1.0, [Fault(delay=5)])
        server.fail_next(Fault())
        before = client_tasks()
        async for _ in voip.get_calls(server.call_uuids, concurrency=4):
            break
        # asyncio closes the dropped generator in a task of its own: give the loop a
        # few steps (steps, not time) for it and the workers it cancels to finish.
        for _ in range(50):
            if client_tasks() == before:
                break
            await asyncio.sleep(0)
        assert client_tasks() == before


async def test_history_that_repeats_a_page_stops() -> None:
    """A server ignoring page_number is not asked forever (a credit a page)."""
    records = generate_cdrs(3, seed=18)
    page = {"success": True, "count": 3, "page": 0, "cdrs": records}
    async with FakeTwoChatServer(cdrs=records) as server, client_for(server) as voip:
        server.fail_next(Fault(body=page), Fault(body=page))
        seen: list[str] = []

        async def walk() -> None:
            async for record in voip.iter_call_history():
                seen.append(record.uuid)  # noqa: PERF401 - kept as they come, before the raise

        with pytest.raises(tv.ResponseValidationError, match="repeats page 0"):
            await walk()
    assert seen == [r["uuid"] for r in records]
    assert server.request_count == 2


async def test_closing_before_the_run_starts_ends_it_at_once() -> None:
    """aclose() before the run's task took its first step: ClientClosedError, no hang."""
    async with FakeTwoChatServer() as server:
        voip = VoIPClient(api_key=server.api_key, base_url=server.base_url)
        first = asyncio.ensure_future(anext(voip.get_calls(server.call_uuids)))
        await asyncio.sleep(0)  # the generator has made its runner, not yet run it
        await voip.aclose()
        with pytest.raises(tv.ClientClosedError):
            await asyncio.wait_for(first, timeout=10)  # a guard: it hung for ever before
