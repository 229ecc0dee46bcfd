"""Sans-I/O: what 2Chat's answers mean (a record, a page, a plan's limit, or the typed
error), as pure functions over a status, headers and a body."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Any, Final

from twochat_voip._converter import explain_invalid, sdk_converter
from twochat_voip._errors import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    PaymentRequiredError,
    PermissionDeniedError,
    RateLimitError,
    ResponseValidationError,
    ServerError,
    UnprocessableEntityError,
)
from twochat_voip._models import CallDetailRecord
from twochat_voip._requests import Response

_json_loads: Callable[[bytes], Any]
try:  # the speed extra: the same results, decoded faster
    from orjson import loads as _json_loads
except ImportError:  # pragma: no cover - the tests run with it, and patch it out
    _json_loads = json.loads

BODY_EXCERPT_CHARS: Final = 500
RETRY_AFTER_STATUSES: Final = frozenset({429, 503})
"""The only answers whose ``Retry-After`` is read (on a 200 it once held a client 20 s)."""
PLAN_RATES: Final = (1.0, 1_000_000.0)
"""The plan limits (requests a minute) ``GET /open/info`` may name and be believed."""

_STATUS_ERRORS: Final[Mapping[int, type[APIStatusError]]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: PaymentRequiredError,
    403: PermissionDeniedError,
    404: NotFoundError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def parse_requests_per_minute(response: Response, call_uuid: str | None = None) -> float | None:
    """The plan's ``limits.requests_per_minute`` in a ``GET /open/info`` answer, or
    ``None``; one outside :data:`PLAN_RATES` is a :class:`ResponseValidationError`."""
    limits = parse_envelope(response, call_uuid).get("limits")
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
    """Seconds to wait from a ``Retry-After`` value: delta-seconds or an HTTP-date;
    ``None`` for a missing or unreadable value, and never less than 0."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - now()
        except (TypeError, ValueError, IndexError):
            return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


class _TooDeep(ValueError):
    """A body nested deeper than the JSON parser goes: no answer at all."""


def decode_json(body: bytes) -> Any:
    """Decode a JSON body; ``ValueError`` (incl. bad UTF-8) if it is not JSON, and
    :class:`_TooDeep` if nested too deeply, alike with orjson and the standard library."""
    try:
        return _json_loads(body)
    except RecursionError:
        raise _TooDeep from None
    except ValueError as exc:
        if str(exc).startswith("depth limit exceeded"):
            raise _TooDeep from None
        raise


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
    """The typed error for an answer that is not a success, its message the server's
    (``error_message``, ``message``, ``detail``) or the reason phrase; a body nested
    too deeply is :class:`ResponseValidationError`, whatever the status."""
    status = response.status
    try:
        payload = decode_json(response.body)
    except _TooDeep:
        return _invalid(response, call_uuid, "the body is nested too deeply to be JSON")
    except ValueError:
        payload = None
    message = _server_message(payload)
    if message is None:
        try:
            message = HTTPStatus(status).phrase
        except ValueError:
            message = "unexpected answer"
    cls = ServerError if 500 <= status <= 599 else _STATUS_ERRORS.get(status, APIStatusError)
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
        payload = decode_json(response.body)
    except ValueError as exc:
        why = "nested too deeply to be JSON" if isinstance(exc, _TooDeep) else "not JSON"
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
    """A decoded ``cdr`` as a record, or the error saying field by field why not."""
    try:
        record: CallDetailRecord = sdk_converter().structure(cdr, CallDetailRecord)
    except Exception as exc:  # cattrs and its hooks raise many types
        raise _invalid(response, call_uuid, explain_invalid(cdr, CallDetailRecord, exc)) from exc
    return record


def parse_call(response: Response, call_uuid: str | None = None) -> CallDetailRecord:
    """The record in a ``GET /open/voip/call/{uuid}`` answer, or the error it amounts to."""
    cdr = cdr_of(response, parse_envelope(response, call_uuid), call_uuid)
    return structure_record(response, cdr, call_uuid)


def cdr_of(response: Response, payload: Mapping[str, Any], call_uuid: str | None) -> dict[str, Any]:
    """The ``cdr`` object of a decoded answer, or the error saying it has none."""
    cdr = payload.get("cdr")
    if type(cdr) is dict:
        return cdr
    found = "no 'cdr'" if cdr is None else f"'cdr' is {type(cdr).__name__}"
    raise _invalid(response, call_uuid, f"expected a 'cdr' object, found {found}")


def parse_history_page(
    response: Response, call_uuid: str | None = None
) -> tuple[list[CallDetailRecord], int | None]:
    """The records on one history page, and the answer's ``count`` (the total, it
    seems; ``None`` when it is not a whole number)."""
    payload = parse_envelope(response, call_uuid)
    cdrs = payload.get("cdrs")
    if not isinstance(cdrs, list):
        raise _invalid(response, call_uuid, "expected a 'cdrs' list")
    records = [structure_record(response, cdr, _uuid_of(cdr)) for cdr in cdrs]
    count = payload.get("count")
    return records, count if type(count) is int and count >= 0 else None


def _uuid_of(cdr: object) -> str | None:
    uuid = cdr.get("uuid") if isinstance(cdr, dict) else None
    return uuid if isinstance(uuid, str) else None
