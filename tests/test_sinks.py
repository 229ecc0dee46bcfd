"""Export sinks in-process: files that cannot be corrupted, exact numbers, SQL tables."""

from __future__ import annotations

import asyncio
import csv
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from final_records import final_cdrs

from twochat_voip import SinkError, VoIPClient
from twochat_voip.export._records import COLUMNS, dumps_wire
from twochat_voip.export._run import export_calls, open_sink
from twochat_voip.export._sinks import CSVSink, JSONLSink, StdoutSink, neutralise, sink_format
from twochat_voip.testing import FakeTwoChatServer, Fault, generate_cdrs

RECORD_LINE = '{"uuid":"CDR1","account_uuid":"A1","callid":"c1","status":"COMPLETED"}'
"""A first line provably a record: a uuid and three more of a record's fields."""


def _strict(line: str) -> Any:
    """json.loads that refuses NaN and Infinity, as strict JSON does."""

    def refuse(name: str) -> None:
        raise ValueError(name)

    return json.loads(line, parse_constant=refuse, parse_float=Decimal)


async def _export(
    records: list[dict[str, Any]], output: Any, ids: list[str] | None = None, **options: Any
) -> Any:
    async with (
        FakeTwoChatServer(cdrs=records) as server,
        VoIPClient(  # in memory, unpaced: an export's subject here is its output
            api_key=server.api_key,
            base_url=server.base_url,
            transport=server.transport(),
            requests_per_minute=60_000,
        ) as voip,
    ):
        for fault in options.pop("faults", []):
            server.fail_next(fault[1], call_uuid=fault[0])
        summary = await export_calls(
            voip, ids if ids is not None else [r["uuid"] for r in records], output, **options
        )
        return summary, len([r for r in server.requests if r.call_uuid])


async def test_resume_skips_lines_that_are_not_records(tmp_path: Path) -> None:
    """Garbage, non-objects and records without a string uuid are not held."""
    output = tmp_path / "o.jsonl"
    output.write_text(f'{RECORD_LINE}\nnot json\n[1, 2]\n{{"uuid": 5}}\n{{"uuid": "CDR2"}}\n')
    async with JSONLSink(output) as sink:
        assert await sink.held(["CDR1", "CDR2", "CDR3", "5"]) == {"CDR1", "CDR2"}


@pytest.mark.parametrize(
    ("sink_type", "content"),
    [
        (JSONLSink, b"a,b\n1,2\nthe last line"),
        (JSONLSink, b"[1, 2]\n"),
        (JSONLSink, b"\xff\xfe not utf-8\n"),
        (JSONLSink, b"plain text with no newline"),
        (CSVSink, b"a,b\n1,2\n"),
        (CSVSink, b'{"uuid": "CDR1"}\n'),
    ],
)
async def test_an_output_that_is_not_ours_is_refused_untouched(
    tmp_path: Path, sink_type: type[JSONLSink], content: bytes
) -> None:
    """Not truncated, not appended to, not even its torn last line cut."""
    output = tmp_path / "mine.txt"
    output.write_bytes(content)
    with pytest.raises(SinkError, match="left untouched"):
        async with sink_type(output):
            pass  # pragma: no cover
    assert output.read_bytes() == content


async def test_torn_last_lines_are_cut(tmp_path: Path) -> None:
    """The partial line a killed run left behind is removed before appending: a JSONL
    line, a CSV row whose quoted cell spans lines, a first record."""
    jsonl = tmp_path / "o.jsonl"
    jsonl.write_text(RECORD_LINE + '\n{"uuid":"CD')
    async with JSONLSink(jsonl) as sink:
        assert await sink.held(["CDR1", "CD"]) == {"CDR1"}
    assert jsonl.read_text() == RECORD_LINE + "\n"

    header = ",".join(column.name for column in COLUMNS) + "\n"
    row = "CDR1" + "," * (len(COLUMNS) - 1) + "\n"
    for torn in ['CDR2,"Ann\nSmi', 'CDR2,"Ann\n', "CDR2,x"]:
        table = tmp_path / "o.csv"
        table.write_text(header + row + torn)
        async with CSVSink(table) as sink:
            assert await sink.held(["CDR1", "CDR2"]) == {"CDR1"}
        assert table.read_text() == header + row

    jsonl.write_text('{"uuid":"CDR1","ac')
    async with JSONLSink(jsonl):
        pass
    assert jsonl.read_text() == ""


