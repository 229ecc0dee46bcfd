"""The sans-I/O protocol: request building and answer judging, no network at all."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from http import HTTPStatus
from typing import Any

import pytest
from multidict import CIMultiDict

from twochat_voip import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    CallDetailRecord,
    NotFoundError,
    PaymentRequiredError,
    PermissionDeniedError,
    RateLimitError,
    RedirectError,
    ResponseValidationError,
    ServerError,
    UnprocessableEntityError,
)
from twochat_voip import _protocol as protocol
from twochat_voip._account_api import (
    parse_account_info,
    parse_caller_ids,
    parse_deleted,
    parse_virtual_numbers,
    parse_webhook,
    parse_webhooks,
)
from twochat_voip._protocol import (
    error_from_response,
    parse_call,
    parse_history_page,
    parse_requests_per_minute,
    parse_retry_after,
)
from twochat_voip._requests import (
    Request,
    Requests,
    Response,
    normalise_base_url,
    redirected,
    validate_call_uuid,
)
from twochat_voip.export._records import parse_call_wire

CALL = "CDR8b3e7a1f-6c94-4d52-ae17-5f2b9d4c8e63"


def answer(status: int, body: Any, **headers: str) -> Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Response(status, CIMultiDict(headers), raw)


@pytest.mark.parametrize("good", [CALL, "a", "A_b-9", "x" * 128])
def test_valid_call_uuids_pass(good: str) -> None:
    """Ids of the documented alphabet pass unchanged."""
    assert validate_call_uuid(good) == good


@pytest.mark.parametrize(
    "bad",
    ["", "../etc", "a/b", "a?b=1", "a#b", "a%2F", "a b", "a\nb", "x" * 129, "é", ".", "a.b"],
)
def test_unsafe_call_uuids_are_refused(bad: str) -> None:
    """Anything that could change the URL never reaches the network."""
    with pytest.raises(ValueError, match="invalid call_uuid"):
        validate_call_uuid(bad)


@pytest.mark.parametrize("bad", [None, 123, b"CDR1", ["CDR1"]])
def test_non_string_call_uuids_are_refused(bad: object) -> None:
    """A call_uuid must be a str."""
    with pytest.raises(TypeError, match="must be a str"):
        validate_call_uuid(bad)


def test_call_request_targets_the_documented_path() -> None:
    """GET {base}/open/voip/call/{uuid}, headers passed through."""
    request = Requests("https://api.p.2chat.io", {"X-User-API-Key": "k"}).call(CALL)
    assert request.method == "GET"
    assert request.url == f"https://api.p.2chat.io/open/voip/call/{CALL}"
    assert request.headers == {"X-User-API-Key": "k"}
    assert "k" not in repr(request).replace("call_uuid", "")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://api.p.2chat.io", "https://api.p.2chat.io"),
        ("https://api.p.2chat.io/", "https://api.p.2chat.io"),
        ("https://proxy.example/2chat/", "https://proxy.example/2chat"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://localhost:1", "http://localhost:1"),
        ("http://[::1]:9", "http://[::1]:9"),
    ],
)
def test_base_urls_accepted(given: str, expected: str) -> None:
    """https anywhere, http only to loopback; trailing slash dropped."""
    assert normalise_base_url(given) == expected


@pytest.mark.parametrize(
    ("given", "complaint"),
    [
        ("http://api.p.2chat.io", "unencrypted"),
        ("http://10.0.0.1", "unencrypted"),
        ("ftp://api.p.2chat.io", "absolute http"),
        ("api.p.2chat.io", "absolute http"),
        ("https://user:pw@api.p.2chat.io", "credentials"),
        ("https://api.p.2chat.io/?x=1", "query"),
    ],
)
def test_base_urls_refused(given: str, complaint: str) -> None:
    """A base URL that would leak the key or is not a URL is refused up front."""
    with pytest.raises(ValueError, match=complaint):
        normalise_base_url(given)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("3", 3.0), ("0.5", 0.5), (" 7 ", 7.0), ("-4", 0.0), (None, None), ("", None), ("soon", None)],
)
def test_retry_after_seconds(value: str | None, seconds: float | None) -> None:
    """Delta-seconds are read; garbage is ignored; never negative."""
    assert parse_retry_after(value) == seconds


def test_retry_after_http_date() -> None:
    """An HTTP-date is read relative to now."""
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    value = format_datetime(datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC), usegmt=True)
    assert parse_retry_after(value, now=now.timestamp) == 30.0
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now=now.timestamp) == 0.0


def test_retry_after_infinite_is_ignored() -> None:
    """A value that is not finite is no instruction."""
    assert parse_retry_after("inf") is None
    assert parse_retry_after("nan") is None


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (402, PaymentRequiredError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (422, UnprocessableEntityError),
        (429, RateLimitError),
        (500, ServerError),
        (503, ServerError),
        (599, ServerError),
        (406, APIStatusError),
        (409, APIStatusError),
        (410, APIStatusError),
        (486, APIStatusError),
    ],
)
def test_status_maps_to_error_class(status: int, cls: type[APIStatusError]) -> None:
    """Each documented status raises its own class; others the base class."""
    error = error_from_response(answer(status, {"success": False, "error_message": "nope"}), CALL)
    assert type(error) is cls
    assert error.status_code == status
    assert error.message == "nope"
    assert error.call_uuid == CALL


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"success": False, "error": True, "error_message": "Call not found"}, "Call not found"),
        ({"success": False, "message": "Trial expired"}, "Trial expired"),
        ({"detail": "Invalid API Key"}, "Invalid API Key"),
        ({"detail": [{"loc": ["x"], "msg": "bad"}]}, '[{"loc": ["x"], "msg": "bad"}]'),
        (b"<html>gateway</html>", "Bad Gateway"),
        ({"unrelated": 1}, "Bad Gateway"),
    ],
)
def test_message_read_from_any_envelope(body: Any, message: str) -> None:
    """The server's own words, from whichever envelope it used, else the phrase."""
    assert error_from_response(answer(502, body)).message == message


