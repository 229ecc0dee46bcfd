"""The Sink interface; JSONL, CSV and standard output; which one an output names."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import sys
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import IO, Any, Final, Protocol, runtime_checkable

from twochat_voip._converter import WIRE_NAMES
from twochat_voip._errors import SinkError
from twochat_voip._models import CallDetailRecord
from twochat_voip.export._files import FIRST_LINE_CAP, FileSink
from twochat_voip.export._records import (
    COLUMNS,
    dumps_wire,
    is_cut_record,
    is_first_record,
    is_whole_json,
    record_uuid,
    text_of,
)

HEADER_LINE: Final = (",".join(column.name for column in COLUMNS) + "\n").encode()
# A preview build's header (wire names joined by "."): the same columns, still resumed.
OLD_HEADER_LINE: Final = (
    ",".join(".".join(WIRE_NAMES.get(name, name) for name in c.path) for c in COLUMNS) + "\n"
).encode()
_FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")
_BLANKS: Final = " \n\xa0\ufeff"  # before a formula start (tab and CR are starts)
_PLAIN_NUMBER: Final = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_FILE_SUFFIXES: Final = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
_PASSWORD: Final = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/@:]*:).*@")
_QUERY_PASSWORD: Final = re.compile(r"([?&](?:password|passwd|pwd)=)[^&]*", re.IGNORECASE)


@runtime_checkable
class Sink(Protocol):
    """What :func:`~twochat_voip.export_calls` writes records to: an async context
    manager whose entering opens (and locks, and checks) the output.

    Optional: ``keeps_pending = True`` to be given records that are not final too
    (a database's row is the call's newest view); ``failure_store()``, a
    :class:`~twochat_voip.FailureStore` used when no failures file is named."""

    @property
    def description(self) -> str:
        """Where the records go, for messages (never a password)."""
        ...

    async def __aenter__(self) -> Sink: ...

    async def __aexit__(self, *exc_info: object) -> None: ...

    async def held(self, call_uuids: Collection[str]) -> set[str]:
        """Which of these ids (as asked for) the output holds the final record of."""
        ...

    async def write(self, asked: str, record: CallDetailRecord, wire: Mapping[str, Any]) -> None:
        """Store ``record`` (``wire``: its ``cdr`` object as 2Chat sent it), fetched for
        the id ``asked``."""
        ...


def neutralise(text: str) -> str:
    """``text`` as a CSV cell no spreadsheet runs as a formula."""
    trimmed = text.lstrip(_BLANKS)  # an importer that trims blanks must not find one
    if trimmed.startswith(_FORMULA_STARTS) and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


class JSONLSink(FileSink):
    """JSON lines: each the ``cdr`` object as 2Chat sent it, every field and digit
    (``uuid`` first, so that a line cut short is known for ours)."""

    _format = "JSONL"

    def _scan(self, handle: IO[bytes], size: int) -> tuple[int, bool]:
        end = 0
        for line in handle:
            if not line.endswith(b"\n"):
                return self._last(line, end, size)
            uuid = record_uuid(line)
            if end == 0 and not is_first_record(line):
                raise self._not_ours(line)
            end += len(line)
            if uuid is not None:
                self._held.add(uuid)
        return end, False

    def _last(self, line: bytes, end: int, size: int) -> tuple[int, bool]:
        """What to do with a last line that has no newline: keep a whole one (a record,
        or any JSON after records), cut one of ours cut short, refuse anything else."""
        whole = is_whole_json(line)
        uuid = record_uuid(line) if whole and (end or is_first_record(line)) else None
        if uuid is not None or (whole and end):
            self._held.update([uuid] if uuid is not None else [])
            return size, True
        if is_cut_record(line) and (end or len(line) <= FIRST_LINE_CAP):  # a record's size
            return end, False
        if end == 0:
            raise self._not_ours(line)
        raise SinkError(
            f"{self.path} ends with a line that is neither a whole record nor one of ours "
            "cut short; it was left untouched: mend it, or choose another output"
        )

    def _line(self, record: CallDetailRecord, wire: Mapping[str, Any]) -> str:
        return dumps_wire({"uuid": record.uuid, **wire}) + "\n"


class CSVSink(FileSink):
    """Flat CSV: a header, then one row per record. A cell a spreadsheet would run as a
    formula (not a plain number such as ``+595984153762``) is prefixed with ``'``."""

    _format = "CSV"
    _header = HEADER_LINE

    def _scan(self, handle: IO[bytes], size: int) -> tuple[int, bool]:
        if size == 0:
            return 0, False
        first = handle.readline(FIRST_LINE_CAP)
        if first + b"\n" in (HEADER_LINE, OLD_HEADER_LINE) and len(first) == size:
            return size, True  # the header alone, its newline lost
        if first not in (HEADER_LINE, OLD_HEADER_LINE):
            raise self._not_ours(first)
        handle.seek(max(size - 1, 0))
        whole = handle.read(1) == b"\n"  # else its last row is cut short, or lost its newline
        handle.seek(len(first))
        rows = csv.reader((line.decode("utf-8", "replace") for line in handle), strict=True)
        good = len(first)
        # A cell may be as long as 2Chat made it; the process-wide cap is restored after.
        cap = csv.field_size_limit(sys.maxsize)
        try:
            for row in rows:
                at = handle.tell()
                if at == size and not whole and len(row) != len(COLUMNS):
                    if len(row) > len(COLUMNS) or not row[0]:
                        raise SinkError(
                            f"{self.path} ends with a row that is neither whole nor one of "
                            "ours cut short; it was left untouched: mend it, or choose "
                            "another output"
                        )
                    return good, False  # a row of ours cut short by a killed run
                good = at
                if len(row) == len(COLUMNS):
                    cell = row[0]  # as it was before neutralise()
                    formula = cell[1:].lstrip(_BLANKS).startswith(_FORMULA_STARTS)
                    self._held.add(cell[1:] if cell.startswith("'") and formula else cell)
        except csv.Error as exc:
            if handle.tell() != size or "end of data" not in str(exc):
                # Not a quoted cell cut short at the end: resuming past it would duplicate.
                raise SinkError(
                    f"{self.path} cannot be read past byte {good} ({exc}); it was left "
                    "untouched: mend it, or choose another output"
                ) from None
            return good, False
        finally:
            csv.field_size_limit(cap)
        return size, not whole

    def _line(self, record: CallDetailRecord, wire: Mapping[str, Any]) -> str:
        buffer = io.StringIO()
        row = [neutralise(text_of(column.get(record))) for column in COLUMNS]
        # Ending rows "\r\n" makes the writer quote a bare "\r", a row break in a spreadsheet.
        csv.writer(buffer, lineterminator="\r\n").writerow(row)
        return buffer.getvalue()[:-2] + "\n"


