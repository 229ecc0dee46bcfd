"""The adaptive rate limiter in virtual time: P processes' limiters against one GCRA
server, simulated event by event, so that a tuning of ``AdaptiveRateLimiter`` is judged
in seconds, deterministically, instead of in minutes of wall time on a machine whose
CPU changes speed.

Each simulated process runs ``concurrency`` workers over its share of N ids: wait for
the limiter's slot, half a round trip, the server's verdict (a GCRA at R per minute,
burst 5, no Retry-After, as the canned server), half a round trip, tell the limiter,
and ask again at once after a 429 (as a bulk run does). The clock and every sleep are
virtual: ``python -m bench.adaptive_sim`` prints wall time against N/R and the share of
429s for the scenarios the bulk issue names, at several round-trip times. Each
process learns the plan's limit at its first 429, as the SDK's client does by asking
``GET /open/info``; ``--no-plan`` plays a server that does not say it.

In lockstep (the default) the processes are identical, which hides the race that
decides their shares in real runs; ``--jitter 0.01`` starts each up to 10 ms late and
varies every round trip, and reports the median and worst of 16 seeded runs, which
spread as real runs do.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import itertools
import random
import statistics
from typing import Any

from twochat_voip import AdaptiveRateLimiter


class VirtualClock:
    """A clock that moves only from one scheduled wake-up to the next."""

    def __init__(self) -> None:
        self.now = 0.0
        self._queue: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._queue, (self.now + max(seconds, 0.0), next(self._order), waiter))
        await waiter

    async def run_until(self, tasks: list[asyncio.Task[Any]]) -> None:
        """Wake sleepers in time order until every task is done."""
        while not all(task.done() for task in tasks):
            for _ in range(20):  # let every runnable task reach its next sleep
                await asyncio.sleep(0)
            if self._queue:
                when, _, waiter = heapq.heappop(self._queue)
                self.now = max(self.now, when)
                waiter.set_result(None)


class GCRAServer:
    """The account's limit: R per minute, ``burst`` back to back."""

    def __init__(self, clock: VirtualClock, per_minute: float, burst: int = 5) -> None:
        self._clock = clock
        self._interval = 60.0 / per_minute
        self._tolerance = (burst - 1) * self._interval
        self._tat = 0.0
        self.accepted = 0
        self.limited = 0

    def allows(self) -> bool:
        now = self._clock.now
        if now < self._tat - self._tolerance:
            self.limited += 1
            return False
        self._tat = max(self._tat, now) + self._interval
        self.accepted += 1
        return True


async def _process(  # noqa: PLR0917 - one scenario's parameters
    clock: VirtualClock,
    server: GCRAServer,
    ids: int,
    concurrency: int,
    rtt: float,
    start: float,
    ceiling: float | None,
    plan: float | None,
    stray: float,
    rng: random.Random,
    jitter: float,
) -> float:
    await clock.sleep(start)
    limiter = AdaptiveRateLimiter(ceiling, clock=clock, sleep=clock.sleep)
    pending = iter(range(ids))
    plan_unknown = ceiling is None and plan is not None

    async def worker() -> None:
        nonlocal plan_unknown
        for _ in pending:
            while True:
                sent_at = await limiter.acquire()
                trip = rtt * (0.5 + rng.random()) if jitter else rtt
                await clock.sleep(trip / 2)
                ok = server.allows() and not (stray and rng.random() < stray)
                await clock.sleep(trip / 2)
                limiter.feedback(sent_at=sent_at, status=200 if ok else 429, retry_after=None)
                if ok:
                    break
                if plan_unknown and plan is not None:
                    # The client asks GET /open/info at its first 429 (the answer
                    # comes a round trip later; the sim gives it at once).
                    plan_unknown = False
                    limiter.learn_plan(plan)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return clock.now


async def simulate(
    *,
    processes: int,
    ids: int,
    per_minute: float,
    concurrency: int = 16,
    rtt: float = 0.003,
    stagger: float = 0.0,
    ceiling: float | None = None,
    stray: float = 0.0,
    jitter: float = 0.0,
    seed: int = 1,
    plan: bool = True,
) -> tuple[float, float, list[float]]:
    """(wall / (N/R), share of requests answered 429, each process's end / (N/R)).

    ``plan``: each process's client learns the plan's limit (R) at its first 429, as
    one that asks ``GET /open/info`` does; ``False``: a server that does not say.

    ``jitter``: each process starts up to that many seconds late, and each round
    trip takes 0.5-1.5 times ``rtt`` (random, from ``seed``), as real processes do;
    without it the processes run in lockstep, which hides races between them."""
    clock = VirtualClock()
    server = GCRAServer(clock, per_minute)
    rng = random.Random(seed)
    tasks = [
        asyncio.ensure_future(
            _process(
                clock,
                server,
                ids // processes,
                concurrency,
                rtt,
                stagger * n + jitter * rng.random(),
                ceiling,
                per_minute if plan else None,
                stray,
                rng,
                jitter,
            )
        )
        for n in range(processes)
    ]
    await clock.run_until(tasks)
    ideal = ids / (per_minute / 60.0)
    ends = [task.result() / ideal for task in tasks]
    total = server.accepted + server.limited
    return max(ends), server.limited / total, ends


SCENARIOS: dict[str, dict[str, Any]] = {
    "4 processes, adaptive, 3000/min": {"processes": 4, "ids": 1000, "per_minute": 3000},
    "4 processes, each told R, 3000/min": {
        "processes": 4,
        "ids": 1000,
        "per_minute": 3000,
        "ceiling": 3000,
    },
    "4 processes, adaptive, 2 s apart": {
        "processes": 4,
        "ids": 1000,
        "per_minute": 3000,
        "stagger": 2.0,
    },
    "1 process, adaptive, 6000/min": {"processes": 1, "ids": 2000, "per_minute": 6000},
    "1 process, adaptive, 80/min": {
        "processes": 1,
        "ids": 200,
        "per_minute": 80,
        "concurrency": 4,
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.adaptive_sim", description=__doc__)
    parser.add_argument(
        "--rtt", type=float, nargs="+", default=[0.001, 0.003, 0.008], help="round trips, s"
    )
    parser.add_argument(
        "--jitter",
        type=float,
        default=0.0,
        help="start each process up to this many seconds late and vary each round trip "
        "(0.5-1.5x); then each cell is the median and worst of --seeds runs",
    )
    parser.add_argument("--seeds", type=int, default=16, help="runs per cell with --jitter")
    parser.add_argument(
        "--no-plan", action="store_true", help="the processes never learn the plan's limit"
    )
    args = parser.parse_args()
    seeds = range(1, args.seeds + 1) if args.jitter else [1]
    for name, scenario in SCENARIOS.items():
        cells = []
        for rtt in args.rtt:
            runs = [
                asyncio.run(
                    simulate(
                        rtt=rtt, jitter=args.jitter, seed=seed, plan=not args.no_plan, **scenario
                    )
                )
                for seed in seeds
            ]
            walls = sorted(wall for wall, _, _ in runs)
            worst_share = max(share for _, share, _ in runs)
            if len(runs) == 1:
                cells.append(f"{walls[0]:5.2f}x N/R {worst_share:5.1%} 429s")
            else:
                cells.append(
                    f"{statistics.median(walls):4.2f}x (worst {walls[-1]:4.2f}x) N/R "
                    f"{worst_share:5.1%} 429s"
                )
        print(f"{name:<36} " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