async def test_a_bad_row_mid_file_is_refused_untouched(tmp_path: Path) -> None:
    """Quoting someone broke by hand mid-file: resuming past it would fetch and append
    every later record again, so the file is refused, untouched."""
    header = ",".join(column.name for column in COLUMNS) + "\n"
    content = header + 'CDR1,"a"b' + "," * (len(COLUMNS) - 1) + "\nCDR2" + "," * 31 + "\n"
    table = tmp_path / "o.csv"
    table.write_text(content)
    with pytest.raises(SinkError, match="cannot be read past byte"):
        async with CSVSink(table):
            pass  # pragma: no cover
    assert table.read_text() == content


async def test_a_second_writer_is_refused_until_the_first_is_done(tmp_path: Path) -> None:
    """An exclusive lock: never two writers interleaving lines in one file."""
    output = tmp_path / "o.jsonl"
    async with JSONLSink(output):
        with pytest.raises(SinkError, match="being written by another export"):
            async with JSONLSink(output):
                pass  # pragma: no cover
    async with JSONLSink(output):
        pass


@pytest.mark.slow
async def test_records_are_written_as_sent_with_exact_numbers(tmp_path: Path) -> None:
    """JSONL keeps every digit and unknown field; CSV and SQLite keep the digits too;
    every line is strict JSON (1e309 is a number, never Infinity)."""
    records = generate_cdrs(2, seed=40)
    raw = (
        '{"success": true, "cdr": {"uuid": "%s", "new_field": {"x": [1, 2.50]}, '
        '"call_cost": {"call_price": %s, "duration": 123456789012345678901}}}'
    )
    prices = ["0.12345678901234567890", "1e309"]
    faults = [
        (r["uuid"], Fault(status=200, body=raw % (r["uuid"], price)))
        for r, price in zip(records, prices, strict=True)
    ]
    jsonl = tmp_path / "o.jsonl"
    table = tmp_path / "o.csv"
    database = tmp_path / "o.db"
    for output in (jsonl, table, database):
        summary, _ = await _export(records, output, faults=list(faults))
        assert summary.exported == 2
    lines = [_strict(line) for line in jsonl.read_text().splitlines()]
    assert {str(line["call_cost"]["call_price"]) for line in lines} == {
        "0.12345678901234567890",
        "1E+309",
    }
    assert all(line["new_field"] == {"x": [1, Decimal("2.50")]} for line in lines)
    assert "Infinity" not in jsonl.read_text()
    assert "123456789012345678901" in jsonl.read_text()
    rows = list(csv.DictReader(table.read_text().splitlines()))
    assert {row["call_cost_call_price"] for row in rows} == {"0.12345678901234567890", "1E+309"}

    import sqlite3

    with sqlite3.connect(database) as connection:
        stored = connection.execute(
            "SELECT call_cost_call_price, call_cost_duration, wire FROM call_detail_records"
        ).fetchall()
    assert {price for price, _, _ in stored} == {"0.12345678901234567890", "1E+309"}
    assert {json.loads(wire)["new_field"]["x"][1] for _, _, wire in stored} == {2.5}


def test_dumps_wire_refuses_what_json_cannot_say() -> None:
    """Non-finite decimals, NaN floats and other types are errors, not bad JSON."""
    assert dumps_wire({"a": [1.5, None, True, "é"]}) == '{"a":[1.5,null,true,"é"]}'
    for bad in (Decimal("NaN"), float("inf"), {1, 2}):
        with pytest.raises((ValueError, TypeError)):
            dumps_wire({"a": bad})


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
        ("-2+3+cmd", "'-2+3+cmd"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("+595984153762", "+595984153762"),
        ("  =1+1", "'  =1+1"),
        ("\xa0=1", "'\xa0=1"),
        ("\ufeff@SUM(1)", "'\ufeff@SUM(1)"),
        ("-0.25", "-0.25"),
        ("plain", "plain"),
    ],
)
def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised(cell: str, written: str) -> None:
    """OWASP's advice; phone numbers and signed numbers stay numbers."""
    assert neutralise(cell) == written


