"""A record as 2Chat sent it, for exports: exact numbers, every field, flat columns.

An export keeps what it is given for years, so it decodes with
``json.loads(parse_float=Decimal)``: every digit of a price, integers of any size and
keys the SDK does not know yet are kept, and the record is structured (validated) from
that same object. CSV and SQL columns come from the models, not a list kept by hand.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

import attrs

from twochat_voip._converter import WIRE_NAMES, format_timestamp
from twochat_voip._models import CallDetailRecord
from twochat_voip._protocol import (
    _invalid,
    cdr_of,
    error_from_response,
    parse_envelope,
    structure_record,
)
from twochat_voip._requests import Response

_SCALARS: Final = (type(None), bool, str, int, float)


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def parse_call_wire(
    response: Response, call_uuid: str | None = None
) -> tuple[CallDetailRecord, dict[str, Any]]:
    """The record in a ``GET /open/voip/call/{uuid}`` answer and its ``cdr`` object as
    sent (numbers exact, of any size), or the error the answer amounts to."""
    if not 200 <= response.status <= 299:
        raise error_from_response(response, call_uuid)
    try:
        payload = json.loads(response.body, parse_float=Decimal, parse_constant=_refuse_constant)
    except RecursionError:
        raise _invalid(response, call_uuid, "the body is nested too deeply to be JSON") from None
    except ValueError:
        raise _invalid(response, call_uuid, "the body is not JSON") from None
    if type(payload) is not dict:
        raise _invalid(response, call_uuid, f"expected a JSON object, got {type(payload).__name__}")
    if payload.get("success") is False:
        parse_envelope(response, call_uuid)  # the failure, said as for any call
    cdr = cdr_of(response, payload, call_uuid)
    return structure_record(response, cdr, call_uuid), cdr


def dumps_wire(value: object) -> str:
    """Compact, strict JSON for a decoded answer: a :class:`~decimal.Decimal` is written
    with its own digits (never as a float, never ``Infinity`` or ``NaN``)."""
    if type(value) is Decimal:
        if not value.is_finite():
            raise ValueError(f"{value} is not a JSON number")
        return str(value)  # "0.0594", "1E+309": the digits as sent, valid JSON
    if isinstance(value, Mapping):
        items = (
            json.dumps(str(k), ensure_ascii=False) + ":" + dumps_wire(v) for k, v in value.items()
        )
        return "{" + ",".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(map(dumps_wire, value)) + "]"
    if type(value) in _SCALARS:
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    raise TypeError(f"{type(value).__name__} is not a JSON type")


@attrs.frozen
class Column:
    """One flat column: its attribute path, CSV header (wire names joined by dots), SQL
    name (attribute names joined by ``_``) and type (``None`` left out)."""

    path: tuple[str, ...]
    csv_name: str
    sql_name: str
    type: Any

    def get(self, record: CallDetailRecord) -> Any:
        """This column's value in ``record`` (``None`` where a part is missing)."""
        value: Any = record
        for name in self.path:
            value = getattr(value, name)
            if value is None:
                return None
        return value


def _plain(annotation: Any) -> Any:
    """``X | None`` → ``X``; an open enum (``CallStatus | str``) → ``str``."""
    args = [arg for arg in getattr(annotation, "__args__", (annotation,)) if arg is not type(None)]
    if str in args or len(args) != 1:
        return str
    return args[0]


def _columns(cls: type, path: tuple[str, ...] = ()) -> Iterator[Column]:
    for field in attrs.fields(attrs.resolve_types(cls)):
        kind = _plain(field.type)
        here = (*path, field.name)
        if attrs.has(kind):
            yield from _columns(kind, here)
            continue
        wire = [WIRE_NAMES.get(name, name) for name in here]
        yield Column(here, ".".join(wire), "_".join(here), kind)


COLUMNS: Final[tuple[Column, ...]] = tuple(_columns(CallDetailRecord))
"""Every flat column of a record, in the models' order."""


def text_of(value: object) -> str:
    """A column's value as CSV text: as on the wire (``true``, ISO 8601 ``Z``, exact
    digits), empty for ``None``."""
    if value is None:
        return ""
    if type(value) is bool:
        return "true" if value else "false"
    if isinstance(value, datetime):
        return format_timestamp(value)
    return str(value)
