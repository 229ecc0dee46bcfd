"""Cancelling get_call at every await point leaves the client usable and nothing leaked."""

from __future__ import annotations

import asyncio

import pytest

import twochat_voip as tv
from twochat_voip import AdaptiveRateLimiter, VoIPClient
from twochat_voip._waits import Waits
from twochat_voip.testing import EXAMPLE_CDR, FakeTwoChatServer, Fault

CALL = EXAMPLE_CDR["uuid"]


async def cancel_when(
    server: FakeTwoChatServer, client: VoIPClient, ready: asyncio.Event | int
) -> None:
    call = asyncio.create_task(client.get_call(CALL))
    if isinstance(ready, int):
        await server.wait_for_requests(ready)
    else:
        await ready.wait()
    await asyncio.sleep(0.05)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert (await client.get_call(CALL)).uuid == CALL  # still usable


async def test_cancel_before_send_while_waiting_for_the_rate_limiter() -> None:
    """Cancelled while waiting for its rate-limit slot: nothing was sent."""
    async with FakeTwoChatServer() as server:
        pace = AdaptiveRateLimiter(60, adaptive=False)  # one request a second
        async with VoIPClient(
            api_key=server.api_key, base_url=server.base_url, rate_limiter=pace
        ) as voip:
            await voip.get_call(CALL)
            waiting = asyncio.create_task(voip.get_call(CALL))
            await asyncio.sleep(0.1)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            assert server.request_count == 1


async def test_cancel_during_the_wait_between_retries() -> None:
    """Cancelled while sleeping before a retry: no retry is sent, the client works."""
    async with FakeTwoChatServer() as server:
        server.fail_next(Fault(status=503, retry_after="1"))
        async with VoIPClient(api_key=server.api_key, base_url=server.base_url) as voip:
            call = asyncio.create_task(voip.get_call(CALL))
            await server.wait_for_requests(1)
            await asyncio.sleep(0.05)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            assert server.request_count == 1
            # Usable: the next call waits out what is left of the Retry-After, then works.
            assert (await voip.get_call(CALL)).uuid == CALL
            assert server.request_count == 2


async def test_cancel_while_reading_the_body() -> None:
    """Cancelled mid-body: the half-read connection is dropped, not reused."""
    async with FakeTwoChatServer() as server:
        server.fail_next(Fault(trickle=0.01))
        async with VoIPClient(api_key=server.api_key, base_url=server.base_url) as voip:
            await cancel_when(server, voip, 1)
            assert server.status_counts[200] >= 1


async def test_cancel_while_waiting_for_the_answer() -> None:
    """Cancelled while the server thinks: the client stays usable."""
    async with FakeTwoChatServer() as server:
        server.fail_next(Fault(delay=5))
        async with VoIPClient(api_key=server.api_key, base_url=server.base_url) as voip:
            await cancel_when(server, voip, 1)


async def test_close_while_in_flight_is_a_clear_error() -> None:
    """aclose() with calls in flight fails them with ClientClosedError."""
    async with FakeTwoChatServer() as server:
        server.fail_randomly(1.0, [Fault(delay=5)])
        voip = VoIPClient(api_key=server.api_key, base_url=server.base_url)
        calls = [asyncio.create_task(voip.get_call(CALL)) for _ in range(5)]
        await server.wait_for_requests(5)
        await voip.aclose()
        results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(r, tv.ClientClosedError) for r in results)


async def test_a_guarded_wait_that_fails_as_the_client_closes_has_its_error_taken() -> None:
    """The limiter's wait fails in the same step as the close ends it: the caller gets
    ClientClosedError, and the wait's own error is taken (asyncio would otherwise log
    "exception was never retrieved" whenever the wait is collected)."""
    loop = asyncio.get_running_loop()
    waits = Waits()
    inner: asyncio.Future[float] = loop.create_future()
    guarded = asyncio.create_task(waits.guard(inner))
    await asyncio.sleep(0)  # guarded now waits
    inner.set_exception(tv.TwoChatError("the limiter failed"))
    waits.close()
    with pytest.raises(tv.ClientClosedError):
        await guarded
    # asyncio's own flag for "log this error when collected": taken means cleared.
    assert inner._log_traceback is False
