"""VoIPClient request building and answer handling, with aiohttp mocked by aioresponses."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aioresponses import aioresponses
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

import twochat_voip as tv
from twochat_voip import VoIPClient

pytestmark = pytest.mark.virtual_time  # timeouts, backoff and pacing in the loop's time

BASE = "https://api.p.2chat.io"
CALL = "CDR8b3e7a1f-6c94-4d52-ae17-5f2b9d4c8e63"
URL_ = f"{BASE}/open/voip/call/{CALL}"
KEY = "sk-unit-test-key-0123456789"


class _SentRequest:
    output_size = 0


class _Aiohttp314Response(aiohttp.ClientResponse):
    """aioresponses 0.7.9 builds responses without the ``stream_writer`` that aiohttp
    3.14 requires (pnuckowski/aioresponses#289, open); supply a finished one."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", _SentRequest())
        super().__init__(*args, **kwargs)


@pytest.fixture
def mocked(monkeypatch: pytest.MonkeyPatch) -> Iterator[aioresponses]:
    monkeypatch.setattr("aioresponses.core.ClientResponse", _Aiohttp314Response)
    with aioresponses() as m:
        yield m


@pytest_asyncio.fixture
async def client() -> AsyncIterator[VoIPClient]:
    async with VoIPClient(api_key=KEY, max_retries=0) as voip:
        yield voip


async def test_get_call_sends_the_documented_request(
    mocked: aioresponses, client: VoIPClient, example_answer: dict[str, Any]
) -> None:
    """One GET to /open/voip/call/{uuid} with the key header and JSON accepted."""
    mocked.get(URL_, payload=example_answer)
    record = await client.get_call(CALL)
    assert record.uuid == CALL
    (call,) = mocked.requests[("GET", URL(URL_))]
    headers = call.kwargs["headers"]
    assert headers["X-User-API-Key"] == KEY
    assert headers["Accept"] == "application/json"
    assert headers["User-Agent"].startswith("twochat-voip/")
    assert call.kwargs["allow_redirects"] is False


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (400, {"success": False, "error": True, "error_message": "Bad"}, tv.BadRequestError),
        (401, {"detail": "Invalid API Key"}, tv.AuthenticationError),
        (402, {"success": False, "message": "No credits"}, tv.PaymentRequiredError),
        (403, {"detail": "Not authenticated"}, tv.PermissionDeniedError),
        (404, {"success": False, "error_message": "Call not found"}, tv.NotFoundError),
        (406, {"success": False, "error_message": "Not acceptable"}, tv.APIStatusError),
        (409, {"success": False, "error_message": "Conflict"}, tv.APIStatusError),
        (410, {"success": False, "error_message": "Gone"}, tv.APIStatusError),
        (422, {"success": False, "error_message": "Malformed"}, tv.UnprocessableEntityError),
        (429, {"success": False, "error_message": "Slow down"}, tv.RateLimitError),
        (486, {"success": False, "error_message": "Busy"}, tv.APIStatusError),
        (500, {"success": False, "error_message": "Oops"}, tv.ServerError),
        (503, {"success": False, "error_message": "Down"}, tv.ServerError),
        (504, {"success": False, "error_message": "Timeout"}, tv.ServerError),
    ],
)
async def test_status_becomes_typed_error(
    mocked: aioresponses, client: VoIPClient, status: int, body: Any, error: type[Exception]
) -> None:
    """Every documented status ends in its own typed error carrying the call."""
    mocked.get(URL_, status=status, payload=body)
    with pytest.raises(error) as caught:
        await client.get_call(CALL)
    assert type(caught.value) is error
    assert caught.value.status_code == status  # type: ignore[attr-defined]
    assert caught.value.call_uuid == CALL  # type: ignore[attr-defined]


