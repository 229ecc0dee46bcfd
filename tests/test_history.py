"""Call history that survives drift: each record once, pages that repeat or never
end stopped, and a cursor to resume a stopped listing; against the fake 2Chat."""

from __future__ import annotations

from typing import Any

import pytest

import twochat_voip as tv
from twochat_voip import VoIPClient
from twochat_voip.testing import FakeTwoChatServer, Fault, generate_cdrs

pytestmark = pytest.mark.virtual_time  # timeouts, backoff and pacing in the loop's time


def page(records: list[dict[str, Any]], count: int) -> Fault:
    """A history answer holding ``records``, whatever page was asked."""
    return Fault(body={"success": True, "count": count, "page": 0, "cdrs": records})


async def walk(voip: VoIPClient, seen: list[str], **options: Any) -> None:
    async for record in voip.iter_call_history(**options):
        seen.append(record.uuid)  # noqa: PERF401 - kept as they come, before a raise


async def test_records_shifted_onto_a_later_page_come_once() -> None:
    """New calls push records to later pages while the listing runs: each once."""
    a, b, c, d = generate_cdrs(4, seed=40)
    async with FakeTwoChatServer(cdrs=[a, b, c, d]) as server:
        server.fail_next(page([a, b], 4), page([b, c], 5), page([c, d], 5), page([], 5))
        async with VoIPClient(
            api_key=server.api_key, base_url=server.base_url, transport=server.transport()
        ) as voip:
            seen: list[str] = []
            await walk(voip, seen)
    assert seen == [r["uuid"] for r in (a, b, c, d)]
    assert server.request_count == 4


async def test_pages_that_alternate_are_stopped() -> None:
    """A server that answers A, B, A, B... is stopped on the first page with nothing new."""
    a, b, c, d = generate_cdrs(4, seed=41)
    async with FakeTwoChatServer(cdrs=[a, b, c, d]) as server:
        server.fail_next(page([a, b], 4), page([c, d], 4), page([a, b], 4), page([c, d], 4))
        async with VoIPClient(
            api_key=server.api_key, base_url=server.base_url, transport=server.transport()
        ) as voip:
            seen: list[str] = []
            with pytest.raises(tv.ResponseValidationError, match="page 2 repeats page 0"):
                await walk(voip, seen)
    assert seen == [r["uuid"] for r in (a, b, c, d)]
    assert server.request_count == 3


async def test_a_listing_that_never_ends_is_stopped_past_its_count() -> None:
    """Ever new records beyond what count says: stopped after a couple of pages more."""
    records = generate_cdrs(40, seed=42)
    pages = [page(records[i : i + 2], 4) for i in range(0, 40, 2)]
    async with FakeTwoChatServer(cdrs=records) as server:
        server.fail_next(*pages)
        async with VoIPClient(
            api_key=server.api_key, base_url=server.base_url, transport=server.transport()
        ) as voip:
            seen: list[str] = []
            with pytest.raises(tv.ResponseValidationError, match="count of 4"):
                await walk(voip, seen)
    assert server.request_count == 4  # 2 pages the count needs, 2 more, then stop
    assert len(seen) == 8


async def test_a_stopped_listing_resumes_at_its_cursor() -> None:
    """on_page gives the page to resume at; start_page picks up from there (a record
    of the page being read when the listing stopped may come again, none is lost)."""
    records = generate_cdrs(25, seed=43)
    async with (
        FakeTwoChatServer(cdrs=records, history_page_size=10) as server,
        VoIPClient(
            api_key=server.api_key, base_url=server.base_url, transport=server.transport()
        ) as voip,
    ):
        cursor: list[int] = []
        first: list[str] = []
        async for record in voip.iter_call_history(on_page=cursor.append):
            first.append(record.uuid)
            if cursor:  # page 0 is done (we hold the first record of page 1): stop
                break
        rest = [r.uuid async for r in voip.iter_call_history(start_page=cursor[-1])]
    assert cursor == [1]
    assert len(first) == 11
    assert first[:10] + rest == [r["uuid"] for r in records]


async def test_a_bad_start_page_is_refused() -> None:
    """start_page must be a whole number, 0 or more."""
    async with (
        FakeTwoChatServer() as server,
        VoIPClient(
            api_key=server.api_key, base_url=server.base_url, transport=server.transport()
        ) as voip,
    ):
        with pytest.raises(ValueError, match="start_page"):
            await anext(voip.iter_call_history(start_page=-1))
    assert server.request_count == 0