class OutputClosedError(SinkError):
    """Standard output's reader closed it (``| head``): it has all it wanted."""


class StdoutSink:
    """JSON lines to standard output (``-o -``): nothing to resume, nothing to lock."""

    def __init__(self, stream: IO[bytes] | None = None) -> None:
        self._stream = stream

    @property
    def description(self) -> str:
        return "standard output"

    async def __aenter__(self) -> StdoutSink:
        if self._stream is None:
            self._stream = sys.stdout.buffer
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._stream is not None:
            with contextlib.suppress(BrokenPipeError):
                self._stream.flush()

    async def held(self, call_uuids: Collection[str]) -> set[str]:
        return set()

    async def write(self, asked: str, record: CallDetailRecord, wire: Mapping[str, Any]) -> None:
        if self._stream is None:
            raise SinkError("the sink is not open: use it with 'async with'")
        try:
            self._stream.write((dumps_wire(wire) + "\n").encode())
            self._stream.flush()
        except BrokenPipeError:  # `| head`: the reader has all it wanted
            if self._stream is sys.stdout.buffer:
                # What is still buffered goes nowhere, instead of failing again at exit.
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise OutputClosedError("standard output was closed by its reader") from None


def shown(target: str) -> str:
    """An output as it may be printed: a URL's password (up to the last ``@``) hidden."""
    return _QUERY_PASSWORD.sub(r"\1***", _PASSWORD.sub(r"\1***@", target))


def database_url(target: str | os.PathLike[str]) -> str | None:
    """The async SQLAlchemy URL for an export target; ``None`` for a file of another kind."""
    text = os.fspath(target)
    for scheme, driver in (
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgres://", "postgresql+asyncpg://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if text.startswith(scheme):
            return driver + text[len(scheme) :]
    if text.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
        return text
    if "://" not in text and Path(text).suffix.lower() in (".db", ".sqlite", ".sqlite3"):
        return "sqlite+aiosqlite:///" + str(Path(text).resolve())
    return None


def _sniff(path: Path) -> str | None:
    """The format a regular file's first line says, if any (a FIFO is not read)."""
    if not path.is_file():
        return None
    try:
        with path.open("rb") as handle:
            first = handle.readline(FIRST_LINE_CAP)
    except OSError:
        return None
    if first.startswith(b"{"):
        return "jsonl"
    if first.rstrip(b"\n") + b"\n" in (HEADER_LINE, OLD_HEADER_LINE):
        return "csv"
    return None


def sink_format(target: str | os.PathLike[str], fmt: str | None = None) -> str:
    """``jsonl``, ``csv`` or ``sql``: what the output's name, else its first line, says."""
    text = os.fspath(target)
    if text == "-":
        said: str | None = "jsonl"
    elif database_url(text) is not None:
        said = "sql"
    elif "://" in text:
        raise SinkError(
            f"{shown(text)} is not an output this SDK writes: a file, postgresql://… or sqlite:///…"
        )
    else:
        said = _FILE_SUFFIXES.get(Path(text).suffix.lower()) or _sniff(Path(text))
    if fmt is not None and said is not None and fmt != said:
        raise SinkError(
            f"--format {fmt} disagrees with {shown(text)}, which is {said.upper()}; "
            "leave --format out, or choose another output"
        )
    return fmt or said or "jsonl"


def open_sink(output: str | os.PathLike[str], fmt: str | None = None) -> Sink:
    """The sink an output names: ``-`` (JSONL to standard output), ``*.jsonl``,
    ``*.csv``, ``*.db``/``*.sqlite``/``sqlite:///…`` or ``postgresql://…`` (a
    database: the ``db`` extra). ``fmt`` (``jsonl``, ``csv`` or ``sql``) must agree
    with what the output's name or first line says; a name that says nothing is JSONL.

    Raises:
        SinkError: ``fmt`` disagrees with the output.
    """
    chosen = sink_format(output, fmt)
    text = os.fspath(output)
    if text == "-":
        return StdoutSink()
    if chosen == "sql":
        from twochat_voip.sql import SQLSink  # noqa: PLC0415 - the optional db extra

        return SQLSink(text)
    return CSVSink(text) if chosen == "csv" else JSONLSink(text)
