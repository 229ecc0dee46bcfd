"""The fake 2Chat server and test data that users get in twochat_voip.testing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from twochat_voip import CallDetailRecord, VoIPClient, converter
from twochat_voip.testing import (
    DEFAULT_TEST_KEY,
    EXAMPLE_ANSWER,
    EXAMPLE_CDR,
    CallsInProgress,
    FakeTwoChatServer,
    Fault,
    PostgresServer,
    generate_cdrs,
)

pytestmark = pytest.mark.virtual_time  # timeouts, backoff and pacing in the loop's time

KEY_HEADER = {"X-User-API-Key": DEFAULT_TEST_KEY}


async def fetch(
    server: FakeTwoChatServer, path: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, dict[str, str], Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, server.base_url + path, headers=headers or KEY_HEADER) as answer,
    ):
        return answer.status, dict(answer.headers), await answer.json(content_type=None)


def test_packaged_example_matches_the_recorded_sample(example_answer: dict[str, Any]) -> None:
    """The fake serves exactly the documented example answer."""
    assert example_answer == EXAMPLE_ANSWER


def test_generated_cdrs_are_valid_varied_and_repeatable() -> None:
    """Every generated record structures; the mix has nulls; a seed repeats it."""
    records = generate_cdrs(300, seed=7)
    assert records == generate_cdrs(300, seed=7)
    assert records != generate_cdrs(300, seed=8)
    assert len({r["uuid"] for r in records}) == 300
    models = [converter.structure(r, CallDetailRecord) for r in records]
    assert [converter.unstructure(m) for m in models] == records
    statuses = {m.status for m in models}
    assert statuses == {"COMPLETED", "MISSED", "RINGING", "FAILED"}
    assert any(m.agent is None for m in models)
    assert any(m.call_cost is None for m in models)


async def test_pytest_fixture_client_works(twochat_client: VoIPClient) -> None:
    """The shipped fixtures give a working client for the example record."""
    assert (await twochat_client.get_call(EXAMPLE_CDR["uuid"])).agent is not None


async def test_base_url_needs_a_started_server() -> None:
    """Asking where an unstarted server listens is a clear error; closing it is a no-op."""
    server = FakeTwoChatServer()
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.base_url
    await server.aclose()


async def test_a_taken_port_is_an_error(twochat_server: FakeTwoChatServer) -> None:
    """Starting on a port in use raises the OSError, and leaves the server unstarted."""
    server = FakeTwoChatServer(port=int(twochat_server.base_url.rsplit(":", 1)[1]))
    with pytest.raises(OSError, match="in use"):
        await server.start()
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.base_url


async def test_authentication_like_the_gateway(twochat_server: FakeTwoChatServer) -> None:
    """No key: 403 Not authenticated; a wrong key: 401 Invalid API Key."""
    path = f"/open/voip/call/{EXAMPLE_CDR['uuid']}"
    assert (await fetch(twochat_server, path, {"X-Other": "1"}))[::2] == (
        403,
        {"detail": "Not authenticated"},
    )
    assert (await fetch(twochat_server, path, {"X-User-API-Key": "nope"}))[::2] == (
        401,
        {"detail": "Invalid API Key"},
    )


async def test_any_key_accepted_when_none_is_set() -> None:
    """api_key=None accepts whatever key is sent."""
    async with FakeTwoChatServer(api_key=None) as server:
        status, _, body = await fetch(
            server, f"/open/voip/call/{EXAMPLE_CDR['uuid']}", {"X-User-API-Key": "anything"}
        )
    assert status == 200
    assert body == EXAMPLE_ANSWER


async def test_unknown_routes_and_methods(twochat_server: FakeTwoChatServer) -> None:
    """Unknown paths 404, other methods 405, unknown calls 2Chat's 404 envelope."""
    assert (await fetch(twochat_server, "/nope"))[0] == 404
    assert (await fetch(twochat_server, "/open/voip/call/X", method="POST"))[0] == 405
    status, _, body = await fetch(twochat_server, "/open/voip/call/CDRmissing")
    assert (status, body["error_message"]) == (404, "Call not found")


async def test_faults_for_one_call_leave_others_alone() -> None:
    """fail_next(call_uuid=...) spends its faults only on that id."""
    a, b = generate_cdrs(2)
    async with FakeTwoChatServer(cdrs=[a, b]) as server:
        server.fail_next(Fault(status=500, body='{"detail": "boom"}'), call_uuid=b["uuid"])
        assert (await fetch(server, f"/open/voip/call/{a['uuid']}"))[0] == 200
        status, _, body = await fetch(server, f"/open/voip/call/{b['uuid']}")
        assert (status, body) == (500, {"detail": "boom"})
        assert [r.call_uuid for r in server.requests] == [a["uuid"], b["uuid"]]
        assert len(server.requests_for(b["uuid"])) == 1
        assert server.call_uuids == [a["uuid"], b["uuid"]]


