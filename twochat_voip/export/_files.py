"""Files an export writes: refused unless regular, locked, written whole; and the
failures list."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from twochat_voip._bulk import CallResult
from twochat_voip._errors import APIStatusError, SinkError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks
    fcntl = None  # type: ignore[assignment]

__all__ = ["Failures", "check_regular", "lock_exclusive", "write_all"]


def check_regular(path: Path, hint: str) -> None:
    """Refuse a path that exists and is not a regular file (reading or deleting a
    folder, a FIFO or a device would hang or do harm)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise SinkError(f"cannot use {path}: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise SinkError(f"{path} is not a regular file; {hint}")


def lock_exclusive(fd: int, busy: str) -> None:
    """Hold an exclusive advisory lock on ``fd`` until it is closed, or raise
    :class:`SinkError` saying ``busy``."""
    if fcntl is None:  # pragma: no cover - Windows
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SinkError(busy) from None


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _is_failure_line(line: bytes) -> bool:
    try:
        value = json.loads(line)
    except ValueError:
        return False
    return isinstance(value, dict) and "call_uuid" in value and "error" in value


class Failures:
    """The failures list of one run (one JSON object per failed id), locked from
    before the first request.

    A path that is not a regular file, empty or already a list of failures is refused
    untouched: ``--failures`` naming a database or another export must never be
    emptied. The list is replaced at the run's first failure, and removed when a
    finished run had none (unless it was someone else's empty file)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self._fd = -1
        self._created = self._old_list = False

    def check(self) -> None:
        """Refuse, without touching anything, a path that cannot be the list."""
        check_regular(self.path, "choose another --failures")
        try:
            with self.path.open("rb") as handle:
                first = handle.readline(1 << 16)
        except FileNotFoundError:
            folder = self.path.parent
            if not folder.is_dir() or not os.access(folder, os.W_OK):
                raise SinkError(
                    f"cannot write failures to {self.path}: no folder {folder} to write in"
                ) from None
            return
        except OSError as exc:
            raise SinkError(f"cannot write failures to {self.path}: {exc.strerror}") from None
        if first and not _is_failure_line(first):
            raise SinkError(
                f"--failures {self.path} is not a list of failures; it was left "
                "untouched: choose another"
            )

    def open(self) -> None:
        """Check, create if need be, and lock the list."""
        self.check()
        existed = self.path.exists()
        try:
            flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
            self._fd = os.open(self.path, flags, 0o666)
        except OSError as exc:
            raise SinkError(f"cannot write failures to {self.path}: {exc.strerror}") from None
        try:
            lock_exclusive(
                self._fd,
                f"{self.path} is held by another export (as its failures or its output); "
                "give this one its own --failures",
            )
            self._created = not existed
            self._old_list = existed and os.fstat(self._fd).st_size > 0
        except BaseException:
            os.close(self._fd)
            self._fd = -1
            raise

    def add(self, result: CallResult) -> None:
        error = result.error
        entry: dict[str, Any] = {
            "call_uuid": result.call_uuid,
            "error": type(error).__name__,
            "message": str(error),
        }
        if isinstance(error, APIStatusError):
            entry["status_code"] = error.status_code
        if self.count == 0:
            os.ftruncate(self._fd, 0)  # the last run's list: this run says it anew
        os.write(self._fd, json.dumps(entry).encode() + b"\n")
        self.count += 1

    def close(self, *, finished: bool) -> None:
        if self._fd < 0:
            return
        if self.count == 0 and self._removable(finished=finished):
            self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = -1

    def _removable(self, *, finished: bool) -> bool:
        """Whether the path still names the file held (a bind mount may have another
        name for it, written meanwhile), empty if this run made it, else an old list."""
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
