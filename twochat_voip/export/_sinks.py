"""Where an export writes: one small interface, a JSONL and a CSV file behind it.

A file sink may be run again and again on one file, and started twice: it holds an
exclusive ``flock`` while it writes (a second export is refused with one line); it
refuses, untouched, a file that is not an export of its format; each record is one
``write()`` of a whole line to an ``O_APPEND`` descriptor, so a killed run leaves at
most one torn last line, which the next run cuts off. Resuming is keyed by the id
*asked for*: when 2Chat answers with another ``uuid``, a line ``["asked", "uuid"]``
goes to ``OUTPUT.asked`` before the record.

JSONL lines are the ``cdr`` object as 2Chat sent it, every field and digit kept. CSV
cells come from the typed record; a cell that a spreadsheet would run as a formula
(starting ``=``, ``+``, ``-``, ``@``, tab or carriage return, and not a plain number
such as ``+595984153762``) is prefixed with ``'``, as OWASP advises.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import sys
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, Final, Protocol, runtime_checkable

from twochat_voip._errors import SinkError
from twochat_voip._models import CallDetailRecord
from twochat_voip._wire import COLUMNS, dumps_wire, text_of
from twochat_voip.export._files import check_regular, lock_exclusive, write_all

__all__ = ["FIRST_LINE_CAP", "HEADER_LINE", "CSVSink", "JSONLSink", "Sink", "StdoutSink", "shown"]

CSV_HEADER: Final = [column.csv_name for column in COLUMNS]
HEADER_LINE: Final = (",".join(CSV_HEADER) + "\n").encode()
FIRST_LINE_CAP: Final = 1 << 20
_FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")
_BLANKS: Final = " \n\xa0\ufeff"  # before a formula start (tab and CR are starts)
_PLAIN_NUMBER: Final = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_UUID_FIRST: Final = b'{"uuid":"'
_PASSWORD: Final = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/@:]*:).*@")
_QUERY_PASSWORD: Final = re.compile(r"([?&](?:password|passwd|pwd)=)[^&]*", re.IGNORECASE)


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


def shown(target: str) -> str:
    """An output as it may be printed: a URL's password hidden (up to the last ``@``,
    in case a ``/`` or ``@`` in it was left unencoded; and a ``password=`` parameter)."""
    return _QUERY_PASSWORD.sub(r"\1***", _PASSWORD.sub(r"\1***@", target))


class _FileSink:
    """A locked file of whole lines; subclasses say what a line is."""

    _format = ""
    _header = b""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fd = self._asked_fd = -1
        self._held: set[str] = set()

    @property
    def description(self) -> str:
        return str(self.path)

    @property
    def asked_path(self) -> Path:
        """Where ids asked for under another ``uuid`` are noted (beside the real file,
        when the output is a symbolic link)."""
        real = Path(os.path.realpath(self.path))
        return real.with_name(real.name + ".asked")

    async def __aenter__(self) -> _FileSink:
        self._open()
        return self

    def _open(self) -> None:
        """Open, lock, check and scan: blocking, once, before any request."""
        check_regular(self.path, "use -o - for standard output")
        try:
            self._fd = os.open(
                self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o666
            )
        except OSError as exc:
            raise SinkError(f"cannot open {self.path}: {exc.strerror}") from None
        try:
            lock_exclusive(
                self._fd,
                f"{self.path} is being written by another export; wait for it to finish, "
                "or choose another output",
            )
            with open(self._fd, "rb", closefd=False) as handle:
                self._check_ours(handle.readline(FIRST_LINE_CAP))
                keep = self._scan(handle, os.fstat(self._fd).st_size)
            if keep is not None:
                os.ftruncate(self._fd, keep)
            if self._header and os.fstat(self._fd).st_size == 0:
                write_all(self._fd, self._header)
            self._read_asked()
        except BaseException:
            os.close(self._fd)
            self._fd = -1
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        for fd in (self._asked_fd, self._fd):
            if fd >= 0:
                os.close(fd)  # closing drops the lock
        self._fd = self._asked_fd = -1

    def _check_ours(self, first: bytes) -> None:
        if not first:
            return
        try:
            text = first.decode("utf-8")
        except UnicodeDecodeError:
            why = "it is not UTF-8"
        else:
            if self._first_line_ok(first, text):
                return
            why = f"its first line is {text[:60]!r}"
        raise SinkError(
            f"{self.path} is not a {self._format} export of call records ({why}); "
            "it was left untouched: choose another output"
        )

    def _read_asked(self) -> None:
        """Ids asked for under another uuid, whose record made it into the output."""
        with contextlib.suppress(FileNotFoundError), self.asked_path.open("rb") as handle:
            for line in handle:
                try:
                    asked, uuid = json.loads(line)
                except (ValueError, TypeError):  # torn by a killed run, or not a pair
                    continue
                if uuid in self._held:
                    self._held.add(asked)

    async def held(self, call_uuids: Collection[str]) -> set[str]:
        return self._held.intersection(call_uuids)

    async def write(self, asked: str, record: CallDetailRecord, wire: Mapping[str, Any]) -> None:
        try:
            if asked != record.uuid:
                if self._asked_fd < 0:
                    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
                    self._asked_fd = os.open(self.asked_path, flags, 0o666)
                write_all(self._asked_fd, (json.dumps([asked, record.uuid]) + "\n").encode())
                self._held.add(asked)
            write_all(self._fd, self._line(record, wire).encode())
        except OSError as exc:  # a full disk, say: the records written so far stay
            raise SinkError(f"writing to {self.path} failed: {exc.strerror}") from None
        self._held.add(record.uuid)

    def _first_line_ok(self, first: bytes, text: str) -> bool:
        """Whether the first line (perhaps cut short by a killed run) is ours."""
        raise NotImplementedError

    def _scan(self, handle: IO[bytes], size: int) -> int | None:
        """Learn the ids held; the size to cut the file to, if its end is torn."""
        raise NotImplementedError

    def _line(self, record: CallDetailRecord, wire: Mapping[str, Any]) -> str:
        raise NotImplementedError


class JSONLSink(_FileSink):
    """JSON lines: each the ``cdr`` object as 2Chat sent it."""

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


class CSVSink(_FileSink):
    """Flat CSV: a header, then one row per record (columns from the models)."""

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