async def test_csv_formulas_through_an_export_and_its_resume(tmp_path: Path) -> None:
    """A record whose uuid and name start like formulas: neutralised, and resumed."""
    records = generate_cdrs(1, seed=41)
    record = records[0]
    record["agent"] = {"first_name": '=HYPERLINK("http://evil")', "full_name": "@SUM(1)"}
    table = tmp_path / "o.csv"
    summary, _ = await _export(records, table)
    assert summary.exported == 1
    row = next(csv.DictReader(table.read_text().splitlines()))
    assert row["agent_first_name"] == '\'=HYPERLINK("http://evil")'
    assert row["agent_full_name"] == "'@SUM(1)"
    again, sent = await _export(records, table)
    assert (again.already_there, sent) == (1, 0)


@pytest.mark.slow
async def test_resume_is_keyed_by_the_id_asked_for(tmp_path: Path) -> None:
    """2Chat answering with another uuid: the asked id is noted, and a second run
    sends nothing; a note whose record never made it does not count."""
    records = generate_cdrs(2, seed=42)
    asked = "CDRasked-for-0000"
    body = json.dumps({"success": True, "cdr": records[0]})
    for output in (tmp_path / "o.jsonl", tmp_path / "o.csv", tmp_path / "o.db"):
        summary, _ = await _export(
            records,
            output,
            ids=[asked, records[1]["uuid"]],
            faults=[(asked, Fault(status=200, body=body))],
        )
        assert summary.exported == 2
        again, sent = await _export(records, output, ids=[asked, records[1]["uuid"]])
        assert (again.already_there, again.exported, sent) == (2, 0, 0), output
    notes = tmp_path / "o.jsonl.asked"
    notes.write_text(notes.read_text() + '["CDRghost", "CDRnever-written"]\n["torn", "CD')
    async with JSONLSink(tmp_path / "o.jsonl") as sink:
        assert await sink.held([asked, "CDRghost"]) == {asked}


async def test_duplicates_are_counted_apart_from_what_was_there(tmp_path: Path) -> None:
    """Ids given twice are fetched once and counted as duplicates, not 'already there'."""
    records = generate_cdrs(3, seed=43)
    ids = [r["uuid"] for r in records]
    output = tmp_path / "o.jsonl"
    first, _ = await _export(records, output, ids=[*ids[:2], ids[0], ids[0]])
    assert (first.exported, first.already_there, first.duplicates) == (2, 0, 2)
    second, sent = await _export(records, output, ids=[*ids, ids[2]])
    assert (second.exported, second.already_there, second.duplicates, sent) == (1, 2, 1, 1)
    assert "(2 already there, 1 given twice)" in second.describe()


async def test_failures_file_must_not_be_the_output(tmp_path: Path) -> None:
    """Refused before anything is opened or sent; the records already saved stay."""
    records = generate_cdrs(2, seed=44)
    output = tmp_path / "o.jsonl"
    await _export(records, output)
    saved = output.read_bytes()
    with pytest.raises(SinkError, match="failures file must not be the output"):
        await _export(records, output, failures=output)
    assert output.read_bytes() == saved


def test_the_format_comes_from_the_output(tmp_path: Path) -> None:
    """Names and first lines decide; --format that disagrees is refused."""
    assert sink_format("calls.csv") == "csv"
    assert sink_format("calls.JSONL") == "jsonl"
    assert sink_format("calls.db") == "sql"
    assert sink_format("postgresql://u@h/db") == "sql"
    assert sink_format("-") == "jsonl"
    assert sink_format(tmp_path / "new.out") == "jsonl"
    existing = tmp_path / "old.out"
    existing.write_text(",".join(column.name for column in COLUMNS) + "\n")
    assert sink_format(existing) == "csv"
    assert sink_format(existing, "csv") == "csv"
    with pytest.raises(SinkError, match="--format jsonl disagrees"):
        sink_format(existing, "jsonl")
    with pytest.raises(SinkError, match="disagrees"):
        sink_format("calls.jsonl", "csv")
    assert isinstance(open_sink("-"), StdoutSink)
    assert isinstance(open_sink(tmp_path / "x.csv"), CSVSink)


async def test_stdout_sink_writes_json_lines(tmp_path: Path) -> None:
    """``-o -``: lines to the stream, nothing held."""
    import io

    stream = io.BytesIO()
    records = generate_cdrs(2, seed=45)
    summary, _ = await _export(records, StdoutSink(stream))
    assert summary.exported == 2
    assert sorted(json.loads(line)["uuid"] for line in stream.getvalue().splitlines()) == sorted(
        r["uuid"] for r in records
    )


