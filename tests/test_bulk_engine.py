"""The bulk engine left running unattended, against faulty and hostile servers: stray
429s, a dead key, no credits, endless 429s, a budget, the plan's rate from the API,
and one owner of every wait (issue 11's problems, each as a test over sockets)."""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing, nullcontext
from typing import Any, Final

import pytest

import twochat_voip as tv
from twochat_voip import CallResult, VoIPClient, set_testing
from twochat_voip._bulk_engine import iterate_bulk
from twochat_voip.testing import EXAMPLE_CDR, FakeTwoChatServer, Fault, generate_cdrs

pytestmark = pytest.mark.virtual_time  # pacing, backoff and give-ups in the loop's time

CALL = EXAMPLE_CDR["uuid"]


def client_for(server: FakeTwoChatServer, *, socket: bool = False, **options: Any) -> VoIPClient:
    """A client of ``server``, in memory unless the test needs a socket (drops, hangs,
    aiohttp's timeouts)."""
    if not socket:
        options["transport"] = server.transport()
    return VoIPClient(api_key=server.api_key or "any-key", base_url=server.base_url, **options)


UNHURRIED: Final = 60_000
"""A rate far above what a test sends, for tests of give-up timing in tenths of a
second: an adaptive client's slow start (4 requests a second at first) is not what
they are about."""


async def collect(client: VoIPClient, ids: Any, **options: Any) -> list[CallResult]:
    async with aclosing(client.get_calls(ids, **options)) as results:
        return [result async for result in results]


def answered_once(results: Sequence[CallResult], count: int) -> bool:
    return sorted(r.index for r in results) == list(range(count))


# 1. Sporadic 429s must not be read as a limit.

STRAY_FAULTS = [Fault(status=503), Fault(status=500), Fault(status=502)]


async def timed_faulty_run(stray_429s: bool) -> tuple[float, list[CallResult], tv.ClientStats]:
    records = generate_cdrs(600, seed=41)
    async with FakeTwoChatServer(cdrs=records, log_requests=False) as server:
        faults = [*STRAY_FAULTS, *([Fault(status=429, retry_after=0)] * 2 if stray_429s else [])]
        # 6% 5xx either way; with stray 429s, 2% of answers more are 429.
        rate = 0.08 if stray_429s else 0.06
        server.fail_randomly(rate, faults, seed=3)
        async with client_for(server, max_retries=6) as voip:
            started = asyncio.get_running_loop().time()
            results = await collect(voip, server.call_uuids, concurrency=48)
            return asyncio.get_running_loop().time() - started, results, voip.stats


@pytest.mark.slow
async def test_stray_429s_do_not_slow_an_adaptive_run() -> None:
    """2% of answers 429 (Retry-After: 0) on a server with no real limit: the run takes
    (in the loop's time) no more than twice as long as the same run without them (its
    backoffs are jittered, so the two runs differ by up to a tenth either way), and
    loses nothing."""
    baseline, base_results, _ = await timed_faulty_run(stray_429s=False)
    wall, results, stats = await timed_faulty_run(stray_429s=True)
    assert all(r.ok for r in base_results + results)
    assert answered_once(results, 600)
    assert stats.rate_limited > 5  # the stray 429s were really there
    assert wall <= 2 * baseline, (wall, baseline)


# 2. and 3. Runs that cannot succeed stop.


async def test_a_wrong_key_ends_the_run_at_once() -> None:
    """401 for a dead key: nothing is sent after it; every id is answered with it, once."""
    records = generate_cdrs(300, seed=42)
    async with FakeTwoChatServer(cdrs=records) as server:
        async with VoIPClient(api_key="wrong", base_url=server.base_url) as voip:
            results = await collect(voip, server.call_uuids, concurrency=8)
        assert server.request_count <= 8  # only what was already in flight
    assert answered_once(results, 300)
    assert all(isinstance(r.error, tv.AuthenticationError) for r in results)


