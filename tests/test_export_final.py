"""Credits spent once: pending records, ids found 404, failure stores, several asked ids."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from final_records import final_cdrs
from test_cli import run

from twochat_voip import (
    CallDetailRecord,
    CallFailure,
    CallSuccess,
    JSONLSink,
    SinkError,
    VoIPClient,
)
from twochat_voip.export._failures import FailureStore
from twochat_voip.export._files import Failures
from twochat_voip.export._run import export_calls
from twochat_voip.export._summary import ExportSummary
from twochat_voip.testing import FakeTwoChatServer, Fault

pytestmark = pytest.mark.virtual_time

MakeClient = Callable[..., VoIPClient]


def _ringing(record: dict[str, Any]) -> dict[str, Any]:
    return {**record, "status": "RINGING", "active": True, "duration": None}


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_a_record_not_final_is_pending_until_its_call_is_over(
    twochat_server: FakeTwoChatServer, make_client: MakeClient, tmp_path: Path
) -> None:
    """A ringing call is not written to the file and is counted as pending; the next
    run asks for it again and writes it once, when it is over."""
    done, later = final_cdrs(2, seed=80)
    twochat_server.add_cdrs([done, _ringing(later)])
    output, failures = tmp_path / "o.jsonl", tmp_path / "f.jsonl"
    ids = [done["uuid"], later["uuid"]]
    first = await export_calls(make_client(), ids, output, failures=failures)
    assert (first.exported, first.pending, first.failed) == (1, 1, 0)
    assert _lines(output) == [done]
    assert "1 pending: calls not over yet; a later run asks again" in first.describe()
    twochat_server.requests.clear()
    second = await export_calls(make_client(), ids, output, failures=failures)
    assert (second.already_there, second.exported, second.pending) == (1, 0, 1)
    assert [r.call_uuid for r in twochat_server.requests] == [later["uuid"]]
    twochat_server.add_cdrs([later])  # the call ended
    third = await export_calls(make_client(), ids, output, failures=failures)
    assert (third.already_there, third.exported, third.pending) == (1, 1, 0)
    assert _lines(output) == [done, later]
    assert not failures.exists()


class _KeepingSink(JSONLSink):
    """A sink that keeps pending records (as a database does), and says which."""

    keeps_pending = True
    written: list[str]

    async def write(self, asked: str, record: CallDetailRecord, wire: Mapping[str, Any]) -> None:
        self.written.append(f"{record.uuid}:{record.is_final}")


async def test_a_sink_that_keeps_pending_records_is_given_them(
    twochat_server: FakeTwoChatServer, make_client: MakeClient, tmp_path: Path
) -> None:
    """keeps_pending: the record not final is written too, and still counted pending."""
    done, later = final_cdrs(2, seed=81)
    twochat_server.add_cdrs([done, _ringing(later)])
    sink = _KeepingSink(tmp_path / "o.jsonl")
    sink.written = []
    ids = [done["uuid"], later["uuid"]]
    summary = await export_calls(make_client(), ids, sink, failures=tmp_path / "f", ordered=True)
    assert (summary.exported, summary.pending) == (1, 1)
    assert sink.written == [f"{done['uuid']}:True", f"{later['uuid']}:False"]


async def test_ids_found_404_are_skipped_until_asked_to_retry(
    twochat_server: FakeTwoChatServer, make_client: MakeClient, tmp_path: Path
) -> None:
    """A plain rerun sends nothing for an id found 404, counts it, and keeps it listed;
    retry_not_found asks again; an answer then takes it off the list."""
    (record,) = final_cdrs(1, seed=82)
    twochat_server.add_cdrs([record])
    output, failures = tmp_path / "o.jsonl", tmp_path / "f.jsonl"
    ids = [record["uuid"], "CDRnot-yet"]
    first = await export_calls(make_client(), ids, output, failures=failures)
    assert (first.exported, first.failed, first.not_found_before) == (1, 1, 0)
    listed = failures.read_bytes()
    twochat_server.requests.clear()
    second = await export_calls(make_client(), ids, output, failures=failures)
    assert (second.already_there, second.failed, second.not_found_before) == (1, 0, 1)
    assert (second.requests, twochat_server.requests) == (0, [])
    assert failures.read_bytes() == listed  # still known
    assert "1 known not found, skipped (--retry-not-found asks again)" in second.describe()
    twochat_server.add_cdrs([{**record, "uuid": "CDRnot-yet"}])
    third = await export_calls(make_client(), ids, output, failures=failures, retry_not_found=True)
    assert (third.exported, third.failed, third.not_found_before) == (1, 0, 0)
    assert not failures.exists()


async def test_known_404s_survive_runs_that_do_not_ask_for_them(tmp_path: Path) -> None:
    """The failures file keeps its 404s through a finished run with no failures, and
    through one with others; an unfinished run without failures leaves it as it was;
    other failures are replaced, as before."""
    failures = tmp_path / "f.jsonl"
    old = [
        {"call_uuid": "CDRgone", "error": "NotFoundError", "message": "404", "status_code": 404},
        {"call_uuid": "CDRslow", "error": "ServerError", "message": "503", "status_code": 503},
    ]
    failures.write_text("".join(json.dumps(entry) + "\n" for entry in old))
    store = Failures(failures)
    await store.open()
    assert await store.known_not_found(["CDRgone", "CDRslow", "CDRother"]) == {"CDRgone"}
    await store.close(finished=False)
    assert _lines(failures) == old
    store = Failures(failures)
    await store.open()
    await store.add(CallFailure(call_uuid="bad/id", error=ValueError("not an id")))
    # Already on disk, before the store closes: a run killed now (kill -9) keeps them.
    assert [entry["call_uuid"] for entry in _lines(failures)] == ["CDRgone", "bad/id"]
    await store.close(finished=True)
    assert [entry["call_uuid"] for entry in _lines(failures)] == ["CDRgone", "bad/id"]
    store = Failures(failures)
    await store.open()
    await store.close(finished=True)
    assert _lines(failures) == old[:1]
    store = Failures(failures)
    await store.open()
    await store.forget("CDRgone")  # answered at last
    await store.close(finished=True)
    assert not failures.exists()


class _Store:
    """A failure store in memory that notes what it was told."""

    description = "the test's store"

    def __init__(self, not_found: set[str]) -> None:
        self.not_found = not_found
        self.said: list[str] = []

    async def open(self) -> None:
        self.said.append("open")

    async def known_not_found(self, call_uuids: Collection[str]) -> set[str]:
        return self.not_found & set(call_uuids)

    async def add(self, failure: CallFailure) -> None:
        self.said.append(f"add {failure.call_uuid}")

    async def forget(self, call_uuid: str) -> None:
        self.said.append(f"forget {call_uuid}")

    async def close(self, *, finished: bool) -> None:
        self.said.append(f"close {finished}")


class _SinkWithStore(JSONLSink):
    store: _Store

    def failure_store(self) -> FailureStore:
        return self.store


async def test_a_sink_with_its_own_failure_store_is_used_unless_a_file_is_named(
    twochat_server: FakeTwoChatServer, make_client: MakeClient, tmp_path: Path
) -> None:
    """failure_store(): told of each failure and each stored id, asked which were 404;
    --failures given: the file, and the sink's store is not touched."""
    (record,) = final_cdrs(1, seed=83)
    twochat_server.add_cdrs([record])
    sink = _SinkWithStore(tmp_path / "o.jsonl")
    sink.store = _Store({"CDRgone"})
    ids = [record["uuid"], "CDRgone", "CDRmissing"]
    summary = await export_calls(make_client(), ids, sink, ordered=True)
    assert sink.store.said == ["open", f"forget {record['uuid']}", "add CDRmissing", "close True"]
    assert (summary.exported, summary.failed, summary.not_found_before) == (1, 1, 1)
    assert summary.failures == "the test's store"
    sink.store = _Store(set())
    failures = tmp_path / "f.jsonl"
    named = await export_calls(make_client(), ids, sink, failures=failures)
    assert sink.store.said == []
    assert (named.already_there, named.failed) == (1, 2)
    assert len(_lines(failures)) == 2


