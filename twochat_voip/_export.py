"""Export call records to a JSONL or CSV file: resumable, crash-safe, constant memory.

Each record is written with one ``write()`` of a whole line to an unbuffered file as
soon as it arrives, so a run that is killed leaves only complete lines (the rare torn
last line is cut off on the next run). Re-running the same export resumes: ids already
in the output are skipped, failed ones are tried again.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import sys
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from contextlib import aclosing
from pathlib import Path
from typing import IO, Any, Literal

import attrs

from twochat_voip._bulk import RUN_ENDING_ERRORS, CallResult
from twochat_voip._client import DEFAULT_GIVE_UP_AFTER, VoIPClient
from twochat_voip._converter import converter
from twochat_voip._errors import (
    APIStatusError,
    AuthenticationError,
    BudgetExhaustedError,
    PaymentRequiredError,
    TwoChatError,
)
from twochat_voip._models import CallDetailRecord

__all__ = ["ExportSummary", "export_calls"]

Format = Literal["jsonl", "csv"]

_CSV_COLUMNS = [
    *(
        a.name if a.name != "from_" else "from"
        for a in attrs.fields(CallDetailRecord)
        if a.name not in ("call_cost", "agent")
    ),
    "call_cost.callid",
    "call_cost.forwarded",
    "call_cost.toll_free",
    "call_cost.start_dt",
    "call_cost.end_dt",
    "call_cost.duration",
    "call_cost.call_price",
    "agent.uuid",
    "agent.first_name",
    "agent.last_name",
    "agent.full_name",
    "agent.profile_pic_url",
]


@attrs.frozen(kw_only=True)
class ExportSummary:
    """What an export did.

    Attributes:
        exported: Records written by this run.
        already_there: Ids skipped because the output already held them (or the input
            named them twice).
        failed: Ids that could not be fetched (listed in the failures file).
        requests: HTTP requests sent (each costs a credit), retries included.
        rate_limited: Answers that were 429.
        retries: Attempts made after a record's first.
        seconds: Wall time.
        stopped: Why the run gave up early (nothing more was sent), if it did.
    """

    exported: int
    already_there: int
    failed: int
    requests: int
    rate_limited: int
    retries: int
    seconds: float
    stopped: str | None = None

    def describe(self, output: Path, failures: Path) -> str:
        """A one-paragraph account for the end of a run."""
        lines = [f"exported {self.exported} records to {output}"]
        if self.already_there:
            lines[0] += f" ({self.already_there} already there)"
        if self.failed:
            lines.append(f"{self.failed} failed; ids and reasons in {failures}")
        plural = "" if self.requests == 1 else "s"
        lines.append(
            f"{self.requests} request{plural} ({self.rate_limited} answered 429, "
            f"{self.retries} retries) in {self.seconds:.1f} s"
        )
        if self.stopped:
            lines.append(f"stopped early, nothing more was sent: {self.stopped}")
        return "\n".join(lines)


def _flat_row(record: CallDetailRecord) -> list[str]:
    wire = converter.unstructure(record)
    row: list[str] = []
    for column in _CSV_COLUMNS:
        parent, _, child = column.partition(".")
        value = (wire.get(parent) or {}).get(child) if child else wire.get(parent)
        row.append(
            "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
        )
    return row


def _line_for(record: CallDetailRecord, fmt: Format) -> bytes:
    if fmt == "jsonl":
        return json.dumps(converter.unstructure(record), separators=(",", ":")).encode() + b"\n"
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(_flat_row(record))
    return buffer.getvalue().encode()


def _done_ids(output: Path, fmt: Format) -> set[str]:
    """Ids already in ``output``; a torn last line from a killed run is cut off."""
    if not output.exists() or output.stat().st_size == 0:
        return set()
    data = output.read_bytes()
    if not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        with output.open("r+b") as handle:
            handle.truncate(keep)
        data = data[:keep]
    text = data.decode("utf-8")
    if fmt == "jsonl":
        done = set()
        for line in text.splitlines():
            try:
                uuid = json.loads(line).get("uuid")
            except (ValueError, AttributeError):
                continue
            if isinstance(uuid, str):
                done.add(uuid)
        return done
    rows = csv.reader(io.StringIO(text))
    header = next(rows, None)
    if header is None or "uuid" not in header:
        return set()
    column = header.index("uuid")
    return {row[column] for row in rows if len(row) > column}


async def read_ids(stream: IO[str]) -> AsyncIterator[str]:
    """Ids from a text stream, one per line, read off the event loop (stdin may
    block); blank lines and ``#`` comments are skipped."""
    while True:
        line = await asyncio.to_thread(stream.readline)
        if not line:
            return
        value = line.strip()
        if value and not value.startswith("#"):
            yield value


