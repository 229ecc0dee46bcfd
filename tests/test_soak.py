"""Soak: a long bulk run against the fake server with 10% random faults answers every id
exactly once, keeps memory flat and leaves nothing behind. CI runs 2,000 ids;
``nox -s soak`` runs 20,000 (``SOAK_IDS``)."""

from __future__ import annotations

import asyncio
import collections
import os
import resource
from collections.abc import Callable
from contextlib import aclosing

import pytest

from twochat_voip import VoIPClient, set_testing
from twochat_voip.testing import FakeTwoChatServer, Fault, generate_cdrs

pytestmark = pytest.mark.virtual_time  # timeouts, backoff and pacing in the loop's time

SOAK_IDS = int(os.environ.get("SOAK_IDS", "2000"))
FAULTS = [
    Fault(status=500),
    Fault(status=502),
    Fault(status=503),
    Fault(status=504),
    Fault(status=429),
    Fault(status=429, retry_after=0),  # stray 429s that say "ask again now"
    Fault(drop="before_status"),
    Fault(drop="mid_headers"),
    Fault(drop="mid_body"),
    Fault(delay=0.05),
]


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # pragma: no cover


@pytest.mark.slow
async def test_soak_every_id_once_flat_memory_nothing_left(
    record_property: Callable[[str, object], None],
) -> None:
    """SOAK_IDS ids, 10% faults: each answered once and fetched, RSS flat, no leftovers."""
    records = generate_cdrs(500, seed=99)
    ids = [records[n % len(records)]["uuid"] for n in range(SOAK_IDS)]
    seen: collections.Counter[int] = collections.Counter()
    rss: dict[str, float] = {}
    tasks_before = asyncio.all_tasks()
    async with FakeTwoChatServer(cdrs=records, log_requests=False) as server:
        server.fail_randomly(0.10, FAULTS, seed=5)
        with set_testing(True, attempts=12):
            async with (
                VoIPClient(
                    api_key=server.api_key, base_url=server.base_url, timeout=5, max_retries=11
                ) as voip,
                aclosing(voip.get_calls(ids, concurrency=32)) as results,
            ):
                async for result in results:
                    assert result.ok, result.error
                    seen[result.index] += 1
                    done = sum(seen.values())
                    if done == SOAK_IDS // 10:
                        rss["at 10%"] = rss_mib()
                rss["at the end"] = rss_mib()
                stats = voip.stats
        faults = stats.requests - SOAK_IDS
    assert set(seen) == set(range(SOAK_IDS))
    assert set(seen.values()) == {1}
    assert stats.failed == 0
    assert faults > SOAK_IDS * 0.05  # the faults really happened, and were retried
    assert rss["at the end"] - rss["at 10%"] < 25
    assert asyncio.all_tasks() == tasks_before
    for name, value in [("ids", SOAK_IDS), ("requests", stats.requests), *rss.items()]:
        record_property(name, value)
    print(f"soak: {SOAK_IDS} ids, {stats.requests} requests, RSS {rss} MiB")
