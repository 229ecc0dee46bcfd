"""What an export does with the file it is given: a file of ours is resumed (a record
cut short cut off, a lost newline given back); anything else is refused untouched."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import pytest
from final_records import final_cdrs
from test_cli import one_clean_line, run

from twochat_voip import CallDetailRecord, RecordRefusedError
from twochat_voip._converter import sdk_converter
from twochat_voip.export._records import COLUMNS, dumps_wire
from twochat_voip.export._sinks import OLD_HEADER_LINE, JSONLSink
from twochat_voip.testing import FakeTwoChatServer, Fault

FAST = ("--rpm", "60000")
HEADER = ",".join(column.name for column in COLUMNS)


def _ids(path: Path, ids: list[str]) -> Path:
    path.write_text("\n".join(ids) + "\n")
    return path


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("settings.json", json.dumps({"theme": "dark", "uuid_prefix": "CDR"}).encode()),
        ("notes.jsonl", b'{"note": "call the bank"}'),
        ("notes.jsonl", b'{"uuid": "x", "note": "not ours: blanks"'),
        ("columns.csv", HEADER[:30].encode()),
        ("columns.csv", HEADER[:30].encode() + b"\n"),
        ("calls.jsonl", b'{"uuid":"CDR1"}\n{"uuid":"CDR2"} trailing words'),
        ("calls.jsonl", b'{"uuid":"CDR1"}\n{"uuid": "CDR2", "cut'),
        ("calls.csv", (HEADER + "\nCDR1" + "," * len(COLUMNS)).encode()),
        ("s.json", b'{"uuid": "user-42", "name": "Ana"}'),  # keyed by uuid: not a call
        ("users.jsonl", b'{"uuid":"u1","email":"a@example.com"}\n{"uuid":"u2","email":"b"}\n'),
        ("big.jsonl", b'{"uuid":"x","a":"' + b"b" * (1 << 20)),  # no record is that long
    ],
)
async def test_a_file_that_is_not_ours_is_refused_untouched_before_any_request(
    tmp_path: Path, name: str, content: bytes
) -> None:
    """What json.dump writes, a one-line note, part of a header, a last line that is
    neither whole nor ours cut short: exit 2, one line, not a byte changed, nothing
    sent, with --max-requests 0 as without."""
    records = final_cdrs(2, seed=90)
    source = _ids(tmp_path / "ids.txt", [r["uuid"] for r in records])
    output = tmp_path / name
    output.write_bytes(content)
    async with FakeTwoChatServer(cdrs=records) as server:
        for budget in (["--max-requests", "0"], []):
            ran = await run(
                "export", "-i", str(source), "-o", str(output), *FAST, *budget, server=server
            )
            assert ran.code == 2, ran.err
            assert "left untouched" in one_clean_line(ran.err)
        assert server.requests == []
    assert output.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["ids.txt", name])


async def test_a_whole_last_record_without_its_newline_is_kept(tmp_path: Path) -> None:
    """JSONL and CSV: a hand edit dropped the final newline; the record stays, gets its
    newline, and is not fetched again."""
    records = final_cdrs(3, seed=91)
    source = _ids(tmp_path / "ids.txt", [r["uuid"] for r in records])
    first = records[0]
    async with FakeTwoChatServer(cdrs=records) as server:
        jsonl = tmp_path / "calls.jsonl"
        jsonl.write_text(dumps_wire(first))
        csv_file = tmp_path / "calls.csv"
        done = await run("export", "-i", str(source), "-o", str(csv_file), *FAST, server=server)
        assert done.code == 0, done.err
        rows = csv_file.read_text().splitlines()
        csv_file.write_text("\n".join(rows[:2]))  # the header and one row, no newline
        server.requests.clear()
        for output in (jsonl, csv_file):
            ran = await run("export", "-i", str(source), "-o", str(output), *FAST, server=server)
            assert ran.code == 0, ran.err
            assert "(1 already there)" in ran.err
        asked = sorted(r.call_uuid for r in server.requests if r.call_uuid)
    assert asked == sorted(2 * [r["uuid"] for r in records[1:]])
    lines = jsonl.read_text().splitlines(keepends=True)
    assert [json.loads(line)["uuid"] for line in lines] == [r["uuid"] for r in records]
    assert all(line.endswith("\n") for line in lines)
    table = list(csv.DictReader(csv_file.read_text().splitlines()))
    assert [row["uuid"] for row in table] == [r["uuid"] for r in records]


async def test_records_of_ours_cut_short_are_cut_off(tmp_path: Path) -> None:
    """What a killed run leaves (a first record, a later one, cut mid-string or
    mid-character) is cut off, and those records fetched again."""
    records = final_cdrs(2, seed=92)
    records[1]["agent"] = {"full_name": "José 😀"}
    source = _ids(tmp_path / "ids.txt", [r["uuid"] for r in records])
    whole = [(dumps_wire(r) + "\n").encode() for r in records]
    cut_in_emoji = whole[1][: whole[1].index("😀".encode()) + 2]
    async with FakeTwoChatServer(cdrs=records) as server:
        for content in (whole[0][:20], whole[0] + whole[1][:9], whole[0] + cut_in_emoji):
            output = tmp_path / "calls.jsonl"
            output.write_bytes(content)
            ran = await run(
                "export", "-i", str(source), "-o", str(output), "--ordered", *FAST, server=server
            )
            assert ran.code == 0, ran.err
            assert output.read_bytes().splitlines() == [w.rstrip(b"\n") for w in whole]


async def test_a_csv_with_the_preview_header_is_resumed_and_keeps_it(tmp_path: Path) -> None:
    """``call_cost.call_price`` and ``from``: the same columns in the same order, so the
    file is resumed as it is; a new file gets ``call_cost_call_price``."""
    records = final_cdrs(3, seed=93)
    source = _ids(tmp_path / "ids.txt", [r["uuid"] for r in records])
    fresh, old = tmp_path / "new.csv", tmp_path / "old.csv"
    async with FakeTwoChatServer(cdrs=records) as server:
        ran = await run("export", "-i", str(source), "-o", str(fresh), *FAST, server=server)
        assert ran.code == 0, ran.err
        header, *rows = fresh.read_bytes().splitlines(keepends=True)
        old.write_bytes(OLD_HEADER_LINE + rows[0])
        server.requests.clear()
        ran = await run("export", "-i", str(source), "-o", str(old), *FAST, server=server)
        assert ran.code == 0, ran.err
        assert len([r for r in server.requests if r.call_uuid]) == 2
    assert header.startswith(b"uuid,account_uuid,")
    assert b",call_cost_call_price," in header
    assert b",call_cost.call_price," in OLD_HEADER_LINE
    assert b",from," in OLD_HEADER_LINE
    assert old.read_bytes() == OLD_HEADER_LINE + b"".join(rows)


HALF_AN_EMOJI = "Jos\u00e9 \ud83d"  # valid JSON (a lone surrogate escape); no UTF-8 holds it


async def test_a_lone_surrogate_is_written_as_its_escape_and_the_run_goes_on(
    tmp_path: Path,
) -> None:
    """JSONL, standard output and CSV write ``\\ud83d`` as 2Chat sent it; every record
    is stored, and a rerun fetches nothing."""
    records = final_cdrs(3, seed=94)
    records[1]["agent"] = {"full_name": HALF_AN_EMOJI}
    source = _ids(tmp_path / "ids.txt", [r["uuid"] for r in records])
    jsonl, table = tmp_path / "calls.jsonl", tmp_path / "calls.csv"
    async with FakeTwoChatServer(cdrs=records) as server:
        for output in (jsonl, table):
            ran = await run("export", "-i", str(source), "-o", str(output), *FAST, server=server)
            assert ran.code == 0, ran.err
            assert "exported 3 records" in ran.err
        printed = await run("export", "-i", str(source), "-o", "-", *FAST, server=server)
        assert printed.code == 0, printed.err
        server.requests.clear()
        for output in (jsonl, table):
            again = await run("export", "-i", str(source), "-o", str(output), *FAST, server=server)
            assert "(3 already there)" in again.err
        assert server.requests == []
    for text in (jsonl.read_text(encoding="utf-8"), printed.out):
        names = [json.loads(line).get("agent", {}).get("full_name") for line in text.splitlines()]
        assert HALF_AN_EMOJI in names
        assert '"Jos\u00e9 \\ud83d"' in text
    lines = table.read_text(encoding="utf-8").splitlines()
    cells = [row["agent_full_name"] for row in csv.DictReader(lines)]
    assert "Jos\u00e9 \\ud83d" in cells


async def test_texts_no_database_holds_are_stored_as_their_escapes(
    tmp_path: Path, postgres_url: str
) -> None:
    """Half an emoji in a name and in the uuid 2Chat answers an asked id with: SQLite
    and PostgreSQL store each as its JSON escape (six characters, as CSV does); a NUL
    in a number: SQLite holds it, PostgreSQL its escape. The runs end clean, and a
    rerun asks for nothing."""
    import asyncpg

    records = final_cdrs(3, seed=95)
    records[0]["agent"] = {"full_name": HALF_AN_EMOJI}
    records[1]["to_number"] = "+1\x00555"
    asked = [r["uuid"] for r in records]
    answer = json.dumps({"success": True, "cdr": {**records[2], "uuid": "SURID\ud83d"}})
    source = _ids(tmp_path / "ids.txt", asked)
    query = "SELECT uuid, agent_full_name, to_number FROM call_detail_records ORDER BY uuid"
    expected = [
        (asked[0], "Jos\u00e9 \\ud83d", records[0]["to_number"]),
        (asked[1], (records[1]["agent"] or {}).get("full_name"), "+1\\u0000555"),
        ("SURID\\ud83d", (records[2]["agent"] or {}).get("full_name"), records[2]["to_number"]),
    ]
    async with FakeTwoChatServer(cdrs=records) as server:
        files = [str(tmp_path / "calls.csv"), str(tmp_path / "calls.jsonl")]
        for output in (*files, str(tmp_path / "calls.db"), postgres_url):
            server.fail_next(Fault(status=200, body=answer), call_uuid=asked[2])
            for again in (False, True):
                server.requests.clear()
                ran = await run("export", "-i", str(source), "-o", output, *FAST, server=server)
                assert ran.code == 0, ran.err
                assert len([r for r in server.requests if r.call_uuid]) == (0 if again else 3)
    for output in files:  # one record a call, the escaped uuid's too
        assert len(Path(output).read_text(encoding="utf-8").splitlines()) == 3 + output.endswith(
            "csv"
        )
    with sqlite3.connect(tmp_path / "calls.db") as connection:
        in_sqlite = list(connection.execute(query))
    assert in_sqlite == sorted([*expected[::2], (*expected[1][:2], "+1\x00555")])
    connection = await asyncpg.connect(postgres_url)
    try:
        assert [tuple(row) for row in await connection.fetch(query)] == sorted(expected)
        wire = "SELECT wire->'agent'->>'full_name' FROM call_detail_records WHERE uuid = $1"
        assert await connection.fetchval(wire, asked[0]) == "Jos\u00e9 \\ud83d"
    finally:
        await connection.close()


async def test_a_record_a_file_cannot_hold_is_refused_alone(tmp_path: Path) -> None:
    """What the encoder cannot write (here a number JSON has no word for) is a
    RecordRefusedError for that record; the file is unchanged and stays open."""
    record = sdk_converter().structure(final_cdrs(1, seed=96)[0], CallDetailRecord)
    async with JSONLSink(tmp_path / "calls.jsonl") as sink:
        with pytest.raises(RecordRefusedError, match="cannot hold this record"):
            await sink.write(record.uuid, record, {"uuid": record.uuid, "n": object()})
        assert sink.path.read_bytes() == b""
        assert await sink.held([record.uuid]) == set()
        await sink.write(record.uuid, record, {"uuid": record.uuid})
        assert await sink.held([record.uuid]) == {record.uuid}
