"""The fault matrix: one row per way 2Chat (or the network) can answer, each with the
exact outcome and the exact number of attempts the client makes.

Rows run with max_retries=2 (so 3 attempts at most) and retry waits switched off, except
the Retry-After rows, which need the real waits to be honoured.
"""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import attrs
import pytest

import twochat_voip as tv
from twochat_voip import VoIPClient, set_testing
from twochat_voip.testing import EXAMPLE_ANSWER, EXAMPLE_CDR, FakeTwoChatServer, Fault

pytestmark = pytest.mark.virtual_time  # timeouts, backoff and pacing in the loop's time

CALL = EXAMPLE_CDR["uuid"]
PADDED = {**EXAMPLE_ANSWER, "padding": "x" * 3000}  # a valid answer, but over the cap
LOCAL = "/open/voip/call/" + CALL


@attrs.frozen
class Row:
    faults: tuple[Fault, ...]
    outcome: type[BaseException] | None  # None: the record comes back
    attempts: int
    options: tuple[tuple[str, object], ...] = ()


def always(fault: Fault) -> tuple[Fault, ...]:
    return (fault,) * 10


def past_http_date() -> str:
    return format_datetime(datetime.now(UTC) - timedelta(seconds=5), usegmt=True)


MATRIX: dict[str, Row] = {
    **{
        f"status {status}": Row(always(Fault(status=status)), error, 1)
        for status, error in [
            (400, tv.BadRequestError),
            (401, tv.AuthenticationError),
            (402, tv.PaymentRequiredError),
            (403, tv.PermissionDeniedError),
            (404, tv.NotFoundError),
            (406, tv.APIStatusError),
            (409, tv.APIStatusError),
            (410, tv.APIStatusError),
            (422, tv.UnprocessableEntityError),
            (486, tv.APIStatusError),
        ]
    },
    **{
        f"status {status} every time": Row(always(Fault(status=status)), error, 3)
        for status, error in [
            (429, tv.RateLimitError),
            (500, tv.ServerError),
            (502, tv.ServerError),
            (503, tv.ServerError),
            (504, tv.ServerError),
        ]
    },
    "429 then success": Row((Fault(status=429),), None, 2),
    "503 then success": Row((Fault(status=503),), None, 2),
    "429 with Retry-After seconds": Row((Fault(status=429, retry_after="0"),), None, 2),
    "429 with Retry-After HTTP-date": Row(
        (Fault(status=429, retry_after=past_http_date()),), None, 2
    ),
    "429 with Retry-After beyond max_retry_wait": Row(
        (Fault(status=429, retry_after="120"),), tv.RateLimitError, 1
    ),
    "dropped before the status line": Row(
        always(Fault(drop="before_status")), tv.APIConnectionError, 3
    ),
    "dropped mid-headers": Row(always(Fault(drop="mid_headers")), tv.APIConnectionError, 3),
    "dropped mid-body": Row(always(Fault(drop="mid_body")), tv.APIConnectionError, 3),
    "chunked body cut short": Row(
        always(Fault(drop="mid_body", chunked=True)), tv.APIConnectionError, 3
    ),
    "dropped once, then success": Row((Fault(drop="mid_body"),), None, 2),
    "accepts and never answers": Row(always(Fault(hang=True)), tv.APITimeoutError, 3),
    "trickles slower than the timeout": Row(always(Fault(trickle=0.05)), tv.APITimeoutError, 3),
    "redirect loop": Row(
        always(Fault(status=302, headers={"Location": LOCAL})), tv.RedirectError, 6
    ),
    "redirect within the origin": Row((Fault(status=307, headers={"Location": LOCAL}),), None, 2),
    "redirect to another origin": Row(
        (Fault(status=302, headers={"Location": "https://elsewhere.example/x"}),),
        tv.RedirectError,
        1,
    ),
    "redirect to plain http": Row(
        (Fault(status=301, headers={"Location": "http://api.p.2chat.io/x"}),), tv.RedirectError, 1
    ),
    "redirect to a non-HTTP scheme": Row(
        (Fault(status=308, headers={"Location": "file:///etc/passwd"}),), tv.RedirectError, 1
    ),
    "answer larger than the cap": Row(
        (Fault(body=PADDED),), tv.ResponseValidationError, 1, (("max_response_size", 2000),)
    ),
    "chunked answer larger than the cap": Row(
        (Fault(body=PADDED, chunked=True),),
        tv.ResponseValidationError,
        1,
        (("max_response_size", 2000),),
    ),
    "gzip-compressed answer": Row((Fault(gzip=True),), None, 1),
    "chunked answer": Row((Fault(chunked=True),), None, 1),
    "wrong Content-Type": Row((Fault(content_type="text/plain"),), None, 1),
    "non-UTF-8 body": Row((Fault(body=b"\xff\xfe{}"),), tv.ResponseValidationError, 1),
    "200 with success false": Row(
        (Fault(body={"success": False, "error_message": "nope"}),), tv.APIStatusError, 1
    ),
    "200 without cdr": Row((Fault(body={"success": True}),), tv.ResponseValidationError, 1),
}

WAITS_NEEDED = {name for name in MATRIX if "Retry-After" in name}


@pytest.mark.parametrize("name", list(MATRIX))
async def test_fault_matrix(name: str) -> None:
    """Each row: the exact outcome and the exact number of requests sent."""
    row = MATRIX[name]
    options = {"max_retries": 2, "timeout": 0.3, "max_retry_wait": 60.0, **dict(row.options)}
    async with FakeTwoChatServer() as server:
        server.fail_next(*row.faults)
        client = VoIPClient(api_key=server.api_key, base_url=server.base_url, **options)  # type: ignore[arg-type]
        async with client:
            with set_testing(name not in WAITS_NEEDED, attempts=3):
                if row.outcome is None:
                    assert (await client.get_call(CALL)).uuid == CALL
                else:
                    with pytest.raises(row.outcome):
                        await client.get_call(CALL)
        # (an adaptive client's first 429 may also ask the plan, GET /open/info)
        asked = [r.path for r in server.requests].count("/open/info")
        assert server.request_count - asked == row.attempts
        assert client.stats.requests - asked == row.attempts


async def test_connection_refused_is_retried_then_raised() -> None:
    """Nobody listening: three attempts, then APIConnectionError; no request reached a
    connection, so none is counted (none cost a credit)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with VoIPClient(api_key="k", base_url=f"http://127.0.0.1:{port}", max_retries=2) as voip:
        with set_testing(True, attempts=3), pytest.raises(tv.APIConnectionError):
            await voip.get_call(CALL)
        assert voip.stats.retries == 2
        assert voip.stats.requests == 0
