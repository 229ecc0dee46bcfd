"""Timing helpers: paired, interleaved runs, medians, client CPU per request."""

from __future__ import annotations

import asyncio
import gc
import os
import statistics
import subprocess
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

_T = TypeVar("_T")

CLIENT_CPU = 0
SERVER_CPU = 1


def pin_client() -> None:
    """Keep this process on one core and the server on the other, where allowed."""
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {CLIENT_CPU})


def server_cpu() -> int | None:
    if hasattr(os, "sched_getaffinity") and len(os.sched_getaffinity(0)) > 1:
        return SERVER_CPU
    return None


def timed_run(run: Callable[[], Coroutine[Any, Any, _T]]) -> tuple[_T, float, float]:
    """Run a coroutine in a fresh event loop: (result, wall seconds, CPU seconds)."""
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    result: _T = asyncio.run(run())
    return result, time.perf_counter() - wall, time.process_time() - cpu


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def rss_kib() -> int:
    """Resident memory of this process now, in KiB (Linux)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0  # pragma: no cover - not Linux


Row = dict[str, Any]


def limited_row(stats: dict[str, int], wall: float, ideal: float, records: int) -> Row:
    """A run of ``records`` ids against the rate-limited canned server: wall time
    against N/R, the requests and 429s the server counted, and credits (requests, the
    plan question and 429s included) per record."""
    requests = stats["served"] + stats["limited"]
    return {
        "wall_s": wall,
        "wall_over_ideal": wall / ideal,
        "requests": requests,
        "rate_limited": stats["limited"],
        "rate_limited_share": stats["limited"] / requests if requests else 0.0,
        "credits_per_record": requests / records,
    }


def describe_limited(row: Row) -> str:
    return (
        f"wall {row['wall_s']:6.1f} s = {row['wall_over_ideal']:.2f}x N/R, "
        f"{row['rate_limited']} 429s of {row['requests']} requests "
        f"({row['rate_limited_share']:.1%}), {row['credits_per_record']:.3f} credits/record"
    )


def machine_state() -> dict[str, Any]:
    """What the machine was doing when a run started: its CPUs, the load averages (1,
    5 and 15 minutes; above about 0.3 something else was running) and the commit of
    the sources measured."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607 - the checkout's own git
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "load_average": [round(load, 2) for load in os.getloadavg()],
        "commit": commit or "unknown",
    }