@pytest.mark.slow
async def test_sqlite_rows_are_typed_and_upserted(tmp_path: Path) -> None:
    """One row per uuid however often it is written; typed values read back."""
    from twochat_voip.sql import SQLSink

    records = generate_cdrs(3, seed=46)
    database = tmp_path / "calls.sqlite"
    await _export(records, database)
    async with SQLSink(f"sqlite:///{database}") as sink:
        assert "calls.sqlite" in sink.description
        async with sink._connected().engine.connect() as connection:
            import sqlalchemy as sa

            rows = (await connection.execute(sa.select(sink.table))).mappings().all()
    assert len(rows) == 3
    by_uuid = {row["uuid"]: row for row in rows}
    for record in records:
        row = by_uuid[record["uuid"]]
        assert row["from"] == record["from"]
        assert row["created_at"].isoformat().replace("+00:00", "Z") == record["created_at"]
        if record["call_cost"]:
            assert row["call_cost_call_price"] == Decimal(str(record["call_cost"]["call_price"]))
        assert row["wire"] == record


async def test_a_bad_database_is_one_clear_error(tmp_path: Path) -> None:
    """Not a database, a file name of another kind, a folder that is not there."""
    from twochat_voip.sql import SQLSink

    with pytest.raises(SinkError, match="not a database URL"):
        SQLSink("calls.jsonl")
    (tmp_path / "not.db").write_text("this is not SQLite")
    with pytest.raises(SinkError, match="cannot use"):
        async with SQLSink(tmp_path / "not.db"):
            pass  # pragma: no cover
    sink = SQLSink(tmp_path / "x.db")
    with pytest.raises(SinkError, match="not open"):
        await sink.held(["CDR1"])


@pytest.mark.slow
async def test_postgres_columns_are_typed_and_exports_share_a_table(
    tmp_path: Path, postgres_url: str
) -> None:
    """NUMERIC, timestamptz, jsonb; two exports at once into one database: each record
    fetched once in all, every id answered by each."""
    import asyncpg

    records = final_cdrs(60, seed=47)
    records[0]["call_cost"] = {"call_price": 1.5}
    ids = [r["uuid"] for r in records]
    (first, sent_first), (second, sent_second) = await asyncio.gather(
        _export(records, postgres_url, ids=ids, failures=tmp_path / "a"),
        _export(records, postgres_url, ids=ids[::-1], failures=tmp_path / "b"),
    )
    for summary in (first, second):
        done = summary.exported + summary.pending + summary.already_there
        assert done + summary.by_other_hosts == 60
    assert sent_first + sent_second == 60
    connection = await asyncpg.connect(postgres_url)
    try:
        count = await connection.fetchval("SELECT count(*) FROM call_detail_records")
        kinds = dict(
            await connection.fetch(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = 'call_detail_records'"
            )
        )
        price = await connection.fetchval(
            "SELECT call_cost_call_price FROM call_detail_records WHERE uuid = $1", ids[0]
        )
    finally:
        await connection.close()
    assert count == 60
    assert kinds["call_cost_call_price"] == "numeric"
    assert kinds["created_at"] == "timestamp with time zone"
    assert kinds["wire"] == "jsonb"
    assert kinds["active"] == "boolean"
    assert kinds["duration"] == "bigint"
    assert price == Decimal("1.5")
    final = sum(_record(record).is_final for record in records)
    again, sent = await _export(records, postgres_url, failures=tmp_path / "c")
    assert (again.already_there, sent) == (final, 60 - final)  # ringing calls asked again


