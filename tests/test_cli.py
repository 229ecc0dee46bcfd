"""The twochat-voip command against the fake server: in this process through click's
CliRunner, and as the installed script where only a process shows the behaviour."""

from __future__ import annotations

import asyncio
import csv
import json
import logging
import os
import re
import shutil
import signal
import sys
import threading
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import click
import pytest
from click.testing import CliRunner
from final_records import final_cdrs

from twochat_voip import VoIPClient, set_testing
from twochat_voip.cli import main as cli_main
from twochat_voip.cli._options import parse_rpm
from twochat_voip.testing import (
    DEFAULT_TEST_KEY,
    EXAMPLE_CDR,
    FakeTwoChatServer,
    Fault,
    RedisServer,
    generate_cdrs,
)

SCRIPT = shutil.which("twochat-voip", path=str(Path(sys.executable).parent))
SECRET = "sk-CLI-LEAKCHECK-42"


def interruptible(*argv: str) -> list[str]:
    """``argv`` run with Ctrl-C's default meaning restored: a process started in the
    background of a script (``pytest &``) inherits SIGINT ignored, and the tests that
    press Ctrl-C would find it ignored."""
    reset = "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    reset += "os.execv(sys.argv[1], sys.argv[1:])"
    return [sys.executable, "-c", reset, *argv]


@attrs.frozen
class Ran:
    code: int
    out: str
    err: str


@pytest.fixture
def no_waits() -> Iterator[None]:
    """No slow start and no backoff (set_testing), for exports whose subject is not
    pacing: the command runs in this process, so the switch reaches it."""
    with set_testing(True, attempts=4):
        yield


async def run(
    *args: str,
    server: FakeTwoChatServer | None = None,
    stdin: str | None = None,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    subprocess: bool = False,
) -> Ran:
    """Run the command against ``server``; the event loop keeps serving meanwhile.

    In this process (click's ``CliRunner``, in a thread) unless ``subprocess``: the
    installed console script, for what only a process shows (signals, two commands at
    once, logging set up at import, the script itself). Either way the command sees no
    ``TWOCHAT_*`` variable of the test's environment, only ``server``'s and ``env``."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TWOCHAT_")}
    environment.pop("NO_COLOR", None)
    if server is not None:
        environment["TWOCHAT_API_KEY"] = server.api_key or SECRET
        environment["TWOCHAT_BASE_URL"] = server.base_url
    environment.update(env or {})
    if not subprocess:
        return await asyncio.to_thread(_invoke, args, stdin, cwd, environment)
    assert SCRIPT is not None, "twochat-voip is not installed next to this Python"
    process = await asyncio.create_subprocess_exec(
        SCRIPT,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
        env=environment,
    )
    out, err = await asyncio.wait_for(
        process.communicate(stdin.encode() if stdin is not None else None), timeout=120
    )
    assert process.returncode is not None
    return Ran(process.returncode, out.decode(), err.decode())


_IN_PROCESS = threading.Lock()
"""CliRunner swaps the process's standard streams and environment: one run at a time."""


class _RunnersStderr:
    """Standard error as it is when written to: the runner's, during a run."""

    def write(self, text: str) -> None:
        sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _invoke(args: tuple[str, ...], stdin: str | None, cwd: Path | None, env: dict[str, str]) -> Ran:
    # What a process with no logging set up prints: warnings and errors (tracebacks
    # too) of the SDK and of asyncio, on standard error (logging's last resort).
    last_resort = logging.StreamHandler(_RunnersStderr())
    last_resort.setLevel(logging.WARNING)
    loggers = [logging.getLogger(name) for name in ("twochat_voip", "asyncio")]
    with _IN_PROCESS:
        unset: dict[str, str | None] = {k: None for k in os.environ if k not in env}
        previous = Path.cwd()
        propagate = [logger.propagate for logger in loggers]
        for logger in loggers:
            logger.addHandler(last_resort)
            logger.propagate = False
        if cwd is not None:
            os.chdir(cwd)
        try:
            result = CliRunner().invoke(
                cli_main, list(args), input=stdin, env={**unset, **env}, prog_name="twochat-voip"
            )
        finally:
            os.chdir(previous)
            for logger, was in zip(loggers, propagate, strict=True):
                logger.removeHandler(last_resort)
                logger.propagate = was
    err = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        # What a process would print: an escaped exception's traceback.
        err += "".join(traceback.format_exception(result.exception))
    return Ran(result.exit_code, result.stdout, err)


