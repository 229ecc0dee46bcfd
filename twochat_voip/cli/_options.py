"""What the ``twochat-voip`` commands share: their options, and running an export."""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable, Iterable
from pathlib import Path
from typing import Any

import click

from twochat_voip._client import DEFAULT_GIVE_UP_AFTER, VoIPClient
from twochat_voip.cli._support import Progress, RateParam, finite
from twochat_voip.export._run import ExportSummary, export_calls

__all__ = ["_base_url", "_export", "_export_options", "_key_file", "_with"]

_key_file = click.option(
    "--api-key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Read the API key from this file instead of TWOCHAT_API_KEY.",
)
_base_url = click.option(
    "--base-url", envvar="TWOCHAT_BASE_URL", help="API base URL (default: 2Chat's)."
)


async def _export(
    client: VoIPClient,
    *,
    ids: AsyncIterable[str] | Iterable[str],
    output: str,
    failures: Path,
    fmt: str | None,
    concurrency: int,
    ordered: bool,
    progress: Progress,
    give_up_after: float | None = DEFAULT_GIVE_UP_AFTER,
) -> ExportSummary:
    async with client:
        try:
            return await export_calls(
                client,
                ids,
                output,
                failures=failures,
                fmt=fmt,
                concurrency=concurrency,
                ordered=ordered,
                give_up_after=give_up_after,
                on_result=progress,
            )
        finally:
            progress.finish()


_export_options: list[Callable[[Any], Any]] = [
    click.option(
        "--format",
        "fmt",
        type=click.Choice(["jsonl", "csv"]),
        help="JSON lines (2Chat's wire format) or flat CSV; by default what --output's "
        "name (or first line) says, else jsonl. Refused if it disagrees with them.",
    ),
    click.option(
        "--concurrency",
        "-c",
        default=16,
        show_default=True,
        type=click.IntRange(1, 512),
        help="Requests in flight at once; each still waits its turn under --rpm, so more "
        "helps only when answers are slow.",
    ),
    click.option(
        "--rpm",
        type=RateParam(),
        default="auto",
        show_default=True,
        help="Requests per minute: a number (your plan's limit), 'auto' (ask the API "
        "once, GET /open/info: one credit) or 'adaptive' (find the limit from 429s).",
    ),
    click.option(
        "--give-up-after",
        type=click.FloatRange(min=0, min_open=True, max=1e9),
        callback=lambda ctx, param, value: finite(value, param, ctx),
        default=DEFAULT_GIVE_UP_AFTER,
        show_default=True,
        metavar="SECONDS",
        help="Stop when nothing has succeeded for this long.",
    ),
    click.option(
        "--max-requests",
        type=click.IntRange(min=0),
        help="Send at most this many requests (credits), retries and 429s included.",
    ),
    click.option(
        "--failures",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Failed ids and reasons (default: OUTPUT.failures.jsonl).",
    ),
    click.option("--ordered", is_flag=True, help="Write records in input order."),
    click.option("--quiet", "-q", is_flag=True, help="No progress bar."),
]


def _with(options: list[Callable[[Any], Any]]) -> Callable[[Any], Any]:
    def apply(command: Any) -> Any:
        for option in reversed(options):
            command = option(command)
        return command

    return apply
