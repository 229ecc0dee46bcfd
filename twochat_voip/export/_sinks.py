"""Where an export writes: one small interface, a JSONL and a CSV file behind it.

A file sink is safe to run again and again on the same file, and to start twice:

- it holds an exclusive lock (``flock``) on the file while it writes: a second export
  of the same file is refused with one line, never interleaved;
- it refuses, untouched, a file that is not an export of its format (the first line
  must be a record, or this version's CSV header);
- each record is one ``write()`` of a whole line to an ``O_APPEND`` descriptor, so a
  killed run leaves complete lines and at most one torn last line, which the next run
  cuts off (under the lock, once it knows the file is ours);
- resuming streams through the file once and keeps only the ids (memory grows with
  the number of records, not with their size);
- resuming is keyed by the id *asked for*: when 2Chat answers with another ``uuid``, a
  line ``["asked", "uuid"]`` goes to ``OUTPUT.asked`` before the record, so that the next
  run skips the asked id too (a line whose record never made it is ignored).

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

__all__ = [
    "FIRST_LINE_CAP",
    "HEADER_LINE",
    "CSVSink",
    "JSONLSink",
    "Sink",
    "StdoutSink",
    "shown",
]

CSV_HEADER: Final = [column.csv_name for column in COLUMNS]
HEADER_LINE: Final = (",".join(CSV_HEADER) + "\n").encode()
_FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")
_BLANKS: Final = " \n\xa0\ufeff"  # before a formula start (tab and CR are starts)
_PLAIN_NUMBER: Final = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
FIRST_LINE_CAP: Final = 1 << 20
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


def _cell_text(cell: str) -> str:
    """A cell's text, as it was before :func:`neutralise`."""
    rest = cell[1:]
    return (
        rest if cell.startswith("'") and rest.lstrip(_BLANKS).startswith(_FORMULA_STARTS) else cell
    )


def csv_line(record: CallDetailRecord) -> str:
    """One CSV row (with its line end) for ``record``."""
    buffer = io.StringIO()
    row = [neutralise(text_of(column.get(record))) for column in COLUMNS]
    # "\r\n" as the writer's line end makes it quote a cell holding either character
    # (with "\n" alone, a bare "\r" went out unquoted: a row break in a spreadsheet).
    csv.writer(buffer, lineterminator="\r\n").writerow(row)
    return buffer.getvalue()[:-2] + "\n"


def shown(target: str) -> str:
    """An output as it may be printed: a URL's password hidden, wherever it is (up to
    the last ``@``, so that a ``/`` or ``@`` left unencoded in it cannot show the
    rest; and a ``password=`` query parameter)."""
    return _QUERY_PASSWORD.sub(r"\1***", _PASSWORD.sub(r"\1***@", target))


class _FileSink:
    """A locked file of whole lines; subclasses say what a line is."""

    _format: str = ""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fd = -1
        self._held: set[str] = set()
        self._asked_fd = -1

    @property
    def description(self) -> str:
        return str(self.path)

    @property
    def asked_path(self) -> Path:
        """Where ids asked for under another ``uuid`` are noted (beside the file
        itself, when the output is a symbolic link)."""
        real = Path(os.path.realpath(self.path))
        return real.with_name(real.name + ".asked")

    async def __aenter__(self) -> _FileSink:
        self._open()
        return self

    def _open(self) -> None:
        """Open, lock, check and scan the file: blocking, once, before any request
        (a scan of a million records takes seconds)."""
        check_regular(self.path, "use -o - for standard output")
        try:
            self._fd = os.open(
                self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o666
            )
        except OSError as exc:
            raise SinkError(f"cannot open {self.path}: {exc.strerror}") from None
        try:
            self._lock()
            with open(self._fd, "rb", closefd=False) as handle:
                self._check_ours(handle)
                keep = self._scan(handle)
            if keep is not None:
                os.ftruncate(self._fd, keep)
            if os.fstat(self._fd).st_size == 0:
                self._start()
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

    def _lock(self) -> None:
        lock_exclusive(
            self._fd,
            f"{self.path} is being written by another export; wait for it to finish, "
            "or choose another output",
        )

    def _not_ours(self, why: str) -> SinkError:
        return SinkError(
            f"{self.path} is not a {self._format} export of call records ({why}); "
            "it was left untouched: choose another output"
        )

    def _check_ours(self, handle: IO[bytes]) -> None:
        first = handle.readline(FIRST_LINE_CAP)
        if not first:
            return
        try:
            text = first.decode("utf-8")
        except UnicodeDecodeError:
            raise self._not_ours("it is not UTF-8") from None
        if not first.endswith(b"\n") and self._torn_start(first):
            return  # a first record (or header) cut short: the scan cuts it off
        if not self._is_first_line(text):
            raise self._not_ours(f"its first line is {text[:60]!r}")

    def _lines(self, handle: IO[bytes]) -> Iterator[tuple[int, bytes]]:
        """Each whole line with the offset just past it; a torn last line is not one."""
        handle.seek(0)
        offset = 0
        for line in handle:
            if not line.endswith(b"\n"):
                return
            offset += len(line)
            yield offset, line

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
        held = self._held
        return {call_uuid for call_uuid in call_uuids if call_uuid in held}

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

    # What subclasses say.
    def _torn_start(self, first: bytes) -> bool:
        raise NotImplementedError

    def _is_first_line(self, text: str) -> bool:
        raise NotImplementedError

    def _scan(self, handle: IO[bytes]) -> int | None:
        """Learn the ids held; the size to cut the file to, if its end is torn."""
        raise NotImplementedError

    def _start(self) -> None:
        """Begin an empty file."""

    def _line(self, record: CallDetailRecord, wire: Mapping[str, Any]) -> str:
        raise NotImplementedError