def one_clean_line(text: str) -> str:
    """The message, asserting it is one line and not a traceback."""
    assert "Traceback" not in text
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


async def test_get_prints_the_wire_record() -> None:
    """get CALL_UUID prints 2Chat's JSON for the record."""
    async with FakeTwoChatServer() as server:
        ran = await run("get", EXAMPLE_CDR["uuid"], server=server)
    assert ran.code == 0, ran.err
    assert json.loads(ran.out) == EXAMPLE_CDR


@pytest.mark.slow
async def test_python_dash_m_works_too() -> None:
    """python -m twochat_voip is the same command."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "twochat_voip", "--help", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    assert process.returncode == 0
    assert b"Usage: twochat-voip" in out


@pytest.mark.parametrize("command", [[], ["get"], ["export"], ["demo"]])
async def test_every_command_has_help(command: list[str]) -> None:
    """--help works for the group and every command."""
    ran = await run(*command, "--help")
    assert ran.code == 0
    assert "Usage:" in ran.out


async def test_unknown_call_is_one_line_and_nonzero() -> None:
    """A 404 ends with one clear line on stderr, exit 1, no traceback."""
    async with FakeTwoChatServer() as server:
        ran = await run("get", "CDRnothere", server=server)
    assert ran.code == 1
    assert "404" in one_clean_line(ran.err)


async def test_bad_id_is_one_line() -> None:
    """A malformed id is refused with one line, before any request."""
    async with FakeTwoChatServer() as server:
        ran = await run("get", "../etc/passwd", server=server)
        assert server.requests == []
    assert ran.code == 1
    assert "invalid call_uuid" in one_clean_line(ran.err)


@pytest.mark.parametrize(
    "command",
    [
        ["get", "CDR1"],
        ["export", "-i", "-", "-o", "-"],
        ["export", "-i", "-", "-o", "-", "--rpm", "60", "--redis-url", "redis://127.0.0.1:9"],
        ["sync"],
    ],
)
async def test_missing_key_speaks_to_a_shell_user(command: list[str], tmp_path: Path) -> None:
    """No key: one line naming TWOCHAT_API_KEY, --api-key-file and fake-server, not
    the library's VoIPClient(api_key=...)."""
    ran = await run(*command, cwd=tmp_path, stdin="")
    assert ran.code == 1
    line = one_clean_line(ran.err)
    assert "TWOCHAT_API_KEY" in line
    assert "--api-key-file" in line
    assert "twochat-voip fake-server" in line
    assert "VoIPClient" not in line
    assert "api_key=" not in line


async def test_key_from_file_and_never_printed(tmp_path: Path) -> None:
    """--api-key-file supplies the key; a 401 does not echo it anywhere."""
    key_file = tmp_path / "key"
    key_file.write_text(SECRET + "\n")
    async with FakeTwoChatServer(api_key=SECRET) as server:
        env = {"TWOCHAT_BASE_URL": server.base_url}
        good = await run("get", EXAMPLE_CDR["uuid"], "--api-key-file", str(key_file), env=env)
        key_file.write_text("wrong-key\n")
        bad = await run("get", EXAMPLE_CDR["uuid"], "--api-key-file", str(key_file), env=env)
    assert good.code == 0
    assert bad.code == 1
    assert "Invalid API Key" in one_clean_line(bad.err)
    assert SECRET not in good.out + good.err + bad.out + bad.err


