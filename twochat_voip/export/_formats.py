"""What an export's output is: its format, from its name or first line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from twochat_voip._errors import SinkError
from twochat_voip.export._sinks import FIRST_LINE_CAP, HEADER_LINE, shown

__all__ = ["SQLITE_SUFFIXES", "database_url", "sink_format"]

SQLITE_SUFFIXES: Final = (".db", ".sqlite", ".sqlite3")
_FILE_SUFFIXES: Final = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}


def database_url(target: str | os.PathLike[str]) -> str | None:
    """The async SQLAlchemy URL for an export target, or ``None`` if it is a file of
    another format: ``postgresql://…`` (asyncpg), ``sqlite:///…`` or a path ending
    ``.db``, ``.sqlite`` or ``.sqlite3`` (aiosqlite)."""
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
    if "://" not in text and Path(text).suffix.lower() in SQLITE_SUFFIXES:
        return "sqlite+aiosqlite:///" + str(Path(text).resolve())
    return None


def _sniff(path: Path) -> str | None:
    """The format an existing regular file's first line says it is in, if any (a
    FIFO is not read: that would wait for a writer forever)."""
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
