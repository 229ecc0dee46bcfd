"""Export internals in-process: resume edge cases, the progress line."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from twochat_voip import (
    CallDetailRecord,
    CallFailure,
    CallResult,
    CallSuccess,
    JSONLSink,
    RecordRefusedError,
    VoIPClient,
)
from twochat_voip.cli._support import Progress, stderr_is_interactive
from twochat_voip.export._run import export_calls
from twochat_voip.testing import FakeTwoChatServer, generate_cdrs

pytestmark = pytest.mark.virtual_time  # timeouts, backoff and pacing in the loop's time


async def test_export_from_a_plain_list_without_callback(tmp_path: Path) -> None:
    """export_calls takes any iterable, and a duplicate id is fetched once."""
    records = generate_cdrs(4, seed=30)
    ids = [r["uuid"] for r in records]
    output = tmp_path / "o.jsonl"
    async with (
        FakeTwoChatServer(cdrs=records) as server,
        VoIPClient(
            api_key=server.api_key, base_url=server.base_url, transport=server.transport()
        ) as voip,
    ):
        summary = await export_calls(voip, [*ids, ids[0]], output, failures=tmp_path / "f")
    assert (summary.exported, summary.duplicates, summary.failed) == (4, 1, 0)
    assert summary.requests == 4
    assert len(server.requests) == 4


class _RefusingSink(JSONLSink):
    """A JSONL output that refuses one id, as PostgreSQL refuses a NUL character."""

    refused = ""

    async def write(self, asked: str, record: CallDetailRecord, wire: Mapping[str, Any]) -> None:
        if asked == self.refused:
            raise RecordRefusedError("refused for the test")
        await super().write(asked, record, wire)


async def test_export_hands_on_results_that_narrow(tmp_path: Path) -> None:
    """on_result gets a CallSuccess holding the record for a stored id, and a
    CallFailure with the RecordRefusedError for one the output refused."""
    records = generate_cdrs(2, seed=31)
    ids = [r["uuid"] for r in records]
    sink = _RefusingSink(tmp_path / "o.jsonl")
    sink.refused = ids[1]
    seen: list[CallResult] = []
    async with (
        FakeTwoChatServer(cdrs=records) as server,
        VoIPClient(
            api_key=server.api_key, base_url=server.base_url, transport=server.transport()
        ) as voip,
    ):
        await export_calls(
            voip, ids, sink, failures=tmp_path / "f", ordered=True, on_result=seen.append
        )
    stored, refused = seen
    assert isinstance(stored, CallSuccess)
    assert isinstance(stored.cdr, CallDetailRecord)
    assert stored.cdr.uuid == ids[0]
    assert isinstance(refused, CallFailure)
    assert isinstance(refused.error, RecordRefusedError)
    assert (refused.call_uuid, refused.index) == (ids[1], 1)


FETCHED = CallSuccess(call_uuid="a", cdr=CallDetailRecord(uuid="a"))


def test_progress_draws_a_bar_with_eta(capsys: pytest.CaptureFixture[str]) -> None:
    """On a terminal: a bar, counts, rate, ETA and failures, ended with a newline."""
    progress = Progress(4, enabled=True)
    progress(FETCHED)
    progress(CallFailure(call_uuid="b", error=ValueError("bad")))
    progress.finish()
    err = capsys.readouterr().err
    assert err.startswith("\r[")
    assert "2/4" in err
    assert "ETA" in err
    assert "1 failed" in err
    assert err.endswith("\n")


def test_progress_without_a_total(capsys: pytest.CaptureFixture[str]) -> None:
    """Reading from a pipe there is no total: a count and a rate."""
    progress = Progress(None, enabled=True)
    progress(FETCHED)
    progress.finish()
    assert "1 done" in capsys.readouterr().err


def test_an_interrupted_run_says_what_it_saved_and_how_to_go_on() -> None:
    """Ctrl-C's line counts the records saved, and names a file output (no password)."""
    progress = Progress(None, enabled=False, output="-")
    progress(FETCHED)
    assert progress.interrupted() == "interrupted: 1 records written to standard output"
    progress = Progress(None, enabled=False, output="postgresql://bob:Pa55@h/db")
    progress(FETCHED)
    progress(CallFailure(call_uuid="b", error=ValueError("bad")))
    assert progress.interrupted() == (
        "interrupted: 1 records saved to postgresql://bob:***@h/db by this run; "
        "run the same command again to resume"
    )


def test_progress_disabled_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    """Quiet means quiet."""
    progress = Progress(3, enabled=False)
    progress(FETCHED)
    progress.finish()
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("tty", "env", "expected"),
    [
        (True, {}, True),
        (False, {}, False),
        (True, {"NO_COLOR": "1"}, False),
        (True, {"TERM": "dumb"}, False),
    ],
)
def test_progress_only_on_a_real_terminal(
    monkeypatch: pytest.MonkeyPatch, tty: bool, env: dict[str, str], expected: bool
) -> None:
    """Progress is drawn on a terminal, not into pipes, NO_COLOR or dumb terminals."""
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("sys.stderr.isatty", lambda: tty)
    assert stderr_is_interactive() is expected


def test_summary_describes_the_run() -> None:
    """The summary names records, failures, requests, 429s and retries."""
    from twochat_voip.export._run import ExportSummary

    text = ExportSummary(
        exported=5,
        already_there=2,
        failed=1,
        requests=9,
        rate_limited=2,
        retries=3,
        seconds=1.5,
        output="out.jsonl",
        failures="out.jsonl.failures.jsonl",
    ).describe()
    assert text.splitlines() == [
        "exported 5 records to out.jsonl (2 already there)",
        "1 failed; ids and reasons in out.jsonl.failures.jsonl",
        "9 requests (2 answered 429, 3 retries) in 1.5 s",
    ]


async def test_a_record_being_stored_when_the_run_is_cancelled_is_stored_and_counted(
    tmp_path: Path,
) -> None:
    """Ctrl-C while a write is under way: the write ends, the record is counted (as a
    summary's "N records saved" says), then the run stops."""
    records = generate_cdrs(3, seed=39)
    writing, go_on = asyncio.Event(), asyncio.Event()
    written: list[str] = []
    counted: list[CallResult] = []

    class SlowSink(JSONLSink):
        async def write(
            self, asked: str, record: CallDetailRecord, wire: Mapping[str, Any]
        ) -> None:
            writing.set()
            await go_on.wait()  # a commit in flight
            await super().write(asked, record, wire)
            written.append(asked)

    async with (
        FakeTwoChatServer(cdrs=records) as server,
        VoIPClient(
            api_key=server.api_key, base_url=server.base_url, transport=server.transport()
        ) as voip,
    ):
        run = asyncio.create_task(
            export_calls(
                voip,
                [records[0]["uuid"]],
                SlowSink(tmp_path / "o.jsonl"),
                failures=tmp_path / "f",
                on_result=counted.append,
            )
        )
        await writing.wait()
        run.cancel()
        await asyncio.sleep(0)
        go_on.set()
        with pytest.raises(asyncio.CancelledError):
            await run
    assert written == [records[0]["uuid"]]
    assert [result.call_uuid for result in counted] == written