@pytest.mark.parametrize("separator", ["\x0c", "\x1c", "\u2028", "\x85"])
async def test_a_key_file_is_split_only_at_line_ends(tmp_path: Path, separator: str) -> None:
    """A key file's key is cut only at \\n or \\r\\n: a key with a form feed (or
    another of splitlines()'s breaks) inside is refused whole, in one line, before
    anything is sent, and never shown."""
    key_file = tmp_path / "key"
    key_file.write_text(SECRET[:6] + separator + SECRET[6:] + "\r\n", encoding="utf-8")
    async with FakeTwoChatServer(api_key=SECRET) as server:
        env = {"TWOCHAT_BASE_URL": server.base_url}
        ran = await run("get", EXAMPLE_CDR["uuid"], "--api-key-file", str(key_file), env=env)
        assert server.requests == []
    assert ran.code == 1
    line = one_clean_line(ran.err)
    assert "character at position 7" in line
    assert SECRET[:6] not in line
    assert SECRET[6:] not in line


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (None, "names no file"),
        (b"", "the file is empty"),
        (b" \n\n", "the file is empty"),
        (b"\xff", "it is not UTF-8 text"),
        ("key-in-utf16".encode("utf-16"), "it looks like UTF-16: save it as UTF-8"),
    ],
)
async def test_unreadable_key_file_is_one_line_saying_why(
    tmp_path: Path, content: bytes | None, why: str
) -> None:
    """A key file that is missing, empty, blank or not UTF-8 (PowerShell writes UTF-16)
    is a clear error that says which."""
    key_file = tmp_path / "key"
    if content is not None:
        key_file.write_bytes(content)
    ran = await run("get", "CDR1", "--api-key-file", str(key_file))
    assert ran.code == 1
    line = one_clean_line(ran.err)
    assert why in line
    assert ("cannot read an API key" in line) is (content is not None)


async def test_a_key_given_as_the_key_file_is_never_echoed(tmp_path: Path) -> None:
    """``--api-key-file sk-...`` by mistake: one line that does not repeat it."""
    ran = await run("export", "-i", "ids.txt", "-o", "o.jsonl", "--api-key-file", SECRET)
    assert ran.code == 1
    assert "names no file" in one_clean_line(ran.err)
    assert SECRET not in ran.err + ran.out


def ids_file(path: Path, ids: list[str]) -> Path:
    path.write_text("# ids to export\n" + "\n".join(ids) + "\n\n")
    return path


@pytest.mark.usefixtures("no_waits")
@pytest.mark.slow
async def test_export_writes_records_and_failures(tmp_path: Path) -> None:
    """Fetched records go to the output, failed ids to the failures file; exit 1."""
    records = final_cdrs(30, seed=20)
    ids = [r["uuid"] for r in records] + ["CDRmissing1", "CDRmissing2", "bad/id"]
    source = ids_file(tmp_path / "ids.txt", ids)
    output = tmp_path / "out.jsonl"
    async with FakeTwoChatServer(cdrs=records) as server:
        server.fail_randomly(0.2, [Fault(status=503), Fault(drop="mid_body")], seed=3)
        ran = await run("export", "-i", str(source), "-o", str(output), server=server)
    assert ran.code == 1
    written = [json.loads(line) for line in output.read_text().splitlines()]
    assert sorted(written, key=lambda r: r["uuid"]) == sorted(records, key=lambda r: r["uuid"])
    failures_text = (tmp_path / "out.jsonl.failures.jsonl").read_text()
    failures = [json.loads(line) for line in failures_text.splitlines()]
    assert {f["call_uuid"]: f["error"] for f in failures} == {
        "CDRmissing1": "NotFoundError",
        "CDRmissing2": "NotFoundError",
        "bad/id": "InvalidCallUUIDError",
    }
    assert "exported 30 records" in ran.err
    assert "3 failed" in ran.err
    key = DEFAULT_TEST_KEY
    assert key not in output.read_text() + failures_text + ran.out + ran.err
    assert "\r" not in ran.err  # no progress bar when stderr is not a terminal


@pytest.mark.usefixtures("no_waits")
@pytest.mark.slow
async def test_export_resumes_and_retries_only_what_failed(tmp_path: Path) -> None:
    """A second run skips the ids found 404 (exit 0) and repairs a torn last line; one
    with --retry-not-found fetches only those."""
    records = final_cdrs(20, seed=21)
    late = final_cdrs(3, seed=22)
    source = ids_file(tmp_path / "ids.txt", [r["uuid"] for r in records + late])
    output = tmp_path / "out.jsonl"
    failures = tmp_path / "out.jsonl.failures.jsonl"
    async with FakeTwoChatServer(cdrs=records) as server:
        first = await run("export", "-i", str(source), "-o", str(output), "-q", server=server)
        assert first.code == 1
        with output.open("ab") as handle:
            handle.write(b'{"uuid":"CDRtorn","acc')  # a run killed mid-write
        server.add_cdrs(late)
        server.requests.clear()
        second = await run("export", "-i", str(source), "-o", str(output), server=server)
        assert second.code == 0, second.err
        assert [r.call_uuid for r in server.requests if r.call_uuid] == []
        assert "(20 already there)\n3 known not found, skipped (--retry-not-found" in second.err
        assert len(failures.read_text().splitlines()) == 3  # still known
        server.requests.clear()
        third = await run(
            "export", "-i", str(source), "-o", str(output), "--retry-not-found", server=server
        )
    assert third.code == 0, third.err
    fetched = sorted(r.call_uuid for r in server.requests if r.call_uuid)
    assert fetched == sorted(r["uuid"] for r in late)
    assert [r.path for r in server.requests].count("/open/info") == 1  # --rpm auto
    lines = output.read_text().splitlines()
    assert len(lines) == 23
    assert {json.loads(line)["uuid"] for line in lines} == {r["uuid"] for r in records + late}
    assert "exported 3 records" in third.err
    assert "(20 already there)" in third.err
    assert not failures.exists()