async def test_connection_error_is_translated_and_chained(
    mocked: aioresponses, client: VoIPClient
) -> None:
    """aiohttp's exception never escapes; it is kept as __cause__."""
    mocked.get(URL_, exception=aiohttp.ClientConnectionError("connection reset"))
    with pytest.raises(tv.APIConnectionError, match="connection reset") as caught:
        await client.get_call(CALL)
    assert isinstance(caught.value.__cause__, aiohttp.ClientConnectionError)
    assert caught.value.call_uuid == CALL


async def test_connect_timeout_names_the_host(mocked: aioresponses, client: VoIPClient) -> None:
    """A connection that could not be made in time says so, and where."""
    mocked.get(URL_, exception=aiohttp.ConnectionTimeoutError())
    with pytest.raises(
        tv.APITimeoutError,
        match=r"^could not connect to api\.p\.2chat\.io:443 \(timed out: 27 s to connect\) "
        r"after 1 attempt within \d+ ms$",
    ):
        await client.get_call(CALL)


async def test_timeout_is_translated(mocked: aioresponses, client: VoIPClient) -> None:
    """A timeout surfaces as APITimeoutError."""
    mocked.get(URL_, exception=TimeoutError())
    with pytest.raises(tv.APITimeoutError):
        await client.get_call(CALL)


async def test_response_error_is_not_chained(mocked: aioresponses, client: VoIPClient) -> None:
    """ClientResponseError carries our request headers: neither cause nor context."""
    info = aiohttp.RequestInfo(
        URL(URL_), "GET", CIMultiDictProxy(CIMultiDict({"X-User-API-Key": KEY})), URL(URL_)
    )
    mocked.get(URL_, exception=aiohttp.ClientResponseError(info, (), status=400, message="x"))
    with pytest.raises(tv.APIConnectionError) as caught:
        await client.get_call(CALL)
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None
    assert KEY not in repr(vars(caught.value))


async def test_timeout_argument_overrides_per_call(
    mocked: aioresponses, client: VoIPClient, example_answer: dict[str, Any]
) -> None:
    """get_call(timeout=...) replaces the client's timeout for that call."""
    mocked.get(URL_, payload=example_answer, repeat=True)
    await client.get_call(CALL, timeout=2.5)
    await client.get_call(CALL)
    first, second = mocked.requests[("GET", URL(URL_))]
    assert first.kwargs["timeout"].total == 2.5
    assert second.kwargs["timeout"].total == 30.0


async def test_invalid_id_sends_nothing(mocked: aioresponses, client: VoIPClient) -> None:
    """A path trick is refused before any request."""
    with pytest.raises(ValueError, match="invalid call_uuid"):
        await client.get_call("../../open/info")
    assert mocked.requests == {}


def test_missing_key_names_the_variable() -> None:
    """No key anywhere: a clear error that says where to put it."""
    with pytest.raises(tv.MissingAPIKeyError, match=r"VoIPClient\(api_key=.*TWOCHAT_API_KEY"):
        VoIPClient()
    with pytest.raises(tv.MissingAPIKeyError):
        VoIPClient(api_key="  ")


def test_key_with_line_break_is_refused() -> None:
    """A key that could split a header is refused."""
    with pytest.raises(ValueError, match="control character at position 4"):
        VoIPClient(api_key="abc\r\nX-Evil: 1")


BAD_KEY_CHARACTERS = [
    ("\x0c", "control"),  # form feed: what splitlines() used to cut a key file at
    ("\x1c", "control"),
    ("\t", "control"),
    ("\x00", "control"),
    ("\x7f", "control"),
    ("\u2028", "non-ASCII"),
    ("\u00e9", "non-ASCII"),
    ("\u200b", "non-ASCII"),  # a zero-width space, pasted along
]