def test_unknown_status_has_a_message() -> None:
    """A status with no reason phrase still gets a message."""
    assert error_from_response(answer(499, b"")).message == "unexpected answer"


def test_error_keeps_retry_after_and_excerpt() -> None:
    """429 carries Retry-After in seconds, and a bounded excerpt of the body."""
    error = error_from_response(answer(429, b"x" * 5000, **{"Retry-After": "12"}))
    assert isinstance(error, RateLimitError)
    assert error.retry_after == 12.0
    assert error.body == "x" * 500


def test_parse_call_returns_the_record(example_answer: dict[str, Any]) -> None:
    """A documented answer becomes a CallDetailRecord."""
    record = parse_call(answer(200, example_answer), CALL)
    assert isinstance(record, CallDetailRecord)
    assert record.uuid == CALL


def test_success_false_on_2xx_is_an_error() -> None:
    """A 200 that says it failed is a failure, with the server's message."""
    body = {"success": False, "error": True, "error_message": "Number blocked"}
    with pytest.raises(APIStatusError, match="Number blocked") as caught:
        parse_call(answer(200, body), CALL)
    assert caught.value.status_code == 200


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe\x00garbage", "not JSON"),
        (b"", "not JSON"),
        ([1, 2], "expected a JSON object"),
        ({"success": True}, "no 'cdr'"),
        ({"success": True, "cdr": "CDR1"}, "'cdr' is str"),
        ({"success": True, "cdr": {"status": "COMPLETED"}}, "CallDetailRecord.uuid"),
        ({"success": True, "cdr": {"uuid": "CDR1", "duration": "3"}}, "expected an integer"),
    ],
)
def test_malformed_answers_are_validation_errors(body: Any, complaint: str) -> None:
    """Anything but the documented shape is a ResponseValidationError that says why."""
    with pytest.raises(ResponseValidationError, match=complaint) as caught:
        parse_call(answer(200, body), CALL)
    assert caught.value.status_code == 200
    assert caught.value.call_uuid == CALL


