"""The failures list of an export: one JSON object per failed id, replaced by every
run that has failures, removed by a finished run that had none."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from twochat_voip._bulk import CallResult
from twochat_voip._errors import APIStatusError, SinkError
from twochat_voip.export._files import check_regular, lock_exclusive

__all__ = ["Failures"]


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


class Failures:
    """The failures file of one run, locked from before the first request.

    It is refused, untouched, unless it is a regular file that is empty or already a
    list of failures: ``--failures`` naming a database, another export or a device
    must never be emptied or deleted. The list is replaced at this run's first
    failure, and removed when a finished run had none (unless it was an empty file
    of someone else's)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self._fd = -1
        self._ours = self._created = False

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
            self._ours = (existed and os.fstat(self._fd).st_size > 0) or not existed
            self._created = not existed
        except BaseException:
            os.close(self._fd)
            self._fd = -1
            raise

    def add(self, result: CallResult) -> None:
        if self.count == 0:
            os.ftruncate(self._fd, 0)  # the last run's list: this run says it anew
        os.write(self._fd, _failure_line(result))
        self.count += 1

    def close(self, *, finished: bool) -> None:
        if self._fd < 0:
            return
        if self.count == 0 and self._removable(finished=finished):
            self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = -1

    def _removable(self, *, finished: bool) -> bool:
        """Whether the file at the path is still a list this run may remove: the one
        it holds, and empty (one it made) or a list of failures (an old one). Another
        name for the same file (a bind mount) may have been written meanwhile."""
        try:
            here = os.stat(self.path)
        except FileNotFoundError:
            return False
        held = os.fstat(self._fd)
        if not os.path.samestat(here, held):
            return False
        if self._created:
            return held.st_size == 0
        if not (finished and self._ours):
            return False
        with open(self._fd, "rb", closefd=False) as handle:
            handle.seek(0)
            return _is_failure_line(handle.readline(1 << 16))


def _is_failure_line(line: bytes) -> bool:
    try:
        value = json.loads(line)
    except ValueError:
        return False
    return isinstance(value, dict) and "call_uuid" in value and "error" in value