async def test_fault_with_unusual_status_and_json_body(twochat_server: FakeTwoChatServer) -> None:
    """A fault can answer any status, with any body as JSON."""
    twochat_server.fail_next(Fault(status=599), Fault(status=418, body={"detail": "teapot"}))
    path = f"/open/voip/call/{EXAMPLE_CDR['uuid']}"
    status, _, body = await fetch(twochat_server, path)
    assert (status, body["error_message"]) == (599, "Error")
    assert (await fetch(twochat_server, path))[::2] == (418, {"detail": "teapot"})


async def test_random_faults_can_be_stopped(twochat_server: FakeTwoChatServer) -> None:
    """fail_randomly(1.0) fails everything; rate 0 stops it."""
    path = f"/open/voip/call/{EXAMPLE_CDR['uuid']}"
    twochat_server.fail_randomly(1.0, [Fault(status=502)])
    assert (await fetch(twochat_server, path))[0] == 502
    twochat_server.fail_randomly(0, [Fault(status=502)])
    assert (await fetch(twochat_server, path))[0] == 200
    assert twochat_server.status_counts == {502: 1, 200: 1}


@pytest.mark.parametrize("retry_after", [False, True])
async def test_rate_limit_answers_429(retry_after: bool) -> None:
    """Over the limit: 429 in 2Chat's envelope, with Retry-After only if asked."""
    async with FakeTwoChatServer(
        requests_per_minute=60, rate_burst=2, rate_limit_retry_after=retry_after
    ) as server:
        path = f"/open/voip/call/{EXAMPLE_CDR['uuid']}"
        answers = [await fetch(server, path) for _ in range(3)]
    assert [a[0] for a in answers] == [200, 200, 429]
    assert ("Retry-After" in answers[2][1]) is retry_after
    assert answers[2][2]["success"] is False


async def test_call_history_pages(twochat_server: FakeTwoChatServer) -> None:
    """History pages from 0, filters by direction, drops agent, ends with an empty page."""
    records = generate_cdrs(12, seed=2)
    async with FakeTwoChatServer(cdrs=records, history_page_size=5) as server:
        pages = [
            (await fetch(server, f"/open/voip/call-history?page_number={n}"))[2] for n in range(4)
        ]
        inbound = (await fetch(server, "/open/voip/call-history?direction=inbound"))[2]
        bad = await fetch(server, "/open/voip/call-history?direction=sideways")
        bad_page = await fetch(server, "/open/voip/call-history?page_number=x")
        negative = (await fetch(server, "/open/voip/call-history?page_number=-1"))[2]
    assert [len(p["cdrs"]) for p in pages] == [5, 5, 2, 0]
    assert all(p["count"] == 12 for p in pages)
    assert [c["uuid"] for p in pages for c in p["cdrs"]] == [r["uuid"] for r in records]
    assert all("agent" not in c for p in pages for c in p["cdrs"])
    assert inbound["count"] == sum(r["direction"] == "I" for r in records)
    assert bad[0] == 422
    assert bad_page[0] == 422
    assert negative["cdrs"] == []


