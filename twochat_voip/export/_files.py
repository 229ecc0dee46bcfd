"""Files an export writes (docs/cli.md): locked, refused unless ours, whole lines only."""

from __future__ import annotations

import abc
import contextlib
import json
import os
import stat
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import IO, Any, Final

from twochat_voip._errors import APIStatusError, RecordRefusedError, SinkError
from twochat_voip._models import CallDetailRecord
from twochat_voip._results import CallFailure
from twochat_voip.export._records import escape_halves

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

FIRST_LINE_CAP: Final = 1 << 20


def check_regular(path: Path, hint: str) -> None:
    """Refuse a path that exists and is not a regular file (a FIFO would hang)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise SinkError(f"cannot use {path}: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise SinkError(f"{path} is not a regular file; {hint}")


def open_locked(path: Path, cannot: str, busy: str) -> int:
    """An appending descriptor holding ``path``'s exclusive lock until it is closed."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        raise SinkError(f"{cannot}: {exc.strerror}") from None
    if fcntl is None:  # pragma: no cover - Windows: no advisory locks
        return fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise SinkError(busy) from None
    except BaseException:  # ENOLCK, say: the descriptor is not left open
        os.close(fd)
        raise
    return fd


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class FileSink(abc.ABC):
    """A sink into a locked file of whole lines; subclasses say what a line is."""

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
        """Where ids asked for under another ``uuid`` are noted, beside the real file."""
        real = Path(os.path.realpath(self.path))
        return real.with_name(real.name + ".asked")

    async def __aenter__(self) -> FileSink:
        self._open()
        return self

    def _open(self) -> None:
        check_regular(self.path, "use -o - for standard output")
        self._fd = open_locked(
            self.path,
            f"cannot open {self.path}",
            f"{self.path} is being written by another export; wait for it to finish, "
            "or choose another output",
        )
        try:
            size = os.fstat(self._fd).st_size
            with open(self._fd, "rb", closefd=False) as handle:
                keep, newline = self._scan(handle, size)  # refuses a file not ours, untouched
            if keep != size:
                os.ftruncate(self._fd, keep)  # a record of ours cut short by a killed run
            if newline:
                self._append(self._fd, b"\n")  # a whole last line, its newline lost by an edit
            if self._header and keep == 0:
                self._append(self._fd, self._header)
            with contextlib.suppress(FileNotFoundError), self.asked_path.open("rb") as handle:
                for line in handle:
                    try:
                        asked, uuid = json.loads(line)
                    except (ValueError, TypeError):  # torn by a killed run, or not a pair
                        continue
                    if uuid in self._held:
                        self._held.add(asked)
        except BaseException:
            os.close(self._fd)
            self._fd = -1
            raise

    def _not_ours(self, first: bytes) -> SinkError:
        try:
            why = f"its first line is {first.decode('utf-8')[:60]!r}"
        except UnicodeDecodeError:
            why = "it is not UTF-8"
        return SinkError(
            f"{self.path} is not a {self._format} export of call records ({why}); "
            "it was left untouched: choose another output"
        )

    def _append(self, fd: int, data: bytes) -> None:
        """Write ``data`` whole or not at all: a full disk leaves no line cut short."""
        before = os.fstat(fd).st_size
        try:
            write_all(fd, data)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, before)
            raise SinkError(f"writing to {self.path} failed: {exc.strerror}") from None

    async def __aexit__(self, *exc_info: object) -> None:
        for fd in (self._asked_fd, self._fd):
            if fd >= 0:
                os.close(fd)  # closing drops the lock
        self._fd = self._asked_fd = -1

    async def held(self, call_uuids: Collection[str]) -> set[str]:
        return self._held.intersection(call_uuids)

    async def write(self, asked: str, record: CallDetailRecord, wire: Mapping[str, Any]) -> None:
        try:
            line = self._line(record, wire).encode()
        except (ValueError, TypeError) as exc:  # UnicodeEncodeError too: this record alone
            raise RecordRefusedError(f"{self.path} cannot hold this record: {exc}") from None
        uuid = escape_halves(record.uuid)  # as the file reads back
        if asked != uuid:
            if self._asked_fd < 0:
                flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
                try:
                    self._asked_fd = os.open(self.asked_path, flags, 0o666)
                except OSError as exc:
                    raise SinkError(f"cannot open {self.asked_path}: {exc.strerror}") from None
            self._append(self._asked_fd, (json.dumps([asked, uuid]) + "\n").encode())
            self._held.add(asked)
        if uuid not in self._held:  # two asked ids, one record: one line
            self._append(self._fd, line)  # a full disk, say: the records written so far stay
        self._held.add(uuid)

    @abc.abstractmethod
    def _scan(self, handle: IO[bytes], size: int) -> tuple[int, bool]:
        """Learn the ids held; the size to keep (less where a record of ours was cut
        short at the end) and whether a whole last line needs its newline. Raises
        :class:`SinkError` for a file that is not ours, before anything is changed."""

    @abc.abstractmethod
    def _line(self, record: CallDetailRecord, wire: Mapping[str, Any]) -> str: ...


