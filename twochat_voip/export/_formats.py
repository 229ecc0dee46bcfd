"""What an export's output is: its format (from its name or first line), its sink,
and where its failures go unless told."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Final

from twochat_voip._errors import SinkError
from twochat_voip.export._files import FIRST_LINE_CAP
from twochat_voip.export._sinks import (
    HEADER_LINE,
    CSVSink,
    JSONLSink,
    Sink,
    StdoutSink,
)

__all__ = ["database_url", "default_failures", "open_sink", "shown", "sink_format"]

_FILE_SUFFIXES: Final = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
_PASSWORD: Final = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/@:]*:).*@")
_QUERY_PASSWORD: Final = re.compile(r"([?&](?:password|passwd|pwd)=)[^&]*", re.IGNORECASE)


def shown(target: str) -> str:
    """An output as it may be printed: a URL's password hidden (up to the last ``@``,
    in case a ``/`` or ``@`` in it was left unencoded; and a ``password=`` parameter)."""
    return _QUERY_PASSWORD.sub(r"\1***", _PASSWORD.sub(r"\1***@", target))


def database_url(target: str | os.PathLike[str]) -> str | None:
    """The async SQLAlchemy URL for an export target, or ``None`` if it is a file of
    another format."""
    text = os.fspath(target)
    for scheme, driver in (
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgres://", "postgresql+asyncpg://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if text.startswith(scheme):
            return driver + text[len(scheme) :]
    if text.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
        return text
    if "://" not in text and Path(text).suffix.lower() in (".db", ".sqlite", ".sqlite3"):
        return "sqlite+aiosqlite:///" + str(Path(text).resolve())
    return None


def _sniff(path: Path) -> str | None:
    """The format a regular file's first line says it is in, if any (a FIFO is not
    read: that would wait for a writer forever)."""
    if not path.is_file():
        return None
    try:
        with path.open("rb") as handle:
            first = handle.readline(FIRST_LINE_CAP)
    except OSError:
        return None
    if first.startswith(b"{"):
        return "jsonl"
    if first and HEADER_LINE.startswith(first.rstrip(b"\n")):
        return "csv"
    return None


def sink_format(target: str | os.PathLike[str], fmt: str | None = None) -> str:
    """``jsonl``, ``csv`` or ``sql``: what the output says it is (its name, else its
    first line), checked against ``fmt`` when one is given; ``-`` is JSONL."""
    text = os.fspath(target)
    if text == "-":
        said: str | None = "jsonl"
    elif database_url(text) is not None:
        said = "sql"
    elif "://" in text:
        raise SinkError(
            f"{shown(text)} is not an output this SDK writes: a file, postgresql://… or sqlite:///…"
        )
    else:
        said = _FILE_SUFFIXES.get(Path(text).suffix.lower()) or _sniff(Path(text))
    if fmt is not None and said is not None and fmt != said:
        raise SinkError(
            f"--format {fmt} disagrees with {shown(text)}, which is {said.upper()}; "
            "leave --format out, or choose another output"
        )
    return fmt or said or "jsonl"


def open_sink(output: str | os.PathLike[str], fmt: str | None = None) -> Sink:
    """The sink an output names: ``-`` (JSONL to standard output), ``*.jsonl``,
    ``*.csv``, ``*.db``/``*.sqlite``/``sqlite:///…`` or ``postgresql://…`` (a
    database: the ``db`` extra). ``fmt`` (``jsonl``, ``csv`` or ``sql``) must agree
    with what the output's name or first line says; a name that says nothing is JSONL.

    Raises:
        SinkError: ``fmt`` disagrees with the output.
    """
    chosen = sink_format(output, fmt)
    text = os.fspath(output)
    if text == "-":
        return StdoutSink()
    if chosen == "sql":
        from twochat_voip.export._sql import SQLSink  # noqa: PLC0415 - the optional db extra

        return SQLSink(text)
    return CSVSink(text) if chosen == "csv" else JSONLSink(text)


def default_failures(output: str | os.PathLike[str]) -> Path:
    """Where failures go unless told: beside a file output, else in the current
    folder (one name per database, its password left out of the digest)."""
    text = os.fspath(output)
    if text == "-":
        return Path("twochat-voip-stdout.failures.jsonl")
    if "://" in text:
        digest = hashlib.sha256(shown(text).encode()).hexdigest()[:10]
        return Path(f"twochat-voip-{digest}.failures.jsonl")
    return Path(text).with_name(Path(text).name + ".failures.jsonl")