async def test_an_unreachable_postgres_is_one_clear_error(tmp_path: Path) -> None:
    """A server that is not there: a SinkError before anything is sent, no password."""
    with pytest.raises(SinkError, match="cannot use") as caught:
        await _export(
            generate_cdrs(1), "postgresql://me:s3cret@127.0.0.1:9/none", failures=tmp_path / "f"
        )
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (404, b'{"success": false, "error": true, "error_message": "not found"}'),
        (200, b"not json"),
        (200, b'{"success": true, "cdr": {"uuid": "CDR1", "duration": NaN}}'),
        (200, b"[1, 2]"),
        (200, b'{"success": false, "error_message": "no"}'),
        (200, b'{"success": true, "cdr": [1]}'),
        (200, b'{"success": true}'),
        (200, b'{"success": true, "cdr": {"uuid": 5}}'),
    ],
)
def test_the_exact_parse_fails_as_the_fast_one_does(status: int, body: bytes) -> None:
    """Every answer that is not a record is the same error on both paths."""
    from multidict import CIMultiDict

    from twochat_voip._protocol import parse_call
    from twochat_voip._requests import Response
    from twochat_voip.export._records import parse_call_wire

    response = Response(status, CIMultiDict(), body)
    with pytest.raises(Exception) as fast:  # noqa: PT011 - compared below
        parse_call(response, "CDR1")
    with pytest.raises(Exception) as exact:  # noqa: PT011 - compared below
        parse_call_wire(response, "CDR1")
    assert type(exact.value) is type(fast.value)
    assert str(exact.value) == str(fast.value)


async def test_sinks_used_before_they_are_opened_say_so() -> None:
    """A clear error, not an AttributeError, for a sink written outside 'async with'."""
    from twochat_voip.testing import EXAMPLE_CDR

    record = generate_cdrs(1)[0]
    with pytest.raises(SinkError, match="not open"):
        await StdoutSink().write("CDR1", _record(record), EXAMPLE_CDR)


def _record(wire: dict[str, Any]) -> Any:
    from twochat_voip import CallDetailRecord, converter

    return converter.structure(wire, CallDetailRecord)


@pytest.mark.slow
async def test_failures_never_names_a_file_that_is_not_a_failures_list(tmp_path: Path) -> None:
    """A database, another export, the output's notes, a FIFO, a folder: refused
    untouched before anything is sent; an empty file of someone else's is kept."""
    import os

    records = generate_cdrs(3, seed=48)
    await _export(records, tmp_path / "other.jsonl")
    await _export(records, tmp_path / "calls.db")
    (tmp_path / "out.jsonl.asked").write_text("CDRa\tCDRb\n")
    os.mkfifo(tmp_path / "fifo")
    for failures in ("other.jsonl", "calls.db", "out.jsonl.asked", "fifo", "."):
        before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
        with pytest.raises(SinkError):
            await _export(records, tmp_path / "out.jsonl", failures=tmp_path / failures)
        after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
        assert after == before, failures
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    summary, _ = await _export(records, tmp_path / "o2.jsonl", failures=empty)
    assert summary.exported == 3
    assert empty.exists()


@pytest.mark.slow
async def test_failures_list_is_replaced_then_removed_and_locked(tmp_path: Path) -> None:
    """A run with failures replaces the last list; one without removes it; two runs
    cannot share one list. (Ids found 404 stay listed: see test_export.)"""
    records = generate_cdrs(2, seed=49)
    ids = [r["uuid"] for r in records]
    failures = tmp_path / "f.jsonl"
    await _export(records, tmp_path / "o.jsonl", ids=[*ids, "bad/id1"], failures=failures)
    assert [json.loads(line)["call_uuid"] for line in failures.read_text().splitlines()] == [
        "bad/id1"
    ]
    await _export(records, tmp_path / "o.jsonl", ids=[*ids, "bad/id2"], failures=failures)
    assert [json.loads(line)["call_uuid"] for line in failures.read_text().splitlines()] == [
        "bad/id2"
    ]
    from twochat_voip.export._files import Failures as _Failures

    held = _Failures(failures)
    await held.open()
    try:
        with pytest.raises(SinkError, match="held by another export"):
            await _export(records, tmp_path / "p.jsonl", failures=failures)
    finally:
        await held.close(finished=False)
    await _export(records, tmp_path / "o.jsonl", ids=ids, failures=failures)
    assert not failures.exists()
    with pytest.raises(SinkError, match="cannot write failures"):
        await _export(records, tmp_path / "q.jsonl", failures=tmp_path / "no" / "f.jsonl")


async def test_outputs_that_are_not_regular_files_are_refused(tmp_path: Path) -> None:
    """A FIFO (reading it would hang) and a folder: one clear error."""
    import os

    os.mkfifo(tmp_path / "pipe.jsonl")
    for output in (tmp_path / "pipe.jsonl", tmp_path):
        with pytest.raises(SinkError, match="not a regular file"):
            async with JSONLSink(output):
                pass  # pragma: no cover
    with pytest.raises(SinkError, match="cannot open"):
        async with JSONLSink(tmp_path / "missing" / "o.jsonl"):
            pass  # pragma: no cover


