"""Throwaway servers for tests: ``redis-server`` and PostgreSQL, each a child process
on a free port of 127.0.0.1 that keeps nothing, and that ``with`` always cleans up."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket

# Runs only redis-server's and PostgreSQL's binaries, with fixed arguments and no shell.
import subprocess  # nosec B404
import tempfile
import time
from pathlib import Path
from typing import Self

__all__ = ["PostgresServer", "RedisServer"]


class _ChildServer:
    """A server in a child process, on a free port, in a temporary folder."""

    _name = ""
    _stop_signal = signal.SIGTERM

    def __init__(self, prefix: str) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self._port: int = probe.getsockname()[1]
        self._dir = tempfile.TemporaryDirectory(prefix=prefix)
        self._process: subprocess.Popen[bytes] | None = None
        self._user: str | None = None

    def start(self) -> Self:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    def _launch(self, *command: str) -> None:
        # Its log goes nowhere: a pipe nobody reads would fill and stall it.
        self._process = subprocess.Popen(  # noqa: S603  # nosec B603
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            user=self._user,
            cwd=self._dir.name,
        )
        deadline = time.monotonic() + 30.0
        while not self._ready():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self._stop()
                raise RuntimeError(f"{self._name} did not start on 127.0.0.1:{self._port}")
            time.sleep(0.02)

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.send_signal(self._stop_signal)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover - a stuck server
                process.kill()
                process.wait()

    def close(self) -> None:
        """Stop the server and remove its folder."""
        self._stop()
        self._dir.cleanup()

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class RedisServer(_ChildServer):
    """A ``redis-server`` on 127.0.0.1 that saves nothing, and restarts on its port::

        with RedisServer() as redis_server:
            limiter = RedisRateLimiter(redis_server.url, requests_per_minute=600)
            ...
            redis_server.stop()   # Redis goes away (and its data with it)
            redis_server.start()  # and comes back on the same port

    Args:
        executable: The ``redis-server`` to run; default: the one on ``PATH``.
    """

    _name = "redis-server"

    def __init__(self, executable: str | None = None) -> None:
        wanted = executable or "redis-server"
        found = shutil.which(wanted)
        if found is None:
            raise FileNotFoundError(f"{wanted} is not installed (nor on PATH)")
        self._executable = found
        super().__init__("twochat-redis-")

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
        if not self.running:
            port, folder = str(self._port), self._dir.name
            self._launch(
                *(self._executable, "--bind", "127.0.0.1", "--port", port, "--dir", folder),
                *("--save", "", "--appendonly", "no", "--loglevel", "warning"),
            )
        return self

    def stop(self) -> None:
        """Stop the server; everything it held is gone."""
        self._stop()

    def _ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self._port), timeout=1.0) as connection:
                connection.sendall(b"PING\r\n")
                return connection.recv(16).startswith(b"+PONG")
        except OSError:
            return False


class PostgresServer(_ChildServer):
    """A PostgreSQL server on 127.0.0.1: a fresh cluster with ``trust`` authentication
    and no durability, removed when closed (``with PostgresServer() as postgres:``); it
    can be stopped and started again on its port, keeping its data.

    It runs the OS packages' ``initdb`` and ``postgres`` (on ``PATH`` or under
    ``/usr/lib/postgresql/*/bin``); as root, as the ``postgres`` user they made.
    """

    _name = "postgres"
    _stop_signal = signal.SIGINT  # a "fast" shutdown: sessions are ended

    def __init__(self) -> None:
        found = self.find()
        if found is None:
            raise FileNotFoundError("PostgreSQL's initdb and postgres are not installed")
        self._bin = Path(found)
        super().__init__("twochat-postgres-")
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            self._user = "postgres"
            owner = pwd.getpwnam(self._user)
            os.chown(self._dir.name, owner.pw_uid, owner.pw_gid)

    @staticmethod
    def find() -> str | None:
        """The folder of PostgreSQL's server binaries, if they are installed."""
        on_path = shutil.which("initdb")
        if on_path is not None and shutil.which("postgres") is not None:
            return str(Path(on_path).resolve().parent)
        for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
            if (Path(folder) / "initdb").exists():
                return folder
        return None

    @property
    def url(self) -> str:
        """``postgresql://postgres@127.0.0.1:{port}/postgres``."""
        return f"postgresql://postgres@127.0.0.1:{self._port}/postgres"

    def start(self) -> Self:
        """Make the cluster (the first time) and start the server (again, on the same
        port, with the data it held); wait until it takes connections."""
        if self._process is not None and self._process.poll() is None:
            return self
        data = str(Path(self._dir.name) / "data")
        if not (Path(data) / "PG_VERSION").exists():
            self._initdb(data)
        self._launch(
            *(str(self._bin / "postgres"), "-D", data, "-p", str(self._port)),
            *("-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "full_page_writes=off"),
            *("-c", f"unix_socket_directories={self._dir.name}"),
        )
        return self

    def stop(self) -> None:
        """Stop the server, ending its sessions; its data stays for :meth:`start`."""
        self._stop()

    def _initdb(self, data: str) -> None:
        initdb = subprocess.run(  # noqa: S603  # nosec B603
            [str(self._bin / "initdb"), "-D", data, "-U", "postgres", "-A", "trust", "--no-sync"],
            capture_output=True,
            user=self._user,
            cwd=self._dir.name,
            timeout=30.0,
            check=False,
        )
        if initdb.returncode != 0:
            raise RuntimeError(f"initdb failed: {initdb.stderr.decode(errors='replace')[-500:]}")

    def _ready(self) -> bool:
        isready = [str(self._bin / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self._port)]
        return subprocess.run(isready, check=False).returncode == 0  # noqa: S603  # nosec B603
