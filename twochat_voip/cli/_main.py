"""The ``twochat-voip`` group and its get, export and sync commands (docs/cli.md)."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

import attrs

try:
    import click
except ImportError:  # pragma: no cover - exercised only without the cli extra
    sys.exit("twochat-voip: the command line needs click: pip install 'twochat-voip[cli]'")

from twochat_voip._converter import sdk_converter
from twochat_voip._errors import TwoChatError
from twochat_voip.cli._fake import demo, fake_server
from twochat_voip.cli._ids import read_ids
from twochat_voip.cli._options import (
    base_url_option,
    export_options,
    key_file_option,
    named_output,
    output_option,
    redis_url_option,
)
from twochat_voip.cli._support import (
    Refused,
    client_for,
    read_key,
    report,
    run_command,
    run_export,
)
from twochat_voip.export._run import default_failures
from twochat_voip.export._sinks import database_url


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="twochat-voip")
def main() -> None:
    """Fetch 2Chat VoIP call detail records. The key comes from TWOCHAT_API_KEY."""


main.add_command(fake_server)
main.add_command(demo)


@main.command()
@click.argument("call_uuid")
@key_file_option
@base_url_option
def get(call_uuid: str, api_key_file: Path | None, base_url: str | None) -> None:
    """Print one call's record as 2Chat's JSON."""
    client = client_for(read_key(api_key_file), base_url)

    async def fetch() -> Any:
        async with client:
            return sdk_converter().unstructure(await client.get_call(call_uuid))

    click.echo(json.dumps(run_command(fetch()), indent=2))


@main.command()
@click.option(
    "--input",
    "-i",
    "input_",
    required=True,
    metavar="FILE|-",
    help="Call ids, one per line ('-': standard input).",
)
@output_option(required=True)
@export_options
@redis_url_option
@key_file_option
@base_url_option
def export(
    *,
    input_: str,
    output: str,
    rpm: float | Literal["auto"] | None,
    max_requests: int | None,
    failures: Path | None,
    redis_url: str | None,
    api_key_file: Path | None,
    base_url: str | None,
    **options: Any,
) -> None:
    """Fetch many records into a file or a database, resumably.

    A record is final unless its call is not over (active, or status RINGING or
    ANSWERED); one that is not final is pending: a file does not take it (a database
    keeps it as its newest row) and the next run asks for it again. Ids found 404
    are not asked again unless --retry-not-found.

    Exits 0 when every id was fetched (or is known not found), 1 when some failed
    (their ids and reasons go to the failures file, and the same command tries them
    again), 2 when nothing was
    sent because the input or the output cannot be used, 130 on Ctrl-C. Several
    exports on one account (on one host or many) share its limit with --rpm and
    --redis-url.
    """
    key = read_key(api_key_file)
    source_path = None if input_ == "-" else Path(input_)
    if failures is None and source_path is not None and output == "-":
        failures = source_path.with_name(source_path.name + ".failures.jsonl")
    if failures is None and database_url(output) is None:  # a database keeps its own
        failures = default_failures(output)
    with contextlib.suppress(OSError):
        if source_path is not None and failures and source_path.samefile(failures):
            raise Refused(f"the failures file must not be the ids file ({failures})")
    client = client_for(
        key, base_url, redis_url=redis_url, requests_per_minute=rpm, max_requests=max_requests
    )
    total = None
    if source_path is not None and source_path.is_file():  # a pipe (<(cmd)) is read once
        with contextlib.suppress(OSError), source_path.open("rb") as lines:
            total = sum(1 for line in lines if line.strip() and not line.strip().startswith(b"#"))
    try:
        source = sys.stdin.buffer if source_path is None else source_path.open("rb")
    except OSError as exc:
        raise Refused(f"cannot read {input_}: {exc.strerror}") from None
    with contextlib.nullcontext() if source_path is None else source:
        summary = run_export(client, read_ids(source), output, total, failures=failures, **options)
    report(summary)


@main.command()
@click.option(
    "--output",
    "-o",
    default="calls.db",
    callback=named_output,
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
@redis_url_option
@key_file_option
@base_url_option
def sync(
    *,
    output: str,
    direction: Literal["inbound", "outbound"] | None,
    rpm: float | Literal["auto"] | None,
    max_requests: int | None,
    redis_url: str | None,
    api_key_file: Path | None,
    base_url: str | None,
    **options: Any,
) -> None:
    """Bring the account's calls into OUTPUT: page the call history (one credit a
    page, many records) for the ids, then fetch the details of each id OUTPUT does
    not hold yet (one credit a record). Run it again to fetch only what is new.

    Exits as export does: 0, 1 when some failed (in the failures file), 2 when the
    output cannot be used, 130 on Ctrl-C. Syncs on several hosts share the account's
    limit with --redis-url, as exports do.
    """
    key = read_key(api_key_file)
    client = client_for(
        key, base_url, redis_url=redis_url, requests_per_minute=rpm, max_requests=max_requests
    )
    stopped: list[TwoChatError] = []

    async def history_ids() -> AsyncIterator[str]:
        try:
            async for record in client.iter_call_history(direction):
                yield record.uuid
        except TwoChatError as exc:
            stopped.append(exc)

    summary = run_export(client, history_ids(), output, **options)
    if stopped and not summary.stopped:
        summary = attrs.evolve(
            summary,
            stopped=f"the call history could not be read to its end ({stopped[0]}); the "
            "records of the ids read so far were fetched; run the same command again",
        )
    report(summary)
    if stopped:
        sys.exit(1)
