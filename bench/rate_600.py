"""1,000 ids against the fake server limited to 600 requests/minute (GCRA, burst 5, no
Retry-After), with and without ``requests_per_minute``: wall time against N/R (100 s),
429s, failures. About 200 s: ``python -m bench.rate_600``."""

from __future__ import annotations

import asyncio
import time
from contextlib import aclosing

from twochat_voip import VoIPClient
from twochat_voip.testing import FakeTwoChatServer, generate_cdrs

IDS = 1000
PER_MINUTE = 600.0


async def run(told: float | None) -> None:
    records = generate_cdrs(IDS, seed=1)
    async with (
        FakeTwoChatServer(
            cdrs=records, requests_per_minute=PER_MINUTE, log_requests=False
        ) as server,
        VoIPClient(
            api_key=server.api_key, base_url=server.base_url, requests_per_minute=told
        ) as voip,
        aclosing(voip.get_calls(server.call_uuids, concurrency=16)) as results,
    ):
        started = time.monotonic()
        outcomes = [result.ok async for result in results]
        wall = time.monotonic() - started
        stats = voip.stats
    ideal = IDS / (PER_MINUTE / 60)
    print(
        f"requests_per_minute={told}: {sum(outcomes)} of {IDS} fetched, "
        f"{outcomes.count(False)} failed, wall {wall:.1f} s ({wall / ideal:.3f}x N/R), "
        f"{stats.requests} requests, {stats.rate_limited} answered 429"
    )


async def main() -> None:
    await run(PER_MINUTE)
    await run(None)


if __name__ == "__main__":
    asyncio.run(main())
