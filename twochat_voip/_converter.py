"""The one place that knows the wire format: a cattrs converter for 2Chat's JSON.

``unstructure`` writes it: key ``from``, ISO 8601 timestamps ending in ``Z``, the price a
JSON number. ``structure`` is strict about types (``"3"`` is not an int) and lenient
about shape: unknown keys ignored, missing ones ``None``, an unknown enum value a ``str``.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any, Final

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from twochat_voip._models import CallDetailRecord, CallDirection, CallStatus
from twochat_voip._resources import WebhookEvent

_EXACT_FLOAT_INTS: Final = 2**53  # orjson reads a longer JSON integer as an inexact float


def _exactly(kind: type, what: str) -> Callable[[object, type], Any]:
    def structure(value: object, _: type) -> object:
        if type(value) is kind:
            return value
        raise TypeError(f"expected {what}, got {type(value).__name__}")

    return structure


def _structure_int(value: object, _: type) -> int:
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        if abs(value) > _EXACT_FLOAT_INTS:
            raise ValueError("an integer too long to read exactly")
        return int(value)
    if type(value) is Decimal and value.is_finite() and value == value.to_integral_value():
        return int(value)  # 3.0 read by json.loads(parse_float=Decimal), for exports
    raise TypeError(f"expected an integer, got {type(value).__name__}")


def _structure_decimal(value: object, _: type) -> Decimal:
    # A float's repr is the shortest text that reads back as it: for a price of up to
    # 15 digits, the text 2Chat sent. Decimal(0.0594) would expand the binary value.
    if type(value) is float:
        result = Decimal(repr(value))
    elif type(value) is Decimal:  # read exactly (``json.loads(parse_float=Decimal)``)
        result = value
    elif type(value) is int:
        result = Decimal(value)
    elif type(value) is str:
        try:
            result = Decimal(value)
        except InvalidOperation:
            raise ValueError(f"not a number: {value[:40]!r}") from None
    else:
        raise TypeError(f"expected a number, got {type(value).__name__}")
    if not result.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    return result


def parse_timestamp(value: object, _: type = datetime) -> datetime:
    """Read an ISO 8601 timestamp as an aware UTC datetime (no offset means UTC)."""
    if type(value) is not str:
        raise TypeError(f"expected an ISO 8601 timestamp, got {type(value).__name__}")
    parsed = datetime.fromisoformat(value)
    # Every zero offset becomes the one UTC object, so that equal records hash equal.
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_timestamp(value: datetime) -> str:
    """Write a datetime the way 2Chat does: UTC, ISO 8601, ``Z`` suffix."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat() + "Z"


def _open_enum(enum_type: type[enum.StrEnum]) -> Callable[[object, type], object]:
    members: dict[str, enum.StrEnum] = {member.value: member for member in enum_type}
    if enum_type is WebhookEvent:  # 2Chat's own n8n node spells it so
        members["call.outgoing.completed"] = WebhookEvent.CALL_OUTBOUND_COMPLETED

    def structure(value: object, _: type) -> enum.StrEnum | str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise TypeError(f"expected a string, got {type(value).__name__}")
        return members.get(value, value)

    return structure


# Attribute names whose wire name differs: the one that is a Python keyword.
WIRE_NAMES: Final[Mapping[str, str]] = MappingProxyType({"from_": "from"})


def _renamed(model: type) -> dict[str, Any]:
    fields = attrs.fields_dict(model)
    return {name: override(rename=key) for name, key in WIRE_NAMES.items() if name in fields}


def _is_model(cls: Any) -> bool:
    return attrs.has(cls) and cls.__module__.startswith("twochat_voip")


def _structure_model(cls: type, conv: cattrs.Converter) -> Callable[[Any, type], Any]:
    hook: Callable[[Any, type], Any] = make_dict_structure_fn(cls, conv, **_renamed(cls))

    # cattrs' generated hooks test keys with `in`, which a string also answers:
    # without this, "agent": "Jane" would quietly become an empty Agent.
    def structure(value: Any, cls: type) -> Any:
        if not isinstance(value, dict):
            raise TypeError(f"expected a JSON object, got {type(value).__name__}")
        return hook(value, cls)

    return structure


def make_converter(*, detailed_validation: bool = False) -> cattrs.Converter:
    """Make a new, independent converter for 2Chat's wire format.

    ``detailed_validation=True`` is slower and reports every bad field with its path
    (see :func:`cattrs.transform_error`).
    """
    conv = cattrs.Converter(detailed_validation=detailed_validation, forbid_extra_keys=False)
    conv.register_structure_hook(str, _exactly(str, "a string"))
    conv.register_structure_hook(bool, _exactly(bool, "true or false"))
    conv.register_structure_hook(int, _structure_int)
    conv.register_structure_hook(Decimal, _structure_decimal)
    conv.register_structure_hook(datetime, parse_timestamp)
    for enum_type in (CallStatus, CallDirection, WebhookEvent):  # a new value stays a str
        conv.register_structure_hook(enum_type | str | None, _open_enum(enum_type))
    conv.register_structure_hook_factory(_is_model, functools.partial(_structure_model, conv=conv))
    conv.register_unstructure_hook(datetime, format_timestamp)
    for enum_type in (CallDirection, CallStatus):  # plain JSON strings on the wire
        conv.register_unstructure_hook(enum_type, str)
    # An integral Decimal read from a JSON integer goes back as an integer.
    conv.register_unstructure_hook(
        Decimal, lambda value: int(value) if value.as_tuple().exponent == 0 else float(value)
    )
    conv.register_unstructure_hook(
        CallDetailRecord,
        make_dict_unstructure_fn(CallDetailRecord, conv, **_renamed(CallDetailRecord)),
    )
    return conv


converter: cattrs.Converter = make_converter()
"""A converter for your own use; the SDK parses with its own, so hooks here change only yours."""


@functools.cache
def sdk_converter() -> cattrs.Converter:
    """The converter the SDK itself parses and writes records with."""
    return make_converter()


@functools.cache
def _explaining_converter() -> cattrs.Converter:
    return make_converter(detailed_validation=True)


def _say(exc: BaseException, _: type | None) -> str:
    return "required field missing" if isinstance(exc, KeyError) else str(exc) or type(exc).__name__


def explain_invalid(data: Any, cls: type, error: BaseException | None = None) -> str:
    """Say, field by field, why ``data`` does not structure as ``cls`` (else ``error``)."""
    try:
        _explaining_converter().structure(data, cls)
    except cattrs.BaseValidationError as exc:
        return "; ".join(cattrs.transform_error(exc, path=cls.__name__, format_exception=_say))
    except Exception as exc:  # noqa: BLE001 - any hook's own error is the explanation
        return f"{type(exc).__name__}: {exc}"
    if error is None:
        return "the record was refused, but no field is wrong"
    return f"{type(error).__name__}: {error}"