@pytest.mark.slow
async def test_a_carriage_return_stays_inside_its_csv_cell(tmp_path: Path) -> None:
    """A bare CR is quoted: it cannot start a row (and a formula) of its own, and the
    next resume still reads every row."""
    records = generate_cdrs(3, seed=50)
    records[0]["to_number"] = "abc\r=cmd|' /C calc'!A0"
    records[1]["to_number"] = "\r=1"
    table = tmp_path / "o.csv"
    await _export(records, table)
    with table.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3
    assert {row["to_number"] for row in rows[:2]} | {rows[2]["to_number"]} >= {
        "abc\r=cmd|' /C calc'!A0",
        "'\r=1",
    }
    again, sent = await _export(records, table)
    assert (again.already_there, sent) == (3, 0)


async def test_the_notes_of_a_linked_output_are_beside_the_file(tmp_path: Path) -> None:
    """Through a symbolic link, the asked-id notes are the real file's."""
    records = generate_cdrs(1, seed=51)
    asked = "CDRasked-via-link"
    body = json.dumps({"success": True, "cdr": records[0]})
    real = tmp_path / "a.jsonl"
    await _export(records, real, ids=[asked], faults=[(asked, Fault(status=200, body=body))])
    (tmp_path / "link.jsonl").symlink_to(real)
    again, sent = await _export(records, tmp_path / "link.jsonl", ids=[asked])
    assert (again.already_there, sent) == (1, 0)


def test_passwords_are_hidden_and_unknown_urls_refused() -> None:
    """Messages name a database URL without its password; mysql:// is no file."""
    from twochat_voip.export._sinks import shown

    assert shown("postgresql://bob:Pa55@h:5432/db") == "postgresql://bob:***@h:5432/db"
    assert shown("calls.jsonl") == "calls.jsonl"
    with pytest.raises(SinkError) as caught:
        sink_format("postgresql://bob:Pa55@h/db", "csv")
    assert "Pa55" not in str(caught.value)
    with pytest.raises(SinkError, match="not an output this SDK writes") as caught:
        sink_format("mysql://bob:Pa55@h/db")
    assert "Pa55" not in str(caught.value)


async def test_bad_database_urls_and_tables_are_one_clear_error(
    tmp_path: Path, postgres_url: str
) -> None:
    """A port that is not a number; a table of another shape; sslmode in libpq's
    spelling works (asyncpg calls it ssl)."""
    import sqlite3

    from twochat_voip.sql import SQLSink

    with pytest.raises(SinkError, match="not a database URL"):
        SQLSink("postgresql://u@127.0.0.1:notaport/db")
    database = tmp_path / "theirs.db"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE call_detail_records (uuid TEXT PRIMARY KEY, x INT)")
    with pytest.raises(SinkError, match="of another shape"):
        async with SQLSink(database):
            pass  # pragma: no cover
    async with SQLSink(postgres_url + "?sslmode=disable") as sink:
        assert await sink.held(["CDR1"]) == set()


async def test_a_dropped_database_connection_is_replaced(postgres_url: str) -> None:
    """The server ends the session between two records: the next write reconnects."""
    import asyncpg

    from twochat_voip.sql import SQLSink
    from twochat_voip.testing import EXAMPLE_CDR

    record = _record(EXAMPLE_CDR)
    async with SQLSink(postgres_url) as sink:
        await sink.write(record.uuid, record, EXAMPLE_CDR)
        admin = await asyncpg.connect(postgres_url)
        try:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        finally:
            await admin.close()
        await sink.write("CDRother", record, EXAMPLE_CDR)
        assert await sink.held([record.uuid, "CDRother"]) == {record.uuid, "CDRother"}


async def test_the_resume_scan_reads_escaped_uuids_in_full(tmp_path: Path) -> None:
    """Lines that start with the uuid are read without a full parse, unless the uuid
    holds an escape: then the JSON decoder says what it is."""
    output = tmp_path / "o.jsonl"
    output.write_text(f'{RECORD_LINE}\n{{"uuid":"CDR\\u0032"}}\n{{"b":2,"uuid":"CDR3"}}\n')
    async with JSONLSink(output) as sink:
        assert await sink.held(["CDR1", "CDR2", "CDR3", "CDR\\u0032"]) == {"CDR1", "CDR2", "CDR3"}


