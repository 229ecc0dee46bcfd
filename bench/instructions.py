"""Client instructions per request, counted by valgrind's callgrind: deterministic,
unlike wall-clock ratios on a machine whose CPU changes speed.

The parent (not under valgrind) starts the canned server in its own process and runs
the client, ``python -m bench.instructions --child ...``, under callgrind. For every
concurrency and stack the client fetches a warm-up, then N1 and N2 ids in two separate
runs (each its own event loop and session, like the throughput runs). Around each run
it calls ``os.ctermid()``, which nothing else calls, and callgrind dumps its counters on
entering that function (``--dump-before=ctermid``), so each run's instructions are
known exactly, without paying Python's start-up (about 1.8e9 instructions, half a
minute under callgrind) once per run. Then

    instructions/request = (I(N2) - I(N1)) / (N2 - N1)

so set-up and tear-down of a run cancel. ``--separate-processes`` measures the same
thing the plain way, one valgrind process per run and the total from valgrind's
``Collected :`` line (start-up cancels in the difference); slower, a cross-check.

``python -m bench.instructions [-c 16 64] [--small 300] [--large 1300] [--stack NAME ...]
[--repeat 2] [--separate-processes]``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import os
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

from bench.callgrind import (
    MARK,
    RESULT,
    SDK,
    Plan,
    callgrind,
    dumps,
    sdk_fingerprint,
    valgrind,
)
from bench.measure import Row, pin_client, server_cpu
from bench.server import CannedServer
from bench.stub import STUBBED, check_stub_target, structuring_stubbed

if TYPE_CHECKING:
    from bench.stacks import Outcome, Stack

RAW = "raw aiohttp + orjson"
SLOW = "httpx + pydantic"


def all_stacks() -> list[str]:
    from bench.stacks import THROUGHPUT_STACKS

    return [*THROUGHPUT_STACKS, STUBBED]


def default_stacks() -> list[str]:
    """Every throughput stack but httpx + pydantic (too slow under valgrind), then the
    structuring-stubbed diagnosis."""
    return [name for name in all_stacks() if name != SLOW]


# --- the client process, under valgrind ------------------------------------------


_next_id = itertools.count()


def _ids(count: int) -> list[str]:
    """Ids never used before in this process: yarl keeps parsed URLs in an LRU cache
    (128 entries), so a run that repeats the last run's ids would skip URL parsing that
    a real bulk run (every id once) pays."""
    return [f"CDR{next(_next_id):08d}" for _ in range(count)]


def _run(stack: Stack, base_url: str, ids: list[str], concurrency: int) -> Outcome:
    async def run() -> Outcome:
        return await stack(base_url, ids, concurrency)

    return asyncio.run(run())


"""The client's jobs: (stack, concurrency, warm-up requests, measured run sizes)."""


def child(base_url: str, plan: Plan) -> None:
    """Run each job: a warm-up, then one marked run per size.

    Prints one ``RESULT {json}`` line per job, with each run's wall time."""
    from bench.stacks import THROUGHPUT_STACKS, ours_get_calls

    stacks = {**THROUGHPUT_STACKS, STUBBED: ours_get_calls}
    print(SDK + sdk_fingerprint(), flush=True)
    for name, concurrency, warm, sizes in plan:
        stack = stacks[name]
        stubbing = structuring_stubbed() if name == STUBBED else nullcontext(None)
        walls: list[float] = []
        with stubbing as stub:
            _run(stack, base_url, _ids(warm), concurrency)
            if stub is not None:
                stub.check(warm)
            for size in sizes:
                ids = _ids(size)
                gc.collect()
                started = time.perf_counter()
                os.ctermid()  # callgrind dumps here: the run starts
                got, failed = _run(stack, base_url, ids, concurrency)
                os.ctermid()  # and here: it ended
                walls.append(time.perf_counter() - started)
                if failed or got != size:
                    raise RuntimeError(f"{name} at {concurrency} fetched {got} of {size}")
        result = {"stack": name, "concurrency": concurrency, "sizes": sizes, "wall_s": walls}
        print(RESULT + json.dumps(result), flush=True)