@pytest.mark.usefixtures("no_waits")
@pytest.mark.slow
async def test_export_from_stdin(tmp_path: Path) -> None:
    """--input - reads ids from standard input."""
    records = final_cdrs(5, seed=23)
    output = tmp_path / "out.jsonl"
    async with FakeTwoChatServer(cdrs=records) as server:
        ran = await run(
            "export",
            "--input",
            "-",
            "--output",
            str(output),
            "--ordered",
            server=server,
            stdin="\n".join(r["uuid"] for r in records),
        )
    assert ran.code == 0, ran.err
    assert [json.loads(line) for line in output.read_text().splitlines()] == records


@pytest.mark.usefixtures("no_waits")
@pytest.mark.slow
async def test_export_csv_with_resume(tmp_path: Path) -> None:
    """CSV output: a header, one flat row per record, and resume by the uuid column."""
    records = generate_cdrs(8, seed=24)
    source = ids_file(tmp_path / "ids.txt", [r["uuid"] for r in records])
    output = tmp_path / "out.csv"
    async with FakeTwoChatServer(cdrs=records) as server:
        first = await run(
            "export", "-i", str(source), "-o", str(output), "--format", "csv", server=server
        )
        again = await run(
            "export", "-i", str(source), "-o", str(output), "--format", "csv", server=server
        )
        assert len([r for r in server.requests if r.call_uuid]) == 8
    assert (first.code, again.code) == (0, 0)
    rows = list(csv.DictReader(output.read_text().splitlines()))
    assert sorted(row["uuid"] for row in rows) == sorted(r["uuid"] for r in records)
    by_uuid: dict[str, Any] = {row["uuid"]: row for row in rows}
    example = records[0]
    row = by_uuid[example["uuid"]]
    assert row["from"] == example["from"]
    assert row["active"] == "false"
    if example["call_cost"]:
        assert row["call_cost_call_price"] == str(example["call_cost"]["call_price"])


async def test_export_with_unreadable_input_is_one_line(tmp_path: Path) -> None:
    """An input file that does not exist is a clear error."""
    async with FakeTwoChatServer() as server:
        ran = await run(
            "export", "-i", str(tmp_path / "nope.txt"), "-o", str(tmp_path / "o"), server=server
        )
    assert ran.code == 2  # nothing was sent
    assert "cannot read" in one_clean_line(ran.err)


@pytest.mark.slow
async def test_demo_runs_without_key_or_network_and_writes_no_cwd(tmp_path: Path) -> None:
    """demo: embedded server, a summary, exit 0, output in a temporary folder."""
    ran = await run(
        "demo", "--count", "300", "--server-rpm", "60000", "--events", "0", cwd=tmp_path
    )
    assert ran.code == 0, ran.err
    assert list(tmp_path.iterdir()) == []
    # The fake's ringing calls are not over: pending, not written.
    said = re.search(r"exported (\d+) records to (\S+)\n(\d+) pending: calls not over", ran.err)
    assert said is not None, ran.err
    assert int(said[1]) + int(said[3]) == 300
    written = Path(said[2])
    assert len(written.read_text().splitlines()) == int(said[1])
    # The last line says where the folder it made is, and that it is the user's to delete.
    last = ran.err.strip().splitlines()[-1]
    assert f"new temporary folder, {written.parent} (" in last
    assert "delete it when you are done" in last
    shutil.rmtree(written.parent)


