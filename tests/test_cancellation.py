"""Cancelling get_call at every await point leaves the client usable and nothing leaked."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from types import SimpleNamespace

import aiohttp
import pytest
from fake_clock import FakeClock

import twochat_voip as tv
from twochat_voip import AdaptiveRateLimiter, VoIPClient, set_testing
from twochat_voip.testing import EXAMPLE_CDR, FakeTwoChatServer, Fault

pytestmark = pytest.mark.virtual_time  # timeouts, backoff and pacing in the loop's time

CALL = EXAMPLE_CDR["uuid"]


async def cancel_when(client: VoIPClient, ready: Awaitable[object]) -> None:
    """Start a get_call, cancel it once ``ready`` is done, and check the client works."""
    call = asyncio.create_task(client.get_call(CALL))
    await ready
    assert not call.done()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert (await client.get_call(CALL)).uuid == CALL  # still usable


async def test_cancel_before_send_while_waiting_for_the_rate_limiter() -> None:
    """Cancelled while waiting for its rate-limit slot: nothing was sent."""
    clock = FakeClock()
    clock.hold = True  # the limiter's sleep lasts until the call is cancelled
    async with FakeTwoChatServer() as server:
        pace = AdaptiveRateLimiter(60, clock=clock, sleep=clock.sleep)  # one a second
        async with VoIPClient(
            api_key=server.api_key, base_url=server.base_url, rate_limiter=pace
        ) as voip:
            await voip.get_call(CALL)
            waiting = asyncio.create_task(voip.get_call(CALL))
            await clock.asleep.wait()
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            assert server.request_count == 1
    assert clock.slept == [1.0]  # it was waiting for the next second's slot


async def test_cancel_during_the_wait_between_retries() -> None:
    """Cancelled while sleeping before a retry: no retry is sent, the client works."""
    # The Retry-After is waited out by the rate limiter (the retry policy adds no
    # backoff to it): one on a fake clock shows the wait, and what is left of it.
    clock = FakeClock()
    clock.hold = True
    limiter = AdaptiveRateLimiter(60000, clock=clock, sleep=clock.sleep)
    async with FakeTwoChatServer() as server:
        server.fail_next(Fault(status=503, retry_after="1"))
        async with VoIPClient(
            api_key=server.api_key, base_url=server.base_url, rate_limiter=limiter
        ) as voip:
            call = asyncio.create_task(voip.get_call(CALL))
            await clock.asleep.wait()
            assert server.request_count == 1
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            assert server.request_count == 1
            # Usable: the next call waits out what is left of the Retry-After, then works.
            clock.release()
            assert (await voip.get_call(CALL)).uuid == CALL
            assert server.request_count == 2
    # The cancelled sleep moved no time on: the next call waited the whole second.
    assert clock.slept == [1.0, 1.0]
    assert clock.now == 1001.0


async def test_cancel_while_reading_the_body() -> None:
    """Cancelled mid-body: the half-read connection is dropped, not reused."""
    headers_in = asyncio.Event()
    connections = {"made": 0, "reused": 0}

    async def on_headers(*_: object) -> None:
        headers_in.set()  # aiohttp has the status and headers; the body trickles on

    async def on_made(*_: object) -> None:
        connections["made"] += 1

    async def on_reused(*_: object) -> None:
        connections["reused"] += 1

    trace = aiohttp.TraceConfig(trace_config_ctx_factory=SimpleNamespace)
    trace.on_request_end.append(on_headers)
    trace.on_connection_create_end.append(on_made)
    trace.on_connection_reuseconn.append(on_reused)
    async with FakeTwoChatServer() as server, aiohttp.ClientSession(trace_configs=[trace]) as s:
        # A byte a millisecond: the head is in within a fraction of a second, the
        # body then takes over a second more.
        server.fail_next(Fault(trickle=0.001))
        with set_testing(True):  # no slow start: the second call leaves at once
            voip = VoIPClient(api_key=server.api_key, base_url=server.base_url, session=s)
        async with voip:
            await cancel_when(voip, headers_in.wait())
            assert server.status_counts[200] >= 1
    assert connections == {"made": 2, "reused": 0}


async def test_cancel_while_waiting_for_the_answer() -> None:
    """Cancelled while the server thinks: the client stays usable."""
    async with FakeTwoChatServer() as server:
        server.fail_next(Fault(delay=5))
        with set_testing(True):  # no slow start: the second call leaves at once
            voip = VoIPClient(api_key=server.api_key, base_url=server.base_url)
        async with voip:
            await cancel_when(voip, server.wait_for_requests(1))


async def test_close_while_in_flight_is_a_clear_error() -> None:
    """aclose() with calls in flight fails them with ClientClosedError."""
    async with FakeTwoChatServer() as server:
        server.fail_randomly(1.0, [Fault(delay=5)])
        with set_testing(True):  # no slow start: all five are sent at once
            voip = VoIPClient(api_key=server.api_key, base_url=server.base_url)
        calls = [asyncio.create_task(voip.get_call(CALL)) for _ in range(5)]
        await server.wait_for_requests(5)
        await voip.aclose()
        results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(r, tv.ClientClosedError) for r in results)
