"""export_calls: fetch ids into a sink, resumably (the sink says which ids it holds)."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import sys
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from contextlib import aclosing
from pathlib import Path
from typing import Any, Final, cast

import attrs

from twochat_voip._bulk import RUN_ENDING_ERRORS
from twochat_voip._client import DEFAULT_GIVE_UP_AFTER, VoIPClient
from twochat_voip._errors import (
    AuthenticationError,
    BudgetExhaustedError,
    PaymentRequiredError,
    RecordRefusedError,
    SinkError,
    TwoChatError,
)
from twochat_voip._models import CallDetailRecord
from twochat_voip._results import CallFailure, CallResult, CallSuccess
from twochat_voip.export._files import Failures, FileSink
from twochat_voip.export._records import parse_call_wire
from twochat_voip.export._sinks import Sink, StdoutSink, open_sink, shown

__all__ = ["ExportSummary", "default_failures", "export_calls", "open_sink"]

_CHUNK: Final = 256  # ids a sink is asked about at once (one query, for a database)
_LINGER: Final = 0.01  # seconds a part chunk of a slow async source waits for more


@attrs.frozen(kw_only=True)
class ExportSummary:
    """What an export did.

    Attributes:
        exported: Records written by this run.
        already_there: Ids skipped because the output already held them.
        failed: Ids that could not be fetched (listed in the failures file).
        requests: HTTP requests sent (each costs a credit), retries included.
        rate_limited: Answers that were 429.
        retries: Attempts made after a record's first.
        seconds: Wall time.
        stopped: Why the run gave up early (nothing more was sent), if it did.
        duplicates: Ids skipped because the input had named them before.
        output: Where the records went (a database's password hidden).
        failures: The failures file.
    """

    exported: int
    already_there: int
    failed: int
    requests: int
    rate_limited: int
    retries: int
    seconds: float
    stopped: str | None = None
    duplicates: int = 0
    output: str = ""
    failures: str = ""

    def describe(
        self, output: str | os.PathLike[str] | None = None, failures: Path | None = None
    ) -> str:
        """A one-paragraph account for the end of a run."""
        lines = [f"exported {self.exported} records to {output or self.output}"]
        counts = ((self.already_there, "already there"), (self.duplicates, "given twice"))
        if skipped := [f"{count} {what}" for count, what in counts if count]:
            lines[0] += f" ({', '.join(skipped)})"
        if self.failed:
            lines.append(f"{self.failed} failed; ids and reasons in {failures or self.failures}")
        plural = "" if self.requests == 1 else "s"
        lines.append(
            f"{self.requests} request{plural} ({self.rate_limited} answered 429, "
            f"{self.retries} retries) in {self.seconds:.1f} s"
        )
        if self.stopped:
            lines.append(f"stopped early, nothing more was sent: {self.stopped}")
        return "\n".join(lines)


def default_failures(output: str | os.PathLike[str]) -> Path:
    """Where failures go unless told: beside a file output, else in the current folder."""
    text = os.fspath(output)
    if text == "-":
        return Path("twochat-voip-stdout.failures.jsonl")
    if "://" in text:
        digest = hashlib.sha256(shown(text).encode()).hexdigest()[:10]
        return Path(f"twochat-voip-{digest}.failures.jsonl")
    return Path(text).with_name(Path(text).name + ".failures.jsonl")


def _is_stdout(path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(sys.stdout.fileno()), os.stat(path))
    except (OSError, ValueError):  # no such file, or no stdout to ask
        return False


def _same_file(one: Path, other: Path) -> bool:
    try:
        return one.resolve() == other.resolve() or one.samefile(other)
    except OSError:
        return False


async def _chunks(values: AsyncIterable[str] | Iterable[str]) -> AsyncIterator[list[str]]:
    """Ids in chunks; a slow async source's wait ``_LINGER`` seconds, not for a full one."""
    if not isinstance(values, AsyncIterable):
        given = iter(values)
        while chunk := list(itertools.islice(given, _CHUNK)):
            yield chunk
        return
    source = aiter(values)
    end: Any = object()
    pending = asyncio.ensure_future(anext(source, end))
    chunk = []
    try:
        while (value := await pending) is not end:
            chunk.append(value)
            pending = asyncio.ensure_future(anext(source, end))
            if len(chunk) >= _CHUNK or not (await asyncio.wait({pending}, timeout=_LINGER))[0]:
                yield chunk
                chunk = []
        if chunk:
            yield chunk
    finally:
        pending.cancel()


async def _store(sink: Sink, result: CallSuccess) -> CallResult:
    record, wire = cast(tuple[CallDetailRecord, dict[str, Any]], result.cdr)
    try:
        await sink.write(result.call_uuid, record, wire)
    except RecordRefusedError as exc:
        return CallFailure(call_uuid=result.call_uuid, error=exc, index=result.index)
    return attrs.evolve(result, cdr=record)


def _outputs(
    output: Sink | str | os.PathLike[str], fmt: str | None, failures: Path | None
) -> tuple[Sink, Failures]:
    """The sink and the failures list, checked against each other before either opens."""
    sink = output if isinstance(output, Sink) else open_sink(output, fmt)
    named = None if isinstance(output, Sink) else os.fspath(output)
    failures = failures or default_failures(named or "-")
    if isinstance(sink, FileSink) and not sink.path.parent.is_dir():
        raise SinkError(f"cannot open {sink.path}: there is no folder {sink.path.parent}")
    if named is not None and named != "-" and _same_file(Path(named), failures):
        raise SinkError(f"the failures file must not be the output ({failures})")
    if isinstance(sink, FileSink) and _same_file(sink.asked_path, failures):
        raise SinkError(f"the failures file must not be the output's notes ({failures})")
    if isinstance(sink, StdoutSink) and _is_stdout(failures):
        raise SinkError(f"the failures file must not be standard output ({failures})")
    failed = Failures(failures)
    failed.check()
    return sink, failed


async def export_calls(
    client: VoIPClient,
    ids: AsyncIterable[str] | Iterable[str],
    output: Sink | str | os.PathLike[str],
    *,
    failures: Path | None = None,
    fmt: str | None = None,
    concurrency: int = 16,
    ordered: bool = False,
    give_up_after: float | None = DEFAULT_GIVE_UP_AFTER,
    on_result: Callable[[CallResult], None] | None = None,
    on_held: Callable[[int], None] | None = None,
) -> ExportSummary:
    """Fetch ``ids`` with ``client`` into ``output``; failures into ``failures``.

    ``output`` is a :class:`Sink`, or what :func:`open_sink` opens (``fmt`` as there).
    Ids the output holds, or given twice, are skipped (``on_held`` is told how many the
    output held, a chunk at a time). Failed ids go to ``failures``
    (default: beside a file output, else in the current folder), replaced every run.

    Raises:
        SinkError: before anything is sent, when the output cannot be used.
    """
    sink, failed = _outputs(output, fmt, failures)
    started = time.monotonic()
    before = client.stats
    counts = {"already": 0, "twice": 0}
    seen: set[str] = set()

    async def new_ids() -> AsyncIterator[str]:
        async for chunk in _chunks(ids):
            fresh = {value for value in chunk if value not in seen}
            held = await sink.held(fresh) if fresh else set()
            for value in chunk:
                if value in seen:
                    counts["twice"] += 1
                    continue
                seen.add(value)
                if value in held:
                    counts["already"] += 1
                else:
                    yield value
            if on_held is not None and held:
                on_held(len(held))

    exported = 0
    stopped: str | None = None
    previous: BaseException | None = None
    finished = False
    try:
        async with sink:
            failed.open()  # after the output's lock: a second export is told about that
            results = client._get_calls(
                new_ids(),
                parse=parse_call_wire,
                concurrency=concurrency,
                ordered=ordered,
                give_up_after=give_up_after,
            )
            async with aclosing(results):
                async for result in results:
                    if result.ok:
                        result = await _store(sink, result)  # noqa: PLW2901 - as callers see it
                        exported += result.ok
                    if not result.ok:
                        failed.add(result)
                        # A run that gives up answers every id left with one error.
                        if stopped is None and (
                            isinstance(result.error, RUN_ENDING_ERRORS) or result.error is previous
                        ):
                            stopped = _why_stopped(result.error)
                        previous = result.error
                    if on_result is not None:
                        on_result(result)
            finished = True
    finally:
        failed.close(finished=finished)
    after = client.stats
    return ExportSummary(
        exported=exported,
        already_there=counts["already"],
        duplicates=counts["twice"],
        failed=failed.count,
        requests=after.requests - before.requests,
        rate_limited=after.rate_limited - before.rate_limited,
        retries=after.retries - before.retries,
        seconds=time.monotonic() - started,
        stopped=stopped,
        output=sink.description,
        failures=str(failed.path),
    )


def _why_stopped(error: BaseException | None) -> str:
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
