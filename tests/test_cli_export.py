"""``twochat-voip export`` as a user runs it: outputs that cannot be corrupted, bad
input, Ctrl-C, standard output, databases."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import signal
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from final_records import final_cdrs
from test_cli import SCRIPT, interruptible, one_clean_line, run

from twochat_voip.testing import FakeTwoChatServer, generate_cdrs

FAST = ("--rpm", "60000")  # for exports whose subject is not their pace


def _ids(path: Path, ids: list[str], prefix: bytes = b"") -> Path:
    path.write_bytes(prefix + "\n".join(ids).encode() + b"\n")
    return path


async def _start(
    server: FakeTwoChatServer, *args: str, stdout: Any = None
) -> asyncio.subprocess.Process:
    """The installed command with the server's key and URL, stderr piped."""
    assert SCRIPT is not None
    return await asyncio.create_subprocess_exec(
        *interruptible(SCRIPT, *args),
        stdout=stdout,
        stderr=asyncio.subprocess.PIPE,
        env={
            "TWOCHAT_API_KEY": str(server.api_key),
            "TWOCHAT_BASE_URL": server.base_url,
            "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
        },
    )


def _sent(server: FakeTwoChatServer) -> int:
    return len([r for r in server.requests if r.call_uuid])


@pytest.mark.slow
async def test_the_format_comes_from_the_output_name(tmp_path: Path) -> None:
    """``-o calls.csv`` writes CSV; another --format for it is refused, nothing sent."""
    records = generate_cdrs(3, seed=60)
    source = _ids(tmp_path / "ids.txt", [r["uuid"] for r in records])
    output = tmp_path / "calls.csv"
    async with FakeTwoChatServer(cdrs=records) as server:
        ran = await run("export", "-i", str(source), "-o", str(output), server=server)
        assert ran.code == 0, ran.err
        saved = output.read_bytes()
        server.requests.clear()
        refused = await run(
            "export", "-i", str(source), "-o", str(output), "--format", "jsonl", server=server
        )
        assert server.requests == []
    assert len(list(csv.DictReader(saved.decode().splitlines()))) == 3
    assert refused.code == 2
    assert "--format jsonl disagrees" in one_clean_line(refused.err)
    assert output.read_bytes() == saved


async def test_outputs_that_must_not_be_written_are_refused_untouched(tmp_path: Path) -> None:
    """An unrelated file, the failures file as the output, the ids file as failures:
    exit 2, one line, nothing sent, nothing changed."""
    records = generate_cdrs(2, seed=61)
    source = _ids(tmp_path / "ids.txt", [r["uuid"] for r in records])
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"my notes\nthe last line, no newline")
    async with FakeTwoChatServer(cdrs=records) as server:
        cases = [
            ["-o", str(notes)],
            ["-o", str(tmp_path / "o.jsonl"), "--failures", str(tmp_path / "o.jsonl")],
            ["-o", str(tmp_path / "p.jsonl"), "--failures", str(source)],
        ]
        for case in cases:
            ran = await run("export", "-i", str(source), *case, server=server)
            assert ran.code == 2, (case, ran.err)
            one_clean_line(ran.err)
        assert server.requests == []
    assert notes.read_bytes() == b"my notes\nthe last line, no newline"
    assert source.read_text().split() == [r["uuid"] for r in records]


@pytest.mark.slow
async def test_two_exports_of_one_file_never_interleave(tmp_path: Path) -> None:
    """Started together: one writes, the other is refused with one line; each record
    is in the file once."""
    records = final_cdrs(200, seed=62)
    source = _ids(tmp_path / "ids.txt", [r["uuid"] for r in records])
    output = tmp_path / "o.jsonl"
    async with FakeTwoChatServer(cdrs=records) as server:
        first, second = await asyncio.gather(
            *(
                run(
                    "export",
                    "-i",
                    str(source),
                    "-o",
                    str(output),
                    "--rpm",
                    "6000",
                    server=server,
                    subprocess=True,
                )  # two processes at once
                for _ in range(2)
            ),
        )
    codes = sorted([first.code, second.code])
    assert codes == [0, 2], (first.err, second.err)
    refused = first if first.code == 2 else second
    assert "being written by another export" in one_clean_line(refused.err)
    uuids = [json.loads(line)["uuid"] for line in output.read_text().splitlines()]
    assert sorted(uuids) == sorted(r["uuid"] for r in records)