def _failure_line(result: CallResult) -> bytes:
    error = result.error
    entry: dict[str, Any] = {
        "call_uuid": result.call_uuid,
        "error": type(error).__name__,
        "message": str(error),
    }
    if isinstance(error, APIStatusError):
        entry["status_code"] = error.status_code
    return json.dumps(entry).encode() + b"\n"


class _Sink:
    """The output and failures files of one run, opened for crash-safe writes."""

    def __init__(self, output: Path, failures: Path, fmt: Format) -> None:
        self.done = _done_ids(output, fmt)
        self._fmt = fmt
        self._failures_path = failures
        new_file = not output.exists() or output.stat().st_size == 0
        # Unbuffered: every record is one write() of a whole line, on disk at once.
        self._out = output.open("ab", buffering=0)
        self._bad = failures.open("wb", buffering=0)
        self.failed = 0
        if fmt == "csv" and new_file:
            header = io.StringIO()
            csv.writer(header, lineterminator="\n").writerow(_CSV_COLUMNS)
            self._out.write(header.getvalue().encode())

    def record(self, record: CallDetailRecord) -> None:
        self._out.write(_line_for(record, self._fmt))

    def failure(self, result: CallResult) -> None:
        self._bad.write(_failure_line(result))
        self.failed += 1

    def close(self) -> None:
        self._out.close()
        self._bad.close()
        if self.failed == 0:
            self._failures_path.unlink(missing_ok=True)


async def export_calls(
    client: VoIPClient,
    ids: AsyncIterable[str] | Iterable[str],
    output: Path,
    *,
    failures: Path,
    fmt: Format = "jsonl",
    concurrency: int = 16,
    ordered: bool = False,
    give_up_after: float | None = DEFAULT_GIVE_UP_AFTER,
    on_result: Callable[[CallResult], None] | None = None,
) -> ExportSummary:
    """Fetch ``ids`` with ``client`` into ``output``, failures into ``failures``."""
    started = time.monotonic()
    before = client.stats
    sink = _Sink(output, failures, fmt)
    skipped = 0

    async def new_ids() -> AsyncIterator[str]:
        nonlocal skipped
        async for value in _as_async(ids):
            if value in sink.done:
                skipped += 1
                continue
            sink.done.add(value)
            yield value

    exported = 0
    stopped: str | None = None
    previous: BaseException | None = None
    try:
        results = client.get_calls(
            new_ids(), concurrency=concurrency, ordered=ordered, give_up_after=give_up_after
        )
        async with aclosing(results):
            async for result in results:
                if result.cdr is not None:
                    sink.record(result.cdr)
                    exported += 1
                else:
                    sink.failure(result)
                    # A run that gives up answers every id left with one error object.
                    if stopped is None and (
                        isinstance(result.error, RUN_ENDING_ERRORS) or result.error is previous
                    ):
                        stopped = _why_stopped(result.error)
                    previous = result.error
                if on_result is not None:
                    on_result(result)
    finally:
        sink.close()
    after = client.stats
    return ExportSummary(
        exported=exported,
        already_there=skipped,
        failed=sink.failed,
        requests=after.requests - before.requests,
        rate_limited=after.rate_limited - before.rate_limited,
        retries=after.retries - before.retries,
        seconds=time.monotonic() - started,
        stopped=stopped,
    )


def _why_stopped(error: BaseException | None) -> str:
    """Why a run gave up, and what to do before running the same command again."""
    again = "run the same command again to resume"
    if isinstance(error, AuthenticationError):
        return f"the API key was refused (401); fix it, then {again}"
    if isinstance(error, PaymentRequiredError):
        return f"the account has no credits left (402); top it up, then {again}"
    if isinstance(error, BudgetExhaustedError):
        return f"the --max-requests budget ({error.max_requests}) is spent; {again} with a new one"
    shown = str(error) if isinstance(error, TwoChatError) else repr(error)
    if shown.startswith("nothing succeeded"):  # no attempt failed: the requests hung
        return f"{shown}; {again}"
    return f"nothing succeeded for --give-up-after seconds (last error: {shown}); {again}"


async def _as_async(values: AsyncIterable[str] | Iterable[str]) -> AsyncIterator[str]:
    if isinstance(values, AsyncIterable):
        async for value in values:
            yield value
    else:
        for value in values:
            yield value


def stderr_is_interactive() -> bool:
    """Whether progress may be drawn: a terminal, and neither NO_COLOR nor dumb."""
    return sys.stderr.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"