async def test_every_id_answered_with_one_record_is_done_after_one_run(
    twochat_server: FakeTwoChatServer, make_client: MakeClient, tmp_path: Path
) -> None:
    """Two asked ids answered with one final record: written once, both noted, and the
    next run sends nothing; answered with a pending record: noted by neither, asked again."""
    done, later = final_cdrs(2, seed=84)
    twochat_server.add_cdrs([done, _ringing(later)])
    for asked, record in (("CDRa1", done), ("CDRa2", done), ("CDRb1", later), ("CDRb2", later)):
        body = json.dumps({"success": True, "cdr": _ringing(record) if record is later else record})
        twochat_server.fail_next(Fault(status=200, body=body), call_uuid=asked)
    output, failures = tmp_path / "o.jsonl", tmp_path / "f.jsonl"
    ids = ["CDRa1", "CDRa2", "CDRb1", "CDRb2"]
    first = await export_calls(make_client(), ids, output, failures=failures, ordered=True)
    assert (first.exported, first.pending, first.failed) == (2, 2, 0)
    assert _lines(output) == [done]
    twochat_server.requests.clear()
    second = await export_calls(make_client(), ids, output, failures=failures)
    assert (second.already_there, second.exported, second.failed) == (2, 0, 2)  # 404 now
    assert sorted(r.call_uuid or "" for r in twochat_server.requests) == ["CDRb1", "CDRb2"]