async def test_giving_up_does_not_wait_for_requests_that_hang() -> None:
    """Every request hangs: with give_up_after=0.5 the run ends within a second or so,
    the ids in flight answered like the rest, not after their 10 s timeout."""
    records = generate_cdrs(40, seed=51)
    async with FakeTwoChatServer(cdrs=records) as server:
        server.fail_randomly(1.0, [Fault(hang=True)])
        client = client_for(server, socket=True, timeout=10, requests_per_minute=UNHURRIED)
        async with client as voip:
            started = asyncio.get_running_loop().time()
            results = await collect(voip, server.call_uuids, concurrency=8, give_up_after=0.5)
            wall = asyncio.get_running_loop().time() - started
            assert not voip.closed
        assert server.request_count == 8
    assert wall < 3, wall
    assert answered_once(results, 40)
    assert all("nothing succeeded for 0.5 s" in str(r.error) for r in results)


async def test_no_credits_ends_the_run_at_once() -> None:
    """402 (credits used up) ends the run like a dead key does."""
    records = generate_cdrs(300, seed=43)
    async with FakeTwoChatServer(cdrs=records) as server:
        server.fail_randomly(1.0, [Fault(status=402)])
        async with client_for(server) as voip:
            results = await collect(voip, server.call_uuids, concurrency=8)
        assert server.request_count <= 8
    assert answered_once(results, 300)
    assert all(isinstance(r.error, tv.PaymentRequiredError) for r in results)


async def test_a_stop_wakes_workers_waiting_for_their_slot() -> None:
    """At 60/min, the workers queued behind the limiter are woken by a 401, not left
    to wait out their slots (one a second) only to send nothing."""
    records = generate_cdrs(50, seed=44)
    async with FakeTwoChatServer(cdrs=records) as server:
        async with VoIPClient(
            api_key="wrong", base_url=server.base_url, requests_per_minute=60
        ) as voip:
            async with asyncio.timeout(2):
                results = await collect(voip, server.call_uuids, concurrency=8)
        assert server.request_count == 1
    assert all(isinstance(r.error, tv.AuthenticationError) for r in results)


async def test_a_stop_wakes_workers_queued_behind_another_callers_request() -> None:
    """At 6/min a plain get_call sleeps at the head of the limiter's queue for its
    slot; the run's workers wait behind it. The run's 401 ends the run at once, not
    when that caller's slot comes (10 s)."""
    records = generate_cdrs(20, seed=53)
    async with FakeTwoChatServer(cdrs=records) as server:
        ids = server.call_uuids

        async def source() -> AsyncIterator[str]:
            yield ids[0]
            await asyncio.sleep(0.1)  # the others come once the get_call queues first
            for call_uuid in ids[1:8]:
                yield call_uuid

        server.fail_next(Fault(status=401, delay=0.3))
        async with client_for(server, requests_per_minute=6) as voip:
            async with asyncio.timeout(3):
                results = voip.get_calls(source(), concurrency=4, give_up_after=None)
                first = asyncio.ensure_future(anext(results))
                await asyncio.sleep(0.05)  # the run's first request is out
                other = asyncio.ensure_future(voip.get_call(ids[10]))
                answered = [await first] + [r async for r in results]
            other.cancel()
            await asyncio.gather(other, return_exceptions=True)
    assert answered_once(answered, 8)
    assert all(isinstance(r.error, tv.AuthenticationError) for r in answered)


async def test_endless_429s_give_up_after_the_deadline() -> None:
    """A server that only answers 429: with give_up_after=1 the run ends within a few
    seconds, each id answered once with the last RateLimitError."""
    records = generate_cdrs(200, seed=45)
    async with FakeTwoChatServer(cdrs=records, log_requests=False) as server:
        server.fail_randomly(1.0, [Fault(status=429)])
        async with client_for(server) as voip:
            started = asyncio.get_running_loop().time()
            results = await collect(voip, server.call_uuids, concurrency=8, give_up_after=1.0)
            wall = asyncio.get_running_loop().time() - started
        sent = server.request_count
    assert answered_once(results, 200)
    assert all(isinstance(r.error, tv.RateLimitError) for r in results)
    assert wall < 4
    assert sent < 200  # far fewer credits than one an id, let alone 50 an id


