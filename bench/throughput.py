"""Throughput at concurrency 1, 16, 64, 256: requests/s, client CPU per request, and
each as a ratio to the raw aiohttp + orjson limit, from interleaved runs.

Each run also records the canned server's CPU seconds: a row whose server CPU is over
80% of its wall time is flagged ``server_bound``, since there the server, not the
client, sets the rate, and the ratio says little about the client."""

from __future__ import annotations

import functools

from bench.measure import Row, median, server_cpu, timed_run
from bench.server import CannedServer
from bench.stacks import THROUGHPUT_STACKS

RAW = "raw aiohttp + orjson"
SLOW = "httpx + pydantic"
SERVER_BOUND = 0.8
"""Server CPU / wall over which a row is server-bound."""


def measure(concurrencies: list[int], requests: int, rounds: int) -> list[Row]:
    rows: list[Row] = []
    with CannedServer(cpu=server_cpu()) as server:
        for concurrency in concurrencies:
            # per run: (requests/s, client CPU us/request, wall s, server CPU s)
            samples: dict[str, list[tuple[float, float, float, float]]] = {
                name: [] for name in THROUGHPUT_STACKS
            }
            for _ in range(rounds):
                for name, stack in THROUGHPUT_STACKS.items():
                    n = max(200, requests // 10) if name == SLOW else requests
                    if concurrency == 1:
                        n = max(100, n // 4)
                    ids = [f"CDR{i:08d}" for i in range(n)]
                    server.take_stats()  # resets the server's CPU clock
                    (got, failed), wall, cpu = timed_run(
                        functools.partial(stack, server.base_url, ids, concurrency)
                    )
                    server_cpu_s = server.take_stats()["cpu_s"]
                    if failed or got != n:
                        raise RuntimeError(f"{name} fetched {got} of {n}")
                    samples[name].append((n / wall, cpu / n * 1e6, wall, server_cpu_s))
            raw_rate = median([s[0] for s in samples[RAW]])
            for name, values in samples.items():
                rate = median([v[0] for v in values])
                share = median([v[3] / v[2] for v in values])
                rows.append(
                    {
                        "concurrency": concurrency,
                        "stack": name,
                        "requests_per_s": rate,
                        "cpu_us_per_request": median([v[1] for v in values]),
                        "ratio_to_raw": rate / raw_rate,
                        "wall_s": median([v[2] for v in values]),
                        "server_cpu_s": median([v[3] for v in values]),
                        "server_cpu_share": share,
                        "server_bound": share > SERVER_BOUND,
                    }
                )
            print_rows([r for r in rows if r["concurrency"] == concurrency])
    return rows


def print_rows(rows: list[Row]) -> None:
    for row in rows:
        print(
            f"  c={row['concurrency']:<4} {row['stack']:<32} {row['requests_per_s']:8.0f} req/s "
            f"{row['cpu_us_per_request']:7.0f} us CPU/req  {row['ratio_to_raw']:.2f}x raw  "
            f"server CPU {row['server_cpu_share']:4.0%} of wall, "
            f"server-bound: {'YES' if row['server_bound'] else 'no'}",
            flush=True,
        )
