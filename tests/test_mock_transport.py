"""The transport seam: a client over MockTransport, with no socket at all."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import aiohttp
import pytest

import twochat_voip as tv
from twochat_voip import Request, Response, VoIPClient, set_testing
from twochat_voip.testing import EXAMPLE_ANSWER, EXAMPLE_CDR, MockTransport

pytestmark = pytest.mark.virtual_time  # timeouts, backoff and pacing in the loop's time

CALL = EXAMPLE_CDR["uuid"]
BASE = "https://api.p.2chat.io"
RECORD = Response(200, {"Content-Type": "application/json"}, json.dumps(EXAMPLE_ANSWER).encode())


def client(transport: MockTransport, **options: object) -> VoIPClient:
    return VoIPClient(api_key="test-key", transport=transport, **options)  # type: ignore[arg-type]


async def test_a_call_goes_through_the_transport() -> None:
    """get_call sends one GET, with the key, to the record's URL, and reads the answer."""
    transport = MockTransport(lambda request: RECORD)
    async with client(transport) as voip:
        cdr = await voip.get_call(CALL)
    assert cdr.uuid == CALL
    (request,) = transport.requests
    assert (request.method, request.url) == ("GET", f"{BASE}/open/voip/call/{CALL}")
    assert request.headers["X-User-API-Key"] == "test-key"


async def test_an_async_handler_is_awaited() -> None:
    """A handler may be a coroutine function."""

    async def handler(request: Request) -> Response:
        return RECORD

    async with client(MockTransport(handler)) as voip:
        assert (await voip.get_call(CALL)).uuid == CALL


async def test_a_same_origin_redirect_is_followed_and_paid_for() -> None:
    """The client, not the transport, follows a redirect: both requests are credits."""
    moved = Response(307, {"Location": f"/v2/open/voip/call/{CALL}"}, b"")

    def handler(request: Request) -> Response:
        return RECORD if "/v2/" in request.url else moved

    transport = MockTransport(handler)
    async with client(transport) as voip:
        assert (await voip.get_call(CALL)).uuid == CALL
        assert voip.stats.requests == 2
    assert transport.requests[1].url == f"{BASE}/v2/open/voip/call/{CALL}"


async def test_a_redirect_to_another_origin_is_refused_unsent() -> None:
    """The key would go with it: RedirectError, and nothing sent to the other host."""
    transport = MockTransport(lambda request: Response(302, {"Location": "https://evil/"}, b""))
    async with client(transport, max_retries=0) as voip:
        with pytest.raises(tv.RedirectError, match="another origin"):
            await voip.get_call(CALL)
    assert [r.url for r in transport.requests] == [f"{BASE}/open/voip/call/{CALL}"]


async def test_a_redirect_needs_the_budget() -> None:
    """With one request left, the redirect's request is refused by the budget."""
    moved = Response(301, {"Location": "/elsewhere"}, b"")
    async with client(MockTransport(lambda request: moved), max_requests=1) as voip:
        with pytest.raises(tv.BudgetExhaustedError):
            await voip.get_call(CALL)
        assert voip.stats.requests == 1


async def test_a_request_that_never_connected_costs_nothing() -> None:
    """An APIConnectionError with sent=False is retried and not counted as a credit."""
    answers: Iterator[Response | Exception] = iter(
        [tv.APIConnectionError("refused", sent=False), RECORD]
    )

    def handler(request: Request) -> Response:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    with set_testing(True, attempts=2):
        async with client(MockTransport(handler)) as voip:
            assert (await voip.get_call(CALL)).uuid == CALL
            assert voip.stats.requests == 1
            assert voip.stats.retries == 1


async def test_closing_the_client_closes_its_transport() -> None:
    """The client owns the transport it was given, as httpx's does."""
    closed: list[bool] = []

    class Closing(MockTransport):
        async def aclose(self) -> None:
            closed.append(True)

    async with client(Closing(lambda request: RECORD)):
        pass
    assert closed == [True]


async def test_a_transport_excludes_the_aiohttp_options() -> None:
    """session=, trace_configs= and max_response_size= are aiohttp's transport's."""
    transport = MockTransport(lambda request: RECORD)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ValueError, match="not both"):
            VoIPClient(api_key="k", transport=transport, session=session)
    with pytest.raises(ValueError, match="not both"):
        VoIPClient(api_key="k", transport=transport, trace_configs=[])
    with pytest.raises(ValueError, match="max_response_size"):
        VoIPClient(api_key="k", transport=transport, max_response_size=10)


async def test_a_redirected_post_is_not_sent_again() -> None:
    """A subscription (a POST with a body) is not followed: the server may have acted."""
    moved = Response(307, {"Location": "/open/webhooks/again"}, b"")
    transport = MockTransport(lambda request: moved)
    async with client(transport, max_retries=0) as voip:
        with pytest.raises(tv.RedirectError, match="POST was redirected"):
            await voip.subscribe_webhook(
                "call.status.update", hook_url="https://example.org/hook", channel_uuid="DID1"
            )
    assert len(transport.requests) == 1


@pytest.mark.parametrize("location", ["http://[bad", "http://127.0.0.1:99999/x", "//h:abc/"])
async def test_an_unreadable_location_is_a_redirect_error(location: str) -> None:
    """A Location that is no URL is refused as a RedirectError, not a raw ValueError."""
    moved = Response(302, {"Location": location}, b"")
    async with client(MockTransport(lambda request: moved), max_retries=0) as voip:
        with pytest.raises(tv.RedirectError, match="unreadable Location"):
            await voip.get_call(CALL)


async def test_headers_are_read_whatever_their_case() -> None:
    """A handler's plain-dict headers are HTTP headers: `location` is a Location."""
    moved = Response(307, {"location": "/v2/x"}, b"")
    transport = MockTransport(lambda request: RECORD if "/v2/" in request.url else moved)
    async with client(transport) as voip:
        assert (await voip.get_call(CALL)).uuid == CALL
    assert len(transport.requests) == 2


async def test_a_handler_must_return_a_response() -> None:
    """A handler that returns something else is told so, by name."""
    async with client(MockTransport(lambda request: None), max_retries=0) as voip:  # type: ignore[arg-type,return-value]
        with pytest.raises(TypeError, match="returns a Response, not NoneType"):
            await voip.get_call(CALL)


async def test_a_fetch_cancelled_from_inside_is_still_an_answer() -> None:
    """Every id is answered once, even one whose fetch ends cancelled by something
    other than the run (a transport raising CancelledError)."""

    def handler(request: Request) -> Response:
        if request.url.endswith("/CDR3"):
            raise asyncio.CancelledError
        return RECORD

    async with client(MockTransport(handler)) as voip:
        ids = [f"CDR{n}" for n in range(8)]
        results = [r async for r in voip.get_calls(ids, concurrency=2)]
    assert sorted(r.call_uuid for r in results) == sorted(ids)
    (cancelled,) = [r for r in results if r.call_uuid == "CDR3"]
    assert not cancelled.ok
    assert "cancelled" in str(cancelled.error)


async def test_a_bug_raising_valueerror_is_no_verdict_on_the_id() -> None:
    """A plain ValueError from below is a bug, told as one (with its cause), not taken
    for "no such record"."""

    def handler(request: Request) -> Response:
        raise ValueError("a bug")

    async with client(MockTransport(handler)) as voip:
        (result,) = [r async for r in voip.get_calls(["CDR1"])]
    assert isinstance(result.error, tv.TwoChatError)
    assert "unexpected ValueError" in str(result.error)
    assert isinstance(result.error.__cause__, ValueError)