async def test_an_unreachable_host_gives_up_and_costs_nothing() -> None:
    """Nobody listening: the run gives up after give_up_after; no request was sent."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ids = [f"CDR{n:08d}" for n in range(100)]
    async with VoIPClient(api_key="k", base_url=f"http://127.0.0.1:{port}") as voip:
        async with asyncio.timeout(5):
            results = await collect(voip, ids, concurrency=4, give_up_after=0.5)
        stats = voip.stats
    assert answered_once(results, 100)
    assert all(isinstance(r.error, tv.APIConnectionError) for r in results)
    assert stats.requests == 0


async def test_not_found_is_progress_not_a_reason_to_give_up() -> None:
    """Ids that are no record (404) keep a run going: the server is answering. Thirty
    404s, each 0.05 s late, two at a time: 0.75 s in all, with give_up_after=0.2."""
    ids = [f"CDR{n:08d}" for n in range(30)]
    async with FakeTwoChatServer() as server:
        server.fail_randomly(1.0, [Fault(delay=0.05)])
        async with client_for(server, requests_per_minute=UNHURRIED) as voip:
            started = asyncio.get_running_loop().time()
            results = await collect(voip, ids, concurrency=2, give_up_after=0.2)
            assert asyncio.get_running_loop().time() - started > 0.2
    assert all(isinstance(r.error, tv.NotFoundError) for r in results)
    assert server.request_count == 30


async def test_a_give_up_never_answers_with_another_ids_404() -> None:
    """A 404 is progress, not the reason a run gives up: when the requests after it
    hang, the ids left get an APITimeoutError saying nothing succeeded."""
    records = generate_cdrs(6, seed=49)
    async with FakeTwoChatServer(cdrs=records) as server:
        server.fail_next(Fault(), *[Fault(hang=True)] * 10)
        async with client_for(server, socket=True, timeout=0.3, max_retries=0) as voip:
            ids = ["CDR-missing", *server.call_uuids]
            results = await collect(voip, ids, concurrency=1, give_up_after=0.2, ordered=True)
    assert isinstance(results[0].error, tv.NotFoundError)
    assert all(type(r.error) is not tv.NotFoundError for r in results[1:])
    assert any("nothing succeeded" in str(r.error) for r in results[1:])


async def test_a_slow_consumer_is_not_a_reason_to_give_up() -> None:
    """The run waits for its caller without giving up: only time spent fetching with
    nothing succeeding counts. (The fetches answer at once; the caller takes longer
    than give_up_after over each result.)"""

    async def fetch(call_uuid: str, on_retry: object) -> tv.CallDetailRecord:
        return tv.CallDetailRecord(uuid=call_uuid)

    ids = [f"CDR{n}" for n in range(8)]
    fetched = 0
    run = iterate_bulk(fetch, ids, concurrency=2, ordered=False, give_up_after=0.05)
    async with aclosing(run) as results:
        async for result in results:
            assert result.ok, result.error
            fetched += 1
            await asyncio.sleep(0.08)  # a slow caller, not a synchronisation
    assert fetched == 8


async def test_a_run_that_gives_up_does_not_spoil_auto_for_the_client() -> None:
    """The shared GET /open/info is every caller's: a bulk run giving up while it is
    retried does not turn "auto" off; later calls are paced at the plan's rate."""
    async with FakeTwoChatServer(plan_requests_per_minute=600) as server:
        server.fail_next(Fault(status=503, retry_after=0.5))
        async with client_for(server, requests_per_minute="auto") as voip:
            await collect(voip, [CALL, CALL], give_up_after=0.2)
            await voip.get_call(CALL)
            assert voip.rate_limiter.requests_per_minute == 600  # type: ignore[attr-defined]


