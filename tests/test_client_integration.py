"""VoIPClient against the fake 2Chat server on 127.0.0.1: retries, timeouts, drops,
redirects, size caps, concurrency, sessions, and the key's safety."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import aiohttp
import pytest

import twochat_voip as tv
from twochat_voip import VoIPClient, set_testing
from twochat_voip.testing import EXAMPLE_CDR, FakeTwoChatServer, Fault, generate_cdrs

pytestmark = pytest.mark.virtual_time  # timeouts, backoff and pacing in the loop's time

CALL = EXAMPLE_CDR["uuid"]
MakeClient = Callable[..., VoIPClient]


def gaps(server: FakeTwoChatServer) -> list[float]:
    """Seconds between the record requests the server received (the plan question an
    adaptive client asks at its first 429 left out)."""
    times = [r.received_at for r in server.requests if r.call_uuid is not None]
    return [b - a for a, b in itertools.pairwise(times)]


def retries_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The client's "retrying ..." log lines: each says what the retry waits for."""
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("retrying GET ")]


def backoffs_logged(caplog: pytest.LogCaptureFixture) -> list[float]:
    """The backoffs the retry policy chose, as logged ("... in 0.37 s ...")."""
    return [float(m.split(" in ", 1)[1].split(" s ", 1)[0]) for m in retries_logged(caplog)]


async def test_get_call_returns_the_record(twochat_client: VoIPClient) -> None:
    """The documented example comes back typed, with its exact price."""
    record = await twochat_client.get_call(CALL)
    assert record == tv.converter.structure(EXAMPLE_CDR, tv.CallDetailRecord)
    assert record.call_cost is not None
    assert str(record.call_cost.call_price) == "0.0594"


