"""SQL outputs: tables checked before the first request, final rows, failures in the
database, and exports on many hosts sharing one id list through it."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from twochat_voip import CallDetailRecord, NotFoundError, SinkError, VoIPClient, converter
from twochat_voip._results import CallFailure
from twochat_voip.export._run import export_calls
from twochat_voip.sql import SQLSink
from twochat_voip.testing import EXAMPLE_CDR, FakeTwoChatServer, Fault, generate_cdrs


def _record(wire: dict[str, Any]) -> CallDetailRecord:
    return converter.structure(wire, CallDetailRecord)


async def _export(server: FakeTwoChatServer, output: Any, ids: list[str], **options: Any) -> Any:
    async with VoIPClient(
        api_key=server.api_key,
        base_url=server.base_url,
        transport=server.transport(),
        requests_per_minute=60_000,
    ) as voip:
        return await export_calls(voip, ids, output, **options)


def _fetched(server: FakeTwoChatServer) -> int:
    return len([r for r in server.requests if r.call_uuid])


@pytest.mark.parametrize(
    ("create", "problem"),
    [
        (
            "CREATE TABLE call_detail_records (uuid TEXT PRIMARY KEY, {columns}, duration TEXT)",
            "duration is text, not an integer",
        ),
        ("CREATE TABLE call_detail_records ({columns}, uuid TEXT, duration BIGINT)", "primary key"),
    ],
)
async def test_a_table_of_other_types_is_refused_before_any_request(
    tmp_path: Path, create: str, problem: str
) -> None:
    """A TEXT where a BIGINT belongs, or no primary key on uuid: one SinkError line,
    and nothing is sent."""
    sink = SQLSink(tmp_path / "theirs.db")
    columns = ", ".join(
        f'"{c.name}" {c.type.compile(dialect=sa.dialects.sqlite.dialect())}'
        for c in sink.table.columns
        if c.name not in ("uuid", "duration")
    )
    with sqlite3.connect(tmp_path / "theirs.db") as connection:
        connection.execute(create.format(columns=columns))
    records = generate_cdrs(2, seed=60)
    async with FakeTwoChatServer(cdrs=records) as server:
        with pytest.raises(SinkError, match=problem) as caught:
            await _export(server, sink, [r["uuid"] for r in records], failures=tmp_path / "f")
        assert _fetched(server) == 0
    assert "\n" not in str(caught.value)


@pytest.mark.slow
async def test_postgres_types_are_checked_by_affinity(postgres_url: str) -> None:
    """PostgreSQL: an INTEGER where BIGINT is made passes (an integer all the same);
    a TEXT timestamp does not."""
    async with SQLSink(postgres_url) as sink:
        engine = sink._connected().engine
        async with engine.begin() as connection:
            await connection.execute(
                sa.text("ALTER TABLE call_detail_records ALTER COLUMN duration TYPE integer")
            )
    async with SQLSink(postgres_url):
        pass
    async with engine.begin() as connection:
        await connection.execute(
            sa.text("ALTER TABLE call_detail_records ALTER COLUMN created_at TYPE text")
        )
    await engine.dispose()
    with pytest.raises(SinkError, match="created_at is text, not a timestamp with time zone"):
        async with SQLSink(postgres_url):
            pass  # pragma: no cover


async def test_a_row_is_the_newest_view_and_only_final_rows_are_held(tmp_path: Path) -> None:
    """A ringing call is stored but asked again; once over, its row is the new record
    and it is held."""
    ringing = {**EXAMPLE_CDR, "status": "RINGING", "active": True, "duration": None}
    async with SQLSink(tmp_path / "calls.db") as sink:
        await sink.write(ringing["uuid"], _record(ringing), ringing)
        assert await sink.held([ringing["uuid"]]) == set()
        await sink.write(EXAMPLE_CDR["uuid"], _record(EXAMPLE_CDR), EXAMPLE_CDR)
        assert await sink.held([ringing["uuid"]]) == {ringing["uuid"]}
        async with sink._connected().engine.connect() as connection:
            rows = (await connection.execute(sa.select(sink.table))).mappings().all()
    assert [(row["status"], row["final"], row["wire"]) for row in rows] == [
        ("COMPLETED", True, EXAMPLE_CDR)
    ]


async def test_every_id_answered_with_one_record_is_held(tmp_path: Path) -> None:
    """Two asked ids answered with the same record: both held after the first run,
    and a second run sends nothing."""
    records = generate_cdrs(1, seed=61)
    records[0].update(status="COMPLETED", active=False)
    body = json.dumps({"success": True, "cdr": records[0]})
    ids = ["ASK-one", "ASK-two"]
    output = tmp_path / "calls.db"
    async with FakeTwoChatServer(cdrs=records) as server:
        for asked in ids:
            server.fail_next(Fault(status=200, body=body), call_uuid=asked)
        await _export(server, output, ids, failures=tmp_path / "f")
        again = await _export(server, output, ids, failures=tmp_path / "f")
        assert (again.already_there, _fetched(server)) == (2, 2)


async def test_failures_are_kept_in_the_database(tmp_path: Path) -> None:
    """add upserts, known_not_found answers the 404s, forget deletes; it is usable
    only while its sink is open."""
    sink = SQLSink(tmp_path / "calls.db")
    store = sink.failure_store()
    with pytest.raises(SinkError, match="not open"):
        await store.open()
    async with sink:
        await store.open()
        assert "call_detail_failures" in store.description
        gone = NotFoundError("404: Call not found", status_code=404, call_uuid="CDR404")
        await store.add(CallFailure(call_uuid="CDR404", error=gone))
        await store.add(CallFailure(call_uuid="CDRbad", error=ValueError("no")))
        await store.add(CallFailure(call_uuid="CDRbad", error=ValueError("not JSON")))
        assert await store.known_not_found(["CDR404", "CDRbad", "CDRx"]) == {"CDR404"}
        await store.forget("CDR404")
        assert await store.known_not_found(["CDR404"]) == set()
        async with sink._connected().engine.connect() as connection:
            rows = (await connection.execute(sa.select(store.table))).mappings().all()
        await store.close(finished=True)
    assert [(row["call_uuid"], row["message"]) for row in rows] == [("CDRbad", "not JSON")]


async def test_a_dropped_connection_while_asking_what_is_held_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dropped once: asked again on a new connection. Dropped twice: one SinkError
    line, without the SQL or the ids."""
    drops = [0]
    real = AsyncConnection.execute

    async def dropping(self: AsyncConnection, statement: Any, *args: Any, **kw: Any) -> Any:
        if drops[0] and isinstance(statement, sa.CompoundSelect):
            drops[0] -= 1
            raise OperationalError("SELECT ... IN (...)", {}, ConnectionResetError("reset"))
        return await real(self, statement, *args, **kw)

    monkeypatch.setattr(AsyncConnection, "execute", dropping)
    async with SQLSink(tmp_path / "calls.db") as sink:
        await sink.write(EXAMPLE_CDR["uuid"], _record(EXAMPLE_CDR), EXAMPLE_CDR)
        drops[0] = 1
        assert await sink.held([EXAMPLE_CDR["uuid"]]) == {EXAMPLE_CDR["uuid"]}
        drops[0] = 2
        with pytest.raises(SinkError) as caught:
            await sink.held([EXAMPLE_CDR["uuid"]])
    assert str(caught.value) == (f"reading which ids are held in {sink.description} failed: reset")