async def test_a_failed_info_request_is_asked_again_after_its_caller_left() -> None:
    """The only caller of "auto"'s GET /open/info is cancelled and the request fails:
    the next call asks again instead of failing with the stale error."""
    async with FakeTwoChatServer(plan_requests_per_minute=600) as server:
        server.fail_next(Fault(status=402, delay=0.2))
        async with client_for(server, requests_per_minute="auto", max_retries=0) as voip:
            first = asyncio.create_task(voip.get_call(CALL))
            await server.wait_for_requests(1)
            first.cancel()
            with pytest.raises(asyncio.CancelledError):
                await first
            await asyncio.sleep(0.3)  # the 402 arrives with nobody waiting for it
            assert (await voip.get_call(CALL)).uuid == CALL
        assert [r.path for r in server.requests].count("/open/info") == 2


async def test_give_up_after_must_be_positive() -> None:
    """give_up_after=0 would stop every run at once."""
    async with VoIPClient(api_key="k") as voip:
        with pytest.raises(ValueError, match="give_up_after"):
            await collect(voip, [], give_up_after=0)


# The credit budget.


async def test_a_budget_caps_what_a_run_sends() -> None:
    """max_requests=10: ten requests, retries included; the rest of the ids are answered
    with BudgetExhaustedError, and later calls raise it without sending."""
    records = generate_cdrs(40, seed=46)
    async with FakeTwoChatServer(cdrs=records) as server:
        server.fail_next(Fault(status=503), Fault(status=503))
        with set_testing(True, attempts=4):
            async with client_for(server, max_requests=10) as voip:
                results = await collect(voip, server.call_uuids, concurrency=4)
                with pytest.raises(tv.BudgetExhaustedError) as raised:
                    await voip.get_call(CALL)
                stats = voip.stats
        assert server.request_count == 10
    assert stats.requests == 10
    assert raised.value.max_requests == 10
    assert answered_once(results, 40)
    fetched = [r for r in results if r.ok]
    assert len(fetched) == 8
    spent = [r for r in results if not r.ok]
    assert all(isinstance(r.error, tv.BudgetExhaustedError) for r in spent)


