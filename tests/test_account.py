"""Account info, webhooks, virtual numbers and caller ids, against the fake 2Chat on
127.0.0.1 (real sockets)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import aiohttp
import pytest
import pytest_asyncio

import twochat_voip as tv
from twochat_voip import VoIPClient, WebhookEvent
from twochat_voip.testing import FakeTwoChatServer, Fault
from twochat_voip.testing._account import make_caller_id, make_virtual_number

pytestmark = pytest.mark.virtual_time  # timeouts, backoff and pacing in the loop's time

HOOK = "http://127.0.0.1:9/2chat/calls?token=s3cret-t0ken-value"


@pytest_asyncio.fixture
async def server() -> AsyncIterator[FakeTwoChatServer]:
    async with FakeTwoChatServer(requests_per_minute=60_000) as fake:
        yield fake


@pytest_asyncio.fixture
async def voip(server: FakeTwoChatServer) -> AsyncIterator[VoIPClient]:
    async with VoIPClient(
        api_key=server.api_key, base_url=server.base_url, transport=server.transport()
    ) as client:
        yield client


async def test_account_info_is_typed(voip: VoIPClient) -> None:
    """GET /open/info becomes an AccountInfo: account, limits and usage, typed."""
    info = await voip.get_account_info()
    assert isinstance(info, tv.AccountInfo)
    assert info.account is not None
    assert info.account.uuid == "ACC00000000-0000-4000-8000-000000000000"
    assert info.account.created_at == datetime(2025, 1, 1, tzinfo=UTC)
    assert info.limits == tv.Limits(requests_per_minute=60_000)
    assert info.usage is not None
    assert info.usage.max_api_request_count == 500_000
    assert info.credits_left == 500_000 - info.usage.api_request_count  # type: ignore[operator]
    assert voip.stats.requests == 1


async def test_subscribe_list_and_delete_a_webhook(
    voip: VoIPClient, server: FakeTwoChatServer
) -> None:
    """A subscription is made with the documented POST, listed, and deleted."""
    channel = server.account.virtual_numbers[0]["uuid"]
    hook = await voip.subscribe_webhook(
        WebhookEvent.CALL_INCOMING_COMPLETED, hook_url=HOOK, channel_uuid=channel
    )
    assert hook.event_name is WebhookEvent.CALL_INCOMING_COMPLETED
    assert hook.channel_uuid == channel
    assert hook.hook_url == HOOK
    sent = server.requests[-1]
    assert (sent.method, sent.path) == ("POST", "/open/webhooks/subscribe/call.incoming.completed")
    assert await voip.list_webhooks() == [hook]
    assert await voip.list_webhooks(channel) == [hook]
    other = server.account.virtual_numbers[1]["uuid"]
    assert await voip.list_webhooks(other) == []
    await voip.delete_webhook(hook.uuid)
    assert await voip.list_webhooks() == []
    with pytest.raises(tv.NotFoundError):
        await voip.delete_webhook(hook.uuid)


async def test_the_token_in_a_hook_url_stays_out_of_reprs(
    voip: VoIPClient, server: FakeTwoChatServer
) -> None:
    """A Webhook's repr hides its hook URL's token."""
    channel = server.account.virtual_numbers[0]["uuid"]
    hook = await voip.subscribe_webhook("call.status.update", hook_url=HOOK, channel_uuid=channel)
    assert "s3cret-t0ken-value" not in repr(hook)
    assert "token=***" in repr(hook)


async def test_a_second_identical_subscription_is_a_409(
    voip: VoIPClient, server: FakeTwoChatServer
) -> None:
    """2Chat's 409 (already subscribed) is an APIStatusError with that status."""
    channel = server.account.virtual_numbers[0]["uuid"]
    await voip.subscribe_webhook("call.status.update", hook_url=HOOK, channel_uuid=channel)
    with pytest.raises(tv.APIStatusError) as caught:
        await voip.subscribe_webhook("call.status.update", hook_url=HOOK, channel_uuid=channel)
    assert caught.value.status_code == 409