async def test_retries_until_success_with_backoff(
    twochat_server: FakeTwoChatServer, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    """503, 502 then 200: three attempts, each wait within its jittered backoff."""
    caplog.set_level(logging.INFO, logger="twochat_voip")
    twochat_server.fail_next(Fault(status=503), Fault(status=502))
    record = await make_client().get_call(CALL)
    assert record.uuid == CALL
    assert [r.status for r in twochat_server.requests] == [503, 502, 200]
    # The backoffs chosen lie in their jitter ranges (the upper half of 0.5 s, 1 s)...
    first_backoff, second_backoff = backoffs_logged(caplog)
    assert 0.25 <= first_backoff <= 0.5
    assert 0.5 <= second_backoff <= 1.0
    # ...and were really waited (logged to 10 ms) before each retry reached the server.
    first, second = gaps(twochat_server)
    assert first >= first_backoff - 0.005
    assert second >= second_backoff - 0.005


async def test_gives_up_after_max_retries(
    twochat_server: FakeTwoChatServer, make_client: MakeClient
) -> None:
    """max_retries=2: three attempts, then the last error."""
    twochat_server.fail_next(*[Fault(status=500)] * 5)
    # Testing mode drops the backoff; its cap (10) is above max_retries, which rules.
    with set_testing(True, attempts=10), pytest.raises(tv.ServerError) as caught:
        await make_client(max_retries=2).get_call(CALL)
    assert caught.value.status_code == 500
    assert len(twochat_server.requests) == 3


async def test_max_retries_zero_makes_one_attempt(
    twochat_server: FakeTwoChatServer, make_client: MakeClient
) -> None:
    """Retrying can be turned off per client."""
    twochat_server.fail_next(Fault(status=503))
    with pytest.raises(tv.ServerError):
        await make_client(max_retries=0).get_call(CALL)
    assert len(twochat_server.requests) == 1


@pytest.mark.parametrize("status", [400, 401, 402, 403, 404, 422, 486])
async def test_final_statuses_are_not_retried(
    twochat_server: FakeTwoChatServer, make_client: MakeClient, status: int
) -> None:
    """A final answer costs one credit, not four."""
    twochat_server.fail_next(Fault(status=status))
    with pytest.raises(tv.APIStatusError):
        await make_client().get_call(CALL)
    assert len(twochat_server.requests) == 1


async def test_retry_after_seconds_is_honoured(
    twochat_server: FakeTwoChatServer, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    """429 with Retry-After: 1 waits a second, not the 0.5 s backoff."""
    caplog.set_level(logging.INFO, logger="twochat_voip")
    twochat_server.fail_next(Fault(status=429, retry_after=1))
    await make_client().get_call(CALL)
    # The retry waits for the Retry-After alone (no backoff on top of it)...
    (retry,) = retries_logged(caplog)
    assert "after the server's Retry-After of 1.00 s" in retry
    # ...and it was waited out before the retry reached the server.
    (gap,) = gaps(twochat_server)
    assert gap >= 1.0


async def test_retry_after_http_date_is_honoured(
    twochat_server: FakeTwoChatServer, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Retry-After as an HTTP-date is waited out too."""
    caplog.set_level(logging.INFO, logger="twochat_voip")
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    twochat_server.fail_next(Fault(status=503, retry_after=format_datetime(when, usegmt=True)))
    await make_client().get_call(CALL)
    # The date, two whole seconds on from a time cut to the second, is 1-2 s away;
    # the retry waits for it alone (no backoff on top of it).
    (retry,) = retries_logged(caplog)
    waited = float(retry.split("Retry-After of ", 1)[1].split(" s", 1)[0])
    assert 1.0 <= waited <= 2.0
    (gap,) = gaps(twochat_server)
    assert gap >= waited - 0.005


async def test_too_long_retry_after_raises_at_once(
    twochat_server: FakeTwoChatServer, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A wait beyond max_retry_wait is not slept through: RateLimitError now."""
    caplog.set_level(logging.DEBUG, logger="twochat_voip")
    twochat_server.fail_next(Fault(status=429, retry_after=3600))
    # Sleeping through it would take an hour: the timeout only turns that into a
    # failure instead of a hang.
    async with asyncio.timeout(10):
        with pytest.raises(tv.RateLimitError) as caught:
            await make_client(max_retry_wait=60).get_call(CALL)
    assert retries_logged(caplog) == []  # no retry was planned, so no wait either
    assert caught.value.retry_after == 3600
    assert len(twochat_server.requests) == 1


async def test_too_long_retry_after_on_a_retry_stops_there(
    twochat_server: FakeTwoChatServer, make_client: MakeClient
) -> None:
    """The same holds when the long Retry-After comes on a later attempt."""
    twochat_server.fail_next(Fault(status=503), Fault(status=429, retry_after=900))
    with pytest.raises(tv.RateLimitError):
        await make_client(max_retry_wait=10).get_call(CALL)
    assert len(twochat_server.requests) == 2


@pytest.mark.socket  # aiohttp's timeouts, drops and decoding
async def test_timeout_is_per_attempt(
    twochat_server: FakeTwoChatServer, make_client: MakeClient
) -> None:
    """Each attempt gets the whole timeout: two slow attempts, then a fast success."""
    twochat_server.fail_next(Fault(delay=0.5), Fault(delay=0.5))
    with set_testing(True, attempts=3):
        record = await make_client(timeout=0.3).get_call(CALL)
    assert record.uuid == CALL
    assert len(twochat_server.requests) == 3


@pytest.mark.socket  # aiohttp's timeouts, drops and decoding
async def test_timeout_ends_in_api_timeout_error(
    twochat_server: FakeTwoChatServer, make_client: MakeClient
) -> None:
    """A server slower than the timeout gives APITimeoutError, promptly."""
    twochat_server.fail_next(Fault(delay=30))
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(tv.APITimeoutError):
        await make_client(timeout=0.2, max_retries=0).get_call(CALL)
    assert loop.time() - started == pytest.approx(0.2)  # in the loop's time: exactly


async def test_call_timeout_overrides_client_timeout(
    twochat_server: FakeTwoChatServer, make_client: MakeClient
) -> None:
    """get_call(timeout=...) gives a slow call the time it needs."""
    twochat_server.fail_next(Fault(delay=0.4))
    record = await make_client(timeout=0.1, max_retries=0).get_call(CALL, timeout=2)
    assert record.uuid == CALL


@pytest.mark.socket  # aiohttp's timeouts, drops and decoding
async def test_trickling_server_times_out(
    twochat_server: FakeTwoChatServer, make_client: MakeClient
) -> None:
    """A server that sends a byte at a time, slower than the timeout, is cut off."""
    twochat_server.fail_next(Fault(trickle=0.01))
    with pytest.raises(tv.APITimeoutError):
        await make_client(timeout=0.3, max_retries=0).get_call(CALL)


@pytest.mark.socket  # aiohttp's timeouts, drops and decoding
async def test_hanging_server_times_out(
    twochat_server: FakeTwoChatServer, make_client: MakeClient
) -> None:
    """A server that accepts and never answers is cut off at the timeout."""
    twochat_server.fail_next(Fault(hang=True))
    with pytest.raises(tv.APITimeoutError):
        await make_client(timeout=0.2, max_retries=0).get_call(CALL)


@pytest.mark.socket  # aiohttp's timeouts, drops and decoding
@pytest.mark.parametrize("where", ["before_status", "mid_headers", "mid_body"])
async def test_dropped_connection_is_retried(
    twochat_server: FakeTwoChatServer, make_client: MakeClient, where: str
) -> None:
    """A connection cut anywhere in the answer is retried, then succeeds."""
    twochat_server.fail_next(Fault(drop=where))  # type: ignore[arg-type]
    with set_testing(True, attempts=2):
        assert (await make_client().get_call(CALL)).uuid == CALL
    assert len(twochat_server.requests) == 2


@pytest.mark.socket  # aiohttp's timeouts, drops and decoding
@pytest.mark.parametrize("where", ["before_status", "mid_headers", "mid_body"])
async def test_dropped_connection_without_retries(
    twochat_server: FakeTwoChatServer, make_client: MakeClient, where: str
) -> None:
    """With no retries left, a cut connection is an APIConnectionError, chained."""
    twochat_server.fail_next(Fault(drop=where))  # type: ignore[arg-type]
    with pytest.raises(tv.APIConnectionError) as caught:
        await make_client(max_retries=0).get_call(CALL)
    assert not isinstance(caught.value, tv.APITimeoutError)
    assert isinstance(caught.value.__cause__, aiohttp.ClientError)


async def test_connection_refused(make_client: MakeClient) -> None:
    """Nobody listening: APIConnectionError after the retries."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = make_client(base_url=f"http://127.0.0.1:{port}")
    with (
        set_testing(True, attempts=2),
        pytest.raises(tv.APIConnectionError, match=r"connection refused.* after 2 attempts"),
    ):
        await client.get_call(CALL)


@pytest.mark.parametrize("own_session", [True, False])
async def test_each_header_is_sent_once(own_session: bool, example_answer: dict[str, Any]) -> None:
    """The client's own session sends the key, Accept and User-Agent itself; a
    caller's session gets them with each request. Either way each goes out once, as
    the raw request head on the socket shows."""
    heads: list[bytes] = []
    body = json.dumps(example_answer).encode()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with (
            aiohttp.ClientSession() as session,
            VoIPClient(
                api_key="sk-once",
                base_url=f"http://127.0.0.1:{port}",
                session=None if own_session else session,
            ) as voip,
        ):
            assert (await voip.get_call(CALL)).uuid == CALL
    finally:
        server.close()
        await server.wait_closed()
    (head,) = heads
    lines = [line.lower() for line in head.decode().split("\r\n")]
    for name in ("x-user-api-key", "accept", "user-agent"):
        assert sum(line.startswith(name + ":") for line in lines) == 1, (name, lines)
    assert "x-user-api-key: sk-once" in lines


async def test_same_origin_redirect_is_followed(
    twochat_server: FakeTwoChatServer, make_client: MakeClient
) -> None:
    """A redirect within the API's origin is followed, key and all."""
    twochat_server.fail_next(Fault(status=307, headers={"Location": f"/open/voip/call/{CALL}"}))
    assert (await make_client().get_call(CALL)).uuid == CALL
    assert [r.status for r in twochat_server.requests] == [307, 200]
    assert all(r.headers["x-user-api-key"] for r in twochat_server.requests)


async def test_redirect_to_another_origin_is_not_followed(
    twochat_server: FakeTwoChatServer, make_client: MakeClient
) -> None:
    """The other host (another port here) never sees a request, let alone the key."""
    async with FakeTwoChatServer(api_key=None) as elsewhere:
        location = f"{elsewhere.base_url}/open/voip/call/{CALL}"
        twochat_server.fail_next(Fault(status=302, headers={"Location": location}))
        with pytest.raises(tv.RedirectError, match="another origin"):
            await make_client().get_call(CALL)
        assert elsewhere.requests == []
    assert len(twochat_server.requests) == 1


@pytest.mark.parametrize(
    "location", ["https://127.0.0.1/steal", "ftp://127.0.0.1/x", "javascript:alert(1)"]
)
async def test_redirect_to_other_schemes_is_not_followed(
    twochat_server: FakeTwoChatServer, make_client: MakeClient, location: str
) -> None:
    """An upgrade, downgrade or non-HTTP scheme is another origin too."""
    twochat_server.fail_next(Fault(status=301, headers={"Location": location}))
    with pytest.raises(tv.RedirectError):
        await make_client().get_call(CALL)


async def test_redirect_loop_ends(
    twochat_server: FakeTwoChatServer, make_client: MakeClient
) -> None:
    """A loop of redirects ends in RedirectError after a handful of hops."""
    twochat_server.fail_next(
        *[Fault(status=302, headers={"Location": f"/open/voip/call/{CALL}"})] * 20
    )
    with pytest.raises(tv.RedirectError, match="more than 5 redirects"):
        await make_client().get_call(CALL)
    assert len(twochat_server.requests) == 6


@pytest.mark.parametrize("chunked", [False, True])
async def test_oversized_answer_is_refused(
    twochat_server: FakeTwoChatServer, make_client: MakeClient, chunked: bool
) -> None:
    """An answer over the cap is refused whether or not it declared its length."""
    twochat_server.fail_next(Fault(body=b"x" * 5000, chunked=chunked))
    with pytest.raises(tv.ResponseValidationError, match="larger than the 1000-byte cap"):
        await make_client(max_response_size=1000).get_call(CALL)


@pytest.mark.socket  # aiohttp's timeouts, drops and decoding
async def test_compressed_bomb_is_capped(
    twochat_server: FakeTwoChatServer, make_client: MakeClient
) -> None:
    """A small gzip body that inflates past the cap is refused as it inflates."""
    twochat_server.fail_next(Fault(body=b" " * 3_000_000, gzip=True))
    with pytest.raises(tv.ResponseValidationError, match="cap"):
        await make_client().get_call(CALL)


@pytest.mark.socket  # aiohttp's timeouts, drops and decoding
@pytest.mark.parametrize(
    "fault",
    [Fault(gzip=True), Fault(chunked=True), Fault(content_type="text/html"), Fault(trickle=0.0001)],
)
@pytest.mark.slow
async def test_unusual_but_valid_answers_are_read(
    twochat_server: FakeTwoChatServer, make_client: MakeClient, fault: Fault
) -> None:
    """gzip, chunked, a wrong Content-Type: the JSON body is what counts."""
    twochat_server.fail_next(fault)
    assert (await make_client().get_call(CALL)).uuid == CALL


async def test_non_utf8_body_is_a_validation_error(
    twochat_server: FakeTwoChatServer, make_client: MakeClient
) -> None:
    """Bytes that are not UTF-8 JSON are a ResponseValidationError."""
    twochat_server.fail_next(Fault(body=b'{"success": true, "cdr": {"uuid": "\xff"}}'))
    with pytest.raises(tv.ResponseValidationError, match="not JSON"):
        await make_client().get_call(CALL)


@pytest.mark.slow
async def test_one_client_serves_many_tasks(make_client: MakeClient) -> None:
    """200 concurrent get_calls on one client, with faults sprinkled: all right."""
    records = generate_cdrs(200, seed=3)
    async with FakeTwoChatServer(cdrs=records) as server:
        server.fail_randomly(0.1, [Fault(status=503), Fault(drop="mid_body")], seed=1)
        client = make_client(api_key=server.api_key, base_url=server.base_url)
        with set_testing(True, attempts=6):
            got = await asyncio.gather(*(client.get_call(r["uuid"]) for r in records))
    assert [g.uuid for g in got] == [r["uuid"] for r in records]
    assert [tv.converter.unstructure(g) for g in got] == records


async def test_injected_session_is_shared_and_left_open(twochat_server: FakeTwoChatServer) -> None:
    """A web app's session does the work and stays open after the client closes,
    even with raise_for_status=True set on it."""
    async with aiohttp.ClientSession(raise_for_status=True) as session:
        async with VoIPClient(
            api_key=twochat_server.api_key, base_url=twochat_server.base_url, session=session
        ) as voip:
            assert (await voip.get_call(CALL)).uuid == CALL
            twochat_server.fail_next(Fault(status=404))
            with pytest.raises(tv.NotFoundError):
                await voip.get_call(CALL)
        assert not session.closed
        url = f"{twochat_server.base_url}/open/voip/call/{CALL}"
        async with session.get(url, raise_for_status=False) as answer:
            assert answer.status == 403  # the session works, and carries no key of ours


async def test_closing_fails_calls_in_flight(
    twochat_server: FakeTwoChatServer, make_client: MakeClient
) -> None:
    """aclose() while a call waits ends that call with ClientClosedError."""
    twochat_server.fail_next(Fault(delay=5))
    client = make_client()
    call = asyncio.create_task(client.get_call(CALL))
    await twochat_server.wait_for_requests(1)
    await client.aclose()
    with pytest.raises(tv.ClientClosedError, match="in flight"):
        await call


async def test_wrong_key_is_authentication_error(
    twochat_server: FakeTwoChatServer, make_client: MakeClient
) -> None:
    """The gateway's 401 envelope becomes AuthenticationError with its message."""
    with pytest.raises(tv.AuthenticationError, match="Invalid API Key"):
        await make_client(api_key="wrong").get_call(CALL)


async def test_unknown_call_is_not_found(make_client: MakeClient) -> None:
    """An id the server does not have is NotFoundError."""
    with pytest.raises(tv.NotFoundError, match="Call not found"):
        await make_client().get_call("CDR00000000-0000-4000-8000-000000000000")


def _texts_of(error: BaseException) -> list[str]:
    """Every text an exception chain exposes: str, repr, args, attributes, causes."""
    texts = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts += [str(current), repr(current), repr(current.args), repr(vars(current))]
        current = current.__cause__ or current.__context__
    return texts


async def test_key_never_leaks(caplog: pytest.LogCaptureFixture) -> None:
    """Not in reprs, logs at DEBUG, errors or their causes, whatever goes wrong."""
    key = "sk-LEAKCHECK-9f8e7d6c5b4a"
    caplog.set_level(logging.DEBUG)
    async with FakeTwoChatServer(api_key=key) as server:
        server.fail_next(
            Fault(status=503),
            Fault(drop="mid_headers"),
            Fault(status=429, retry_after=0),
            Fault(delay=1),
            Fault(status=404),
            Fault(body=b"not json"),
            Fault(status=302, headers={"Location": "https://elsewhere.example/"}),
        )
        errors: list[BaseException] = []
        with set_testing(True, attempts=4):
            voip = VoIPClient(api_key=key, base_url=server.base_url, timeout=0.3)
            assert key not in repr(voip)
            for _ in range(4):
                try:
                    await voip.get_call(CALL)
                except tv.TwoChatError as exc:
                    errors.append(exc)
            await voip.aclose()
    assert [type(e) for e in errors] == [
        tv.APITimeoutError,
        tv.NotFoundError,
        tv.ResponseValidationError,
        tv.RedirectError,
    ]
    for error in errors:
        for text in _texts_of(error):
            assert key not in text
    assert caplog.records, "retries should have been logged"
    for record in caplog.records:
        assert key not in record.getMessage()
    assert all(r.headers["x-user-api-key"] == key for r in server.requests)
    assert key not in repr(server.requests)


async def test_unreadable_retry_after_falls_back_to_backoff(
    twochat_server: FakeTwoChatServer, make_client: MakeClient
) -> None:
    """A Retry-After that is neither seconds nor a date is ignored: normal backoff."""
    twochat_server.fail_next(Fault(status=503, retry_after="whenever"))
    await make_client().get_call(CALL)
    (gap,) = gaps(twochat_server)
    assert 0.25 <= gap < 0.75


async def test_stats_count_what_was_spent(
    twochat_server: FakeTwoChatServer, make_client: MakeClient
) -> None:
    """Requests, 429s, retries and outcomes are counted per client."""
    twochat_server.fail_next(Fault(status=429), Fault(status=503))
    client = make_client()
    with set_testing(True, attempts=4):
        await client.get_call(CALL)
        twochat_server.fail_next(Fault(status=404))
        with pytest.raises(tv.NotFoundError):
            await client.get_call(CALL)
    assert client.stats == tv.ClientStats(
        requests=4, rate_limited=1, retries=2, succeeded=1, failed=1
    )
