"""The transport: request URLs built cheaply (the same as yarl's own parse), and
connection failures told in the SDK's words, against sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import ssl
import time
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey

from twochat_voip import (
    APIConnectionError,
    APITimeoutError,
    ResponseValidationError,
    RetryPolicy,
    VoIPClient,
)
from twochat_voip._transport import _connect_failure, _describe

pytestmark = pytest.mark.virtual_time  # timeouts, backoff and pacing in the loop's time


KEY = "sk-TRANSPORT-LEAKCHECK-0123456789"
QUICK_RETRIES = RetryPolicy(max_retries=3, initial_wait=0.01, max_backoff=0.02)
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def raw_server(handle: Handler) -> AsyncIterator[int]:
    """A TCP server on 127.0.0.1 that answers with ``handle``; yields its port."""
    writers: list[asyncio.StreamWriter] = []

    async def handle_and_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        try:
            await handle(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(handle_and_close, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()
        for writer in writers:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (connecting is refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def fail(base_url: str, **options: object) -> APIConnectionError:
    """The error ``get_call`` ends with against ``base_url``."""
    async with VoIPClient(api_key=KEY, base_url=base_url, **options) as voip:  # type: ignore[arg-type]
        with pytest.raises(APIConnectionError) as caught:
            await voip.get_call("CDR1")
    error = caught.value
    assert KEY not in str(error)
    assert "aiohttp" not in str(error)
    assert "Client" not in str(error)
    assert "ssl:default" not in str(error)
    # (not chained only where aiohttp's exception holds the request's headers)
    assert isinstance(error.__cause__, aiohttp.ClientError | TimeoutError | None)
    return error


async def test_refused_connection_names_the_host_the_attempts_and_the_time() -> None:
    """A refused connection says where, why, how many attempts and how long, and
    keeps aiohttp's exception as its cause."""
    port = free_port()
    error = await fail(f"http://127.0.0.1:{port}", retry_policy=QUICK_RETRIES)
    assert re.fullmatch(
        rf"could not connect to 127\.0\.0\.1:{port} \(connection refused\) "
        r"after 4 attempts within \d+ ms",
        str(error),
    ), str(error)
    assert isinstance(error.__cause__, aiohttp.ClientConnectorError)
    assert error.attempts == 4
    assert error.elapsed is not None
    assert 0 < error.elapsed < 5


async def test_timeout_says_timed_out_after_its_attempts_and_their_time() -> None:
    """A server that never answers: 'timed out', each attempt's limit, 4 attempts, and
    at least their sum elapsed."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up and closes
        writer.close()

    async with raw_server(silent) as port:
        error = await fail(f"http://127.0.0.1:{port}", retry_policy=QUICK_RETRIES, timeout=0.1)
    assert isinstance(error, APITimeoutError)
    assert re.fullmatch(
        rf"no complete answer from 127\.0\.0\.1:{port} \(timed out: 0\.1 s an attempt\) "
        r"after 4 attempts within \d+ ms",
        str(error),
    ), str(error)
    assert error.elapsed is not None
    assert error.elapsed >= 0.4


@asynccontextmanager
async def stalled_listener() -> AsyncIterator[int]:
    """A port on 127.0.0.1 whose listen backlog is full: a connection to it is never
    made (its SYNs are dropped), as with a host that blackholes them."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port: int = listener.getsockname()[1]
        fillers = []
        try:
            for _ in range(8):
                filler = socket.socket()
                filler.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    filler.connect(("127.0.0.1", port))
                fillers.append(filler)
            await asyncio.sleep(0.1)
            yield port
        finally:
            for filler in fillers:
                filler.close()


async def test_a_connection_never_made_is_could_not_connect_and_costs_nothing() -> None:
    """A connect that stalls ends the attempt as "could not connect" (not "no complete
    answer"), and, nothing having been written, costs no request of the budget."""
    async with (
        stalled_listener() as port,
        VoIPClient(
            api_key=KEY,
            base_url=f"http://127.0.0.1:{port}",
            timeout=0.5,
            max_requests=10,
            retry_policy=QUICK_RETRIES,
        ) as voip,
    ):
        with pytest.raises(APITimeoutError) as caught:
            await voip.get_call("CDR1")
        assert voip.stats.requests == 0
    assert re.fullmatch(
        rf"could not connect to 127\.0\.0\.1:{port} \(timed out: 0\.45 s to connect\) "
        r"after 4 attempts within [\d.]+ m?s",
        str(caught.value),
    ), str(caught.value)


