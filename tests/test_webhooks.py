"""Call events: reading a delivery, and the receiver (ASGI and aiohttp.web) fed by the
twochat_server 2Chat's deliveries over loopback sockets."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import MutableMapping
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

import twochat_voip as tv
from twochat_voip import CallDirection, CallStatus, VoIPClient, WebhookEvent
from twochat_voip.testing import EXAMPLE_CDR, FakeTwoChatServer
from twochat_voip.webhooks import CallEvent, WebhookReceiver, parse_call_event

pytestmark = pytest.mark.virtual_time  # timeouts, backoff and pacing in the loop's time

TOKEN = "t0ken-that-is-secret-enough"

DOCUMENTED = {
    "uuid": "CDR8612b98c-5e11-4638-8d9d-2f21275256cf",
    "account_uuid": "ACC91be87af-5a29-4034-b599-342f2aeb5d52",
    "callid": "e73d8d61-2bf0-123f-19aa-9600045bb967",
    "direction": "I",
    "active": True,
    "from": "+525512345555",
    "iso_country_code": "MX",
    "received_on_number": "+525644448888",
    "received_on_number_uuid": "DID1a42d563-e0a7-4b14-b9e6-ee49e61af123",
    "is_toll_free": False,
    "status": "ANSWERED",
    "created_at": "2025-10-25T02:55:28Z",
    "updated_at": "2025-10-25T02:55:36Z",
    "contact": {"uuid": "CONe9b31cd3-f11c-44cd-a888-58f4d5e6f4bf", "first_name": "Juan"},
}


def test_the_documented_example_parses() -> None:
    """2Chat's example delivery becomes a typed CallEvent."""
    event = parse_call_event(json.dumps(DOCUMENTED))
    assert event.uuid == DOCUMENTED["uuid"]
    assert event.direction is CallDirection.INBOUND
    assert event.status is CallStatus.ANSWERED
    assert event.from_ == "+525512345555"
    assert event.received_on_number_uuid == "DID1a42d563-e0a7-4b14-b9e6-ee49e61af123"
    assert event.contact is not None
    assert event.contact.first_name == "Juan"
    assert event.record is None


@pytest.mark.parametrize("status", ["answered", "Answered", "ANSWERED"])
def test_a_status_is_matched_without_case(status: str) -> None:
    """2Chat writes statuses in both cases."""
    event = parse_call_event(json.dumps(DOCUMENTED | {"status": status}).encode())
    assert event.status is CallStatus.ANSWERED


def test_unknown_fields_and_statuses_are_kept_out_or_kept_raw() -> None:
    """New fields are ignored, a new status stays a string, and 'record' is never read."""
    body = DOCUMENTED | {"status": "voicemail", "new_field": 1, "record": {"uuid": "CDRx"}}
    event = parse_call_event(json.dumps(body))
    assert event.status == "voicemail"
    assert event.record is None


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "not list"),
        (json.dumps({"status": "ANSWERED"}).encode(), "uuid"),
        (json.dumps(DOCUMENTED | {"active": "yes"}).encode(), "active"),
        (b" " * (256 * 1024 + 1), "too big"),
    ],
)
def test_a_body_that_is_not_an_event_is_a_typed_error(body: bytes, says: str) -> None:
    """Malformed deliveries raise InvalidCallEventError (a TwoChatError), saying why."""
    with pytest.raises(tv.InvalidCallEventError, match=says) as caught:
        parse_call_event(body)
    assert isinstance(caught.value, tv.TwoChatError)


def test_the_n8n_spelling_of_the_outbound_event_is_read() -> None:
    """call.outgoing.completed (2Chat's n8n node) reads as the documented event."""
    converter = tv.make_converter()
    hook = converter.structure(
        {"uuid": "WHK1", "event_name": "call.outgoing.completed"}, tv.Webhook
    )
    assert hook.event_name is WebhookEvent.CALL_OUTBOUND_COMPLETED


class Handler:
    """Records the events a receiver hands on; fails on cue."""

    def __init__(self) -> None:
        self.events: list[CallEvent] = []
        self.fail = False

    async def __call__(self, event: CallEvent) -> None:
        if self.fail:
            raise RuntimeError("the app's handler broke")
        self.events.append(event)


