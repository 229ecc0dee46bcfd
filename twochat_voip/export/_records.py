"""A record as 2Chat sent it, for exports: exact numbers, every field, flat columns.

An export keeps what it is given for years, so it decodes with
``json.loads(parse_float=Decimal)``: every digit of a price, integers of any size and
keys the SDK does not know yet are kept, and the record is structured (validated) from
that same object. CSV and SQL columns come from the models, not a list kept by hand.
"""

from __future__ import annotations

import codecs
import json
import re
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
_LONE_SURROGATE: Final = re.compile("[\ud800-\udfff]")
# One token of compact JSON (as dumps_wire writes it: no blanks between tokens) ...
_TOKEN: Final = re.compile(
    r'"(?:[^"\\\x00-\x1f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"'
    r"|-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|true|false|null|[{}\[\]:,]"
)
# ... and the start of one, where a line was cut short.
_CUT_TOKEN: Final = re.compile(
    r'"(?:[^"\\\x00-\x1f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{0,4}))*\\?'
    r"|-|-?(?:0|[1-9][0-9]*)(?:\.[0-9]*)?(?:[eE][+-]?[0-9]*)?|t(?:ru?)?|f(?:a(?:ls?)?)?|n(?:ul?)?"
)
_UUID_FIRST: Final = re.compile(rb'\{"uuid":"([^"\\]*)"')
_CLOSING: Final = {"{": "}", "[": "]"}


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


def _json_text(text: str) -> str:
    """A JSON string, UTF-8 as it is, but a lone surrogate (half an emoji: no UTF-8 holds
    it) as the escape 2Chat sent, ``\\ud83d``."""
    return escape_halves(json.dumps(text, ensure_ascii=False))


def escape_halves(text: str) -> str:
    """``text`` with each lone surrogate written as its JSON escape (``\\ud83d``)."""
    return _LONE_SURROGATE.sub(lambda half: f"\\u{ord(half[0]):04x}", text)


def postgres_safe(value: Any) -> Any:
    """``value`` with what PostgreSQL's text and jsonb cannot hold, a NUL or a lone
    surrogate, written as its JSON escape (``\\u0000``, ``\\ud83d``: six characters)."""
    if type(value) is str:
        return escape_halves(value).replace("\x00", "\\u0000")
    if isinstance(value, Mapping):
        return {postgres_safe(key): postgres_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [postgres_safe(item) for item in value]
    return value


def dumps_wire(value: object) -> str:
    """Compact, strict JSON for a decoded answer: a :class:`~decimal.Decimal` is written
    with its own digits (never as a float, never ``Infinity`` or ``NaN``); every line
    encodes as UTF-8 (a lone surrogate stays an escape)."""
    if type(value) is Decimal:
        if not value.is_finite():
            raise ValueError(f"{value} is not a JSON number")
        return str(value)  # "0.0594", "1E+309": the digits as sent, valid JSON
    if isinstance(value, Mapping):
        items = (_json_text(str(k)) + ":" + dumps_wire(v) for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(map(dumps_wire, value)) + "]"
    if type(value) is str:
        return _json_text(value)
    if type(value) in _SCALARS:
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    raise TypeError(f"{type(value).__name__} is not a JSON type")


def is_cut_json(text: str) -> bool:
    """Whether ``text`` is the start of a compact JSON object (as :func:`dumps_wire`
    writes one) cut short, not a whole one: what a write cut off leaves at a file's end."""
    open_: list[str] = []  # the brackets not closed yet
    expect = "value"  # or "key", "colon", "next" (a comma or a close), "end"
    at = 0
    while at < len(text):
        cut = expect in ("value", "[") or (expect in ("key", "{") and text[at] == '"')
        if cut and _CUT_TOKEN.fullmatch(text, at):  # the rest is one value or key, cut short
            return True
        token = _TOKEN.match(text, at)
        if token is None:
            return False
        word, at = token[0], token.end()
        if word in ("]", "}") and open_ and expect in ("next", open_[-1]):
            if word != _CLOSING[open_.pop()]:
                return False
            expect = "next" if open_ else "end"
        elif expect == "next" and word == ",":
            expect = "key" if open_[-1] == "{" else "value"
        elif expect == "colon" and word == ":":
            expect = "value"
        elif expect in ("key", "{") and word.startswith('"'):
            expect = "colon"
        elif expect in ("value", "[") and word in ("{", "["):
            open_.append(word)
            expect = word
        elif expect in ("value", "[") and word not in (",", ":", "]", "}"):
            expect = "next"
        else:
            return False
    return bool(open_)


def record_uuid(line: bytes) -> str | None:
    """The uuid of a whole JSON line that is a record, else ``None``."""
    if uuid_first := _UUID_FIRST.match(line):  # as 2Chat sends it: no need to parse
        return uuid_first[1].decode("utf-8", "replace")
    try:
        uuid = json.loads(line).get("uuid")
    except (ValueError, AttributeError, RecursionError):  # a line someone edited
        return None
    return escape_halves(uuid) if isinstance(uuid, str) else None


def is_first_record(line: bytes) -> bool:
    """Whether a file's first line is provably a record: a JSON object with a string
    ``uuid`` and at least three other fields a call record has (a user's own file of
    objects keyed by ``uuid`` is not ours)."""
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):
        return False
    return (
        type(value) is dict
        and isinstance(value.get("uuid"), str)
        and len(_RECORD_KEYS.intersection(value)) >= 4
    )


def is_cut_record(line: bytes) -> bool:
    """Whether ``line`` is the start of a line :class:`JSONLSink` writes, cut short."""
    try:  # a character cut in two at the end is held back, not an error
        text = codecs.getincrementaldecoder("utf-8")().decode(line, final=False)
    except UnicodeDecodeError:
        return False
    return text.startswith('{"uuid":"') and is_cut_json(text)


def is_whole_json(line: bytes) -> bool:
    """Whether ``line`` is one whole JSON value."""
    try:
        json.loads(line)
    except (ValueError, RecursionError):
        return False
    return True


@attrs.frozen
class Column:
    """One flat column: its attribute path, name (the wire's names joined by ``_``:
    ``call_cost_call_price``, ``from``; CSV's header and SQL's column) and type
    (``None`` left out)."""

    path: tuple[str, ...]
    name: str
    type: Any

    def get(self, record: CallDetailRecord) -> Any:
        """This column's value in ``record`` as an output stores it: ``None`` where a
        part is missing, a lone surrogate in a text as its escape (``\\ud83d``)."""
        value: Any = record
        for name in self.path:
            value = getattr(value, name)
            if value is None:
                return None
        return escape_halves(value) if type(value) is str else value


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
        yield Column(here, "_".join(WIRE_NAMES.get(name, name) for name in here), kind)


COLUMNS: Final[tuple[Column, ...]] = tuple(_columns(CallDetailRecord))
"""Every flat column of a record, in the models' order."""
_RECORD_KEYS: Final = frozenset(
    WIRE_NAMES.get(f.name, f.name) for f in attrs.fields(CallDetailRecord)
)


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