def answering(raw: bytes, *, read_request: bool = True) -> Handler:
    """A handler that (after the request's head) writes ``raw`` and closes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if read_request:
            await reader.readuntil(b"\r\n\r\n")
        writer.write(raw)
        await writer.drain()
        writer.close()

    return handle


_close_at_once = answering(b"")
_cut_off = answering(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"cdr"')
_not_http = answering(b"HTXP/1.1 200 OK\r\n\r\n")
_bad_gzip = answering(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\nnope")
_plain_to_tls = answering(b"HTTP/1.1 400 Bad Request\r\n\r\n", read_request=False)  # to a TLS hello


@pytest.mark.parametrize(
    ("handle", "scheme", "said"),
    [
        (_close_at_once, "http", "connection dropped: {where} closed it before the answer"),
        (_cut_off, "http", "connection dropped: the answer from {where} was cut off"),
        (_not_http, "http", "the answer from {where} is not valid HTTP (bad status line)"),
        (_bad_gzip, "http", "the answer from {where} could not be decompressed ("),
        (_plain_to_tls, "https", "could not connect to {where} (TLS handshake failed: "),
    ],
)
async def test_failures_after_connecting_are_told_plainly(
    handle: Handler, scheme: str, said: str
) -> None:
    """Dropped, cut off, not HTTP, undecodable, not TLS: each says what and where."""
    async with raw_server(handle) as port:
        error = await fail(f"{scheme}://127.0.0.1:{port}", max_retries=0)
    assert str(error).startswith(said.format(where=f"127.0.0.1:{port}")), str(error)
    assert str(error).endswith(" after 1 attempt within " + str(error).rsplit(" within ")[1])


def _key(port: int = 443) -> ConnectionKey:
    blank = ConnectionKey._make([None] * len(ConnectionKey._fields))  # fields vary by version
    return blank._replace(host="api.example", port=port, is_ssl=True, ssl=True)


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (
            aiohttp.ClientConnectorDNSError(_key(), socket.gaierror(-2, "Name or service unknown")),
            "the host name could not be resolved: name or service unknown",
        ),
        (
            aiohttp.ClientConnectorCertificateError(
                _key(), ssl.SSLCertVerificationError(1, "certificate verify failed")
            ),
            "TLS certificate not accepted: ",
        ),
        (
            aiohttp.ClientConnectorError(_key(), OSError(101, "Network is unreachable")),
            "network is unreachable",
        ),
    ],
)
def test_connect_failures_read_as_words(error: aiohttp.ClientConnectorError, said: str) -> None:
    """DNS, certificate and other connect failures are named without aiohttp's words."""
    words = _connect_failure(error)
    assert words.startswith(said)
    assert "Client" not in words
    assert "ssl:" not in words


BOMB_MB = 4096
"""What the bomb inflates to, in MB (4 GB), from about 4 MB on the wire."""


async def _gzip_bomb(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A 200 whose gzip body inflates to :data:`BOMB_MB` MB of zeros, built as it is
    sent: one MB of zeros compressed once, then the same bytes again and again (after
    a full flush the compressor starts afresh, so each MB compresses alike)."""
    await reader.readuntil(b"\r\n\r\n")
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 31)
    first = squeeze.compress(bytes(1 << 20)) + squeeze.flush(zlib.Z_FULL_FLUSH)
    again = squeeze.compress(bytes(1 << 20)) + squeeze.flush(zlib.Z_FULL_FLUSH)
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Content-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    with contextlib.suppress(ConnectionError):  # the client hangs up: the point
        for megabyte in range(BOMB_MB):
            chunk = first if megabyte == 0 else again
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await writer.drain()


async def test_a_gzip_bomb_is_refused_quickly_in_bounded_memory() -> None:
    """A loopback server's ~4 MB gzip answer that inflates to 4 GB: refused as it
    passes the size cap, within seconds, the memory it took a small fraction of the
    inflated size (aiohttp before 3.13.3 inflated a gzip answer without a cap). The
    loop's clock stands still while it works: the time asserted is the machine's CPU."""
    async with raw_server(_gzip_bomb) as port:
        tracemalloc.start()
        started = time.process_time()
        try:
            async with VoIPClient(
                api_key=KEY, base_url=f"http://127.0.0.1:{port}", max_retries=0
            ) as voip:
                with pytest.raises(ResponseValidationError, match="larger than the 1048576-byte"):
                    await voip.get_call("CDR1")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        took = time.process_time() - started
    assert took < 10  # seconds of CPU: inflating 4 GB would take minutes
    assert peak < 64 * 1024 * 1024, f"{peak / 2**20:.0f} MB at the peak"


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (
            aiohttp.ClientOSError(104, "Connection reset by peer"),
            "connection dropped while talking to h:1 (connection reset by peer)",
        ),
        (aiohttp.ClientPayloadError("odd"), "the answer from h:1 could not be read"),
        (aiohttp.ClientConnectionError(), "the request to h:1 failed"),
        (aiohttp.ClientConnectionError("reset"), "the request to h:1 failed: reset"),
    ],
)
def test_failures_after_connecting_read_as_words(error: aiohttp.ClientError, said: str) -> None:
    """A reset, an unreadable body and an unnamed failure are told without aiohttp's
    class names."""
    assert _describe(error, "h:1") == said
