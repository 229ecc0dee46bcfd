"""Where an export writes: one small interface; JSONL, CSV and standard output (the
file sinks' locking and resuming are :class:`~twochat_voip.export._files.FileSink`'s)."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import sys
from collections.abc import Collection, Iterator, Mapping
from typing import IO, Any, Final, Protocol, runtime_checkable

from twochat_voip._errors import SinkError
from twochat_voip._models import CallDetailRecord
from twochat_voip._wire import COLUMNS, dumps_wire, text_of
from twochat_voip.export._files import FileSink

__all__ = ["HEADER_LINE", "CSVSink", "JSONLSink", "Sink", "StdoutSink"]

CSV_HEADER: Final = [column.csv_name for column in COLUMNS]
HEADER_LINE: Final = (",".join(CSV_HEADER) + "\n").encode()
_FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")
_BLANKS: Final = " \n\xa0\ufeff"  # before a formula start (tab and CR are starts)
_PLAIN_NUMBER: Final = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_UUID_FIRST: Final = b'{"uuid":"'


@runtime_checkable
class Sink(Protocol):
    """What :func:`~twochat_voip.export_calls` writes records to.

    A sink is an async context manager: entering it opens (and locks, and checks) the
    output and learns what it already holds; leaving it closes it.
    """

    @property
    def description(self) -> str:
        """Where the records go, for messages (never a password)."""
        ...

    async def __aenter__(self) -> Sink: ...

    async def __aexit__(self, *exc_info: object) -> None: ...

    async def held(self, call_uuids: Collection[str]) -> set[str]:
        """Which of these ids (as asked for) the output already holds."""
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
    """JSON lines: each the ``cdr`` object as 2Chat sent it, every field and digit."""

    _format = "JSONL"

    def _first_line_ok(self, first: bytes, text: str) -> bool:
        if not first.endswith(b"\n") and first.startswith(b'{"'):
            return True
        try:
            value = json.loads(text)
        except ValueError:
            return False
        return isinstance(value, dict) and isinstance(value.get("uuid"), str)

    def _scan(self, handle: IO[bytes], size: int) -> int | None:
        handle.seek(0)
        end = 0
        for line in handle:
            if not line.endswith(b"\n"):
                break
            end += len(line)
            if line.startswith(_UUID_FIRST):  # as 2Chat sends it: no need to parse it all
                close = line.find(b'"', len(_UUID_FIRST))
                value = line[len(_UUID_FIRST) : close]
                if close > 0 and b"\\" not in value:
                    self._held.add(value.decode("utf-8", "replace"))
                    continue
            try:
                uuid = json.loads(line).get("uuid")
            except (ValueError, AttributeError, RecursionError):  # a line someone edited
                continue
            if isinstance(uuid, str):
                self._held.add(uuid)
        return end if end != size else None

    def _line(self, record: CallDetailRecord, wire: Mapping[str, Any]) -> str:
        return dumps_wire(wire) + "\n"


class CSVSink(FileSink):
    """Flat CSV: a header, then one row per record (columns from the models).

    A cell a spreadsheet would run as a formula (starting ``=``, ``+``, ``-``, ``@``,
    tab or carriage return, and not a plain number such as ``+595984153762``) is
    prefixed with ``'``, as OWASP advises.
    """

    _format = "CSV"
    _header = HEADER_LINE

    def _first_line_ok(self, first: bytes, text: str) -> bool:
        return HEADER_LINE.startswith(first)

    def _scan(self, handle: IO[bytes], size: int) -> int | None:
        consumed = 0
        last_line_end = True

        def lines() -> Iterator[str]:
            nonlocal consumed, last_line_end
            handle.seek(0)
            for line in handle:
                consumed += len(line)
                last_line_end = line.endswith(b"\n")
                yield line.decode("utf-8", "replace")

        rows = csv.reader(lines(), strict=True)
        good = 0
        # A cell may be as long as 2Chat made it (the csv module caps it at 128 KiB);
        # the cap is the process's, so it is restored after the scan.
        cap = csv.field_size_limit(sys.maxsize)
        try:
            next(rows, None)  # the header, checked already (or cut short)
            good = consumed if last_line_end else 0
            for row in rows:
                if not last_line_end:
                    break  # a row cut short by a killed run
                good = consumed
                if len(row) == len(CSV_HEADER):
                    cell = row[0]  # as it was before neutralise()
                    formula = cell[1:].lstrip(_BLANKS).startswith(_FORMULA_STARTS)
                    self._held.add(cell[1:] if cell.startswith("'") and formula else cell)
        except csv.Error as exc:
            if consumed != size:  # not a torn end: resuming past it would duplicate
                raise SinkError(
                    f"{self.path} cannot be read past byte {good} ({exc}); it was left "
                    "untouched: mend it, or choose another output"
                ) from None
        finally:
            csv.field_size_limit(cap)
        return good if good != size else None

    def _line(self, record: CallDetailRecord, wire: Mapping[str, Any]) -> str:
        buffer = io.StringIO()
        row = [neutralise(text_of(column.get(record))) for column in COLUMNS]
        # "\r\n" as the writer's line end makes it quote a cell holding either character
        # (with "\n" alone, a bare "\r" went out unquoted: a row break in a spreadsheet).
        csv.writer(buffer, lineterminator="\r\n").writerow(row)
        return buffer.getvalue()[:-2] + "\n"


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
            raise SinkError("standard output was closed by its reader") from None
