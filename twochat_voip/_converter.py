"""The one place that knows the wire format: a cattrs converter for 2Chat's JSON.

``converter.structure(wire_dict, CallDetailRecord)`` turns an answer's ``cdr`` object
into a model and ``converter.unstructure(record)`` turns it back, byte for byte for the
documented format: key ``from``, ISO 8601 timestamps ending in ``Z``, the price as a
JSON number.

Structuring is strict about types (``"false"`` is not a bool, ``"3"`` is not an int)
and lenient about shape: unknown keys are ignored, missing optional keys become
``None``, and an enum value the SDK does not know stays a plain ``str``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from twochat_voip._models import Agent, CallCost, CallDetailRecord, CallDirection, CallStatus

__all__ = ["converter", "make_converter"]

_E = TypeVar("_E", CallDirection, CallStatus)
_T = TypeVar("_T")


def _structure_str(value: object, _: type) -> str:
    if type(value) is str:
        return value
    raise TypeError(f"expected a string, got {type(value).__name__}")


def _structure_bool(value: object, _: type) -> bool:
    if type(value) is bool:
        return value
    raise TypeError(f"expected true or false, got {type(value).__name__}")


def _structure_int(value: object, _: type) -> int:
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)
    raise TypeError(f"expected an integer, got {type(value).__name__}")


def _structure_decimal(value: object, _: type) -> Decimal:
    # A JSON number arrives as a float; its repr is the shortest text that reads back
    # as the same float, which for any price of up to 15 significant digits is the
    # text 2Chat sent. Decimal(0.0594) would instead expand the binary value.
    if type(value) is float:
        result = Decimal(repr(value))
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
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    if parsed.utcoffset():
        return parsed.astimezone(UTC)
    # Any zero offset (Z, +00:00) is normalised to the one UTC object, so that
    # equal records compare and hash equal.
    return parsed.replace(tzinfo=UTC)


def format_timestamp(value: datetime) -> str:
    """Write a datetime the way 2Chat does: UTC, ISO 8601, ``Z`` suffix."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat() + "Z"


def _open_enum(enum_type: type[_E]) -> Callable[[object, type], _E | str | None]:
    members: dict[str, _E] = {member.value: member for member in enum_type}

    def structure(value: object, _: type) -> _E | str | None:
        if value is None:
            return None
        if type(value) is not str:
            raise TypeError(f"expected a string, got {type(value).__name__}")
        return members.get(value, value)

    return structure


def _unstructure_decimal(value: Decimal) -> int | float:
    # An integral Decimal read from a JSON integer goes back as an integer.
    if value.as_tuple().exponent == 0:
        return int(value)
    return float(value)


def _objects_only(hook: Callable[[Any, type], _T]) -> Callable[[Any, type], _T]:
    # cattrs' generated hooks test keys with `in`, which a string also answers:
    # without this, "agent": "Jane" would quietly become an empty Agent.
    def structure(value: Any, cls: type) -> _T:
        if not isinstance(value, dict):
            raise TypeError(f"expected a JSON object, got {type(value).__name__}")
        return hook(value, cls)

    return structure


def make_converter(*, detailed_validation: bool = False) -> cattrs.Converter:
    """Build a converter with every hook for 2Chat's wire format registered.

    ``detailed_validation=True`` is slower and reports every bad field with its path
    (see :func:`cattrs.transform_error`); the SDK uses it only to explain an answer
    the fast converter refused.
    """
    conv = cattrs.Converter(detailed_validation=detailed_validation, forbid_extra_keys=False)
    conv.register_structure_hook(str, _structure_str)
    conv.register_structure_hook(bool, _structure_bool)
    conv.register_structure_hook(int, _structure_int)
    conv.register_structure_hook(Decimal, _structure_decimal)
    conv.register_structure_hook(datetime, parse_timestamp)
    conv.register_structure_hook(CallStatus | str | None, _open_enum(CallStatus))
    conv.register_structure_hook(CallDirection | str | None, _open_enum(CallDirection))
    conv.register_unstructure_hook(datetime, format_timestamp)
    conv.register_unstructure_hook(Decimal, _unstructure_decimal)
    conv.register_structure_hook(Agent, _objects_only(make_dict_structure_fn(Agent, conv)))
    conv.register_structure_hook(CallCost, _objects_only(make_dict_structure_fn(CallCost, conv)))
    conv.register_structure_hook(
        CallDetailRecord,
        _objects_only(
            make_dict_structure_fn(CallDetailRecord, conv, from_=override(rename="from"))
        ),
    )
    conv.register_unstructure_hook(
        CallDetailRecord,
        make_dict_unstructure_fn(CallDetailRecord, conv, from_=override(rename="from")),
    )
    return conv


converter: cattrs.Converter = make_converter()
"""The converter the client uses; structure and unstructure 2Chat's JSON with it."""

_explaining_converter: cattrs.Converter = make_converter(detailed_validation=True)


def _say(exc: BaseException, _: type | None) -> str:
    if isinstance(exc, KeyError):
        return "required field missing"
    return str(exc) or type(exc).__name__


def explain_invalid(data: Any, cls: type) -> str:
    """Say, field by field, why ``data`` does not structure as ``cls``."""
    try:
        _explaining_converter.structure(data, cls)
    except cattrs.BaseValidationError as exc:
        return "; ".join(cattrs.transform_error(exc, path=cls.__name__, format_exception=_say))
    except Exception as exc:  # noqa: BLE001 - any hook's own error is the explanation
        return f"{type(exc).__name__}: {exc}"
    return "valid"  # pragma: no cover - only called after the fast converter failed
