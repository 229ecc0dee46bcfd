"""``twochat-voip sync``: the account's call history into an export's output, details
and all, fetching only what the output lacks."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

import attrs
import click

from twochat_voip._client import VoIPClient
from twochat_voip._errors import TwoChatError
from twochat_voip.cli._options import base_url_option, export_options, key_file_option
from twochat_voip.cli._support import client_for, read_key, report, run_export

__all__ = ["sync"]


async def history_ids(
    client: VoIPClient,
    direction: Literal["inbound", "outbound"] | None,
    stopped: list[TwoChatError],
) -> AsyncIterator[str]:
    """Every call id of the account's history, each once (a credit a page). An error
    reading a page ends the ids, noted in ``stopped``: the ids read so far are still
    fetched, and the next run reads the history again."""
    try:
        async for record in client.iter_call_history(direction):
            yield record.uuid
    except TwoChatError as exc:
        stopped.append(exc)


@click.command()
@click.option(
    "--output",
    "-o",
    default="calls.db",
    show_default=True,
    metavar="FILE|URL|-",
    help="Records go here: calls.db (SQLite), calls.jsonl, calls.csv, "
    "postgresql://user@host/db, or '-'.",
)
@click.option(
    "--direction",
    type=click.Choice(["inbound", "outbound"]),
    help="Only inbound or outbound calls (default: both).",
)
@export_options
@key_file_option
@base_url_option
def sync(
    *,
    output: str,
    direction: Literal["inbound", "outbound"] | None,
    rpm: float | Literal["auto"] | None,
    max_requests: int | None,
    api_key_file: Path | None,
    base_url: str | None,
    **options: Any,
) -> None:
    """Bring the account's calls into OUTPUT: page the call history (one credit a
    page, many records) for the ids, then fetch the details of each id OUTPUT does
    not hold yet (one credit a record). Run it again to fetch only what is new.

    Exits as export does: 0, 1 when some failed (in the failures file), 2 when the
    output cannot be used, 130 on Ctrl-C.
    """
    key = read_key(api_key_file)
    client = client_for(key, base_url, requests_per_minute=rpm, max_requests=max_requests)
    stopped: list[TwoChatError] = []
    summary = run_export(client, history_ids(client, direction, stopped), output, **options)
    if stopped and not summary.stopped:
        summary = attrs.evolve(
            summary,
            stopped=f"the call history could not be read to its end ({stopped[0]}); the "
            "records of the ids read so far were fetched; run the same command again",
        )
    report(summary)
    if stopped:
        sys.exit(1)