async def test_a_budget_counts_only_what_reached_the_server() -> None:
    """A refused connection costs no credit, so it spends none of the budget."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with VoIPClient(
        api_key="k", base_url=f"http://127.0.0.1:{port}", max_requests=1, max_retries=2
    ) as voip:
        with set_testing(True, attempts=3), pytest.raises(tv.APIConnectionError):
            await voip.get_call(CALL)
        assert voip.stats.requests == 0


async def test_a_redirect_spends_the_budget_too() -> None:
    """Each hop of a redirect is a request (a credit): with one left, the redirect's
    second request is not sent."""
    async with FakeTwoChatServer() as server:
        server.fail_next(Fault(status=307, headers={"Location": f"/open/voip/call/{CALL}"}))
        async with client_for(server, max_requests=1) as voip:
            with set_testing(True), pytest.raises(tv.BudgetExhaustedError):
                await voip.get_call(CALL)
            assert voip.stats.requests == 1
        assert server.request_count == 1


@pytest.mark.parametrize("budget", [-1, 1.5, True])
def test_nonsense_budgets_are_refused(budget: object) -> None:
    """A budget is a whole number of requests, 0 or more."""
    with pytest.raises(ValueError, match="max_requests"):
        VoIPClient(api_key="k", max_requests=budget)  # type: ignore[arg-type]


# 4. The plan's rate from GET /open/info.


async def test_auto_rate_asks_once_and_paces_at_the_plan() -> None:
    """requests_per_minute="auto": one GET /open/info, then 60 ids at the plan's
    3,000/min with no 429 and no start-up burst."""
    records = generate_cdrs(60, seed=47)
    async with FakeTwoChatServer(cdrs=records, requests_per_minute=3000) as server:
        async with client_for(server, requests_per_minute="auto") as voip:
            results = await collect(voip, server.call_uuids, concurrency=16)
            assert voip.rate_limiter.requests_per_minute == 3000  # type: ignore[attr-defined]
            stats = voip.stats
        info = [r for r in server.requests if r.path == "/open/info"]
    assert all(r.ok for r in results)
    assert len(info) == 1
    assert stats.requests == 61
    assert stats.rate_limited == 0
    arrivals = [r.received_at for r in server.requests]
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert min(gaps[:10]) > 0.015  # paced at 20 ms from the start, not a burst


async def test_auto_rate_shares_one_info_request_between_first_calls() -> None:
    """Twenty first calls at once still make one GET /open/info."""
    async with FakeTwoChatServer(requests_per_minute=60000) as server:
        async with client_for(server, requests_per_minute="auto") as voip:
            await asyncio.gather(*(voip.get_call(CALL) for _ in range(20)))
        assert len([r for r in server.requests if r.path == "/open/info"]) == 1


async def test_auto_rate_without_a_limit_in_the_answer_adapts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An answer without limits.requests_per_minute: a warning, then adaptive pacing."""
    caplog.set_level(logging.WARNING, logger="twochat_voip")
    async with FakeTwoChatServer() as server:
        async with client_for(server, requests_per_minute="auto") as voip:
            await voip.get_call(CALL)
            await voip.get_call(CALL)
            # No plan's rate: the slow start of a client finding the limit, climbing.
            rate = voip.rate_limiter.requests_per_minute  # type: ignore[attr-defined]
            await asyncio.sleep(0.1)
            assert voip.rate_limiter.requests_per_minute > rate  # type: ignore[attr-defined]
        assert [r.path for r in server.requests].count("/open/info") == 1
    assert "could not learn the plan's limit" in caplog.text