def test_structuring_failure_is_chained() -> None:
    """The converter's own exception is kept as the cause, for debugging."""
    with pytest.raises(ResponseValidationError) as caught:
        parse_call(answer(200, {"cdr": {"uuid": 5}}), CALL)
    assert isinstance(caught.value.__cause__, TypeError)


def test_non_2xx_goes_to_the_status_error() -> None:
    """parse_call raises the typed status error for a non-2xx answer."""
    with pytest.raises(NotFoundError):
        parse_call(answer(404, {"success": False, "error_message": "Call not found"}), CALL)


def redirect_target(
    url: str, status: int, location: str | None, call_uuid: str | None = None
) -> str | None:
    """Where ``redirected`` sends a GET of ``url`` answered ``status`` to ``location``."""
    headers = CIMultiDict({"Location": location} if location else {})
    request = redirected(Request("GET", url, {}, call_uuid), Response(status, headers, b""))
    return None if request is None else request.url


def test_same_origin_redirect_is_followed() -> None:
    """A relative or same-origin Location is resolved and followed."""
    base = "https://api.p.2chat.io/open/voip/call/X"
    assert redirect_target(base, 307, "/v2/call/X") == "https://api.p.2chat.io/v2/call/X"
    assert redirect_target(base, 301, "https://api.p.2chat.io/y") == "https://api.p.2chat.io/y"


@pytest.mark.parametrize(
    "location",
    [
        "https://evil.example/steal",
        "http://api.p.2chat.io/open/voip/call/X",
        "https://api.p.2chat.io:8443/x",
        "ftp://api.p.2chat.io/x",
        "//evil.example/x",
    ],
)
def test_cross_origin_redirect_is_refused(location: str) -> None:
    """Another host, scheme or port would receive the key: refused."""
    with pytest.raises(RedirectError, match="another origin") as caught:
        redirect_target("https://api.p.2chat.io/open/voip/call/X", 302, location, CALL)
    assert caught.value.call_uuid == CALL


def test_a_refused_redirect_names_the_origin_it_would_have_reached() -> None:
    """When only the port differs, the message shows it."""
    with pytest.raises(RedirectError, match=r"\(https://api\.p\.2chat\.io:8443\)"):
        redirect_target("https://api.p.2chat.io/x", 302, "https://api.p.2chat.io:8443/x")


def test_non_redirects_are_not_followed() -> None:
    """Only 301/302/303/307/308 with a Location are redirects."""
    assert redirect_target("https://a.example/x", 200, "https://b.example") is None
    assert redirect_target("https://a.example/x", 302, None) is None
    assert redirect_target("https://a.example/x", 304, "/y") is None


def test_a_request_with_a_body_is_not_redirected() -> None:
    """A POST is not sent twice: the server may have acted on it."""
    request = Request("POST", "https://a.example/x", {}, body=b"{}")
    with pytest.raises(RedirectError, match="a POST was redirected"):
        redirected(request, Response(307, CIMultiDict({"Location": "/y"}), b""))


def test_a_bad_record_on_a_history_page_says_which_field() -> None:
    """One record of a page that does not structure fails the page, field by field."""
    page = answer(200, {"success": True, "cdrs": [{"uuid": "CDR1", "duration": "3"}]})
    with pytest.raises(ResponseValidationError, match="duration") as caught:
        parse_history_page(page)
    assert caught.value.call_uuid == "CDR1"


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        ({"requests_per_minute": 80}, 80.0),
        ({"requests_per_minute": 1}, 1.0),
        ({"requests_per_minute": 1_000_000}, 1_000_000.0),
        ({"requests_per_minute": "80"}, None),
        ({"requests_per_minute": True}, None),
        ({}, None),
        (None, None),
    ],
)
def test_the_plans_limit_is_read_from_open_info(limits: object, expected: float | None) -> None:
    """A number is the plan's limit; anything else says nothing."""
    body = {"success": True, "account": {}, "limits": limits}
    assert parse_requests_per_minute(answer(200, body)) == expected


