"""Files an export writes: refused unless regular, locked, written whole."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from twochat_voip._errors import SinkError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks
    fcntl = None  # type: ignore[assignment]

__all__ = ["check_regular", "lock_exclusive", "write_all"]


def check_regular(path: Path, hint: str) -> None:
    """Refuse a path that exists and is not a regular file (a folder, a FIFO, a
    device: reading or deleting one would hang or do harm)."""
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
