"""Sans-I/O: build 2Chat requests and judge their answers, with no network in sight.

Everything here is a pure function over values (a URL, a status, headers, a body), so
the rules of the API are tested without sockets or mocks. The transport moves bytes;
this module decides what they mean.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Any, Final

import attrs

from twochat_voip._base_url import DEFAULT_BASE_URL, normalise_base_url, origin_end
from twochat_voip._converter import explain_invalid, sdk_converter
from twochat_voip._errors import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    InvalidCallUUIDError,
    NotFoundError,
    PaymentRequiredError,
    PermissionDeniedError,
    RateLimitError,
    ResponseValidationError,
    ServerError,
    UnprocessableEntityError,
)
from twochat_voip._json_decode import choose_loads, is_too_deep
from twochat_voip._models import CallDetailRecord
from twochat_voip._redirects import REDIRECT_STATUSES, redirect_target

_json_loads: Callable[[bytes], Any] = choose_loads()
"""orjson's when installed (the ``speed`` extra); the results and errors are the same."""

__all__ = [
    "DEFAULT_BASE_URL",
    "REDIRECT_STATUSES",
    "Request",
    "Requests",
    "Response",
    "decode_json",
    "error_from_response",
    "normalise_base_url",
    "parse_call",
    "parse_history",
    "parse_requests_per_minute",
    "parse_retry_after",
    "redirect_target",
    "structure_record",
    "validate_call_uuid",
]

API_KEY_HEADER: Final = "X-User-API-Key"
BODY_EXCERPT_CHARS: Final = 500

RETRY_AFTER_STATUSES: Final = frozenset({429, 503})
"""The only answers whose ``Retry-After`` is read: on a 200 or a 404 it means nothing
(and once held a whole client for 20 s)."""

_CALL_UUID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_is_call_uuid: Final = _CALL_UUID.fullmatch
"""Statuses :func:`redirect_target` may follow; no other answer is a redirect."""