@pytest.mark.parametrize("absurd", [0.5, 1e-9, 1_000_001, 1e300])
def test_an_absurd_plan_limit_is_not_believed(absurd: float) -> None:
    """A limit no plan has (a request a day, or no limit at all) is an invalid answer,
    not a rate to pace at."""
    body = {"success": True, "limits": {"requests_per_minute": absurd}}
    with pytest.raises(ResponseValidationError, match="not a plan's limit"):
        parse_requests_per_minute(answer(200, body))


DEEP = b"[" * 100_000
"""A body nested past anything Python recurses through."""

PARSERS = [
    parse_call,
    parse_history_page,
    parse_requests_per_minute,
    parse_call_wire,
    parse_account_info,
    parse_webhook,
    parse_webhooks,
    parse_virtual_numbers,
    parse_caller_ids,
    parse_deleted,
]


@pytest.fixture
def without_orjson(monkeypatch: pytest.MonkeyPatch) -> None:
    """The plain install: without orjson, answers go to the standard library's json."""
    monkeypatch.setattr(protocol, "_json_loads", json.loads)


@pytest.fixture(params=["orjson", "stdlib"])
def json_decoder(request: pytest.FixtureRequest) -> str:
    """Each test runs with orjson (the speed extra) and without (the plain install)."""
    if request.param == "stdlib":
        request.getfixturevalue("without_orjson")
    return str(request.param)


@pytest.mark.parametrize("status", [200, 400, 404, 429, 500, 503])
@pytest.mark.parametrize("parse", PARSERS, ids=lambda parse: parse.__name__)
def test_a_deeply_nested_body_is_a_validation_error_on_every_status(
    parse: Callable[[Response, str | None], object], status: int, json_decoder: str
) -> None:
    """ "[" * 100000 is no answer at all, whatever the status and the JSON decoder:
    ResponseValidationError carrying the status, never a RecursionError."""
    with pytest.raises(ResponseValidationError, match="nested too deeply") as caught:
        parse(answer(status, DEEP), None)
    assert caught.value.status_code == status


@pytest.mark.usefixtures("without_orjson")
@pytest.mark.parametrize("status", [404, 503])
def test_a_body_that_is_not_json_is_still_its_status_error(status: int) -> None:
    """Other bodies that are not JSON (an HTML error page) keep the status's error,
    retried or waited out as such."""
    error = error_from_response(answer(status, b"<html>busy</html>"))
    assert isinstance(error, NotFoundError if status == 404 else ServerError)


@pytest.mark.parametrize("key", ["detail", "message"])
def test_a_server_message_nested_too_deep_to_repeat_falls_back_to_the_reason(
    key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error envelope whose message is a list too deep to quote (orjson reads 1024
    levels; where json.dumps recurses out first depends on the Python version and the
    stack) is told by the status's reason phrase, not a RecursionError."""

    def too_deep(*_: object, **__: object) -> str:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr("twochat_voip._protocol.json.dumps", too_deep)
    body = b'{"%s": [[["deep"]]]}' % key.encode()
    error = error_from_response(answer(422, body))
    assert isinstance(error, UnprocessableEntityError)
    assert error.message == HTTPStatus(422).phrase


def test_a_huge_server_message_is_cut_to_the_excerpt() -> None:
    """A 900 KB error_message would be repeated in every log line and span: cut."""
    from twochat_voip._protocol import BODY_EXCERPT_CHARS

    body = json.dumps({"success": False, "error_message": "x" * 900_000}).encode()
    error = error_from_response(answer(503, body))
    assert error.message == "x" * BODY_EXCERPT_CHARS
    assert len(str(error)) < 2 * BODY_EXCERPT_CHARS