async def test_raw_protocol_details(twochat_server: FakeTwoChatServer) -> None:
    """Connection: close is honoured, a request body is skipped, a huge head is refused
    and its connection closed."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", int(twochat_server.base_url.rsplit(":", 1)[1])
    )
    writer.write(
        b"GET /open/voip/call/" + EXAMPLE_CDR["uuid"].encode() + b" HTTP/1.1\r\n"
        b"Host: 127.0.0.1\r\nX-User-API-Key: " + DEFAULT_TEST_KEY.encode() + b"\r\n"
        b"Content-Length: 3\r\nConnection: close\r\n\r\nabc"
    )
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"Connection: close" in head
    assert json.loads(body) == EXAMPLE_ANSWER

    reader, writer = await asyncio.open_connection(
        "127.0.0.1", int(twochat_server.base_url.rsplit(":", 1)[1])
    )
    writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 20_000)
    assert (await reader.read()).startswith(b"HTTP/1.0 400 ")
    writer.close()
    await writer.wait_closed()


async def test_delayed_answer_with_connection_close(twochat_server: FakeTwoChatServer) -> None:
    """A misbehaving answer still honours Connection: close."""
    twochat_server.fail_next(Fault(delay=0.01))
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{twochat_server.base_url}/open/voip/call/{EXAMPLE_CDR['uuid']}",
            headers={**KEY_HEADER, "Connection": "close"},
        ) as answer,
    ):
        assert answer.status == 200
        assert answer.headers["Connection"] == "close"


async def test_closing_ends_hung_answers() -> None:
    """aclose() cuts connections that hang and cancels pending answers."""
    server = await FakeTwoChatServer().start()
    server.fail_next(Fault(hang=True), Fault(delay=30))
    async with aiohttp.ClientSession() as session:
        url = f"{server.base_url}/open/voip/call/{EXAMPLE_CDR['uuid']}"
        calls = [asyncio.create_task(session.get(url, headers=KEY_HEADER)) for _ in range(2)]
        await server.wait_for_requests(2)
        await server.aclose()
        results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(r, aiohttp.ClientError) for r in results)
    assert server.status_counts[None] == 1


def test_received_requests_hide_the_key_in_repr(tmp_path: Path) -> None:
    """The request log can be printed without showing the key it received."""
    from twochat_voip.testing import ReceivedRequest

    request = ReceivedRequest(
        method="GET",
        path="/open/voip/call/CDR1",
        query={},
        headers={"x-user-api-key": "sk-secret"},
        received_at=0.0,
        status=200,
    )
    assert "sk-secret" not in repr(request)
    assert request.call_uuid == "CDR1"
    assert (
        ReceivedRequest(
            method="GET", path="/x", query={}, headers={}, received_at=0, status=None
        ).call_uuid
        is None
    )


async def test_the_in_memory_transport_answers_as_the_socket_does(
    twochat_server: FakeTwoChatServer,
) -> None:
    """server.transport(): the same answers, counts and log as over 127.0.0.1; a fault
    only a socket can show is refused, saying so."""
    twochat_server.fail_next(Fault(status=503, retry_after=0))
    async with VoIPClient(
        api_key=twochat_server.api_key,
        base_url=twochat_server.base_url,
        transport=twochat_server.transport(),
        max_retries=1,
    ) as voip:
        record = await voip.get_call(EXAMPLE_CDR["uuid"])
        assert record == converter.structure(EXAMPLE_CDR, CallDetailRecord)
        assert [r.status for r in twochat_server.requests] == [503, 200]
        assert twochat_server.status_counts == {503: 1, 200: 1}
        twochat_server.fail_next(Fault(drop="mid_body"))
        with pytest.raises(ValueError, match="needs a socket"):
            await voip.get_call(EXAMPLE_CDR["uuid"])


async def test_calls_in_progress_end_after_their_asks_and_seconds(
    twochat_server: FakeTwoChatServer, make_client: Callable[..., VoIPClient]
) -> None:
    """A chosen call is in progress (no end, no cost) until asked ``asks`` times and
    ``seconds`` have passed since its first ask; then it is the record served."""
    records = generate_cdrs(40, seed=3)
    twochat_server.add_cdrs(records)
    progress = CallsInProgress(share=0.5, asks=2, seconds=30.0, seed=1)
    twochat_server.in_progress = progress
    chosen = [r for r in records if progress.chosen(r["uuid"])]
    others = [r for r in records if not progress.chosen(r["uuid"])]
    assert chosen  # about half of each
    assert others
    voip = make_client()
    call = chosen[0]["uuid"]
    for _ in range(3):  # two asks, and a third before the 30 seconds are over
        record = await voip.get_call(call)
        assert (record.status, record.active, record.end_time, record.call_cost) == (
            "ANSWERED",
            True,
            None,
            None,
        )
    await asyncio.sleep(30)
    assert await voip.get_call(call) == converter.structure(chosen[0], CallDetailRecord)
    assert await voip.get_call(others[0]["uuid"]) == converter.structure(
        others[0], CallDetailRecord
    )
    assert progress.asked == {call: 4}
    assert progress.answered_in_progress == 3


def test_calls_in_progress_are_chosen_by_seed_and_share() -> None:
    """The share chosen is about ``share``; the same seed chooses the same calls."""
    ids = [r["uuid"] for r in generate_cdrs(2000, seed=4)]
    tenth = {i for i in ids if CallsInProgress(share=0.1, seed=9).chosen(i)}
    assert 150 < len(tenth) < 250
    assert tenth == {i for i in ids if CallsInProgress(share=0.1, seed=9).chosen(i)}
    assert tenth != {i for i in ids if CallsInProgress(share=0.1, seed=10).chosen(i)}
    assert not any(CallsInProgress(share=0).chosen(i) for i in ids)
    assert all(CallsInProgress(share=1).chosen(i) for i in ids)


@pytest.mark.slow
def test_postgres_server_restarts_on_its_port_with_its_data() -> None:
    """PostgresServer.stop() then start(): the same URL, the tables it held."""
    import asyncpg

    if PostgresServer.find() is None:
        pytest.skip("PostgreSQL is not installed")

    async def query(url: str, sql: str) -> Any:
        connection = await asyncpg.connect(url)
        try:
            return await connection.fetchval(sql)
        finally:
            await connection.close()

    with PostgresServer() as postgres:
        asyncio.run(query(postgres.url, "CREATE TABLE kept AS SELECT 42 AS answer"))
        postgres.stop()
        with pytest.raises(OSError, match=r"refused|Connect"):
            asyncio.run(query(postgres.url, "SELECT 1"))
        assert postgres.start() is postgres
        assert postgres.start() is postgres  # already running: nothing to do
        assert asyncio.run(query(postgres.url, "SELECT answer FROM kept")) == 42


async def test_a_call_that_ends_is_served_final() -> None:
    """complete_call ends a ringing call: the record served afterwards is final."""
    records = generate_cdrs(1, seed=3)
    records[0].update(status="RINGING", active=True)
    async with FakeTwoChatServer(cdrs=records) as server:
        client = VoIPClient(
            api_key=server.api_key, base_url=server.base_url, transport=server.transport()
        )
        async with client:
            assert not (await client.get_call(records[0]["uuid"])).is_final
            await server.complete_call(records[0]["uuid"])
            assert (await client.get_call(records[0]["uuid"])).is_final
