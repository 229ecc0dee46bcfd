"""A throwaway ``redis-server`` on 127.0.0.1, for tests of a rate limit shared through
Redis: started on a free port, with nothing saved to disk, and stoppable and
restartable on the same port (to test what a Redis restart does to a run)."""

from __future__ import annotations

import shutil
import socket

# Runs only the redis-server binary, with fixed arguments and no shell.
import subprocess  # nosec B404
import tempfile
import time
from typing import Self

from twochat_voip.testing._child import ChildServer, free_port

__all__ = ["RedisServer"]

_READY_TIMEOUT = 10.0


class RedisServer(ChildServer):
    """A ``redis-server`` child process on 127.0.0.1::

        with RedisServer() as redis_server:
            limiter = RedisRateLimiter(redis_server.url, requests_per_minute=600)
            ...
            redis_server.stop()   # Redis goes away (and its data with it)
            redis_server.start()  # and comes back on the same port

    Args:
        executable: The ``redis-server`` to run; default: the one on ``PATH``.
    """

    def __init__(self, executable: str | None = None) -> None:
        found = shutil.which(executable or "redis-server")
        if found is None:
            wanted = executable or "redis-server"
            raise FileNotFoundError(f"{wanted} is not installed (nor on PATH)")
        self._executable = found
        self._port = free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="twochat-redis-")
        self._process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def find() -> str | None:
        """The path of ``redis-server`` on ``PATH``, if there is one."""
        return shutil.which("redis-server")

    @property
    def port(self) -> int:
        """The port it listens on (the same across restarts)."""
        return self._port

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:{port}/0``."""
        return f"redis://127.0.0.1:{self._port}/0"

    @property
    def running(self) -> bool:
        """Whether the server process is up."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> Self:
        """Start the server (again) and wait until it answers ``PING``."""
        if self.running:
            return self
        command = [
            self._executable,
            "--bind",
            "127.0.0.1",
            "--port",
            str(self._port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self._dir.name,
            "--loglevel",
            "warning",
        ]
        self._process = subprocess.Popen(  # noqa: S603  # nosec B603
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + _READY_TIMEOUT
        while not _answers_ping(self._port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start on 127.0.0.1:{self._port}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop the server; everything it held is gone."""
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - a stuck redis-server
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()

    def close(self) -> None:
        """Stop the server and remove its working directory."""
        self.stop()
        self._dir.cleanup()


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(16).startswith(b"+PONG")
    except OSError:
        return False
