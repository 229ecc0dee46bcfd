"""``python -m bench.week``: a data team's week on 2Chat, time-compressed.

Several hosts run ``twochat-voip export`` (the command line, in processes of their own)
on one id list into one PostgreSQL, sharing the account's limit through one Redis,
against one fake 2Chat on 127.0.0.1 that holds 10% of its calls in progress when first
asked. Each host runs again, as a cron would, until the database holds every id with a
final record (or its runs stop making progress). On the way: dropped connections all
along, then, as the fake server's request count passes a share of the ids: one host
killed (SIGKILL) mid-run and restarted, an outage (every request answered 503), Redis
restarted, a wall of 429s, PostgreSQL restarted. It prints what it found and writes it
to ``docs/week.json``. Needs redis-server and PostgreSQL's binaries.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import attrs

from bench.measure import machine_state
from twochat_voip.testing import (
    CallsInProgress,
    FakeTwoChatServer,
    Fault,
    PostgresServer,
    RedisServer,
    generate_cdrs,
)

KEY = "week-key-not-a-secret"
ROOT = Path(__file__).resolve().parents[1]
DROPS = [Fault(drop="before_status"), Fault(drop="mid_body")]


@attrs.frozen(kw_only=True)
class Week:
    """What the simulated week does; durations are real seconds, triggers shares of ids."""

    hosts: int = 3
    ids: int = 3000
    rpm: float = 3000.0
    in_progress: float = 0.10
    call_lasts: float = 3.0  # seconds a call in progress goes on after its first ask
    cron_every: float = 2.0  # seconds between a host's runs
    drop_rate: float = 0.01
    outage: float = 4.0
    wall: float = 4.0
    down_for: float = 2.0  # seconds Redis, then PostgreSQL, are down
    max_runs: int = 12
    seed: int = 26


@attrs.define
class _Run:
    """What happened, as it happened."""

    started: float = attrs.field(factory=time.monotonic)
    running: dict[int, asyncio.subprocess.Process] = attrs.field(factory=dict)
    exits: list[list[int]] = attrs.field(factory=list)
    stderr: list[str] = attrs.field(factory=list)
    windows: dict[str, tuple[int, int]] = attrs.field(factory=dict)
    events: list[str] = attrs.field(factory=list)
    done_at: float | None = None
    host_0_running: asyncio.Event = attrs.field(factory=asyncio.Event)


async def held(url: str) -> dict[str, bool]:
    """Each stored id (the one asked for) and whether its record is final."""
    sql = (  # an id asked for under another uuid is in call_detail_aliases
        "SELECT coalesce(a.asked_id, r.uuid) AS id, r.status, r.active "
        "FROM call_detail_records r LEFT JOIN call_detail_aliases a ON a.uuid = r.uuid"
    )
    try:
        connection = await asyncpg.connect(url)
        try:
            rows = await connection.fetch(sql)
        finally:
            await connection.close()
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return {}  # no table yet, or PostgreSQL restarting: nothing known this time
    return {
        row["id"]: row["active"] is not True and row["status"] not in ("RINGING", "ANSWERED")
        for row in rows
    }


def final_records(count: int, seed: int) -> list[dict[str, Any]]:
    """Generated records, every call over (the server's in-progress share comes on top)."""
    records = generate_cdrs(count, seed=seed)
    for record in records:
        if record["active"] or record["status"] in ("RINGING", "ANSWERED"):
            record.update(status="MISSED", active=False)
    return records


async def _host(n: int, week: Week, run: _Run, folder: Path, urls: dict[str, str]) -> None:
    """One host: run the export again and again, as a cron would, until the work is done."""
    env = {**os.environ, "TWOCHAT_API_KEY": KEY, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "twochat_voip", "export", "-i", "ids.txt", "-o", urls["pg"]]
    command += ["--rpm", f"{week.rpm:g}", "--redis-url", urls["redis"], "--quiet"]
    command += ["--base-url", urls["api"]]
    exits = run.exits[n]
    progress = -1
    stuck = 0
    while len(exits) < week.max_runs:
        process = await asyncio.create_subprocess_exec(
            *command, cwd=folder, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=-1
        )
        run.running[n] = process
        if n == 0:
            run.host_0_running.set()
        stderr = (await process.communicate())[1].decode(errors="replace")
        del run.running[n]
        if n == 0:
            run.host_0_running.clear()
        exits.append(process.returncode or 0)
        run.stderr.append(stderr)
        stored = await held(urls["pg"])
        if len(stored) == week.ids and all(stored.values()):
            run.done_at = run.done_at or time.monotonic()
            return
        final = sum(stored.values())
        stuck = stuck + 1 if final == progress else 0
        progress = final
        if stuck >= 3:  # three runs and nothing more final: this host has done all it can
            return
        if exits[-1] != -signal.SIGKILL:  # a killed host is restarted at once
            await asyncio.sleep(week.cron_every)


async def _events(
    week: Week, run: _Run, server: FakeTwoChatServer, pg: PostgresServer, redis: RedisServer
) -> None:
    """The week's mishaps, each when the server has received a share of the ids' requests."""

    async def at(share: float) -> None:
        await server.wait_for_requests(int(share * week.ids), timeout=3600)

    async def window(name: str, seconds: float, faults: list[Fault] | None = None) -> None:
        before = server.request_count
        if faults:
            server.fail_randomly(1.0, faults, seed=week.seed)
        await asyncio.sleep(seconds)
        server.fail_randomly(week.drop_rate, DROPS, seed=week.seed)
        run.windows[name] = (before, server.request_count)

    async def restart(name: str, stop: Callable[[], None], start: Callable[[], Any]) -> None:
        await _blocking(stop)
        await window(name, week.down_for)
        await _blocking(start)

    await at(0.2)
    await run.host_0_running.wait()  # between runs: wait for its next
    run.running[0].send_signal(signal.SIGKILL)
    run.events.append(f"host 0 killed after {server.request_count} requests")
    steps: list[tuple[float, str, Callable[[str], Awaitable[None]]]] = [
        (0.3, "outage (503)", lambda name: window(name, week.outage, [Fault(status=503)])),
        (0.45, "Redis down", lambda name: restart(name, redis.stop, redis.start)),
        (0.55, "429 wall", lambda name: window(name, week.wall, [Fault(status=429)])),
        (0.7, "PostgreSQL down", lambda name: restart(name, pg.stop, pg.start)),
    ]
    for share, name, step in steps:
        await at(share)
        run.events.append(f"{name} from {server.request_count} requests")
        await step(name)


async def _blocking(function: Callable[[], Any]) -> None:
    """Run ``function`` in a thread; a cancellation waits for it to end (a server
    half-started is never left behind)."""
    thread = asyncio.ensure_future(asyncio.to_thread(function))
    try:
        await asyncio.shield(thread)
    except asyncio.CancelledError:
        await thread
        raise


async def simulate(week: Week, folder: Path) -> dict[str, Any]:
    """Run the week in ``folder``; what it found (see :func:`describe`)."""
    progress = CallsInProgress(share=week.in_progress, seconds=week.call_lasts, seed=week.seed)
    records = final_records(week.ids, week.seed)
    ids = [record["uuid"] for record in records]
    run = _Run(exits=[[] for _ in range(week.hosts)])
    with RedisServer() as redis, PostgresServer() as pg:
        async with FakeTwoChatServer(
            cdrs=records, api_key=KEY, requests_per_minute=week.rpm, in_progress=progress
        ) as server:
            server.fail_randomly(week.drop_rate, DROPS, seed=week.seed)
            urls = {"pg": pg.url, "redis": redis.url, "api": server.base_url}
            folders = [folder / f"host{n}" for n in range(week.hosts)]
            for host_folder in folders:
                host_folder.mkdir(parents=True)
                (host_folder / "ids.txt").write_text("".join(f"{i}\n" for i in ids))
            run.started = time.monotonic()
            events = asyncio.create_task(_events(week, run, server, pg, redis))
            await asyncio.gather(*(_host(n, week, run, f, urls) for n, f in enumerate(folders)))
            ended = time.monotonic()
            events.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await events
            stored = await held(pg.url)
            requests = server.requests
    calls = [r for r in requests if r.call_uuid is not None]
    asked = sorted(r.received_at for r in calls)
    in_window = {
        name: sum(1 for r in requests[begin:end] if r.call_uuid)
        for name, (begin, end) in run.windows.items()
    }
    chosen = sum(map(progress.chosen, ids))
    wall = (run.done_at or ended) - run.started
    ideal = week.ids / (week.rpm / 60)
    return {
        "settings": attrs.asdict(week),
        "ids": week.ids,
        "stored": len(stored),
        "missing": len(set(ids) - set(stored)),
        "extra": len(set(stored) - set(ids)),
        "not_final": sum(not final for final in stored.values()),
        "in_progress_calls": chosen,
        "answered_in_progress": progress.answered_in_progress,
        "call_requests": len(calls),
        "call_requests_per_stored": len(calls) / max(1, len(stored)),
        "call_requests_floor": (week.ids + chosen * progress.asks) / week.ids,
        "other_requests": len(requests) - len(calls),
        "answered_429": server.status_counts[429],
        "answers": {str(k): v for k, v in Counter(r.status for r in calls).items()},
        "call_requests_in_windows": in_window,
        "first_to_last_call_s": asked[-1] - asked[0] if asked else 0.0,
        "wall_s": wall,
        "ideal_s": ideal,
        "wall_over_ideal": wall / ideal,
        "done": len(stored) == week.ids and all(stored.values()),
        "host_runs": [len(exits) for exits in run.exits],
        "exit_codes": run.exits,
        "kills": sum(exits.count(-signal.SIGKILL) for exits in run.exits),
        "events": run.events,
        "key_printed": any(KEY in text for text in run.stderr),
    }


def describe(found: dict[str, Any]) -> str:
    """The findings, a line each."""
    f = found
    windows = ", ".join(f"{n}: {c}" for n, c in f["call_requests_in_windows"].items())
    return "\n".join(
        [
            f"{f['ids']} ids given; {f['stored']} stored once ({f['missing']} missing, "
            f"{f['extra']} not asked for); {f['not_final']} stored records not final "
            f"({f['in_progress_calls']} calls were in progress when first asked)",
            f"{f['call_requests']} call requests: {f['call_requests_per_stored']:.3f} per stored "
            f"record (the in-progress calls' second asks make the floor "
            f"{f['call_requests_floor']:.3f}; goal 1.05); {f['other_requests']} other requests",
            f"{f['answered_429']} answered 429; call requests into the windows: {windows}; "
            f"answers to call requests: {f['answers']}",
            f"wall {f['wall_s']:.1f} s against an ideal of {f['ideal_s']:.1f} s (ids / plan "
            f"rate): {f['wall_over_ideal']:.2f}x; done: {f['done']}",
            f"host runs {f['host_runs']}, exit codes {f['exit_codes']}, {f['kills']} killed; "
            f"key printed: {f['key_printed']}",
            *f["events"],
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.week", description=__doc__)
    for field in attrs.fields(Week):
        flag = "--" + field.name.replace("_", "-")
        parser.add_argument(flag, type=type(field.default), default=field.default)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "week.json")
    args = vars(parser.parse_args())
    out = args.pop("out")
    if RedisServer.find() is None or PostgresServer.find() is None:
        sys.exit("bench.week needs redis-server and PostgreSQL's binaries")
    machine = machine_state()
    folder = Path(tempfile.mkdtemp(prefix="twochat-week-"))
    try:
        found = {"machine": machine, **asyncio.run(simulate(Week(**args), folder))}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(describe(found))
    out.write_text(json.dumps(found, indent=1) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