async def test_a_subscription_is_not_sent_again_after_a_server_error(
    voip: VoIPClient, server: FakeTwoChatServer
) -> None:
    """A POST the server may have acted on (a 503) is not retried; a 429 is."""
    channel = server.account.virtual_numbers[0]["uuid"]
    server.fail_next(Fault(status=503))
    with pytest.raises(tv.ServerError):
        await voip.subscribe_webhook("call.status.update", hook_url=HOOK, channel_uuid=channel)
    assert [r.method for r in server.requests] == ["POST"]
    server.fail_next(Fault(status=429))
    hook = await voip.subscribe_webhook("call.status.update", hook_url=HOOK, channel_uuid=channel)
    # (the 429 also has the adaptive client ask the plan's limit: GET /open/info)
    posts = [r.method for r in server.requests if r.path != "/open/info"]
    assert posts == ["POST", "POST", "POST"]
    assert [h["uuid"] for h in server.account.webhooks] == [hook.uuid]


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"hook_url": "ftp://example.com/x", "channel_uuid": "DID1"}, ValueError),
        ({"hook_url": HOOK, "channel_uuid": "../etc"}, ValueError),
        ({"hook_url": 5, "channel_uuid": "DID1"}, TypeError),
    ],
)
async def test_bad_subscriptions_send_nothing(
    voip: VoIPClient, server: FakeTwoChatServer, options: dict[str, object], error: type[Exception]
) -> None:
    """A hook URL that is not http(s) or a channel that is not an id: refused locally."""
    with pytest.raises(error):
        await voip.subscribe_webhook("call.status.update", **options)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="event"):
        await voip.subscribe_webhook("call status", hook_url=HOOK, channel_uuid="DID1")
    assert server.requests == []


async def test_virtual_numbers_are_read_page_by_page(
    voip: VoIPClient, server: FakeTwoChatServer
) -> None:
    """Every number, in order, each once, pages until a short one; prices exact."""
    server.account.virtual_numbers = [make_virtual_number(n) for n in range(7)]
    numbers = [n async for n in voip.iter_virtual_numbers(page_size=3)]
    assert [n.uuid for n in numbers] == [n["uuid"] for n in server.account.virtual_numbers]
    assert numbers[0].incoming_price_per_minute == Decimal("0.0")
    assert numbers[0].status_text == "ACTIVE"
    pages = [(r.query["page_number"], r.query["results_per_page"]) for r in server.requests]
    assert pages == [("0", "3"), ("1", "3"), ("2", "3")]  # the third is short: the end


async def test_an_exact_multiple_ends_on_an_empty_page(
    voip: VoIPClient, server: FakeTwoChatServer
) -> None:
    """Six caller ids in pages of three: a third, empty page ends the listing."""
    server.account.caller_ids = [make_caller_id(n) for n in range(6)]
    ids = [c async for c in voip.iter_caller_ids(page_size=3)]
    assert [c.uuid for c in ids] == [c["uuid"] for c in server.account.caller_ids]
    assert ids[0].type == "VN"
    assert ids[0].verified is True
    assert len(server.requests) == 3


async def test_a_page_size_2chat_does_not_serve_is_refused(voip: VoIPClient) -> None:
    """page_size outside 1..200 raises at once, before anything is sent."""
    with pytest.raises(ValueError, match="page_size"):
        voip.iter_virtual_numbers(page_size=0)
    with pytest.raises(ValueError, match="page_size"):
        voip.iter_caller_ids(page_size=201)


async def test_a_list_that_repeats_its_pages_stops(
    voip: VoIPClient, server: FakeTwoChatServer
) -> None:
    """A server that ignores page_number would be asked forever: it stops, and says so."""
    server.account.caller_ids = [make_caller_id(n) for n in range(2)]
    server.fail_next(
        Fault(body={"success": True, "caller_ids": server.account.caller_ids}),
        Fault(body={"success": True, "caller_ids": server.account.caller_ids}),
    )
    with pytest.raises(tv.ResponseValidationError, match="repeats"):
        _ = [c async for c in voip.iter_caller_ids(page_size=2)]
    assert len(server.requests) == 2


async def test_a_list_that_shifts_yields_each_item_once(
    voip: VoIPClient, server: FakeTwoChatServer
) -> None:
    """A number added while the list is read shifts the pages: nothing twice."""
    numbers = [make_virtual_number(n) for n in range(4)]
    server.account.virtual_numbers = numbers[1:]
    first_page = {"success": True, "numbers": numbers[1:3]}
    second_page = {"success": True, "numbers": numbers[2:4]}  # shifted by one
    server.fail_next(
        Fault(body=first_page),
        Fault(body=second_page),
        Fault(body={"success": True, "numbers": []}),
    )
    got = [n.uuid async for n in voip.iter_virtual_numbers(page_size=2)]
    assert got == [n["uuid"] for n in numbers[1:4]]