def _is_failure_line(line: bytes) -> bool:
    try:
        value = json.loads(line)
    except ValueError:
        return False
    return isinstance(value, dict) and "call_uuid" in value and "error" in value


def _is_not_found(entry: Any) -> bool:
    return (
        isinstance(entry, dict)
        and entry.get("status_code") == 404
        and isinstance(entry.get("call_uuid"), str)
    )


class Failures:
    """The failures file (a :class:`FailureStore`), one JSON object a line: replaced at
    a run's first failure, removed when a finished run had none; a path that is not such
    a list is never touched. Its ids found 404 stay listed until a run asks them again."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = str(path)
        self.count = 0
        self._fd = -1
        self._created = self._old_list = False
        self._not_found: dict[str, bytes] = {}  # the last list's 404s, not answered since

    def check(self) -> None:
        check_regular(self.path, "choose another --failures")
        try:
            with self.path.open("rb") as handle:
                first = handle.readline(1 << 16)
        except FileNotFoundError:
            folder = self.path.parent
            if folder.is_dir() and os.access(folder, os.W_OK):
                return
            why = f"there is no folder {folder}"
            if folder.is_dir():
                read_only = os.statvfs(folder).f_flag & os.ST_RDONLY
                why = f"{folder} is {'on a read-only file system' if read_only else 'not writable'}"
            raise SinkError(f"cannot write failures to {self.path}: {why}") from None
        except OSError as exc:
            raise SinkError(f"cannot write failures to {self.path}: {exc.strerror}") from None
        if first and not _is_failure_line(first):
            raise SinkError(
                f"--failures {self.path} is not a list of failures; it was left "
                "untouched: choose another"
            )

    async def open(self) -> None:
        self.check()
        existed = self.path.exists()
        self._fd = open_locked(
            self.path,
            f"cannot write failures to {self.path}",
            f"{self.path} is held by another export (as its failures or its output); "
            "give this one its own --failures",
        )
        self._created = not existed
        self._old_list = existed and os.fstat(self._fd).st_size > 0
        if self._old_list:
            self._read_not_found()

    def _read_not_found(self) -> None:
        with open(self._fd, "rb", closefd=False) as handle:
            for line in handle:
                with contextlib.suppress(ValueError, RecursionError):  # not ours: skipped
                    entry = json.loads(line)
                    if _is_not_found(entry) and line.endswith(b"\n"):
                        self._not_found[entry["call_uuid"]] = line

    async def known_not_found(self, call_uuids: Collection[str]) -> set[str]:
        return self._not_found.keys() & set(call_uuids)

    async def add(self, failure: CallFailure) -> None:
        error = failure.error
        entry: dict[str, Any] = {
            "call_uuid": failure.call_uuid,
            "error": type(error).__name__,
            "message": str(error),
        }
        if isinstance(error, APIStatusError):
            entry["status_code"] = error.status_code
        self._not_found.pop(failure.call_uuid, None)
        if self.count == 0:  # the last run's list: this run says it anew, its 404s kept
            os.ftruncate(self._fd, 0)  # (written now, so a run killed later keeps them)
            write_all(self._fd, b"".join(self._not_found.values()))
        os.write(self._fd, json.dumps(entry).encode() + b"\n")
        self.count += 1

    async def forget(self, call_uuid: str) -> None:
        self._not_found.pop(call_uuid, None)

    async def close(self, *, finished: bool) -> None:
        if self._fd < 0:
            return
        # A run with failures wrote its list from the first on; else it may be the 404s.
        if not self.count and self._not_found and finished:
            os.ftruncate(self._fd, 0)
            write_all(self._fd, b"".join(self._not_found.values()))
        elif not self.count and self._removable(finished=finished):
            self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = -1

    def _removable(self, *, finished: bool) -> bool:
        """Whether the path still names the file held, and it is empty or an old list."""
        try:
            here = os.stat(self.path)
        except FileNotFoundError:
            return False
        held = os.fstat(self._fd)
        if not os.path.samestat(here, held):
            return False
        if self._created:
            return held.st_size == 0
        if not (finished and self._old_list):
            return False
        with open(self._fd, "rb", closefd=False) as handle:
            handle.seek(0)
            return _is_failure_line(handle.readline(1 << 16))