async def test_auto_rate_does_not_believe_an_absurd_plan_limit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A plan "limit" of one request in two thousand years: a warning that names it,
    then adaptive pacing, not a client that never sends again."""
    caplog.set_level(logging.WARNING, logger="twochat_voip")
    async with FakeTwoChatServer(plan_requests_per_minute=1e-9) as server:
        async with client_for(server, requests_per_minute="auto") as voip:
            async with asyncio.timeout(5):
                await asyncio.gather(*(voip.get_call(CALL) for _ in range(3)))
        assert [r.path for r in server.requests].count("/open/info") == 1
    assert "could not learn the plan's limit" in caplog.text
    assert "1e-09, not a plan's limit" in caplog.text


async def test_auto_rate_with_a_wrong_key_fails_the_call() -> None:
    """A dead key fails the info request with AuthenticationError; the call raises it,
    and the next call asks again."""
    async with FakeTwoChatServer() as server:
        async with VoIPClient(
            api_key="wrong", base_url=server.base_url, requests_per_minute="auto"
        ) as voip:
            for _ in range(2):
                with pytest.raises(tv.AuthenticationError):
                    await voip.get_call(CALL)
        assert [r.path for r in server.requests] == ["/open/info", "/open/info"]


def test_auto_is_the_only_word_accepted() -> None:
    """requests_per_minute takes a number, "auto" or None."""
    with pytest.raises(ValueError, match="auto"):
        VoIPClient(api_key="k", requests_per_minute="fast")  # type: ignore[arg-type]


# 6. One owner of waiting.


@pytest.mark.parametrize("status", [200, 404])
async def test_retry_after_on_other_answers_holds_nothing(status: int) -> None:
    """A Retry-After on a 200 or a 404 means nothing: the next call leaves at once."""
    async with FakeTwoChatServer() as server:
        server.fail_next(Fault(status=None if status == 200 else 404, retry_after=20))
        async with client_for(server) as voip, asyncio.timeout(2):
            with pytest.raises(tv.NotFoundError) if status == 404 else nullcontext():
                await voip.get_call(CALL)
            assert (await voip.get_call(CALL)).uuid == CALL


async def test_testing_mode_skips_a_retry_after() -> None:
    """set_testing(True, attempts=2): a 503 with Retry-After: 5 is retried at once."""
    async with FakeTwoChatServer() as server:
        server.fail_next(Fault(status=503, retry_after=5))
        with set_testing(True, attempts=2):
            async with client_for(server) as voip, asyncio.timeout(1):
                assert (await voip.get_call(CALL)).uuid == CALL
        assert server.request_count == 2


async def close_ends(voip: VoIPClient, call: asyncio.Task[Any], within: float) -> None:
    """Close ``voip`` and check that ``call`` ends with ClientClosedError ``within``
    seconds, not when its wait would have run out."""
    started = asyncio.get_running_loop().time()
    await voip.aclose()
    with pytest.raises(tv.ClientClosedError):
        await call
    assert asyncio.get_running_loop().time() - started < within


async def test_closing_wakes_a_call_waiting_for_its_slot() -> None:
    """At 6/min the second call waits 10 s for its slot: aclose() ends it at once."""
    async with FakeTwoChatServer() as server:
        voip = client_for(server, requests_per_minute=6)
        await voip.get_call(CALL)
        waiting = asyncio.create_task(voip.get_call(CALL))
        await asyncio.sleep(0)
        await close_ends(voip, waiting, within=1)
        assert server.request_count == 1


async def test_closing_wakes_a_call_held_by_a_retry_after() -> None:
    """A call waiting out a 30 s Retry-After ends at once when the client closes."""
    async with FakeTwoChatServer() as server:
        server.fail_next(Fault(status=503, retry_after=30))
        voip = client_for(server)
        call = asyncio.create_task(voip.get_call(CALL))
        await server.wait_for_requests(1)
        await asyncio.sleep(0.01)
        await close_ends(voip, call, within=1)
        assert server.request_count == 1


async def test_closing_wakes_a_call_in_backoff() -> None:
    """A call sleeping its backoff (0.25-0.5 s before the first retry) ends at once."""
    async with FakeTwoChatServer() as server:
        server.fail_next(Fault(status=503))
        voip = client_for(server)
        call = asyncio.create_task(voip.get_call(CALL))
        await server.wait_for_requests(1)
        await asyncio.sleep(0.01)
        await close_ends(voip, call, within=0.15)
        assert server.request_count == 1


async def test_closing_wakes_a_call_waiting_on_a_limiter_it_did_not_make() -> None:
    """A limiter passed in (another's sleep) is interrupted the same way."""
    async with FakeTwoChatServer() as server:
        pace = tv.AdaptiveRateLimiter(6)
        voip = client_for(server, rate_limiter=pace)
        await voip.get_call(CALL)
        waiting = asyncio.create_task(voip.get_call(CALL))
        await asyncio.sleep(0.01)
        await close_ends(voip, waiting, within=1)


async def test_a_retry_after_holds_the_whole_client_once() -> None:
    """A 503 with Retry-After: 1 holds every call of the client, and is waited out once
    (by the limiter), not once by the limiter and again by the retry policy."""
    async with FakeTwoChatServer() as server:
        server.fail_next(Fault(status=503, retry_after=1))
        async with client_for(server) as voip:
            started = asyncio.get_running_loop().time()
            first = asyncio.create_task(voip.get_call(CALL))
            await server.wait_for_requests(1)
            second = await voip.get_call(CALL)
            await first
            wall = asyncio.get_running_loop().time() - started
        arrivals = collections.Counter(r.status for r in server.requests)
    assert second.uuid == CALL
    assert arrivals == {503: 1, 200: 2}
    assert 0.95 <= wall < 1.6