async def test_a_redirected_subscription_is_not_sent_again(
    voip: VoIPClient, server: FakeTwoChatServer
) -> None:
    """A POST answered with a redirect is not re-sent to the new place."""
    channel = server.account.virtual_numbers[0]["uuid"]
    server.fail_next(Fault(status=307, headers={"Location": "/open/webhooks/elsewhere"}))
    with pytest.raises(tv.RedirectError, match="POST was redirected"):
        await voip.subscribe_webhook("call.status.update", hook_url=HOOK, channel_uuid=channel)
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"success": True, "numbers": [{"uuid": 5}]}, "numbers\\[0\\]"),
        ({"success": True}, "expected a 'numbers' list"),
    ],
)
async def test_a_malformed_page_is_a_validation_error(
    voip: VoIPClient, server: FakeTwoChatServer, body: dict[str, object], says: str
) -> None:
    """A page that is not the documented shape says where it is wrong."""
    server.fail_next(Fault(body=body))
    with pytest.raises(tv.ResponseValidationError, match=says):
        _ = [n async for n in voip.iter_virtual_numbers()]


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/open/webhooks/subscribe/call.unknown", b"{}", 422),
        ("POST", "/open/webhooks/subscribe/call.status.update", b"nope", 422),
        (
            "POST",
            "/open/webhooks/subscribe/call.status.update",
            b'{"hook_url": "http://127.0.0.1:9/", "channel_uuid": "DIDnone"}',
            404,
        ),
        ("GET", "/open/voip/caller-ids?page_number=x", b"", 422),
    ],
)
async def test_the_fake_refuses_what_2chat_would(
    server: FakeTwoChatServer, method: str, path: str, body: bytes, status: int
) -> None:
    """Unknown events, bad bodies, unknown channels and bad paging are refused."""
    import aiohttp

    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method,
            server.base_url + path,
            data=body,
            headers={"X-User-API-Key": server.api_key or "k"},
        ) as answer,
    ):
        assert answer.status == status
        assert (await answer.json())["success"] is False


async def test_deliveries_go_only_to_loopback_receivers(server: FakeTwoChatServer) -> None:
    """A hook URL elsewhere gets nothing (None), nor does one nobody listens on."""
    channel = server.account.virtual_numbers[0]["uuid"]
    for url in ("https://example.com/hook?token=x", "http://127.0.0.1:9/hook"):
        server.account.webhooks.append(
            {
                "uuid": f"WHK{url[-4:]}",
                "event_name": "call.status.update",
                "channel_uuid": channel,
                "hook_url": url,
                "hook_params": {},
                "created_at": None,
            }
        )
    assert await server.complete_call(server.call_uuids[0], "RINGING") == [None, None]
    assert [url for url, _ in server.account.deliveries] == [
        "https://example.com/hook?token=x",
        "http://127.0.0.1:9/hook",
    ]


def test_credits_left_needs_both_numbers() -> None:
    """credits_left is None unless 2Chat says both the use and the allowance."""
    assert tv.AccountInfo().credits_left is None
    assert tv.AccountInfo(usage=tv.Usage(api_request_count=5)).credits_left is None
    full = tv.Usage(api_request_count=7, max_api_request_count=5)
    assert tv.AccountInfo(usage=full).credits_left == 0


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (None, None),
        ("https://h/x?a=1", "https://h/x?a=1"),
        ("https://h/x?Token=abc&a=1", "https://h/x?Token=***&a=1"),
        ("http://[::1/x?token=a", "<unreadable URL>"),
    ],
)
def test_hook_urls_are_shown_without_secrets(url: str | None, shown: str | None) -> None:
    """redact_url hides secret-looking query values and nothing else."""
    from twochat_voip._resources import redact_url

    assert redact_url(url) == shown


@pytest.mark.parametrize(
    "head",
    [
        b"POST /open/webhooks HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        b"GARBAGE\r\n\r\n",
    ],
)
async def test_the_fake_refuses_requests_it_cannot_read(
    server: FakeTwoChatServer, head: bytes
) -> None:
    """Bad lengths and bad request lines: refused and closed, not read out of step;
    the server goes on serving."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", int(server.base_url.rsplit(":", 1)[1])
    )
    writer.write(head + b"5\r\nhello\r\n0\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    await writer.wait_closed()
    assert answer.split(b" ")[1] == b"400"
    assert server.request_count == 0
    async with VoIPClient(
        api_key=server.api_key, base_url=server.base_url, transport=server.transport()
    ) as voip:
        assert (await voip.get_account_info()).account is not None


async def test_the_fake_reads_a_chunked_request_body(server: FakeTwoChatServer) -> None:
    """A body sent chunked, without a Content-Length, is read like any other."""
    channel = server.account.virtual_numbers[0]["uuid"]

    async def body() -> AsyncIterator[bytes]:
        yield b'{"hook_url": "' + HOOK.encode() + b'", '
        yield b'"channel_uuid": "' + channel.encode() + b'"}'

    url = server.base_url + "/open/webhooks/subscribe/call.status.update"
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body(), headers={"X-User-API-Key": str(server.api_key)}) as answer,
    ):
        assert answer.status == 200
        assert answer.request_info.headers["Transfer-Encoding"] == "chunked"
    assert [hook["hook_url"] for hook in server.account.webhooks] == [HOOK]
