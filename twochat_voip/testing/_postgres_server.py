"""A throwaway PostgreSQL server on 127.0.0.1, for tests of exports into a database:
a fresh cluster (``initdb``) in a temporary folder, started on a free port with
``trust`` authentication and no durability (``fsync=off``), removed when closed.

It runs the OS packages' binaries (``initdb`` and ``postgres`` on ``PATH`` or under
``/usr/lib/postgresql/*/bin``). PostgreSQL refuses to run as root; as root, the
cluster belongs to (and the server runs as) the ``postgres`` user the packages made.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal

# Runs only PostgreSQL's own binaries, with fixed arguments and no shell.
import subprocess  # nosec B404
import tempfile
import time
from pathlib import Path
from typing import Self

from twochat_voip.testing._child import ChildServer, free_port

__all__ = ["PostgresServer"]

_READY_TIMEOUT = 30.0


class PostgresServer(ChildServer):
    """A ``postgres`` child process on 127.0.0.1::

    with PostgresServer() as postgres:
        url = postgres.url  # postgresql://postgres@127.0.0.1:PORT/postgres
    """

    def __init__(self) -> None:
        found = self.find()
        if found is None:
            raise FileNotFoundError("PostgreSQL's initdb and postgres are not installed")
        self._bin = Path(found)
        self._port = free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="twochat-postgres-")
        self._data = Path(self._dir.name) / "data"
        self._process: subprocess.Popen[bytes] | None = None
        self._user: str | None = None
        if os.geteuid() == 0:
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

    def _run(self, *command: str, log: int | None = subprocess.PIPE) -> subprocess.Popen[bytes]:
        return subprocess.Popen(  # noqa: S603  # nosec B603
            [str(self._bin / command[0]), *command[1:]],
            stdout=subprocess.DEVNULL,
            stderr=log,
            user=self._user,
            cwd=self._dir.name,
        )

    def start(self) -> Self:
        """Make the cluster and start the server; wait until it takes connections."""
        initdb = self._run(
            "initdb", "-D", str(self._data), "-U", "postgres", "-A", "trust", "--no-sync"
        )
        _, errors = initdb.communicate(timeout=_READY_TIMEOUT)
        if initdb.returncode != 0:
            raise RuntimeError(f"initdb failed: {errors.decode(errors='replace')[-500:]}")
        self._process = self._run(
            "postgres",
            "-D",
            str(self._data),
            "-p",
            str(self._port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={self._dir.name}",
            "-c",
            "fsync=off",
            "-c",
            "full_page_writes=off",
            log=subprocess.DEVNULL,  # a pipe nobody reads would fill and stall it
        )
        deadline = time.monotonic() + _READY_TIMEOUT
        while not self._ready():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"postgres did not start on 127.0.0.1:{self._port}")
            time.sleep(0.05)
        return self

    def _ready(self) -> bool:
        isready = self._bin / "pg_isready"
        return (
            subprocess.run(  # noqa: S603  # nosec B603
                [str(isready), "-q", "-h", "127.0.0.1", "-p", str(self._port)], check=False
            ).returncode
            == 0
        )

    def close(self) -> None:
        """Stop the server and remove the cluster."""
        process, self._process = self._process, None
        if process is not None:
            process.send_signal(signal.SIGINT)  # a "fast" shutdown: sessions are ended
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover - a stuck server
                process.kill()
                process.wait()
        self._dir.cleanup()