def test_summary_says_pending_and_known_not_found() -> None:
    """describe() names pending calls and skipped 404s, each on its own line."""
    text = ExportSummary(
        exported=3,
        already_there=0,
        failed=0,
        requests=5,
        rate_limited=0,
        retries=0,
        seconds=1.0,
        pending=2,
        not_found_before=4,
        output="o.jsonl",
    ).describe()
    assert text.splitlines()[:3] == [
        "exported 3 records to o.jsonl",
        "2 pending: calls not over yet; a later run asks again",
        "4 known not found, skipped (--retry-not-found asks again)",
    ]


async def test_sync_skips_known_404s_and_retries_them_when_asked(tmp_path: Path) -> None:
    """sync: an id answered 404 fails once (exit 1), is skipped by the next sync (exit
    0, said), and fetched by one with --retry-not-found; export --help says "final"."""
    records = final_cdrs(3, seed=85)
    gone = records[1]["uuid"]
    output = tmp_path / "calls.jsonl"
    async with FakeTwoChatServer(cdrs=records) as server:
        server.fail_next(Fault(status=404), call_uuid=gone)
        first = await run("sync", "-o", str(output), "--rpm", "60000", server=server)
        assert first.code == 1, first.err
        second = await run("sync", "-o", str(output), "--rpm", "60000", server=server)
        assert second.code == 0, second.err
        assert "1 known not found, skipped (--retry-not-found asks again)" in second.err
        server.requests.clear()
        third = await run(
            "sync", "-o", str(output), "--rpm", "60000", "--retry-not-found", server=server
        )
    assert third.code == 0, third.err
    assert [r.call_uuid for r in server.requests if r.call_uuid] == [gone]
    assert sorted(line["uuid"] for line in _lines(output)) == sorted(r["uuid"] for r in records)
    helped = await run("export", "--help")
    assert "A record is final unless its call is not over" in " ".join(helped.out.split())


@pytest.mark.parametrize(
    ("flags", "said"), [(os.ST_RDONLY, "on a read-only file system"), (0, "not writable")]
)
async def test_a_folder_the_failures_cannot_be_written_in_is_named_for_what_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flags: int, said: str
) -> None:
    """The folder exists: the one line says read-only or not writable, not "no folder"
    (the OS's answers are patched: the tests may run as root, who can write anywhere)."""
    monkeypatch.setattr(os, "access", lambda *_args, **_kw: False)
    monkeypatch.setattr(os, "statvfs", lambda _path: SimpleNamespace(f_flag=flags))
    with pytest.raises(SinkError, match=f"{tmp_path} is {said}"):
        await Failures(tmp_path / "f.jsonl").open()


def test_the_interrupted_line_counts_what_the_output_took() -> None:
    """A pending record is saved by a database, not by a file: Ctrl-C's count says so."""
    from twochat_voip.cli._support import Progress

    over = CallSuccess(call_uuid="A", cdr=CallDetailRecord(uuid="A", status="COMPLETED"))
    ringing = CallSuccess(call_uuid="B", cdr=CallDetailRecord(uuid="B", status="RINGING"))
    lost = CallFailure(call_uuid="C", error=ValueError("not an id"))
    counts = []
    for output in ("calls.jsonl", "calls.db", "-"):
        progress = Progress(None, enabled=False, output=output)
        for result in (over, ringing, lost):
            progress(result)
        counts.append(progress.saved)
    assert counts == [1, 2, 1]
