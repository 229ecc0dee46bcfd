"""The ids a command is given: one a line, read off the event loop by a daemon thread."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import AsyncIterator
from typing import IO


class InputError(ValueError):
    """The ids cannot be read: not UTF-8."""


async def read_ids(stream: IO[bytes]) -> AsyncIterator[str]:
    """Ids, one a line, read off the event loop; blanks, ``#`` comments and a BOM skipped."""
    number = 0
    async for line in _lines(stream):
        number += 1
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(
                f"line {number} of the ids is not UTF-8 (byte {line[exc.start]:#04x})"
            ) from None
        value = text.strip().lstrip("\ufeff") if number == 1 else text.strip()
        if value and not value.startswith("#"):
            yield value


async def _lines(stream: IO[bytes]) -> AsyncIterator[bytes]:
    """``stream``'s lines, read by a daemon thread: Ctrl-C stops the run at once, even
    while a terminal's standard input is still open (a thread of the default executor
    would be waited for at exit, until the input ended)."""
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[bytes | BaseException] = asyncio.Queue()
    room = threading.Semaphore(4)  # chunks read ahead, at most
    stop = threading.Event()
    try:  # its own descriptor: os.read takes no lock that interpreter exit needs
        fd = os.dup(stream.fileno())
    except (OSError, ValueError, AttributeError):  # an in-memory stream
        fd = -1

    def pump() -> None:
        chunk: bytes | BaseException = b""
        try:
            while room.acquire() and not stop.is_set():
                chunk = os.read(fd, 1 << 16) if fd >= 0 else stream.read(1 << 16)
                loop.call_soon_threadsafe(chunks.put_nowait, chunk)
                if not chunk:
                    return
        except RuntimeError:  # the event loop is closed: no one reads
            return
        except BaseException as exc:  # noqa: BLE001 - handed to the reading task
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(chunks.put_nowait, exc)
        finally:
            if fd >= 0:
                os.close(fd)

    threading.Thread(target=pump, name="twochat-voip ids", daemon=True).start()
    rest = b""
    try:
        while chunk := await chunks.get():
            room.release()
            if isinstance(chunk, BaseException):
                raise chunk
            *lines, rest = (rest + chunk).split(b"\n")
            for line in lines:
                yield line
        if rest:
            yield rest
    finally:
        stop.set()
        room.release()  # a pump waiting for room sees the stop