# --- the parent, not under valgrind ----------------------------------------------


def _warm(warmup: int, concurrency: int) -> int:
    return warmup or 2 * concurrency


def _check_served(server: CannedServer, expected: int) -> None:
    served = server.take_stats()["served"]
    if served != expected:
        raise RuntimeError(f"the canned server answered {served} requests, expected {expected}")


def _run_marked(
    executable: str,
    server: CannedServer,
    jobs: list[tuple[str, int]],
    *,
    small: int,
    large: int,
    warmup: int,
    sdks: set[str],
) -> dict[tuple[str, int], tuple[int, int, float]]:
    """All jobs in one valgrind process: {(stack, c): (I(small), I(large), wall s)}."""
    plan = [(name, c, _warm(warmup, c), [small, large]) for name, c in jobs]
    server.take_stats()
    with tempfile.TemporaryDirectory(prefix="bench-callgrind-") as tmp:
        results, collected, wall = callgrind(executable, Path(tmp), server.base_url, plan, sdks)
        segments = dumps(Path(tmp))
    _check_served(server, sum(_warm(warmup, c) + small + large for _, c in jobs))
    marks = 4 * len(jobs)  # two runs a job, a mark before and after each
    if len(segments) != marks or len(results) != len(jobs):
        raise RuntimeError(
            f"expected {marks} callgrind dumps and {len(jobs)} results, got "
            f"{len(segments)} and {len(results)}: does something else call {MARK}()?"
        )
    # Segment k ends at mark k; the runs are segments 2, 4, 6, ... (1-based).
    runs = segments[1::2]
    print(
        f"  (one valgrind process: {wall:.0f} s, {collected / 1e9:.2f}e9 instructions, "
        f"{sum(runs) / collected:.0%} of them in measured runs)",
        flush=True,
    )
    return {
        (r["stack"], r["concurrency"]): (runs[2 * i], runs[2 * i + 1], sum(r["wall_s"]))
        for i, r in enumerate(results)
    }


def _run_separate(
    executable: str,
    server: CannedServer,
    jobs: list[tuple[str, int]],
    *,
    small: int,
    large: int,
    warmup: int,
    sdks: set[str],
) -> dict[tuple[str, int], tuple[int, int, float]]:
    """One valgrind process per run; each run's count is the process's Collected total."""
    measured: dict[tuple[str, int], tuple[int, int, float]] = {}
    for name, c in jobs:
        totals: list[int] = []
        wall = 0.0
        for size in (small, large):
            server.take_stats()
            with tempfile.TemporaryDirectory(prefix="bench-callgrind-") as tmp:
                _, collected, seconds = callgrind(
                    executable,
                    Path(tmp),
                    server.base_url,
                    [(name, c, _warm(warmup, c), [size])],
                    sdks,
                )
            _check_served(server, _warm(warmup, c) + size)
            totals.append(collected)
            wall += seconds
        measured[name, c] = (totals[0], totals[1], wall)
    return measured