@pytest.mark.slow
async def test_a_cell_longer_than_the_csv_modules_cap_is_resumed(tmp_path: Path) -> None:
    """A 200,000-character cell (the csv module stops at 131,072 unless told): the
    next run sends nothing, and the process's cap is as it was."""
    records = final_cdrs(20, seed=52)
    records[5]["to_number"] = "x" * 200_000
    table = tmp_path / "o.csv"
    await _export(records, table)
    cap = csv.field_size_limit()
    again, sent = await _export(records, table)
    assert (again.already_there, sent) == (20, 0)
    assert csv.field_size_limit() == cap


async def test_an_answered_uuid_with_a_newline_is_noted_and_resumed(tmp_path: Path) -> None:
    """The asked-id notes are JSON: a uuid with a line break cannot split them."""
    records = generate_cdrs(1, seed=53)
    body = json.dumps({"success": True, "cdr": {**records[0], "uuid": "CDR-y\nz"}})
    for output in (tmp_path / "o.jsonl", tmp_path / "o.csv"):
        await _export(
            records, output, ids=["ASK-nl"], faults=[("ASK-nl", Fault(status=200, body=body))]
        )
        again, sent = await _export(records, output, ids=["ASK-nl"])
        assert (again.already_there, sent) == (1, 0), output


async def test_a_write_that_fails_says_where(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk: a SinkError naming the file, not a bare OSError."""
    import errno

    def full(fd: int, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("twochat_voip.export._files.write_all", full)
    records = generate_cdrs(2, seed=54)
    with pytest.raises(SinkError, match=r"writing to .*o\.jsonl failed: No space left"):
        await _export(records, tmp_path / "o.jsonl")


@pytest.mark.slow
async def test_a_record_postgres_refuses_is_a_failure_and_the_run_goes_on(
    tmp_path: Path, postgres_url: str
) -> None:
    """A price beyond what PostgreSQL's numeric holds (a JSON number of 200,001 digits)
    is a RecordRefusedError for that id in the failures list; the others are written.
    A NUL in a text is not refused: it is stored as its escape."""
    records = generate_cdrs(5, seed=55)
    records[1]["to_number"] = "\x00nul"
    cdr = {**records[2], "call_cost": {**(records[2]["call_cost"] or {}), "call_price": "@@"}}
    huge = json.dumps({"success": True, "cdr": cdr}).replace('"@@"', "1E+200000")
    failures = tmp_path / "f.jsonl"
    summary, _ = await _export(
        records,
        postgres_url,
        failures=failures,
        faults=[(records[2]["uuid"], Fault(status=200, body=huge))],
    )
    assert (summary.exported, summary.failed) == (4, 1)
    [entry] = [json.loads(line) for line in failures.read_text().splitlines()]
    assert entry["call_uuid"] == records[2]["uuid"]
    assert entry["error"] == "RecordRefusedError"


def test_passwords_left_unencoded_are_still_hidden() -> None:
    """A raw '/' or '@' in the password, or a password= parameter."""
    from twochat_voip.export._sinks import shown
    from twochat_voip.sql import SQLSink

    assert "only" not in shown("postgresql://dave:slash/only@127.0.0.1:5/db")
    assert "w0rd" not in shown("mysql://alice:s3cr3t/pa@ss:w0rd@h/db")
    assert "simplepw" not in shown("postgresql://carol@h:5/db?sslmode=x&password=simplepw")
    with pytest.raises(SinkError) as caught:
        SQLSink("postgresql://alice:s3cr3t/pa@ss:w0rd@127.0.0.1:5/postgres")
    assert "w0rd" not in str(caught.value)
    assert "s3cr3t" not in str(caught.value)
    assert "simplepw" not in SQLSink("postgresql://carol@h:5/db?password=simplepw").description


async def test_a_fifo_without_a_telling_name_is_refused_not_read(tmp_path: Path) -> None:
    """Finding the format must not open a FIFO (it would wait for a writer forever)."""
    import os

    os.mkfifo(tmp_path / "fifo")
    assert sink_format(tmp_path / "fifo") == "jsonl"
    with pytest.raises(SinkError, match="not a regular file"):
        await asyncio.wait_for(_export(generate_cdrs(1), tmp_path / "fifo"), timeout=10)
