"""What the throwaway servers (Redis, PostgreSQL) share: a free port on 127.0.0.1,
and ``with`` that starts them and always cleans up."""

from __future__ import annotations

import socket
from types import TracebackType
from typing import Self

__all__ = ["ChildServer", "free_port"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class ChildServer:
    """A server run as a child process: ``start()`` it, ``close()`` it; ``with``
    does both, and closes even when starting fails halfway."""

    def start(self) -> Self:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