async def _serve(receiver: WebhookReceiver) -> TestServer:
    app = web.Application()
    app.router.add_post("/2chat/calls", receiver.aiohttp_handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


async def test_events_arrive_once_through_the_aiohttp_handler(
    twochat_server: FakeTwoChatServer, twochat_client: VoIPClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Subscribe, a call ends: both events arrive; a redelivery is acknowledged and not
    handed on again; the token never reaches a log."""
    caplog.set_level(logging.DEBUG)
    handler = Handler()
    server = await _serve(WebhookReceiver(handler, token=TOKEN))
    try:
        url = str(server.make_url("/2chat/calls")) + f"?token={TOKEN}"
        channel = twochat_server.account.virtual_numbers[0]["uuid"]
        for event in (WebhookEvent.CALL_STATUS_UPDATE, WebhookEvent.CALL_INCOMING_COMPLETED):
            await twochat_client.subscribe_webhook(event, hook_url=url, channel_uuid=channel)
        call = twochat_server.call_uuids[0]
        twochat_server.add_cdrs([{**twochat_server._wire[call], "direction": "I"}])
        assert await twochat_server.complete_call(call) == [200, 200]
        # The same event twice (status.update and incoming.completed carry one payload).
        assert [e.uuid for e in handler.events] == [call]
        assert handler.events[0].status is CallStatus.COMPLETED
        assert await twochat_server.complete_call(call) == [200, 200]  # redelivered: acknowledged
        assert len(handler.events) == 1
        assert await twochat_server.complete_call(call, "FAILED") == [200, 200]
        assert [e.status for e in handler.events] == [CallStatus.COMPLETED, CallStatus.FAILED]
    finally:
        await server.close()
    # (aiohttp's own access log writes the request line, query and all: the call
    # events guide says to switch it off or drop the query from its format.)
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("twochat_voip")]
    assert ours  # the SDK did log (the deliveries), and never the token
    assert not any(TOKEN in message for message in ours)


@pytest.mark.parametrize(
    ("query", "status"), [("", 401), ("?token=wrong-token-123", 403), ("?tok=" + TOKEN, 401)]
)
async def test_deliveries_without_the_token_are_refused(
    twochat_server: FakeTwoChatServer, twochat_client: VoIPClient, query: str, status: int
) -> None:
    """No token: 401; a wrong one: 403; the handler is not called either way."""
    handler = Handler()
    server = await _serve(WebhookReceiver(handler, token=TOKEN))
    try:
        url = str(server.make_url("/2chat/calls")) + query
        channel = twochat_server.account.virtual_numbers[0]["uuid"]
        await twochat_client.subscribe_webhook(
            "call.status.update", hook_url=url, channel_uuid=channel
        )
        assert await twochat_server.complete_call(twochat_server.call_uuids[0]) == [status]
        assert handler.events == []
    finally:
        await server.close()


async def test_a_failing_handler_gets_the_event_again(
    twochat_server: FakeTwoChatServer, twochat_client: VoIPClient
) -> None:
    """A handler that raised answers 500, and the next delivery is handed on."""
    handler = Handler()
    server = await _serve(WebhookReceiver(handler, token=TOKEN))
    try:
        url = str(server.make_url("/2chat/calls")) + f"?token={TOKEN}"
        channel = twochat_server.account.virtual_numbers[0]["uuid"]
        await twochat_client.subscribe_webhook(
            "call.status.update", hook_url=url, channel_uuid=channel
        )
        handler.fail = True
        assert await twochat_server.complete_call(twochat_server.call_uuids[0]) == [500]
        handler.fail = False
        assert await twochat_server.complete_call(twochat_server.call_uuids[0]) == [200]
        assert len(handler.events) == 1
    finally:
        await server.close()


async def test_verify_fetches_the_record_and_refuses_forgeries(
    twochat_server: FakeTwoChatServer, twochat_client: VoIPClient
) -> None:
    """verify=True: the record 2Chat holds rides along; an event for no record is 404."""
    handler = Handler()
    receiver = WebhookReceiver(handler, token=TOKEN, client=twochat_client, verify=True)
    status, _ = await receiver.handle("POST", f"token={TOKEN}", json.dumps(DOCUMENTED).encode())
    assert status == 404  # the example's call is not on this account
    assert handler.events == []
    call = twochat_server.call_uuids[0]
    body = json.dumps(DOCUMENTED | {"uuid": call, "duration": 999}).encode()
    status, _ = await receiver.handle("POST", f"token={TOKEN}", body)
    assert status == 200
    (event,) = handler.events
    assert event.duration == 999  # what the delivery said
    assert event.record is not None
    assert event.record.duration == twochat_server._wire[call]["duration"]  # what 2Chat holds


async def _asgi(
    app: WebhookReceiver, method: str, query: bytes, chunks: list[bytes]
) -> tuple[int, dict[str, Any]]:
    """One request through the ASGI app, the body in ``chunks``."""
    scope: MutableMapping[str, Any] = {"type": "http", "method": method, "query_string": query}
    messages = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> MutableMapping[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], json.loads(sent[1]["body"])


async def test_the_asgi_app_reads_a_body_in_parts() -> None:
    """As an ASGI app (Starlette's app.mount), the same rules hold."""
    handler = Handler()
    receiver = WebhookReceiver(handler, token=TOKEN)
    body = json.dumps(DOCUMENTED).encode()
    query = f"token={TOKEN}".encode()
    status, answer = await _asgi(receiver, "POST", query, [body[:10], body[10:]])
    assert (status, answer["success"]) == (200, True)
    assert len(handler.events) == 1
    assert (await _asgi(receiver, "POST", b"", [body]))[0] == 401
    assert (await _asgi(receiver, "GET", query, [b""]))[0] == 405
    assert (await _asgi(receiver, "POST", query, [b"{"]))[0] == 400
    assert (await _asgi(receiver, "POST", query, [b" " * (300 * 1024)]))[0] == 413


async def test_the_asgi_app_answers_lifespan() -> None:
    """Mounted as the whole app, it completes the lifespan handshake."""
    receiver = WebhookReceiver(Handler(), token=TOKEN)
    messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> MutableMapping[str, Any]:
        return messages.pop(0)

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await receiver({"type": "lifespan"}, receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


def test_a_receiver_needs_a_real_token_and_a_client_to_verify() -> None:
    """Short tokens and verify without a client are refused; the repr shows no token."""
    with pytest.raises(ValueError, match="token"):
        WebhookReceiver(Handler(), token="short")
    with pytest.raises(ValueError, match="client"):
        WebhookReceiver(Handler(), token=TOKEN, verify=True)
    assert TOKEN not in repr(WebhookReceiver(Handler(), token=TOKEN))


async def test_a_body_in_several_packets_is_read_whole() -> None:
    """aiohttp handler: a delivery whose body arrives in parts is read to its end
    (found by a hostile review: only the first part was read, and the event lost)."""
    handler = Handler()
    server = await _serve(WebhookReceiver(handler, token=TOKEN))
    try:
        body = json.dumps(DOCUMENTED | {"recording_url": "https://s3/x" + "y" * 3000}).encode()
        head = (
            f"POST /2chat/calls?token={TOKEN} HTTP/1.1\r\nHost: x\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(head + body[:100])
        await writer.drain()
        await asyncio.sleep(0.05)  # the rest comes later, as over a slow link
        writer.write(body[100:])
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        await writer.wait_closed()
    finally:
        await server.close()
    assert answer.startswith(b"HTTP/1.1 200")
    assert len(handler.events) == 1


def test_a_deeply_nested_body_is_a_typed_error() -> None:
    """JSON nested past Python's recursion limit is InvalidCallEventError too."""
    body = b'{"uuid": "CDR1", "z": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(tv.InvalidCallEventError, match="not JSON"):
        parse_call_event(body[: 256 * 1024 - 1])


def test_only_utf8_is_read_and_sizes_are_bytes() -> None:
    """A UTF-16 body is refused; a str is measured in UTF-8 bytes, not characters."""
    with pytest.raises(tv.InvalidCallEventError, match="UTF-8"):
        parse_call_event(json.dumps(DOCUMENTED).encode("utf-16"))
    with pytest.raises(tv.InvalidCallEventError, match="too big"):
        parse_call_event('{"uuid": "' + "€" * 100_000 + '"}')  # 300 KB, 100,000 characters


def test_an_explanation_never_carries_a_whole_body() -> None:
    """A bad field's value is not echoed at length (the 400 answer carries it)."""
    with pytest.raises(tv.InvalidCallEventError) as caught:
        parse_call_event(json.dumps(DOCUMENTED | {"updated_at": "X" * 200_000}))
    assert len(str(caught.value)) < 400


@pytest.mark.parametrize("token", ["abc+def/ghi-jkl-mno", "p@ss&word=1234567890", "short-1"])
def test_tokens_that_change_in_a_url_are_refused(token: str) -> None:
    """+ & % # and friends change in a query: such a token would never match."""
    with pytest.raises(ValueError, match="token"):
        WebhookReceiver(Handler(), token=token)


async def test_a_hanging_handler_is_answered_504_and_the_event_comes_again() -> None:
    """A handler past the timeout: 504, nothing remembered; the redelivery is handed on."""
    calls: list[str] = []
    release = asyncio.Event()

    async def slow(event: CallEvent) -> None:
        calls.append(event.uuid)
        if len(calls) == 1:
            await release.wait()  # hangs the first time

    receiver = WebhookReceiver(slow, token=TOKEN, timeout=0.2)
    body = json.dumps(DOCUMENTED).encode()
    assert (await receiver.handle("POST", f"token={TOKEN}", body))[0] == 504
    assert (await receiver.handle("POST", f"token={TOKEN}", body))[0] == 200
    assert len(calls) == 2


async def test_the_asgi_app_refuses_before_reading_the_body() -> None:
    """No token: 401 at once, the body never read (a slow sender holds nothing)."""
    receiver = WebhookReceiver(Handler(), token=TOKEN)
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> MutableMapping[str, Any]:
        raise AssertionError("the body was read")

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await receiver({"type": "http", "method": "POST", "query_string": b""}, receive, send)
    assert sent[0]["status"] == 401


async def test_verify_refuses_an_event_whose_uuid_is_not_a_call_id(
    twochat_client: VoIPClient,
) -> None:
    """verify=True: a uuid that is not a call id is a 400 (redelivering cannot help)."""
    receiver = WebhookReceiver(Handler(), token=TOKEN, client=twochat_client, verify=True)
    body = json.dumps(DOCUMENTED | {"uuid": "../../open/info"}).encode()
    assert (await receiver.handle("POST", f"token={TOKEN}", body))[0] == 400


async def test_the_fake_does_not_follow_a_receivers_redirect(
    twochat_server: FakeTwoChatServer, twochat_client: VoIPClient
) -> None:
    """A receiver answering 307 (Starlette's Mount without the slash) gets no event."""

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect("/elsewhere")

    app = web.Application()
    app.router.add_post("/hook", redirect)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        channel = twochat_server.account.virtual_numbers[0]["uuid"]
        url = str(server.make_url("/hook")) + f"?token={TOKEN}"
        await twochat_client.subscribe_webhook(
            "call.status.update", hook_url=url, channel_uuid=channel
        )
        assert await twochat_server.complete_call(twochat_server.call_uuids[0]) == [307]
    finally:
        await server.close()


def test_an_event_carrying_a_whole_record_keeps_every_cdr_field() -> None:
    """A delivery that is a full CDR (plus the event's fields) keeps each CDR field."""
    event = parse_call_event(json.dumps(EXAMPLE_CDR | {"received_on_number": "+1555"}))
    assert event.caller_id_used == EXAMPLE_CDR["caller_id_used"]
    assert event.agent_id == EXAMPLE_CDR["agent_id"]
    assert event.is_whatsapp_call is EXAMPLE_CDR["is_whatsapp_call"]
    assert event.call_cost is not None
    assert str(event.call_cost.call_price) == str(EXAMPLE_CDR["call_cost"]["call_price"])
    assert event.agent is not None
    assert event.received_on_number == "+1555"
