"""A small simulated week (bench/week.py): two hosts export one id list into one
PostgreSQL through one Redis limit, with calls in progress, an outage, a 429 wall, a
host killed and Redis and PostgreSQL restarted; every id ends stored once, final."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from bench.week import Week, describe, simulate
from twochat_voip.testing import PostgresServer, RedisServer


@pytest.mark.slow
def test_a_small_week_stores_every_id_once_and_final(tmp_path: Path) -> None:
    """300 ids, 2 hosts, one killed: every id stored once, every record final, the key
    never printed. Counts only: the windows' lengths change no assertion."""
    if RedisServer.find() is None or PostgresServer.find() is None:
        reason = "the week needs redis-server and PostgreSQL's binaries"
        if os.environ.get("TWOCHAT_REQUIRE_REDIS") or os.environ.get("TWOCHAT_REQUIRE_POSTGRES"):
            pytest.fail(reason)
        pytest.skip(reason)
    week = Week(
        hosts=2, ids=300, rpm=6000, call_lasts=0, cron_every=0.5, outage=1, wall=1, down_for=0.5
    )
    found = asyncio.run(simulate(week, tmp_path))
    print(describe(found))
    assert found["kills"] == 1
    assert len(found["events"]) == 5  # the kill, the outage, Redis, the wall, PostgreSQL
    assert found["in_progress_calls"] > 0
    assert not found["key_printed"]
    assert (found["stored"], found["missing"], found["extra"]) == (300, 0, 0)
    assert found["not_final"] == 0
    assert found["done"]
