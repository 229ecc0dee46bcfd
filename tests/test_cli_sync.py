"""``twochat-voip sync`` as a user runs it: the history into a database, details and
all, and only what is new on the next run."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from final_records import final_cdrs
from test_cli import run

from twochat_voip.testing import FakeTwoChatServer, RedisServer, generate_cdrs


def _held(database: Path) -> dict[str, dict[str, object]]:
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT uuid, wire FROM call_detail_records").fetchall()
    return {uuid: json.loads(record) for uuid, record in rows}


@pytest.mark.slow
async def test_sync_fetches_details_once_and_then_only_what_is_new(tmp_path: Path) -> None:
    """A first sync pages the history (a credit a page) and fetches each record's
    details; a second fetches only the calls made since."""
    records = final_cdrs(23, seed=70)
    database = tmp_path / "calls.db"
    async with FakeTwoChatServer(cdrs=records[:20], history_page_size=10) as server:
        first = await run("sync", "-o", str(database), "--rpm", "60000", server=server)
        assert first.code == 0, first.err
        pages = [r for r in server.requests if r.path == "/open/voip/call-history"]
        details = [r for r in server.requests if r.call_uuid]
        assert (len(pages), len(details)) == (3, 20)  # pages 0, 1 and the empty 2
        held = _held(database)
        assert set(held) == {r["uuid"] for r in records[:20]}
        assert all("agent" in record for record in held.values())  # details, not history
        server.add_cdrs(records[20:])
        server.requests.clear()
        second = await run("sync", "-o", str(database), "--rpm", "60000", server=server)
        assert second.code == 0, second.err
        fetched = [r.call_uuid for r in server.requests if r.call_uuid]
        assert sorted(fetched) == sorted(r["uuid"] for r in records[20:])
    assert set(_held(database)) == {r["uuid"] for r in records}


async def test_sync_one_direction(tmp_path: Path) -> None:
    """--direction inbound asks the history for inbound calls only."""
    records = generate_cdrs(12, seed=71)
    output = tmp_path / "in.jsonl"
    async with FakeTwoChatServer(cdrs=records) as server:
        ran = await run(
            "sync", "-o", str(output), "--direction", "inbound", "--rpm", "60000", server=server
        )
        assert ran.code == 0, ran.err
        asked = {r.query.get("direction") for r in server.requests if r.path.endswith("history")}
    assert asked == {"inbound"}
    saved = [json.loads(line)["uuid"] for line in output.read_text().splitlines()]
    assert sorted(saved) == sorted(r["uuid"] for r in records if r["direction"] == "I")


async def test_a_sync_stopped_in_the_history_says_so_and_keeps_what_it_fetched(
    tmp_path: Path,
) -> None:
    """The budget runs out while the history is paged: the records of the ids read so
    far are saved, the run says why it stopped and how to go on, and exits 1."""
    records = generate_cdrs(30, seed=72)
    output = tmp_path / "calls.jsonl"
    async with FakeTwoChatServer(cdrs=records, history_page_size=10) as server:
        ran = await run(
            "sync",
            "-o",
            str(output),
            "--rpm",
            "60000",
            "--max-requests",
            "8",
            "--concurrency",
            "1",
            server=server,
        )
    assert ran.code == 1, ran.err
    assert "stopped early" in ran.err
    assert "run the same command again" in ran.err or "budget" in ran.err
    saved = output.read_text().splitlines() if output.exists() else []
    assert 0 < len(saved) < 30


async def test_a_refused_key_stops_sync_with_one_clear_line(tmp_path: Path) -> None:
    """A 401 on the first history page: nothing fetched, the reason, exit 1."""
    async with FakeTwoChatServer(api_key="the-right-key") as server:
        ran = await run(
            "sync",
            "-o",
            str(tmp_path / "c.jsonl"),
            env={"TWOCHAT_API_KEY": "a-wrong-key", "TWOCHAT_BASE_URL": server.base_url},
        )
    assert ran.code == 1
    assert "stopped early" in ran.err
    assert "401" in ran.err
    assert "a-wrong-key" not in ran.err


async def test_sync_shares_the_limit_through_redis(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """sync takes TWOCHAT_REDIS_URL as export does: its requests take their slots in
    Redis (one script call each), at the plan's rate asked once and kept there."""
    from redis.asyncio import Redis

    client = Redis.from_url(redis_server.url)
    try:
        async with FakeTwoChatServer(
            cdrs=generate_cdrs(5, seed=72), plan_requests_per_minute=6000
        ) as server:
            ran = await run(
                "sync",
                "-o",
                str(tmp_path / "calls.jsonl"),
                server=server,
                env={"TWOCHAT_REDIS_URL": redis_server.url},
            )
            sent = server.request_count
        assert ran.code == 0, ran.err
        stats = await client.info("commandstats")
        evalsha = stats["cmdstat_evalsha"]  # (less the first, NOSCRIPT: then loaded)
        assert evalsha["calls"] - evalsha["failed_calls"] == sent - 1  # all but the plan's
        assert len(await client.keys("*:plan")) == 1
    finally:
        await client.aclose()