@pytest.mark.parametrize(
    ("bad", "kind", "source"),
    [(bad, kind, "argument") for bad, kind in BAD_KEY_CHARACTERS]
    # (an environment variable cannot hold NUL)
    + [(bad, kind, "environment") for bad, kind in BAD_KEY_CHARACTERS if bad != "\x00"],
)
def test_key_with_a_control_or_non_ascii_character_is_refused_when_made(
    monkeypatch: pytest.MonkeyPatch, bad: str, kind: str, source: str
) -> None:
    """A key no header can carry is refused at construction, from the argument or
    TWOCHAT_API_KEY, with a typed error naming the kind and place, never the key."""
    key = "sk-SECRET-1" + bad + "ZYXW-0123456789"
    if source == "environment":
        monkeypatch.setenv("TWOCHAT_API_KEY", key)
    with pytest.raises(tv.InvalidAPIKeyError) as caught:
        VoIPClient(api_key=key if source == "argument" else None)
    assert isinstance(caught.value, ValueError)
    message = str(caught.value)
    assert f"a {kind} character at position 12 " in message
    assert "SECRET" not in message
    assert "ZYXW" not in message


def test_whitespace_around_the_key_is_still_stripped() -> None:
    """A key pasted with spaces or a line break around it works as the key."""
    voip = VoIPClient(api_key=" \t" + KEY + "\r\n")
    assert voip._options.api_key == KEY


def test_key_and_base_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """TWOCHAT_API_KEY and TWOCHAT_BASE_URL are the fallbacks."""
    monkeypatch.setenv("TWOCHAT_API_KEY", KEY)
    monkeypatch.setenv("TWOCHAT_BASE_URL", "http://127.0.0.1:9/")
    assert VoIPClient().base_url == "http://127.0.0.1:9"
    assert VoIPClient(base_url="https://proxy.example").base_url == "https://proxy.example"


def test_defaults() -> None:
    """Without configuration the client talks to 2Chat with the documented policy."""
    voip = VoIPClient(api_key=KEY)
    assert voip.base_url == BASE
    assert voip.retry_policy == tv.RetryPolicy(max_retries=3, max_retry_wait=60.0)
    assert voip.max_requests is None
    assert VoIPClient(api_key=KEY, max_requests=10).max_requests == 10


def test_plain_http_to_a_remote_host_is_refused() -> None:
    """The key must not cross a network unencrypted."""
    with pytest.raises(ValueError, match="unencrypted"):
        VoIPClient(api_key=KEY, base_url="http://api.p.2chat.io")


@pytest.mark.parametrize("options", [{"timeout": 0}, {"max_response_size": 0}, {"max_retries": -1}])
def test_nonsense_options_are_refused(options: dict[str, Any]) -> None:
    """Options that cannot work are refused at construction."""
    with pytest.raises(ValueError):  # noqa: PT011 - each names its own option
        VoIPClient(api_key=KEY, **options)


def test_repr_hides_the_key() -> None:
    """repr() and str() never show the key."""
    voip = VoIPClient(api_key=KEY)
    assert KEY not in repr(voip)
    assert KEY not in str(voip)
    assert re.fullmatch(
        r"<VoIPClient base_url='https://api.p.2chat.io' state=unopened>", repr(voip)
    )


async def test_use_after_close_is_a_clear_error(mocked: aioresponses) -> None:
    """A closed client refuses work; closing twice is fine."""
    voip = VoIPClient(api_key=KEY)
    await voip.aclose()
    await voip.aclose()
    assert voip.closed
    with pytest.raises(tv.ClientClosedError, match="closed"):
        await voip.get_call(CALL)
    with pytest.raises(tv.ClientClosedError):
        async with voip:
            pass


async def test_plain_use_without_context_manager(
    mocked: aioresponses, example_answer: dict[str, Any]
) -> None:
    """The client opens its session on first use and closes it in aclose()."""
    mocked.get(URL_, payload=example_answer)
    voip = VoIPClient(api_key=KEY)
    assert (await voip.get_call(CALL)).uuid == CALL
    assert "state=opened" in repr(voip)
    await voip.aclose()
    assert "state=closed" in repr(voip)


async def test_injected_session_is_used_and_not_closed(
    mocked: aioresponses, example_answer: dict[str, Any]
) -> None:
    """The caller's session carries the request and survives the client."""
    mocked.get(URL_, payload=example_answer)
    async with aiohttp.ClientSession() as session:
        async with VoIPClient(api_key=KEY, session=session) as voip:
            await voip.get_call(CALL)
        assert not session.closed
    assert len(mocked.requests[("GET", URL(URL_))]) == 1


