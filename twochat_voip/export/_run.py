"""export_calls: fetch ids into a sink, resumably (the sink says which ids it holds)."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import sys
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from contextlib import aclosing
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast

import attrs

from twochat_voip._bulk import RUN_ENDING_ERRORS
from twochat_voip._client import DEFAULT_GIVE_UP_AFTER, VoIPClient
from twochat_voip._errors import RecordRefusedError, SinkError
from twochat_voip._models import CallDetailRecord
from twochat_voip._results import CallFailure, CallResult, CallSuccess
from twochat_voip.export._failures import FailureStore
from twochat_voip.export._files import Failures, FileSink
from twochat_voip.export._records import parse_call_wire
from twochat_voip.export._sinks import Sink, StdoutSink, open_sink, shown
from twochat_voip.export._summary import ExportSummary, why_stopped

if TYPE_CHECKING:
    from twochat_voip.export._claims import Claims

__all__ = ["ExportSummary", "FailureStore", "default_failures", "export_calls", "open_sink"]

_CHUNK: Final = 256  # ids a sink is asked about at once (one query, for a database)
_LINGER: Final = 0.01  # seconds a part chunk of a slow async source waits for more


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
    """Write a fetched record, unless it is not final and the sink keeps only final ones."""
    record, wire = cast(tuple[CallDetailRecord, dict[str, Any]], result.cdr)
    if record.is_final or getattr(sink, "keeps_pending", False):
        try:
            await sink.write(result.call_uuid, record, wire)
        except RecordRefusedError as exc:
            return CallFailure(call_uuid=result.call_uuid, error=exc, index=result.index)
    return attrs.evolve(result, cdr=record)


async def _to_fetch(
    ids: AsyncIterable[str] | Iterable[str],
    sink: Sink,
    store: FailureStore,
    counts: dict[str, int],
    *,
    retry_not_found: bool,
    on_held: Callable[[int], None] | None,
) -> AsyncIterator[str]:
    """The ids to fetch: not given before, not held, not known 404s and, into a
    database other hosts share, claimed by this run (counted in ``counts``)."""
    claims: Claims | None = getattr(sink, "claims", None)
    seen: set[str] = set()
    waiting = []  # ids another export claimed: done there, or this run's if it stops
    async for chunk in _chunks(ids):
        fresh = {value for value in chunk if value not in seen}
        held = await sink.held(fresh) if fresh else set()
        known = set()
        if not retry_not_found and (left := fresh - held):
            known = await store.known_not_found(left)
        mine = await claims.take(fresh - held - known) if claims is not None else fresh
        for value in chunk:
            if value in seen:
                counts["twice"] += 1
                continue
            seen.add(value)
            if value in held:
                counts["already"] += 1
            elif value in known:
                counts["not_found"] += 1
            elif value in mine:
                yield value
            else:
                waiting.append(value)
        if on_held is not None and held:
            on_held(len(held))
    if claims is not None:
        async for value in claims.wait(waiting, on_held):
            yield value


async def _to_the_end(step: Awaitable[None]) -> None:
    """Await ``step`` to its end even if cancelled meanwhile (Ctrl-C), then stop: a
    record being stored is stored and counted, so the summary misses no saved row."""
    task = asyncio.ensure_future(step)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise


def _outputs(
    output: Sink | str | os.PathLike[str], fmt: str | None, failures: Path | None
) -> tuple[Sink, FailureStore]:
    """The sink and its failure store, checked against each other before either opens:
    the sink's own (a database's table) unless a failures file is named."""
    sink = output if isinstance(output, Sink) else open_sink(output, fmt)
    named = None if isinstance(output, Sink) else os.fspath(output)
    if isinstance(sink, FileSink) and not sink.path.parent.is_dir():
        raise SinkError(f"cannot open {sink.path}: there is no folder {sink.path.parent}")
    own: Callable[[], FailureStore] | None = getattr(sink, "failure_store", None)
    if failures is None and own is not None:
        return sink, own()
    failures = failures or default_failures(named or "-")
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
    retry_not_found: bool = False,
    on_result: Callable[[CallResult], None] | None = None,
    on_held: Callable[[int], None] | None = None,
) -> ExportSummary:
    """Fetch ``ids`` with ``client`` into ``output``; failures into ``failures``.

    ``output`` is a :class:`Sink`, or what :func:`open_sink` opens (``fmt`` as there).
    Ids whose final record the output holds, or given twice, are skipped (``on_held``
    is told how many the output held, a chunk at a time, and how many other exports
    into the same database stored meanwhile). A record
    that is not final (:attr:`CallDetailRecord.is_final`: its call is not over) is
    counted as pending and asked for again by a later run; only a database keeps it
    meanwhile (its row is the newest view), a file never holds it. Failed ids go to
    ``failures`` (default: a database's own table, else beside a file output, else in
    the current folder), replaced every run; ids a past run found 404 are skipped
    unless ``retry_not_found``.

    Raises:
        SinkError: before anything is sent, when the output cannot be used.
    """
    sink, store = _outputs(output, fmt, failures)
    started = time.monotonic()
    before = client.stats
    counts = dict.fromkeys(("already", "twice", "not_found", "exported", "pending", "failed"), 0)
    claims: Claims | None = getattr(sink, "claims", None)  # a database: shared by hosts

    stopped: str | None = None
    previous: BaseException | None = None
    finished = False

    async def handle(result: CallResult) -> None:
        nonlocal stopped, previous
        if result.ok:
            result = await _store(sink, result)
        if result.ok:
            counts["exported" if result.cdr.is_final else "pending"] += 1
            await store.forget(result.call_uuid)
        else:
            counts["failed"] += 1
            await store.add(result)
            # A run that gives up answers every id left with one error.
            if stopped is None and (
                isinstance(result.error, RUN_ENDING_ERRORS) or result.error is previous
            ):
                stopped = why_stopped(result.error)
            previous = result.error
        if on_result is not None:
            on_result(result)

    async with sink:
        await store.open()  # after the output's lock: a second export is told about that
        try:
            results = client._get_calls(
                _to_fetch(
                    ids, sink, store, counts, retry_not_found=retry_not_found, on_held=on_held
                ),
                parse=parse_call_wire,
                concurrency=concurrency,
                ordered=ordered,
                give_up_after=give_up_after,
            )
            async with aclosing(results):
                async for result in results:
                    await _to_the_end(handle(result))
            finished = True
        finally:
            await store.close(finished=finished)
    after = client.stats
    return ExportSummary(
        exported=counts["exported"],
        already_there=counts["already"],
        duplicates=counts["twice"],
        by_other_hosts=claims.by_others if claims is not None else 0,
        failed=counts["failed"],
        pending=counts["pending"],
        not_found_before=counts["not_found"],
        requests=after.requests - before.requests,
        rate_limited=after.rate_limited - before.rate_limited,
        retries=after.retries - before.retries,
        seconds=time.monotonic() - started,
        stopped=stopped,
        output=sink.description,
        failures=store.description,
    )