def measure(
    concurrencies: list[int],
    small: int,
    large: int,
    stacks: list[str] | None = None,
    *,
    warmup: int = 0,
    separate_processes: bool = False,
) -> list[Row]:
    """Client instructions per request for each concurrency and stack, and each as a
    ratio to raw aiohttp (raw / stack: higher is better, like ``x raw`` elsewhere).

    ``warmup`` requests before the measured runs (0: twice the concurrency). Raw
    aiohttp is always measured, for the ratio."""
    executable = valgrind()
    if executable is None:
        raise RuntimeError("valgrind is not installed")
    if not 0 < small < large:
        raise ValueError(f"need 0 < small < large, got {small} and {large}")
    names = list(dict.fromkeys([RAW, *(stacks or default_stacks())]))
    unknown = set(names) - set(all_stacks())
    if unknown:
        raise ValueError(f"unknown stacks {sorted(unknown)}; known: {all_stacks()}")
    if STUBBED in names:
        check_stub_target()  # before spending minutes under valgrind
    jobs = [(name, c) for c in concurrencies for name in names]
    run = _run_separate if separate_processes else _run_marked
    sdks: set[str] = set()
    with CannedServer(cpu=server_cpu()) as server:
        measured = run(executable, server, jobs, small=small, large=large, warmup=warmup, sdks=sdks)
    if len(sdks) != 1:
        raise RuntimeError(f"twochat_voip changed during the measurement: {sorted(sdks)}")
    print(f"  (twochat_voip measured: {sdks.pop()})", flush=True)
    rows: list[Row] = []
    for concurrency in concurrencies:
        per_request = {
            name: (measured[name, concurrency][1] - measured[name, concurrency][0])
            / (large - small)
            for name in names
        }
        for name in names:
            i_small, i_large, wall = measured[name, concurrency]
            rows.append(
                {
                    "concurrency": concurrency,
                    "stack": name,
                    "instructions_per_request": per_request[name],
                    "ratio_to_raw": per_request[RAW] / per_request[name],
                    "diagnosis": name == STUBBED,
                    "instructions_small": i_small,
                    "instructions_large": i_large,
                    "small": small,
                    "large": large,
                    "valgrind_wall_s": wall,
                }
            )
    print_rows(rows)
    return rows


def print_rows(rows: list[Row]) -> None:
    for diagnosis in (False, True):
        chosen = [r for r in rows if r["diagnosis"] == diagnosis]
        if diagnosis and chosen:
            print("  diagnosis (SDK machinery, structuring stubbed):")
        for row in chosen:
            print(
                f"  c={row['concurrency']:<4} {row['stack']:<44} "
                f"{row['instructions_per_request'] / 1e3:7.1f} k instructions/request  "
                f"{row['ratio_to_raw']:.2f}x raw  (runs under valgrind: "
                f"{row['valgrind_wall_s']:.1f} s)",
                flush=True,
            )


def _compare(first: list[Row], second: list[Row]) -> None:
    print("Repeatability (second measurement against the first):")
    for a, b in zip(first, second, strict=True):
        one, two = a["instructions_per_request"], b["instructions_per_request"]
        print(
            f"  c={a['concurrency']:<4} {a['stack']:<44} {one / 1e3:7.1f} k vs "
            f"{two / 1e3:7.1f} k ({two / one - 1:+.2%}); totals "
            f"{b['instructions_small'] / a['instructions_small'] - 1:+.3%} (N1), "
            f"{b['instructions_large'] / a['instructions_large'] - 1:+.3%} (N2)"
        )


def main(argv: list[str] | None = None) -> None:
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] == ["--child"]:
        plan = json.loads(arguments[2])
        child(arguments[1], [(name, int(c), int(w), list(sizes)) for name, c, w, sizes in plan])
        return
    parser = argparse.ArgumentParser(
        prog="python -m bench.instructions", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("-c", "--concurrency", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--small", type=int, default=300, help="N1 requests (default 300)")
    parser.add_argument("--large", type=int, default=1300, help="N2 requests (default 1300)")
    parser.add_argument(
        "--stack",
        nargs="+",
        choices=all_stacks(),
        help="stacks to measure (default: all but httpx + pydantic; raw is always measured)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="measure this many times and compare")
    parser.add_argument(
        "--separate-processes",
        action="store_true",
        help="one valgrind process per run, Collected totals (slower cross-check)",
    )
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(arguments)
    if valgrind() is None:
        sys.exit("valgrind is not installed")
    pin_client()
    measurements: list[list[Row]] = []
    for n in range(args.repeat):
        started = time.perf_counter()
        print(f"Client instructions per request (callgrind), measurement {n + 1}:", flush=True)
        measurements.append(
            measure(
                args.concurrency,
                args.small,
                args.large,
                args.stack,
                separate_processes=args.separate_processes,
            )
        )
        print(f"  measurement {n + 1} took {time.perf_counter() - started:.0f} s", flush=True)
    for later in measurements[1:]:
        _compare(measurements[0], later)
    if args.json:
        args.json.write_text(json.dumps(measurements, indent=1))


if __name__ == "__main__":
    main()