async def test_closed_injected_session_is_a_clear_error() -> None:
    """A session the caller already closed gives a typed error, not a RuntimeError,
    and the request that never left is not counted."""
    session = aiohttp.ClientSession()
    await session.close()
    async with VoIPClient(api_key=KEY, session=session) as voip:
        with pytest.raises(tv.ClientClosedError, match="session is closed"):
            await voip.get_call(CALL)
        assert voip.stats.requests == 0


async def test_other_runtime_errors_of_an_injected_session_are_not_a_closed_session() -> None:
    """A RuntimeError from the caller's own session (here its trace hook) is theirs:
    it comes through as it is, not disguised as a closed session."""

    async def hook(*_: object) -> None:
        raise RuntimeError("the caller's hook failed")

    tracing = aiohttp.TraceConfig()
    tracing.on_request_start.append(hook)
    async with (
        aiohttp.ClientSession(trace_configs=[tracing]) as session,
        VoIPClient(api_key=KEY, session=session) as voip,
    ):
        with pytest.raises(RuntimeError, match="the caller's hook failed"):
            await voip.get_call(CALL)


async def test_retry_policy_is_the_one_used(mocked: aioresponses) -> None:
    """retry_policy= is the policy in force: its max_retries bounds the attempts."""
    policy = tv.RetryPolicy(max_retries=1, initial_wait=0.0, max_backoff=0.0)
    mocked.get(URL_, status=503, repeat=True)
    async with VoIPClient(api_key=KEY, retry_policy=policy) as voip:
        assert voip.retry_policy is policy
        with pytest.raises(tv.ServerError):
            await voip.get_call(CALL)
        assert voip.stats.requests == 2
        assert voip.stats.retries == 1


@pytest.mark.parametrize("option", [{"max_retries": 5}, {"max_retry_wait": 1.0}])
def test_retry_policy_excludes_the_retry_options(option: dict[str, Any]) -> None:
    """A policy and a loose retry option together are ambiguous: refused."""
    with pytest.raises(ValueError, match="retry_policy or max_retries"):
        VoIPClient(api_key=KEY, retry_policy=tv.RetryPolicy(), **option)


async def test_entering_an_open_client_again_is_refused(mocked: aioresponses) -> None:
    """A second `async with` on an open client raises; the first stays usable."""
    voip = VoIPClient(api_key=KEY)
    async with voip:
        with pytest.raises(RuntimeError, match="already open"):
            async with voip:
                pass  # pragma: no cover - never entered
        assert not voip.closed
    assert voip.closed


async def test_a_client_used_before_async_with_may_enter_it(
    mocked: aioresponses, example_answer: dict[str, Any]
) -> None:
    """Opened by a first call, a client can still be entered once, which closes it."""
    mocked.get(URL_, payload=example_answer)
    voip = VoIPClient(api_key=KEY)
    await voip.get_call(CALL)
    async with voip:
        assert not voip.closed
    assert voip.closed


def test_options_never_show_the_key() -> None:
    """The client's settings keep the key out of their repr."""
    voip = VoIPClient(api_key=KEY)
    assert KEY not in repr(voip._options)
    assert "base_url='https://api.p.2chat.io'" in repr(voip._options)


class _CountingLimiter:
    """A limiter that lets everything through and counts its closes."""

    def __init__(self) -> None:
        self.closed = 0

    async def acquire(self) -> float:
        return 0.0

    def feedback(self, *, sent_at: float, status: int, retry_after: float | None) -> None:
        pass

    async def aclose(self) -> None:
        self.closed += 1


