"""The Redis issue's acceptance run: four processes share one ``RedisRateLimiter`` for
1,000 ids against the fake 2Chat (``FakeTwoChatServer``) limited to 600 requests/minute
(GCRA, burst 5, no Retry-After). Prints the server's 429 share and the wall time against
N/R (100 s). About 110 s: ``python -m bench.shared_600`` (needs redis-server)."""

from __future__ import annotations

import asyncio
import json
import sys
import time

from bench.many_workers import KEY, PROCESSES, _fetch
from twochat_voip.testing import FakeTwoChatServer, RedisServer, generate_cdrs

IDS = 1000
PER_MINUTE = 600.0


def worker(base_url: str, redis_url: str, start_at: float, ids: list[str]) -> None:
    """One process: wait for the common start, fetch its share, print what it did."""
    time.sleep(max(0.0, start_at - time.time()))
    fetched, failed, _ = asyncio.run(_fetch(base_url, ids, PER_MINUTE, redis_url))
    print(json.dumps({"fetched": fetched, "failed": failed, "ended": time.time()}))


async def main() -> None:
    records = generate_cdrs(IDS, seed=11)
    with RedisServer() as redis:
        async with FakeTwoChatServer(
            cdrs=records, api_key=KEY, requests_per_minute=PER_MINUTE, log_requests=False
        ) as server:
            ids = server.call_uuids
            start_at = time.time() + 5.0  # every process has imported by then
            processes = [
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "bench.shared_600",
                    server.base_url,
                    redis.url,
                    str(start_at),
                    ",".join(ids[i::PROCESSES]),
                    stdout=asyncio.subprocess.PIPE,
                )
                for i in range(PROCESSES)
            ]
            outputs = [json.loads((await p.communicate())[0]) for p in processes]
            counts = server.status_counts
            requests = server.request_count
    wall = max(o["ended"] for o in outputs) - start_at
    ideal = IDS / (PER_MINUTE / 60)
    print(
        f"{PROCESSES} processes sharing a RedisRateLimiter at {PER_MINUTE:.0f}/min: "
        f"{sum(o['fetched'] for o in outputs)} of {IDS} fetched, "
        f"{sum(o['failed'] for o in outputs)} failed, wall {wall:.1f} s "
        f"({wall / ideal:.3f}x N/R), {requests} requests, {counts[429]} answered 429 "
        f"({counts[429] / requests:.2%})"
    )


if __name__ == "__main__":
    if len(sys.argv) == 5:
        worker(sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4].split(","))
    else:
        asyncio.run(main())