@pytest.mark.slow
async def test_ids_that_are_not_utf8_and_a_bom(tmp_path: Path) -> None:
    """Bytes that are not UTF-8: one line naming the line, exit 2. A BOM is ignored."""
    records = generate_cdrs(2, seed=63)
    ids = [r["uuid"] for r in records]
    async with FakeTwoChatServer(cdrs=records) as server:
        bad = tmp_path / "bad.txt"
        bad.write_bytes(ids[0].encode() + b"\n\xff\xfeCDR\n")
        ran = await run("export", "-i", str(bad), "-o", str(tmp_path / "a.jsonl"), server=server)
        assert ran.code == 2
        assert "line 2 of the ids is not UTF-8" in one_clean_line(ran.err)
        bom = _ids(tmp_path / "bom.txt", ids, prefix=b"\xef\xbb\xbf")
        ok = await run("export", "-i", str(bom), "-o", str(tmp_path / "b.jsonl"), server=server)
        assert ok.code == 0, ok.err
        output = tmp_path / "latin1.jsonl"
        output.write_bytes(b"caf\xe9\n")
        latin = await run("export", "-i", str(bom), "-o", str(output), server=server)
    assert len((tmp_path / "b.jsonl").read_text().splitlines()) == 2
    assert latin.code == 2
    assert "not UTF-8" in one_clean_line(latin.err)
    assert output.read_bytes() == b"caf\xe9\n"


@pytest.mark.slow
async def test_output_dash_writes_json_lines_to_stdout(tmp_path: Path) -> None:
    """``-o -``: records on stdout, the summary on stderr, no file named '-'."""
    records = generate_cdrs(3, seed=64)
    async with FakeTwoChatServer(cdrs=records) as server:
        ran = await run(
            "export",
            "-i",
            "-",
            "-o",
            "-",
            server=server,
            stdin="\n".join(r["uuid"] for r in records),
            cwd=tmp_path,
        )
    assert ran.code == 0, ran.err
    assert sorted(json.loads(line)["uuid"] for line in ran.out.splitlines()) == sorted(
        r["uuid"] for r in records
    )
    assert "exported 3 records to standard output" in ran.err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
async def test_ctrl_c_says_what_was_saved_and_exits_130(tmp_path: Path) -> None:
    """SIGINT mid-run: one line (saved so far, how to resume), exit 130, whole lines."""
    records = generate_cdrs(400, seed=65)
    source = _ids(tmp_path / "ids.txt", [r["uuid"] for r in records])
    output = tmp_path / "o.jsonl"
    async with FakeTwoChatServer(cdrs=records) as server:
        process = await _start(
            server, "export", "-i", str(source), "-o", str(output), "--rpm", "1200"
        )
        while _sent(server) < 20:  # noqa: ASYNC110 - the server counts; nothing to await
            await asyncio.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 130
    line = one_clean_line(err.decode())
    assert line.startswith("interrupted: ")
    assert "run the same command again to resume" in line
    saved = int(line.split()[1])
    lines = output.read_text().splitlines()
    assert len(lines) == saved
    assert all(json.loads(text)["uuid"] for text in lines)


@pytest.mark.slow
async def test_export_into_sqlite_and_postgres(tmp_path: Path, postgres_url: str) -> None:
    """``-o calls.db`` and ``-o postgresql://…``: rows, and a second run sends nothing."""
    records = generate_cdrs(5, seed=66)
    source = _ids(tmp_path / "ids.txt", [r["uuid"] for r in records])
    database = tmp_path / "calls.db"
    async with FakeTwoChatServer(cdrs=records) as server:
        for output in (str(database), postgres_url):
            ran = await run("export", "-i", str(source), "-o", output, *FAST, server=server)
            assert ran.code == 0, ran.err
            server.requests.clear()
            again = await run("export", "-i", str(source), "-o", output, *FAST, server=server)
            assert again.code == 0, again.err
            assert "(5 already there)" in again.err
            assert _sent(server) == 0
    with sqlite3.connect(database) as connection:
        assert connection.execute("SELECT count(*) FROM call_detail_records").fetchone() == (5,)


@pytest.mark.slow
async def test_what_goes_wrong_mid_run_is_exit_1_and_says_what_was_saved(
    tmp_path: Path,
) -> None:
    """A bad ids line after records were fetched: exit 1 (not 2: credits were spent),
    saying how many were saved. A failures folder that is not there: exit 2, nothing
    sent."""
    records = generate_cdrs(300, seed=67)
    source = tmp_path / "ids.txt"
    source.write_bytes(
        "\n".join(r["uuid"] for r in records).encode() + b"\n\xff\xfe\n" + b"CDRlate\n"
    )
    output = tmp_path / "o.jsonl"
    async with FakeTwoChatServer(cdrs=records) as server:
        ran = await run(
            "export", "-i", str(source), "-o", str(output), "--rpm", "60000", server=server
        )
        server.requests.clear()
        missing = await run(
            "export",
            "-i",
            str(source),
            "-o",
            str(tmp_path / "p.jsonl"),
            "--failures",
            str(tmp_path / "no" / "f.jsonl"),
            server=server,
        )
        assert server.requests == []
    assert ran.code == 1
    line = one_clean_line(ran.err)
    assert "line 301 of the ids is not UTF-8" in line
    assert "records were saved: run the same command again to resume" in line
    assert missing.code == 2
    assert "cannot write failures" in one_clean_line(missing.err)
    assert not (tmp_path / "p.jsonl").exists()


