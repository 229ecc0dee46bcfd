"""``twochat-voip fake-server``, and the call-events half of ``twochat-voip demo``:
the fake 2Chat on loopback, for trying the command line and the docs' examples."""

from __future__ import annotations

import asyncio
import secrets
import tempfile
from pathlib import Path
from typing import Final

import click
from aiohttp import web

from twochat_voip._client import VoIPClient
from twochat_voip._resources import WebhookEvent
from twochat_voip.export._run import ExportSummary, export_calls
from twochat_voip.testing import EXAMPLE_CDR, FakeTwoChatServer, generate_cdrs
from twochat_voip.webhooks import CallEvent, WebhookReceiver

__all__ = ["demo_call_events", "fake_server"]


_UNENFORCED_PLAN: Final = 6000.0
"""Requests a minute the fake reports as its plan when it enforces no limit."""


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
        server = FakeTwoChatServer(
            cdrs=records,
            api_key=key,
            requests_per_minute=server_rpm,
            # What requests_per_minute="auto" learns when no limit is enforced.
            plan_requests_per_minute=server_rpm or _UNENFORCED_PLAN,
            log_requests=False,
            port=port,
        )
        async with server:
            click.echo(f"export TWOCHAT_BASE_URL={server.base_url}")
            click.echo(f"export TWOCHAT_API_KEY={key}", nl=True)
            click.echo(f"# {count} records and the docs' example; Ctrl-C stops it", err=True)
            await asyncio.Event().wait()  # until Ctrl-C

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        click.echo("fake-server: stopped", err=True)


async def demo_call_events(
    server: FakeTwoChatServer, output: str, calls: int, export: ExportSummary
) -> str | None:
    """The demo's call-events loop on loopback, after its export: a receiver subscribes,
    ``calls`` new calls end on the fake, their events arrive and their records are
    fetched into ``output``. Returns the line that says so."""
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