_STATUS_ERRORS: Final[Mapping[int, type[APIStatusError]]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: PaymentRequiredError,
    403: PermissionDeniedError,
    404: NotFoundError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


@attrs.define(slots=True, eq=False)
class Request:
    """An HTTP request ready to send.

    Attributes:
        method: The HTTP method.
        url: The absolute, already percent-safe URL.
        headers: Headers to send; they hold the API key, so never log them.
        call_uuid: The record asked for, for error messages.
        origin_end: When positive, ``url[:origin_end]`` is the origin
            (``scheme://host[:port]``) and the rest a plain path, with no query or
            fragment: a transport can reuse the parsed origin instead of parsing every
            URL whole. 0: not known.
        body: A JSON body, encoded, or ``None``.
        route: The path's template (``/open/voip/call/{call_uuid}``), the same for
            every request of a kind: what hooks and metrics label it with. ``None``:
            the path, without its query.
    """

    method: str
    url: str
    headers: Mapping[str, str] = attrs.field(repr=False)
    call_uuid: str | None = None
    origin_end: int = 0
    body: bytes | None = attrs.field(default=None, repr=False)
    route: str | None = None

    @property
    def idempotent(self) -> bool:
        """Whether sending it twice does no more than once (GET, DELETE): only such a
        request is retried after a failure the server may have acted on."""
        return self.method in ("GET", "DELETE")


@attrs.define(slots=True, eq=False)
class Response:
    """An HTTP answer as read off the wire.

    Attributes:
        status: The HTTP status.
        headers: The answer's headers (case-insensitive mapping).
        body: The body, decompressed, at most the size cap.
    """

    status: int
    headers: Mapping[str, str]
    body: bytes


def validate_call_uuid(call_uuid: object) -> str:
    """Return ``call_uuid`` if it is a safe path segment, else raise before any I/O.

    2Chat ids are a three-letter prefix and a UUID; anything beyond
    ``[A-Za-z0-9_-]{1,128}`` (slashes, dots, ``?``, ``#``, ``%``, spaces) could change
    which URL is asked for, so it never reaches the network.
    """
    if not isinstance(call_uuid, str):
        raise InvalidCallUUIDError(f"call_uuid must be a str, not {type(call_uuid).__name__}")
    if _CALL_UUID.fullmatch(call_uuid) is None:
        shown = call_uuid if len(call_uuid) <= 60 else call_uuid[:57] + "..."
        raise InvalidCallUUIDError(
            f"invalid call_uuid {shown!r}: expected 1-128 letters, digits, '-' or '_', "
            "such as 'CDR8b3e7a1f-6c94-4d52-ae17-5f2b9d4c8e63'"
        )
    return call_uuid


@attrs.frozen
class Requests:
    """The requests of one client, with what they share worked out once.

    Args:
        base_url: The normalised base URL (see :func:`normalise_base_url`).
        headers: The headers every request carries (the API key among them).
    """

    base_url: str
    headers: Mapping[str, str] = attrs.field(repr=False)
    _call_prefix: str = attrs.field(init=False, repr=False)
    _origin_end: int = attrs.field(init=False, repr=False)

    @_call_prefix.default
    def _call_prefix_default(self) -> str:
        return f"{self.base_url}/open/voip/call/"

    @_origin_end.default
    def _origin_end_default(self) -> int:
        return origin_end(self.base_url)

    def call(self, call_uuid: object) -> Request:
        """``GET /open/voip/call/{call_uuid}``; raises :class:`InvalidCallUUIDError`
        (see :func:`validate_call_uuid`) for an id that is not a plain path segment."""
        if not isinstance(call_uuid, str) or _is_call_uuid(call_uuid) is None:
            call_uuid = validate_call_uuid(call_uuid)  # raises, saying why
        return Request(
            "GET",
            self._call_prefix + call_uuid,
            self.headers,
            call_uuid,
            self._origin_end,
            None,
            "/open/voip/call/{call_uuid}",
        )

    def info(self) -> Request:
        """``GET /open/info``: the account, its plan's limit and usage."""
        return Request("GET", f"{self.base_url}/open/info", self.headers, None, self._origin_end)

    def history(self, page: int, direction: str | None) -> Request:
        """One page of ``GET /open/voip/call-history``."""
        if direction not in (None, "inbound", "outbound"):
            raise ValueError("direction must be 'inbound', 'outbound' or None (both)")
        query = f"page_number={int(page)}" + (f"&direction={direction}" if direction else "")
        return Request("GET", f"{self.base_url}/open/voip/call-history?{query}", self.headers)


PLAN_RATES: Final = (1.0, 1_000_000.0)
"""The plan limits (requests a minute) ``GET /open/info`` may name and be believed: one
outside would pace a client at a request a day, or not at all."""


def parse_requests_per_minute(response: Response, call_uuid: str | None = None) -> float | None:
    """The plan's ``limits.requests_per_minute`` from a ``GET /open/info`` answer;
    ``None`` when the answer does not say. A number outside :data:`PLAN_RATES` is a
    :class:`ResponseValidationError`, not a rate to pace at."""
    payload = parse_envelope(response, call_uuid)
    limits = payload.get("limits")
    value = limits.get("requests_per_minute") if isinstance(limits, dict) else None
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    low, high = PLAN_RATES
    if not low <= value <= high:  # NaN too
        raise _invalid(
            response,
            call_uuid,
            f"limits.requests_per_minute is {value!r}, not a plan's limit "
            f"(between {low:g} and {high:,.0f} a minute)",
        )
    return float(value)


def parse_retry_after(value: str | None, *, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds or an HTTP-date.

    Returns ``None`` for a missing or unreadable value, and never less than 0.
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - now()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def decode_json(body: bytes) -> Any:
    """Decode a JSON body; raises ``ValueError`` (incl. bad UTF-8) if it is not JSON."""
    return _json_loads(body)


def _excerpt(body: bytes) -> str:
    return body[: BODY_EXCERPT_CHARS * 4].decode("utf-8", "replace")[:BODY_EXCERPT_CHARS]


def _server_message(payload: object) -> str | None:
    if isinstance(payload, Mapping):
        for key in ("error_message", "message", "detail"):
            value = payload.get(key)
            if isinstance(value, str) and value:
                return value[:BODY_EXCERPT_CHARS]  # logs and spans repeat it
            if value:  # e.g. a validation framework's list of problems
                try:
                    return json.dumps(value, default=str)[:BODY_EXCERPT_CHARS]
                except RecursionError:  # nested deeper than Python recurses
                    return None
    return None


def error_from_response(
    response: Response, call_uuid: str | None = None
) -> APIStatusError | ResponseValidationError:
    """The typed error for an answer that is not a success.

    The message comes from whichever envelope the server used (``error_message``,
    ``message``, ``detail``), else from the status's reason phrase. ``retry_after``
    is read for 429 and 503 only. A body nested too deeply to decode is no answer
    at all, whatever its status: :class:`ResponseValidationError`, as on a 200.
    """
    status = response.status
    try:
        payload = decode_json(response.body)
    except ValueError as exc:
        if is_too_deep(exc):
            return _invalid(response, call_uuid, "the body is nested too deeply to be JSON")
        payload = None
    message = _server_message(payload)
    if message is None:
        try:
            message = HTTPStatus(status).phrase
        except ValueError:
            message = "unexpected answer"
    if 500 <= status <= 599:
        cls: type[APIStatusError] = ServerError
    else:
        cls = _STATUS_ERRORS.get(status, APIStatusError)
    retry_after = None
    if status in RETRY_AFTER_STATUSES:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
    return cls(
        message,
        status_code=status,
        body=_excerpt(response.body),
        call_uuid=call_uuid,
        retry_after=retry_after,
    )


def _invalid(response: Response, call_uuid: str | None, message: str) -> ResponseValidationError:
    return ResponseValidationError(
        message, status_code=response.status, body=_excerpt(response.body), call_uuid=call_uuid
    )


def parse_envelope(response: Response, call_uuid: str | None) -> Mapping[str, Any]:
    """The decoded JSON object of a successful answer, or the error it amounts to."""
    if not 200 <= response.status <= 299:
        raise error_from_response(response, call_uuid)
    try:
        payload = _json_loads(response.body)  # decode_json, one call fewer per answer
    except ValueError as exc:
        why = "nested too deeply to be JSON" if is_too_deep(exc) else "not JSON"
        raise _invalid(response, call_uuid, f"the body is {why}") from None
    if not isinstance(payload, dict):
        raise _invalid(response, call_uuid, f"expected a JSON object, got {type(payload).__name__}")
    if payload.get("success") is False:
        message = _server_message(payload) or "the server reported a failure"
        raise APIStatusError(
            message, status_code=response.status, body=_excerpt(response.body), call_uuid=call_uuid
        )
    return payload


def structure_record(response: Response, cdr: object, call_uuid: str | None) -> CallDetailRecord:
    """A decoded ``cdr`` object as a record, or the ResponseValidationError that says,
    field by field, why it is not one."""
    try:
        record: CallDetailRecord = sdk_converter().structure(cdr, CallDetailRecord)
    except Exception as exc:  # cattrs and its hooks raise many types
        raise _invalid(response, call_uuid, explain_invalid(cdr, CallDetailRecord, exc)) from exc
    return record


def parse_history(response: Response, call_uuid: str | None = None) -> list[CallDetailRecord]:
    """The records on one page of a ``GET /open/voip/call-history`` answer."""
    return parse_history_page(response, call_uuid)[0]


def parse_history_page(
    response: Response, call_uuid: str | None = None
) -> tuple[list[CallDetailRecord], int | None]:
    """The records on one history page, and the answer's ``count`` (the total, it
    seems; ``None`` when it is not a whole number)."""
    payload = parse_envelope(response, call_uuid)
    cdrs = payload.get("cdrs")
    if not isinstance(cdrs, list):
        raise _invalid(response, call_uuid, "expected a 'cdrs' list")
    count = payload.get("count")
    records = [structure_record(response, cdr, _cdr_uuid(cdr)) for cdr in cdrs]
    return records, count if type(count) is int and count >= 0 else None


def _cdr_uuid(cdr: object) -> str | None:
    """The ``uuid`` of a wire record, if it has a string one."""
    uuid = cdr.get("uuid") if isinstance(cdr, dict) else None
    return uuid if isinstance(uuid, str) else None


def parse_call(response: Response, call_uuid: str | None = None) -> CallDetailRecord:
    """The record in a ``GET /open/voip/call/{uuid}`` answer, or the error it amounts to."""
    cdr = parse_envelope(response, call_uuid).get("cdr")
    if type(cdr) is dict:
        return structure_record(response, cdr, call_uuid)
    found = "no 'cdr'" if cdr is None else f"'cdr' is {type(cdr).__name__}"
    raise _invalid(response, call_uuid, f"expected a 'cdr' object, found {found}")