@pytest.mark.parametrize("command", ["export", "sync", "demo"])
async def test_concurrency_option_says_what_it_does(command: str) -> None:
    """--concurrency has help text, as every other option does."""
    ran = await run(command, "--help")
    assert ran.code == 0
    help_text = " ".join(ran.out.split())
    assert "--concurrency INTEGER RANGE Requests in flight at once" in help_text


async def test_demo_with_output_resumes(tmp_path: Path) -> None:
    """demo --output into a file, run twice: the second run fetches only the calls
    that were not over (the fake's ringing ones), which the file does not hold."""
    output = tmp_path / "demo.jsonl"
    first = await run(
        "demo", "--count", "50", "-o", str(output), "--fault-rate", "0", "--events", "0"
    )
    second = await run("demo", "--count", "50", "-o", str(output), "--events", "0")
    assert (first.code, second.code) == (0, 0)
    records = [json.loads(line) for line in output.read_text().splitlines()]
    ringing = 50 - len(records)
    assert ringing > 0
    assert all(record["status"] != "RINGING" for record in records)
    assert f"exported {50 - ringing} records to {output}" in first.err
    assert f"{ringing} pending: calls not over yet" in first.err
    assert f"exported 0 records to {output} ({50 - ringing} already there)" in second.err
    assert f"{ringing} pending" in second.err
    assert f"{ringing + 1} requests" in second.err  # the pending ones and --rpm auto's


async def test_insecure_base_url_is_one_line() -> None:
    """A plain-http base URL to a remote host is refused before any request."""
    ran = await run("get", "CDR1", "--base-url", "http://api.example", env={"TWOCHAT_API_KEY": "k"})
    assert ran.code == 1
    assert "unencrypted" in one_clean_line(ran.err)


async def test_unwritable_output_is_one_line(tmp_path: Path) -> None:
    """An output in a folder that does not exist is a clear error, not a traceback."""
    source = ids_file(tmp_path / "ids.txt", [EXAMPLE_CDR["uuid"]])
    async with FakeTwoChatServer() as server:
        ran = await run(
            "export", "-i", str(source), "-o", str(tmp_path / "no" / "such.jsonl"), server=server
        )
    assert ran.code == 2  # nothing was sent
    assert "there is no folder" in one_clean_line(ran.err)