@pytest.mark.slow
async def test_two_exports_of_the_same_ids_into_one_sqlite_file_fetch_each_once(
    tmp_path: Path,
) -> None:
    """At once, same ids in other orders: every id fetched once in all, each run
    answers every id (its own, or done by the other host)."""
    records = generate_cdrs(80, seed=62)
    ids = [r["uuid"] for r in records]
    output = tmp_path / "calls.db"
    async with FakeTwoChatServer(cdrs=records) as server:
        held: list[list[int]] = [[], []]
        first, second = await asyncio.gather(
            _export(server, output, ids, on_held=held[0].append),  # no failures file
            _export(server, output, ids[::-1], on_held=held[1].append),
        )
        assert _fetched(server) == 80
    for summary, told in zip((first, second), held, strict=True):
        assert summary.exported + summary.pending + summary.by_other_hosts == 80
        assert sum(told) == summary.already_there + summary.by_other_hosts  # the progress
    assert first.by_other_hosts + second.by_other_hosts == 80
    with sqlite3.connect(output) as connection:
        assert connection.execute("SELECT count(*) FROM call_detail_records").fetchone() == (80,)
        assert connection.execute(
            "SELECT count(*) FROM call_detail_claims WHERE owner IS NOT NULL"
        ).fetchone() == (0,)


@pytest.mark.virtual_time
async def test_a_killed_hosts_claims_come_back_after_the_lease(tmp_path: Path) -> None:
    """A host that claimed ids and died renews nothing: another waits for its lease
    to run out, then fetches them itself; nothing is fetched twice."""
    loop = asyncio.get_running_loop()
    records = generate_cdrs(20, seed=63)
    ids = [r["uuid"] for r in records]
    output = tmp_path / "calls.db"
    dead = SQLSink(output)
    dead.claims.clock = loop.time
    await dead.__aenter__()
    assert await dead.claims.take(ids[:8]) == set(ids[:8])
    assert dead.claims._renewing is not None
    dead.claims._renewing.cancel()  # killed: no renewal, no letting go
    await dead._connected().engine.dispose()
    alive = SQLSink(output)
    alive.claims.clock = loop.time
    alive.claims.lease = 30.0
    started = loop.time()
    async with FakeTwoChatServer(cdrs=records) as server:
        summary = await _export(server, alive, ids, failures=tmp_path / "f")
        assert _fetched(server) == 20
    assert (summary.exported + summary.pending, summary.by_other_hosts) == (20, 0)
    assert loop.time() - started >= dead.claims.lease


@pytest.mark.virtual_time
async def test_a_live_hosts_claims_are_renewed_and_let_go_at_its_end(tmp_path: Path) -> None:
    """Claims held past several leases are not taken over while their host lives; once
    it ends, another takes them at once."""
    loop = asyncio.get_running_loop()
    output = tmp_path / "calls.db"
    slow, other = SQLSink(output), SQLSink(output)
    for sink in (slow, other):
        sink.claims.clock = loop.time
    slow.claims.lease = 30.0
    async with other:
        async with slow:
            assert await slow.claims.take(["CDR1"]) == {"CDR1"}
            await asyncio.sleep(100)  # the loop's time: over three leases
            assert await other.claims.take(["CDR1"]) == set()
        assert await other.claims.take(["CDR1"]) == {"CDR1"}