@pytest.mark.parametrize(("owner", "closes"), [(False, 0), (True, 1)])
async def test_the_client_closes_a_limiter_it_owns(
    mocked: aioresponses, example_answer: dict[str, Any], owner: bool, closes: int
) -> None:
    """rate_limiter_owner=True hands the limiter to the client, which closes it once."""
    mocked.get(URL_, payload=example_answer)
    limiter = _CountingLimiter()
    async with VoIPClient(api_key=KEY, rate_limiter=limiter, rate_limiter_owner=owner) as voip:
        await voip.get_call(CALL)
    await voip.aclose()
    assert limiter.closed == closes


async def test_a_limiter_without_aclose_still_works(
    mocked: aioresponses, example_answer: dict[str, Any]
) -> None:
    """A limiter written before the protocol had aclose is used, and closing skips it."""

    class Old:
        async def acquire(self) -> float:
            return 0.0

        def feedback(self, *, sent_at: float, status: int, retry_after: float | None) -> None:
            pass

    mocked.get(URL_, payload=example_answer)
    async with VoIPClient(
        api_key=KEY,
        rate_limiter=Old(),  # type: ignore[arg-type]
        rate_limiter_owner=True,
    ) as voip:
        assert (await voip.get_call(CALL)).uuid == CALL
    assert voip.closed


@pytest.mark.parametrize(
    "options",
    [
        {"max_retries": 3},  # the default value, but given
        {"max_retry_wait": 60},
        {"max_retries": 3.0},
    ],
)
def test_retry_policy_and_a_given_retry_option_are_refused_even_at_default_values(
    options: dict[str, Any],
) -> None:
    """'Given' means given: the defaults' values passed explicitly still conflict."""
    with pytest.raises(ValueError, match="retry_policy or max_retries"):
        VoIPClient(api_key=KEY, retry_policy=tv.RetryPolicy(max_retries=0), **options)


@pytest.mark.parametrize(
    "policy",
    [
        {"max_backoff": float("nan")},
        {"initial_wait": float("inf")},
        {"initial_wait": float("nan")},
        {"max_backoff": -1.0},
    ],
)
def test_a_retry_policy_that_could_never_end_a_wait_is_refused(policy: dict[str, Any]) -> None:
    """NaN or infinite backoffs would hang a call: refused when the policy is made."""
    with pytest.raises(ValueError, match="finite"):
        tv.RetryPolicy(**policy)


def test_a_retry_policy_must_be_one() -> None:
    """Anything else is a TypeError at construction, not an AttributeError later."""
    with pytest.raises(TypeError, match="RetryPolicy"):
        VoIPClient(api_key=KEY, retry_policy="three")  # type: ignore[arg-type]


@pytest.mark.parametrize("rpm", [float("nan"), float("inf"), 0, -5])
def test_a_rate_that_is_not_a_positive_number_is_refused(rpm: float) -> None:
    """A NaN, infinite or non-positive rate fails at construction, not at the first call."""
    with pytest.raises(ValueError, match="requests_per_minute"):
        VoIPClient(api_key=KEY, requests_per_minute=rpm)


async def test_a_falsy_limiter_is_still_the_limiter(
    mocked: aioresponses, example_answer: dict[str, Any]
) -> None:
    """A limiter whose truth value is False (a __len__ of 0) is used, not dropped."""

    class Empty(_CountingLimiter):
        def __len__(self) -> int:
            return 0

    limiter = Empty()
    mocked.get(URL_, payload=example_answer)
    async with VoIPClient(api_key=KEY, rate_limiter=limiter) as voip:
        assert voip.rate_limiter is limiter
        assert (await voip.get_call(CALL)).uuid == CALL


async def test_a_limiter_that_fails_to_close_does_not_hide_the_blocks_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The error that ended the block is the one raised; the limiter's is logged."""

    class Failing(_CountingLimiter):
        async def aclose(self) -> None:
            raise OSError("redis went away")

    with pytest.raises(KeyError, match="the block's"):
        async with VoIPClient(api_key=KEY, rate_limiter=Failing(), rate_limiter_owner=True):
            raise KeyError("the block's")
    assert "closing the rate limiter failed" in caplog.text
