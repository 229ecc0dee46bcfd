"""A rate-limited bulk run: a server that enforces R requests/minute (GCRA, burst 5,
no Retry-After) and N ids, through our client told the rate, asking it (``"auto"``:
``GET /open/info`` names R) and not told it (adapting), and the naive gather +
tenacity code. Wall time as a ratio to N/R, 429s, and credits (requests) per record."""

from __future__ import annotations

import functools

from bench.measure import Row, describe_limited, limited_row, server_cpu, timed_run
from bench.server import CannedServer
from bench.stacks import naive_gather_tenacity, ours_get_calls


def measure(per_minute: float, ids: int, concurrency: int = 16) -> list[Row]:
    names = [f"CDR{i:08d}" for i in range(ids)]
    ideal = ids / (per_minute / 60.0)
    runs = {
        "twochat_voip, requests_per_minute=R": lambda url: ours_get_calls(
            url, names, concurrency, rpm=per_minute
        ),
        'twochat_voip, requests_per_minute="auto"': lambda url: ours_get_calls(
            url, names, concurrency, rpm="auto"
        ),
        "twochat_voip, rate not given (adaptive)": lambda url: ours_get_calls(
            url, names, concurrency, rpm=None
        ),
        "naive: gather + semaphore + tenacity": lambda url: naive_gather_tenacity(
            url, names, concurrency
        ),
    }
    rows: list[Row] = []
    with CannedServer(per_minute, burst=5, cpu=server_cpu()) as server:
        for name, run in runs.items():
            server.take_stats()  # reset the limiter between runs
            (_, failed), wall, _ = timed_run(functools.partial(run, server.base_url))
            row = {
                "client": name,
                **limited_row(server.take_stats(), wall, ideal, len(names)),
                "failed": failed,
            }
            rows.append(row)
            print(f"  {name:<42} {describe_limited(row)}, {failed} failed", flush=True)
    return rows