@pytest.mark.slow
async def test_a_closed_stdout_and_a_key_file_with_a_bom(tmp_path: Path) -> None:
    """``-o - | head``: ends quietly, exit 0, as ``yes | head`` does. A key file saved
    with a BOM works (the BOM is not part of the key)."""
    records = generate_cdrs(300, seed=68)
    source = _ids(tmp_path / "ids.txt", [r["uuid"] for r in records])
    key_file = tmp_path / "key"
    async with FakeTwoChatServer(cdrs=records) as server:
        key_file.write_bytes(b"\xef\xbb\xbf" + str(server.api_key).encode() + b"\n")
        assert SCRIPT is not None
        process = await asyncio.create_subprocess_shell(
            f"'{SCRIPT}' export -i '{source}' -o - --rpm 60000 --api-key-file '{key_file}'"
            " | head -c 100 > /dev/null; exit ${PIPESTATUS[0]}",
            executable="/bin/bash",
            stderr=asyncio.subprocess.PIPE,
            env={
                "TWOCHAT_BASE_URL": server.base_url,
                "PATH": "/usr/bin:/bin",
                "PYTHONPATH": os.environ.get("PYTHONPATH", ""),  # a worktree's code, if run so
            },
        )
        _, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert (process.returncode, err.decode()) == (0, "")
    assert 0 < len([r for r in server.requests if r.call_uuid]) < len(records)
    assert server.requests[0].headers.get("x-user-api-key") == server.api_key


@pytest.mark.slow
async def test_csv_from_the_command_is_safe_exact_and_counted(tmp_path: Path) -> None:
    """Through the installed command: a formula is neutralised, a 20-digit price kept,
    and ids given twice are counted apart from the ones already there."""
    records = generate_cdrs(3, seed=69)
    records[0]["agent"] = {"full_name": '=HYPERLINK("http://evil")'}
    ids = [r["uuid"] for r in records]
    raw = json.dumps({"success": True, "cdr": {**records[1], "call_cost": {"call_price": 1}}})
    raw = raw.replace('"call_price": 1', '"call_price": 0.12345678901234567890')
    source = _ids(tmp_path / "ids.txt", [*ids[:2], ids[0]])
    output = tmp_path / "calls.csv"
    async with FakeTwoChatServer(cdrs=records) as server:
        from twochat_voip.testing import Fault

        server.fail_next(Fault(status=200, body=raw), call_uuid=ids[1])
        first = await run("export", "-i", str(source), "-o", str(output), server=server)
        again = await run(
            "export", "-i", str(_ids(tmp_path / "all.txt", ids)), "-o", str(output), server=server
        )
    assert (first.code, again.code) == (0, 0), first.err + again.err
    assert "(1 given twice)" in first.err
    assert "(2 already there)" in again.err
    rows = {row["uuid"]: row for row in csv.DictReader(output.read_text().splitlines())}
    assert rows[ids[0]]["agent_full_name"] == '\'=HYPERLINK("http://evil")'
    assert rows[ids[1]]["call_cost_call_price"] == "0.12345678901234567890"


@pytest.mark.slow
async def test_failures_into_the_file_stdout_goes_to_is_refused(tmp_path: Path) -> None:
    """``-o - --failures out.jsonl > out.jsonl`` would wipe the records at the first
    failure: refused, nothing sent."""
    records = generate_cdrs(3, seed=70)
    source = _ids(tmp_path / "ids.txt", [r["uuid"] for r in records] + ["CDRmissing"])
    output = tmp_path / "out.jsonl"
    async with FakeTwoChatServer(cdrs=records) as server:
        with output.open("wb") as stdout:
            process = await _start(
                server,
                "export",
                "-i",
                str(source),
                "-o",
                "-",
                "--failures",
                str(output),
                stdout=stdout,
            )
            _, err = await asyncio.wait_for(process.communicate(), timeout=60)
        assert server.requests == []
    assert process.returncode == 2
    assert "must not be standard output" in one_clean_line(err.decode())


@pytest.mark.slow
async def test_two_exports_of_the_same_ids_into_one_sqlite_file_just_work(
    tmp_path: Path,
) -> None:
    """Two processes, the same ids, one SQLite file, default options: neither is
    refused, each id is fetched once in all, and no failures file is written."""
    records = final_cdrs(60, seed=91)
    _ids(tmp_path / "ids.txt", [r["uuid"] for r in records])
    async with FakeTwoChatServer(cdrs=records) as server:
        ran = await asyncio.gather(
            *(
                run(
                    "export",
                    "-i",
                    "ids.txt",
                    "-o",
                    "calls.db",
                    *FAST,
                    server=server,
                    cwd=tmp_path,
                    subprocess=True,
                )
                for _ in range(2)
            )
        )
        fetched = [r.call_uuid for r in server.requests if r.call_uuid]
    assert [r.code for r in ran] == [0, 0], [r.err for r in ran]
    assert sorted(fetched) == sorted(r["uuid"] for r in records)
    assert sorted(path.name for path in tmp_path.iterdir() if "failures" in path.name) == []
    with sqlite3.connect(tmp_path / "calls.db") as connection:
        assert connection.execute("SELECT count(*) FROM call_detail_records").fetchone() == (60,)
