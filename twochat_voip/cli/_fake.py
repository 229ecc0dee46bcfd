"""``twochat-voip fake-server``, and the call-events half of ``twochat-voip demo``:
the fake 2Chat on loopback, for trying the command line and the docs' examples."""

from __future__ import annotations

import asyncio
import secrets
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

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
    server: FakeTwoChatServer, client: VoIPClient, output: str, calls: int
) -> tuple[int, ExportSummary]:
    """The call-events loop on loopback: subscribe a receiver, let ``calls`` new calls
    end on the fake, take their events, fetch the records into ``output``. Returns
    the events received and the export of their records."""
    received: list[CallEvent] = []

    async def on_event(event: CallEvent) -> None:
        received.append(event)

    token = secrets.token_urlsafe(24)
    receiver = WebhookReceiver(on_event, token=token)
    app = web.Application()
    app.router.add_post("/2chat/calls", receiver.aiohttp_handler)
    runner = web.AppRunner(app, access_log=None)  # the token rides in the query
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = _bound_port(runner.addresses)
        channel = server.account.virtual_numbers[0]["uuid"]
        await client.subscribe_webhook(
            WebhookEvent.CALL_INCOMING_COMPLETED,
            hook_url=f"http://127.0.0.1:{port}/2chat/calls?token={token}",
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
        summary = await export_calls(
            client,
            [event.uuid for event in received],
            output,
            failures=Path(folder) / "failures.jsonl",
        )
    return len(received), summary


def _bound_port(addresses: Sequence[Any]) -> int:
    return int(addresses[0][1])