@pytest.mark.slow
async def test_exports_on_one_account_share_the_limit_through_redis(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Two exports with --redis-url keep the account's one --rpm between them."""
    async with FakeTwoChatServer(
        cdrs=generate_cdrs(40, seed=5), requests_per_minute=1200
    ) as server:
        ids = server.call_uuids
        for half in (0, 1):
            (tmp_path / f"ids{half}.txt").write_text("\n".join(ids[half::2]) + "\n")
        ran = await asyncio.gather(
            *(
                run(
                    "export",
                    "-i",
                    f"ids{half}.txt",
                    "-o",
                    f"out{half}.jsonl",
                    "--rpm",
                    "1200",
                    server=server,
                    cwd=tmp_path,
                    env={"TWOCHAT_REDIS_URL": redis_server.url},
                    subprocess=True,  # two processes at once
                )
                for half in (0, 1)
            )
        )
        received = sorted(request.received_at for request in server.requests)
    assert [r.code for r in ran] == [0, 0], [r.err for r in ran]
    exported = [
        json.loads(line)["uuid"]
        for half in (0, 1)
        for line in (tmp_path / f"out{half}.jsonl").read_text().splitlines()
    ]
    assert sorted(exported) == sorted(ids)
    assert server.status_counts[429] <= 1  # at 1200/min each, two would draw ~15
    assert received[-1] - received[0] >= (40 - 5) * 0.05 * 0.9


async def test_export_through_redis_with_the_default_rpm_asks_the_plan_once(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """TWOCHAT_REDIS_URL and no --rpm (auto): the export runs, asks the plan once and
    keeps it in Redis, where a second export reads it instead of paying a credit."""
    env = {"TWOCHAT_REDIS_URL": redis_server.url}
    async with FakeTwoChatServer(
        cdrs=generate_cdrs(2, seed=8), plan_requests_per_minute=600
    ) as server:
        (tmp_path / "ids.txt").write_text(server.call_uuids[0] + "\n")
        first = await run(
            "export", "-i", "ids.txt", "-o", "a.jsonl", server=server, cwd=tmp_path, env=env
        )
        (tmp_path / "ids.txt").write_text(server.call_uuids[1] + "\n")
        second = await run(
            "export", "-i", "ids.txt", "-o", "b.jsonl", server=server, cwd=tmp_path, env=env
        )
        asked = [request.path for request in server.requests]
    assert (first.code, second.code) == (0, 0), (first.err, second.err)
    assert asked.count("/open/info") == 1
    assert len(asked) == 3
    from redis.asyncio import Redis

    client = Redis.from_url(redis_server.url)
    try:
        assert len(await client.keys("*:plan")) == 1
    finally:
        await client.aclose()


async def test_redis_url_with_rpm_adaptive_is_one_line(tmp_path: Path) -> None:
    """--redis-url shares the account's limit, which no host can find from 429s alone."""
    (tmp_path / "ids.txt").write_text("CDR1\n")
    async with FakeTwoChatServer() as server:
        ran = await run(
            "export",
            "-i",
            "ids.txt",
            "-o",
            "out.jsonl",
            "--rpm",
            "adaptive",
            "--redis-url",
            "redis://127.0.0.1:1/0",
            server=server,
            cwd=tmp_path,
        )
        assert server.request_count == 0
    assert ran.code != 0
    assert "give --rpm N or auto" in one_clean_line(ran.err)


@pytest.mark.parametrize(
    ("redis_url", "key", "says"),
    [
        ("http://127.0.0.1:1/", "k", "--redis-url: Redis URL must specify"),
        ("redis://127.0.0.1:1/0", None, "TWOCHAT_API_KEY"),
    ],
)
async def test_bad_redis_setup_is_one_line(
    tmp_path: Path, redis_url: str, key: str | None, says: str
) -> None:
    """A URL Redis cannot use, or no key to name the account by: one line, nothing sent."""
    (tmp_path / "ids.txt").write_text("CDR1\n")
    env = {"TWOCHAT_REDIS_URL": redis_url} | ({"TWOCHAT_API_KEY": key} if key else {})
    args = ("export", "-i", "ids.txt", "-o", "out.jsonl", "--rpm", "60")
    ran = await run(*args, cwd=tmp_path, env=env)
    assert ran.code != 0
    assert says in one_clean_line(ran.err)


async def export_ids(tmp_path: Path, ids: list[str], *options: str, **run_options: Any) -> Ran:
    """Write ``ids`` to ids.txt in ``tmp_path`` and export them into out.jsonl there."""
    (tmp_path / "ids.txt").write_text("".join(f"{i}\n" for i in ids))
    return await run(
        "export", "-i", "ids.txt", "-o", "out.jsonl", *options, cwd=tmp_path, **run_options
    )


@pytest.mark.slow
async def test_export_asks_the_plan_rate_once_by_default(tmp_path: Path) -> None:
    """Without --rpm: one GET /open/info, then paced at the plan's limit, no 429."""
    records = generate_cdrs(40, seed=71)
    async with FakeTwoChatServer(cdrs=records, requests_per_minute=6000) as server:
        ran = await export_ids(tmp_path, [r["uuid"] for r in records], server=server)
        paths = [r.path for r in server.requests]
    assert ran.code == 0, ran.err
    assert paths.count("/open/info") == 1
    assert server.status_counts[429] == 0
    assert "41 requests" in ran.err


async def test_export_rpm_adaptive_asks_nothing(tmp_path: Path) -> None:
    """--rpm adaptive: no GET /open/info; the rate is found from 429s, if any."""
    async with FakeTwoChatServer() as server:
        ran = await export_ids(tmp_path, [EXAMPLE_CDR["uuid"]], "--rpm", "adaptive", server=server)
        assert [r.path for r in server.requests] == [f"/open/voip/call/{EXAMPLE_CDR['uuid']}"]
    assert ran.code == 0, ran.err


async def test_export_rpm_nonsense_is_refused(tmp_path: Path) -> None:
    """--rpm fast: a usage error naming what is accepted, exit 2."""
    (tmp_path / "ids.txt").write_text("CDR1\n")
    ran = await run("export", "-i", "ids.txt", "-o", "o.jsonl", "--rpm", "fast", cwd=tmp_path)
    assert ran.code == 2
    assert "'auto' or 'adaptive'" in ran.err


@pytest.mark.parametrize(
    ("given", "expected"),
    [("AUTO", "auto"), (" Adaptive ", None), ("60", 60.0), ("1", 1.0), ("1e6", 1e6)],
)
def test_rpm_words_in_any_case_and_plan_sized_numbers(given: str, expected: object) -> None:
    """--rpm takes its words as --help shows them (N|AUTO|ADAPTIVE) and any rate a
    plan could have."""
    assert parse_rpm(None, None, given) == expected


@pytest.mark.parametrize("given", ["1e-300", "0.5", "2e6", "nan", "inf", "-60"])
def test_rpm_outside_any_plan_is_refused(given: str) -> None:
    """A rate that would pace one request a millennium (or not at all) is a usage
    error, as the same limit from GET /open/info is not believed."""
    with pytest.raises(click.BadParameter, match="between 1 and 1,000,000"):
        parse_rpm(None, None, given)


async def test_export_with_a_dead_key_stops_with_one_line(tmp_path: Path) -> None:
    """A refused key: the export stops at once, says why and how to resume, and spends
    no credit per id."""
    records = generate_cdrs(200, seed=72)
    async with FakeTwoChatServer(cdrs=records, requests_per_minute=60000) as server:
        ran = await export_ids(
            tmp_path,
            [r["uuid"] for r in records],
            "--rpm",
            "adaptive",
            server=server,
            env={"TWOCHAT_API_KEY": "wrong-key"},
        )
        sent = server.request_count
    assert ran.code == 1
    assert sent <= 16
    assert (
        "stopped early, nothing more was sent: the API key was refused (401); fix it, "
        "then run the same command again to resume" in ran.err
    )
    failures = (tmp_path / "out.jsonl.failures.jsonl").read_text().splitlines()
    assert len(failures) == 200


@pytest.mark.slow
async def test_export_max_requests_caps_the_credits(tmp_path: Path) -> None:
    """--max-requests 5: five requests, then it stops and says the budget was spent."""
    records = generate_cdrs(30, seed=73)
    async with FakeTwoChatServer(cdrs=records) as server:
        options = ("--rpm", "adaptive", "--max-requests", "5", "-c", "2")
        ran = await export_ids(tmp_path, [r["uuid"] for r in records], *options, server=server)
        sent = server.request_count
    assert ran.code == 1
    assert sent == 5
    assert "nothing more was sent: the --max-requests budget (5) is spent" in ran.err
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 5


@pytest.mark.slow
async def test_export_gives_up_on_a_server_that_died(tmp_path: Path) -> None:
    """A server gone mid-run: after --give-up-after seconds without success the export
    stops with one line; every id is either saved or in the failures file, once."""
    records = generate_cdrs(60, seed=74)
    server = FakeTwoChatServer(cdrs=records, requests_per_minute=1200)
    await server.start()
    env = {"TWOCHAT_API_KEY": DEFAULT_TEST_KEY, "TWOCHAT_BASE_URL": server.base_url}

    async def kill_after_ten() -> None:
        await server.wait_for_requests(10)
        await server.aclose()

    killer = asyncio.create_task(kill_after_ten())
    ran = await export_ids(tmp_path, [r["uuid"] for r in records], "--give-up-after", "1", env=env)
    await killer
    saved = {json.loads(line)["uuid"] for line in (tmp_path / "out.jsonl").read_text().splitlines()}
    failed = [
        json.loads(line)["call_uuid"]
        for line in (tmp_path / "out.jsonl.failures.jsonl").read_text().splitlines()
    ]
    assert ran.code == 1
    assert "nothing more was sent: nothing succeeded for --give-up-after seconds" in ran.err
    assert len(failed) == len(set(failed))
    assert saved | set(failed) == {r["uuid"] for r in records}
    assert not saved & set(failed)


async def test_export_give_up_after_nan_is_a_usage_error(tmp_path: Path) -> None:
    """--give-up-after nan: exit 2 and one line, like any bad option value."""
    ran = await export_ids(tmp_path, ["CDR1"], "--give-up-after", "nan")
    assert ran.code == 2
    assert "not nan" in ran.err
    assert "Traceback" not in ran.err


@pytest.mark.slow
async def test_demo_shows_the_call_events_loop(tmp_path: Path) -> None:
    """After the export, new calls end, their events reach a receiver, and their
    records are fetched into the output; a second run finds them there."""
    output = tmp_path / "demo.jsonl"
    first = await run("demo", "--count", "20", "-o", str(output), "--events", "3")
    assert first.code == 0, first.err
    assert "3 call events reached a receiver on 127.0.0.1" in first.err
    assert "3 records were fetched" in first.err
    assert len(output.read_text().splitlines()) == 23
    second = await run("demo", "--count", "20", "-o", str(output), "--events", "3")
    assert "0 records were fetched" in second.err
    assert "(3 already there" in second.err
    assert len(output.read_text().splitlines()) == 23


@pytest.mark.slow
async def test_fake_server_prints_its_url_and_key_and_serves(tmp_path: Path) -> None:
    """fake-server prints export lines for the URL and key; get works against it, for
    the docs' example record too; Ctrl-C stops it."""
    assert SCRIPT is not None
    process = await asyncio.create_subprocess_exec(
        *interruptible(SCRIPT, "fake-server", "--records", "3"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    url_line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
    key_line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
    try:
        assert url_line.startswith("export TWOCHAT_BASE_URL=http://127.0.0.1:")
        assert key_line.startswith("export TWOCHAT_API_KEY=fake-")
        base_url = url_line.strip().split("=", 1)[1]
        key = key_line.strip().split("=", 1)[1]
        async with VoIPClient(api_key=key, base_url=base_url) as voip:
            ids = [r.uuid async for r in voip.iter_call_history()]
        got = await run("get", ids[0], env={"TWOCHAT_API_KEY": key, "TWOCHAT_BASE_URL": base_url})
        assert got.code == 0, got.err
        assert json.loads(got.out)["uuid"] == ids[0]
        assert len(ids) == 4  # the three asked for and the docs' example
        async with VoIPClient(api_key=key, base_url=base_url) as voip:
            assert (await voip.get_call(EXAMPLE_CDR["uuid"])).uuid == EXAMPLE_CDR["uuid"]
            # A plan to learn ("auto") though nothing is enforced without --server-rpm.
            info = await voip.get_account_info()
            assert info.limits is not None
            assert info.limits.requests_per_minute == 6000
    finally:
        process.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0
    assert "stopped" in err.decode()


async def test_demo_skips_events_when_the_export_did_not_finish(tmp_path: Path) -> None:
    """Out of budget: no call events, the export's failures file kept, and the
    skipped step said, after the export's own summary."""
    output = tmp_path / "demo.jsonl"
    ran = await run("demo", "--count", "50", "-o", str(output), "--max-requests", "10")
    assert ran.code == 1
    assert "call events skipped: the export did not finish" in ran.err
    assert ran.err.index("stopped early") < ran.err.index("call events skipped")
    assert (tmp_path / "demo.jsonl.failures.jsonl").exists()


async def test_demo_to_standard_output_says_it_skips_events() -> None:
    """-o -: the records on stdout, and a line saying the events were skipped."""
    ran = await run("demo", "--count", "20", "-o", "-", "--fault-rate", "0")
    assert ran.code == 0, ran.err
    assert len(ran.out.splitlines()) == 20
    assert "call events skipped" in ran.err


@pytest.mark.slow
async def test_demo_interrupted_says_how_to_resume_into_its_folder(tmp_path: Path) -> None:
    """Ctrl-C in a demo writing to its own temporary folder: "the same command" would
    make a new folder, so the line names the file to resume into."""
    assert SCRIPT is not None
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TWOCHAT_")}
    environment["TMPDIR"] = str(tmp_path)  # the demo's folder lands here
    process = await asyncio.create_subprocess_exec(
        *interruptible(SCRIPT, "demo", "--count", "3000", "--server-rpm", "3000", "--events", "0"),
        stderr=asyncio.subprocess.PIPE,
        env=environment,
    )
    assert process.stderr is not None
    first = await asyncio.wait_for(process.stderr.readline(), 30)
    assert first.startswith(b"demo: 3000 records")
    async with asyncio.timeout(30):  # the export is under way: records in its file
        while not any(p.stat().st_size for p in tmp_path.glob("twochat-voip-demo-*/*.jsonl")):  # noqa: ASYNC110 - another process's file; nothing to await
            await asyncio.sleep(0.01)
    process.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 130
    line = err.decode().strip().splitlines()[-1]
    assert line.startswith("interrupted: ")
    resume = line.split("resume with: ", 1)[1]
    (folder,) = tmp_path.glob("twochat-voip-demo-*")
    assert resume == f"twochat-voip demo -o {folder / 'calls.jsonl'}"
