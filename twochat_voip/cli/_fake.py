"""``twochat-voip fake-server`` and ``demo``: the fake 2Chat on loopback, for trying
things without a key."""

from __future__ import annotations

import asyncio
import secrets
import shlex
import tempfile
from pathlib import Path
from typing import Any, Final, Literal

import click
from aiohttp import web

from twochat_voip._client import VoIPClient
from twochat_voip._resources import WebhookEvent
from twochat_voip.cli._options import export_options, output_option
from twochat_voip.cli._support import (
    Progress,
    export_with_progress,
    report,
    run_command,
    stderr_is_interactive,
)
from twochat_voip.export._run import ExportSummary, export_calls
from twochat_voip.testing import EXAMPLE_CDR, FakeTwoChatServer, Fault, generate_cdrs
from twochat_voip.webhooks import CallEvent, WebhookReceiver

_UNENFORCED_PLAN: Final = 6000.0  # what requests_per_minute="auto" learns without a limit


@click.command("fake-server")
@click.option("--port", type=click.IntRange(0, 65535), default=0, help="Default: any free one.")
@click.option(
    "--records",
    "count",
    type=click.IntRange(0, 200_000),
    default=1000,
    show_default=True,
    help="Generated records to serve, beside the docs' example.",
)
@click.option(
    "--server-rpm",
    type=click.FloatRange(1, 1e9),
    default=None,
    help="Answer 429 above this many requests a minute, as 2Chat does. Without it "
    f"nothing is refused, and GET /open/info reports a plan of {_UNENFORCED_PLAN:g}.",
)
def fake_server(port: int, count: int, server_rpm: float | None) -> None:
    """Run the fake 2Chat on 127.0.0.1 until Ctrl-C, and print its URL and key.

    Point the command line or the docs' examples at it with TWOCHAT_BASE_URL and
    TWOCHAT_API_KEY. It serves the record the docs' examples fetch and --records
    generated ones (their ids at /open/voip/call-history), account info, webhooks,
    virtual numbers and caller ids.
    """
    key = "fake-" + secrets.token_urlsafe(12)
    if count > 10_000:
        click.echo(f"# generating {count} records...", err=True)
    records = [EXAMPLE_CDR, *generate_cdrs(count, seed=2026)]  # the docs fetch the example

    async def serve() -> None:
        async with FakeTwoChatServer(
            cdrs=records,
            api_key=key,
            requests_per_minute=server_rpm,
            plan_requests_per_minute=server_rpm or _UNENFORCED_PLAN,
            log_requests=False,
            port=port,
        ) as server:
            click.echo(f"export TWOCHAT_BASE_URL={server.base_url}")
            click.echo(f"export TWOCHAT_API_KEY={key}")
            click.echo(f"# {count} records and the docs' example; Ctrl-C stops it", err=True)
            await asyncio.Event().wait()  # until Ctrl-C

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        click.echo("fake-server: stopped", err=True)


async def _call_events(
    server: FakeTwoChatServer, output: str, calls: int, export: ExportSummary
) -> str | None:
    """The demo's call-events loop after its export; the line that says what it did."""
    if not calls:
        return None
    if output == "-":
        return (
            "demo: call events skipped: their records join a file or a database, not "
            "standard output"
        )
    if export.stopped or export.failed:
        return "demo: call events skipped: the export did not finish"
    server.fail_randomly(0, [])
    received: list[CallEvent] = []

    async def on_event(event: CallEvent) -> None:
        received.append(event)

    token = secrets.token_urlsafe(24)
    app = web.Application()
    app.router.add_post("/2chat/calls", WebhookReceiver(on_event, token=token).aiohttp_handler)
    runner = web.AppRunner(app, access_log=None)  # the token rides in the query
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    async with VoIPClient(api_key=server.api_key, base_url=server.base_url) as client:
        try:
            channel = server.account.virtual_numbers[0]["uuid"]
            await client.subscribe_webhook(
                WebhookEvent.CALL_INCOMING_COMPLETED,
                hook_url=f"http://127.0.0.1:{runner.addresses[0][1]}/2chat/calls?token={token}",
                channel_uuid=channel,
            )
            new = [dict(r, direction="I") for r in generate_cdrs(calls, seed=2027)]
            server.add_cdrs(new)
            for record in new:
                await server.complete_call(record["uuid"], "COMPLETED", channel_uuid=channel)
        finally:
            await runner.cleanup()
        # A failures file of its own: the export's (beside the output) is not touched.
        with tempfile.TemporaryDirectory(prefix="twochat-voip-demo-events-") as folder:
            stored = await export_calls(
                client,
                [event.uuid for event in received],
                output,
                failures=Path(folder) / "failures.jsonl",
            )
    return (
        f"demo: then {calls} calls ended; {len(received)} call events reached a "
        f"receiver on 127.0.0.1, and {stored.exported} records were fetched "
        f"into {output} ({stored.already_there} already there; "
        f"{stored.requests} more requests)"
    )


@click.command()
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
    if folder is not None:  # a new folder each run: resuming means naming this one
        progress.resume = f"resume with: twochat-voip demo -o {shlex.quote(output)}"
    after: list[str] = []

    async def run() -> ExportSummary:
        server = FakeTwoChatServer(cdrs=records, requests_per_minute=server_rpm)
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
                api_key=server.api_key,
                base_url=server.base_url,
                requests_per_minute=rpm,
                max_requests=max_requests,
            )
            ids = (record["uuid"] for record in records)
            summary = await export_with_progress(client, ids, output, progress, fmt=fmt, **options)
            if line := await _call_events(server, output, events, summary):
                after.append(line)
            return summary

    summary = run_command(run(), progress)
    try:
        report(summary)  # (exits 1 when some failed)
    finally:
        for line in after:
            click.echo(line, err=True)
        if folder is not None:
            size = sum(path.stat().st_size for path in folder.iterdir() if path.is_file())
            click.echo(
                f"demo: the output is in a new temporary folder, {folder} ({size / 1e6:.1f} "
                "MB), which is not removed: delete it when you are done, or pass -o FILE to "
                "write one file of your choosing (a second run resumes it)",
                err=True,
            )
