"""The options the ``twochat-voip`` commands share, and the checks click lacks."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TypeVar

import click

from twochat_voip._client import DEFAULT_GIVE_UP_AFTER
from twochat_voip._protocol import PLAN_RATES
from twochat_voip.cli._support import Refused

_F = TypeVar("_F", bound=Callable[..., Any])


def parse_rpm(ctx: click.Context | None, param: click.Parameter | None, value: str) -> Any:
    """``--rpm``: a number of requests a minute (a plan's), ``auto`` or ``adaptive``."""
    word = value.strip().lower()
    if word in ("auto", "adaptive"):
        return None if word == "adaptive" else "auto"
    try:
        rate = float(word)
    except ValueError:
        rate = float("nan")
    low, high = PLAN_RATES
    if not low <= rate <= high:  # NaN too
        raise click.BadParameter(
            f"{value!r} is not a rate between {low:g} and {high:,.0f} a minute, "
            "'auto' or 'adaptive'",
            ctx,
            param,
        )
    return rate


def _finite(ctx: click.Context, param: click.Parameter, value: float) -> float:
    """Refuse ``nan``, which slips past every range check."""
    if math.isnan(value):
        raise click.BadParameter("must be a number of seconds, not nan", ctx, param)
    return value


def named_output(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Refuse ``-o ''`` (exit 2, one line), which names no file."""
    if value is not None and not value.strip():
        raise Refused(
            "--output is empty: name a file (calls.jsonl), a database URL, or '-' for "
            "standard output"
        )
    return value


key_file_option = click.option(
    "--api-key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Read the API key from this file instead of TWOCHAT_API_KEY.",
)
base_url_option = click.option(
    "--base-url", envvar="TWOCHAT_BASE_URL", help="API base URL (default: 2Chat's)."
)


def output_option(required: bool) -> Callable[[_F], _F]:
    return click.option(
        "--output",
        "-o",
        required=required,
        callback=named_output,
        metavar="FILE|URL|-",
        help="Records go here: calls.jsonl, calls.csv, calls.db (SQLite), "
        "postgresql://user@host/db, or '-' (JSON lines to standard output). "
        "Re-running resumes." + ("" if required else "  [default: a new temporary folder]"),
    )


_EXPORT_OPTIONS = [
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
        callback=parse_rpm,
        metavar="N|AUTO|ADAPTIVE",
        default="auto",
        show_default=True,
        help="Requests per minute: a number (your plan's limit), 'auto' (ask the API "
        "once, GET /open/info: one credit) or 'adaptive' (find the limit from 429s).",
    ),
    click.option(
        "--give-up-after",
        type=click.FloatRange(min=0, min_open=True, max=1e9),
        callback=_finite,
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
        help="Failed ids and reasons (default: OUTPUT.failures.jsonl; a database keeps "
        "them in its call_detail_failures table).",
    ),
    click.option(
        "--retry-not-found",
        is_flag=True,
        help="Ask again for the ids a past run found 404 (by default they are skipped).",
    ),
    click.option("--ordered", is_flag=True, help="Write records in input order."),
    click.option("--quiet", "-q", is_flag=True, help="No progress bar."),
]


redis_url_option: Final = click.option(
    "--redis-url",
    envvar="TWOCHAT_REDIS_URL",
    help="Share --rpm (a number, or auto: the plan's, asked once a day for all) with "
    "every export and sync on this account, on any host, through this Redis (needs "
    "the redis extra).",
)


def export_options(command: _F) -> _F:
    """The options of every command that exports (export, sync, demo)."""
    for option in reversed(_EXPORT_OPTIONS):
        command = option(command)
    return command
