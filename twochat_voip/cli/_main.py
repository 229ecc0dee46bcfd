"""The ``twochat-voip`` command line (also ``python -m twochat_voip``): get, export, sync,
demo.

The key comes from ``TWOCHAT_API_KEY`` or ``--api-key-file``, never from a flag that
would land in shell history, and is never printed. Errors a user can cause end with one
line on stderr and a non-zero exit code, not a traceback.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import sys
import tempfile
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Literal

try:
    import click
except ImportError:  # pragma: no cover - exercised only without the cli extra
    sys.exit("twochat-voip: the command line needs click: pip install 'twochat-voip[cli]'")

from twochat_voip._client import VoIPClient
from twochat_voip._converter import sdk_converter
from twochat_voip.cli._fake import demo_call_events, fake_server
from twochat_voip.cli._options import (
    base_url_option,
    export_options,
    key_file_option,
    output_option,
)
from twochat_voip.cli._support import (
    Progress,
    Refused,
    client_for,
    count_lines,
    export_with_progress,
    interrupted,
    read_ids,
    read_key,
    report,
    run_command,
    run_export,
    shared_limiter,
    stderr_is_interactive,
)
from twochat_voip.cli._sync import sync
from twochat_voip.export._formats import default_failures
from twochat_voip.export._run import ExportSummary
from twochat_voip.testing import FakeTwoChatServer, Fault, generate_cdrs

__all__ = ["main"]

DEMO_KEY = "demo-key-not-a-secret"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="twochat-voip")
def main() -> None:
    """Fetch 2Chat VoIP call detail records. The key comes from TWOCHAT_API_KEY."""


main.add_command(sync)
main.add_command(fake_server)


@main.command()
@click.argument("call_uuid")
@key_file_option
@base_url_option
def get(call_uuid: str, api_key_file: Path | None, base_url: str | None) -> None:
    """Print one call's record as 2Chat's JSON."""
    client = client_for(read_key(api_key_file), base_url)

    async def fetch() -> dict[str, Any]:
        async with client:
            record = await client.get_call(call_uuid)
        wire: dict[str, Any] = sdk_converter().unstructure(record)
        return wire

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
@click.option(
    "--redis-url",
    envvar="TWOCHAT_REDIS_URL",
    help="Share --rpm with every export on this account, on any host, through this "
    "Redis (needs the redis extra).",
)
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

    Exits 0 when every id was fetched, 1 when some failed (their ids and reasons go
    to the failures file, and the same command tries them again), 2 when nothing was
    sent because the input or the output cannot be used, 130 on Ctrl-C. Several
    exports on one account (on one host or many) share its limit with --rpm and
    --redis-url.
    """
    key = read_key(api_key_file)
    source_path = None if input_ == "-" else Path(input_)
    if failures is None and source_path is not None and (output == "-" or "://" in output):
        # No file of its own to sit beside: beside the ids, so that exports of other
        # ids into one database keep their lists apart.
        failures = source_path.with_name(source_path.name + ".failures.jsonl")
    failures = failures or default_failures(output)
    with contextlib.suppress(OSError):
        if source_path is not None and source_path.samefile(failures):
            raise Refused(f"the failures file must not be the ids file ({failures})")
    if redis_url:
        limiter = shared_limiter(redis_url, rpm, key)
        client = client_for(
            key, base_url, rate_limiter=limiter, rate_limiter_owner=True, max_requests=max_requests
        )
    else:
        client = client_for(key, base_url, requests_per_minute=rpm, max_requests=max_requests)
    total = count_lines(source_path) if source_path else None
    try:
        source = sys.stdin.buffer if source_path is None else source_path.open("rb")
    except OSError as exc:
        raise Refused(f"cannot read {input_}: {exc.strerror}") from None
    with nullcontext() if source_path is None else source:
        summary = run_export(client, read_ids(source), output, total, failures=failures, **options)
    report(summary)


@main.command()
@click.option(
    "--count",
    default=3000,
    show_default=True,
    type=click.IntRange(1, 1_000_000),
    help="Records the embedded server holds.",
)
@click.option(
    "--events",
    default=5,
    show_default=True,
    type=click.IntRange(0, 10_000),
    help="New calls that end after the export, their events taken by a receiver on "
    "127.0.0.1 (0: none).",
)
@click.option(
    "--server-rpm",
    default=30_000.0,
    show_default=True,
    type=click.FloatRange(min=1),
    help="The embedded server's per-minute limit.",
)
@click.option(
    "--fault-rate",
    default=0.03,
    show_default=True,
    type=click.FloatRange(0, 0.5),
    help="Share of requests answered with 503s, cut connections and delays.",
)
@output_option(required=False)
@export_options
def demo(
    *,
    count: int,
    events: int,
    server_rpm: float,
    fault_rate: float,
    output: str | None,
    fmt: str | None,
    rpm: float | Literal["auto"] | None,
    max_requests: int | None,
    quiet: bool,
    **options: Any,
) -> None:
    """Export from an embedded fake 2Chat server, then take call events: no key, no
    network needed.

    The server holds COUNT generated records, a per-minute limit it reports at
    GET /open/info (as 2Chat does), and a sprinkle of faults; the export asks for
    the limit and paces at it (or finds it from 429s with --rpm adaptive), retries
    the faults and resumes if run again with the same --output. Then the whole
    call-events loop: a receiver on 127.0.0.1 subscribes, EVENTS new calls end, their
    events arrive, and their records are fetched into the output too.
    """
    folder = None
    if output is None:
        folder = Path(tempfile.mkdtemp(prefix="twochat-voip-demo-"))
        output = str(folder / f"calls.{fmt or 'jsonl'}")
    records = generate_cdrs(count, seed=2026)
    progress = Progress(count, enabled=not quiet and stderr_is_interactive(), output=output)
    after: list[str] = []

    async def run() -> ExportSummary:
        server = FakeTwoChatServer(cdrs=records, api_key=DEMO_KEY, requests_per_minute=server_rpm)
        server.fail_randomly(
            fault_rate,
            [Fault(status=503), Fault(drop="mid_body"), Fault(status=502), Fault(delay=0.2)],
            seed=7,
        )
        async with server:
            click.echo(
                f"demo: {count} records on a fake 2Chat at {server.base_url}, limited to "
                f"{server_rpm:.0f} requests/minute, {fault_rate:.0%} faults",
                err=True,
            )
            client = VoIPClient(
                api_key=DEMO_KEY,
                base_url=server.base_url,
                requests_per_minute=rpm,
                max_requests=max_requests,
            )
            ids = (record["uuid"] for record in records)
            summary = await export_with_progress(client, ids, output, progress, fmt=fmt, **options)
            if line := await demo_call_events(server, output, events, summary):
                after.append(line)
            return summary

    # A demo's own temporary folder is a new one each run: resuming means naming it.
    resume = (
        "run the same command again to resume"
        if folder is None
        else f"resume with: twochat-voip demo -o {shlex.quote(output)}"
    )
    summary = run_command(run(), interrupted(progress, output, resume), progress)
    try:
        report(summary)  # (exits 1 when some failed)
    finally:
        for line in after:
            click.echo(line, err=True)
        if folder is not None:
            # Where, how big, and that it stays: a stranger must know what to delete.
            size = sum(path.stat().st_size for path in folder.iterdir() if path.is_file())
            click.echo(
                f"demo: the output is in a new temporary folder, {folder} ({size / 1e6:.1f} "
                "MB), which is not removed: delete it when you are done, or pass -o FILE to "
                "write one file of your choosing (a second run resumes it)",
                err=True,
            )
