"""A client belongs to the event loop it was opened in; using it in another says so."""

from __future__ import annotations

import asyncio
import gc

import pytest

import twochat_voip as tv
from twochat_voip import VoIPClient
from twochat_voip.testing import EXAMPLE_CDR, FakeTwoChatServer

pytestmark = pytest.mark.virtual_time  # timeouts, backoff and pacing in the loop's time

CALL = EXAMPLE_CDR["uuid"]


def test_a_client_shared_by_two_asyncio_runs_says_what_to_do() -> None:
    """Opened in one asyncio.run() and used in the next: EventLoopMismatchError saying
    to open it inside the loop, no aiohttp RuntimeError and no unclosed session."""
    clients: list[VoIPClient] = []

    async def first() -> None:
        async with FakeTwoChatServer() as server:
            voip = VoIPClient(api_key=server.api_key, base_url=server.base_url)
            clients.append(voip)
            await voip.get_call(CALL)  # opens it, in this loop, and never closes it

    async def second() -> None:
        async with FakeTwoChatServer() as server:
            with pytest.raises(tv.EventLoopMismatchError, match="async with VoIPClient"):
                await clients[0].get_call(CALL)
            assert server.requests == []
            with pytest.raises(tv.EventLoopMismatchError):  # again, not ClientClosedError
                await clients[0].get_call(CALL)
            # (and no aclose(): the dead session was closed when the error was raised)

    asyncio.run(first())
    asyncio.run(second())
    clients.clear()
    gc.collect()  # an unclosed session would warn here, and warnings are errors


def test_a_bulk_run_in_another_loop_gives_up_at_once() -> None:
    """get_calls() in a loop the client was not opened in: every id is answered with
    EventLoopMismatchError, nothing is sent, and closing it there works."""
    clients: list[VoIPClient] = []

    async def first() -> None:
        async with FakeTwoChatServer() as server:
            voip = VoIPClient(api_key=server.api_key, base_url=server.base_url)
            clients.append(voip)
            await voip.get_call(CALL)

    async def second() -> None:
        async with FakeTwoChatServer() as server:
            results = [result async for result in clients[0].get_calls([CALL] * 40)]
            assert server.requests == []
        assert len(results) == 40
        assert {type(result.error) for result in results} == {tv.EventLoopMismatchError}
        await clients[0].aclose()  # its loop is gone: closing it here is allowed
        assert clients[0].closed

    asyncio.run(first())
    asyncio.run(second())
    clients.clear()
    gc.collect()


async def test_a_client_open_in_a_running_loop_refuses_another_loop() -> None:
    """Used (or closed) from a loop in another thread while its own loop runs: refused,
    and it goes on working in its own loop."""
    async with FakeTwoChatServer() as server:
        async with VoIPClient(api_key=server.api_key, base_url=server.base_url) as voip:
            await voip.get_call(CALL)

            def in_another_loop() -> list[type[BaseException]]:
                raised: list[type[BaseException]] = []
                for attempt in (voip.get_call(CALL), voip.aclose(), voip.__aenter__()):
                    try:
                        asyncio.run(attempt)
                    except tv.EventLoopMismatchError as exc:
                        raised.append(type(exc))
                return raised

            raised = await asyncio.wait_for(asyncio.to_thread(in_another_loop), 30)
            assert raised == [tv.EventLoopMismatchError] * 3
            assert not voip.closed
            assert (await voip.get_call(CALL)).uuid == CALL
        assert len(server.requests) == 2