def _loads() -> Any:
    try:
        import orjson  # noqa: PLC0415 - optional, and only for a resume's scan
    except ImportError:  # pragma: no cover - exercised only without orjson
        return json.loads
    return orjson.loads


class JSONLSink(_FileSink):
    """JSON lines: each the ``cdr`` object as 2Chat sent it."""

    _format = "JSONL"

    def _torn_start(self, first: bytes) -> bool:
        return first.startswith(b'{"')

    def _is_first_line(self, text: str) -> bool:
        try:
            value = json.loads(text)
        except ValueError:
            return False
        return isinstance(value, dict) and isinstance(value.get("uuid"), str)

    def _scan(self, handle: IO[bytes]) -> int | None:
        loads = _loads()
        held = self._held
        end = 0
        for offset, line in self._lines(handle):
            end = offset
            if line.startswith(_UUID_FIRST):  # as 2Chat sends it: no need to parse all
                close = line.find(b'"', len(_UUID_FIRST))
                value = line[len(_UUID_FIRST) : close]
                if close > 0 and b"\\" not in value:
                    held.add(value.decode("utf-8", "replace"))
                    continue
            try:
                uuid = loads(line).get("uuid")
            except (ValueError, AttributeError):  # a line someone edited: not a record
                continue
            if isinstance(uuid, str):
                held.add(uuid)
        return end if end != os.fstat(handle.fileno()).st_size else None

    def _line(self, record: CallDetailRecord, wire: Mapping[str, Any]) -> str:
        return dumps_wire(wire) + "\n"


class CSVSink(_FileSink):
    """Flat CSV: a header, then one row per record (columns from the models)."""

    _format = "CSV"

    def _torn_start(self, first: bytes) -> bool:
        return HEADER_LINE.startswith(first)

    def _is_first_line(self, text: str) -> bool:
        return text == HEADER_LINE.decode()

    def _start(self) -> None:
        write_all(self._fd, HEADER_LINE)

    def _scan(self, handle: IO[bytes]) -> int | None:
        held = self._held
        consumed = 0
        last_line_end = True

        def lines() -> Iterator[str]:
            nonlocal consumed, last_line_end
            handle.seek(0)
            for line in handle:
                consumed += len(line)
                last_line_end = line.endswith(b"\n")
                yield line.decode("utf-8", "replace")

        size = os.fstat(handle.fileno()).st_size
        rows = csv.reader(lines(), strict=True)
        good = 0
        # A cell may be as long as 2Chat made it (the csv module's cap is 128 KiB); the
        # cap is the process's, so it is restored once the scan is done.
        cap = csv.field_size_limit(sys.maxsize)
        try:
            next(rows, None)  # the header, checked already (or cut short)
            good = consumed if last_line_end else 0
            for row in rows:
                if not last_line_end:
                    break  # a row cut short by a killed run
                good = consumed
                if len(row) == len(CSV_HEADER):
                    held.add(_cell_text(row[0]))
        except csv.Error as exc:
            if consumed != size:  # not a torn end: resuming past it would duplicate
                raise SinkError(
                    f"{self.path} cannot be read past byte {good} ({exc}); it was left "
                    "untouched: mend it, or choose another output"
                ) from None
            # else a quoted cell cut short at the end by a killed run
        finally:
            csv.field_size_limit(cap)
        return good if good != size else None

    def _line(self, record: CallDetailRecord, wire: Mapping[str, Any]) -> str:
        return csv_line(record)


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
