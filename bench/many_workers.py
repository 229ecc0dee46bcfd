"""Four processes, one account limit R: the canned server's GCRA (burst 5, no
Retry-After) counts every process's requests together, as 2Chat counts an account's.

Each process fetches its share of N ids with ``get_calls`` (concurrency 16), paced:
- by one ``RedisRateLimiter`` at R that all four share (a redis-server on 127.0.0.1);
- by hand, each ``requests_per_minute=R/4``;
- each ``requests_per_minute=R`` (every process thinks it has the account to itself);
- each adaptive, no rate given (every process finds its share from 429s).

The ids are split evenly, then unevenly (40/30/20/10%, as a web app's workers or a
team's hosts get them). Wall time runs from a common start to the last process's end,
as a ratio to N/R; 429s and requests are the server's own counts.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from contextlib import aclosing
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier

from bench.measure import Row, describe_limited, limited_row, server_cpu
from bench.server import CannedServer
from twochat_voip import VoIPClient
from twochat_voip.redis import RedisRateLimiter
from twochat_voip.testing import RedisServer

KEY = "bench-key"
PROCESSES = 4
EVEN = (0.25, 0.25, 0.25, 0.25)
UNEVEN = (0.4, 0.3, 0.2, 0.1)

Finished = tuple[int, int, float]  # (fetched, failed, monotonic time at the end)


async def _fetch(
    base_url: str, ids: list[str], rpm: float | None, redis_url: str | None
) -> Finished:
    limiter = (
        RedisRateLimiter(redis_url, api_key=KEY, requests_per_minute=rpm)
        if redis_url and rpm
        else None
    )
    fetched = failed = 0
    async with (
        VoIPClient(
            api_key=KEY,
            base_url=base_url,
            rate_limiter=limiter,
            requests_per_minute=None if limiter else rpm,
        ) as voip,
        aclosing(voip.get_calls(ids, concurrency=16)) as results,
    ):
        async for result in results:
            fetched += result.ok
            failed += not result.ok
    finished = time.monotonic()
    if limiter is not None:
        await limiter.aclose()
    return fetched, failed, finished


def _worker(  # noqa: PLR0917 - multiprocessing passes arguments by position
    base_url: str,
    ids: list[str],
    rpm: float | None,
    redis_url: str | None,
    start: Barrier,
    done: Queue[Finished],
) -> None:
    start.wait()  # imports done in every process: all begin together
    done.put(asyncio.run(_fetch(base_url, ids, rpm, redis_url)))


def _split(ids: list[str], shares: tuple[float, ...]) -> list[list[str]]:
    parts, begin = [], 0
    for index, share in enumerate(shares):
        end = len(ids) if index == len(shares) - 1 else begin + round(share * len(ids))
        parts.append(ids[begin:end])
        begin = end
    return parts


def _run(
    base_url: str, parts: list[list[str]], rpm: float | None, redis_url: str | None
) -> tuple[float, int, int]:
    """(wall seconds, fetched, failed) for one set of processes started together."""
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(len(parts) + 1)
    done: Queue[Finished] = context.Queue()
    processes = [
        context.Process(target=_worker, args=(base_url, part, rpm, redis_url, start, done))
        for part in parts
    ]
    for process in processes:
        process.start()
    start.wait()
    began = time.monotonic()
    # A worker that died would leave its result missing: give up rather than hang.
    results = [done.get(timeout=600) for _ in processes]
    for process in processes:
        process.join()
    wall = max(finished for _, _, finished in results) - began
    return wall, sum(r[0] for r in results), sum(r[1] for r in results)


def measure(per_minute: float, ids: int) -> list[Row]:
    if RedisServer.find() is None:
        print("  skipped: redis-server is not installed", flush=True)
        return []
    names = [f"CDR{i:08d}" for i in range(ids)]
    ideal = ids / (per_minute / 60.0)
    runs = [
        ("even", "shared RedisRateLimiter at R", per_minute, True, EVEN),
        ("even", "each at R/4 by hand", per_minute / PROCESSES, False, EVEN),
        ("even", "each at R", per_minute, False, EVEN),
        ("even", "each adaptive (rate not given)", None, False, EVEN),
        ("40/30/20/10", "each adaptive (rate not given)", None, False, UNEVEN),
        ("40/30/20/10", "shared RedisRateLimiter at R", per_minute, True, UNEVEN),
        ("40/30/20/10", "each at R/4 by hand", per_minute / PROCESSES, False, UNEVEN),
    ]
    rows: list[Row] = []
    with RedisServer() as redis, CannedServer(per_minute, burst=5, cpu=server_cpu()) as server:
        for split, name, rpm, shared, shares in runs:
            server.take_stats()  # reset the server's limit between runs
            wall, fetched, failed = _run(
                server.base_url, _split(names, shares), rpm, redis.url if shared else None
            )
            row = {
                "split": split,
                "client": name,
                **limited_row(server.take_stats(), wall, ideal, len(names)),
                "fetched": fetched,
                "failed": failed,
            }
            rows.append(row)
            print(
                f"  {split:<12} {name:<30} {describe_limited(row)}, "
                f"{fetched} fetched, {failed} failed",
                flush=True,
            )
    return rows
