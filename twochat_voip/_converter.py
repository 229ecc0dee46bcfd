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

import enum
import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any, Final, TypeVar, get_args

import attrs
import cattrs
from attrs import AttrsInstance
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from twochat_voip._models import Agent, CallCost, CallDetailRecord, CallDirection, CallStatus

__all__ = ["converter", "make_converter"]

_E = TypeVar("_E", bound=enum.StrEnum)
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
    if parsed.tzinfo is UTC:  # the usual "...Z"
        return parsed
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


def _members(enum_type: type[_E]) -> dict[str, _E]:
    return {member.value: member for member in enum_type}


def _open_enum(enum_type: type[_E]) -> Callable[[object, type], _E | str | None]:
    members = _members(enum_type)

    def structure(value: object, _: type) -> _E | str | None:
        if value is None:
            return None
        if not isinstance(value, str):
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


def _or_none(hook: Callable[[Any, type], _T]) -> Callable[[Any, type], _T | None]:
    # cattrs' own Optional handling looks the inner hook up on every call; binding it
    # once makes nullable fields several times cheaper to structure.
    def structure(value: Any, cls: type) -> _T | None:
        return None if value is None else hook(value, cls)

    return structure


_INLINE_CHECKS: Final = {str: "str", bool: "bool"}

_OPEN_ENUMS: Final[dict[Any, type[enum.StrEnum]]] = {
    CallStatus | str | None: CallStatus,
    CallDirection | str | None: CallDirection,
}
"""The fields that take an enum's value, or keep a string it does not know."""


def _compile_structure(
    cls: type[AttrsInstance], conv: cattrs.Converter, renames: Mapping[str, str]
) -> Callable[[Any, type], Any]:
    """A structure hook for an attrs model, generated with the common cases inline.

    cattrs' generated hooks call one function per field (and the Optional handling
    another); for 2Chat's flat records that is most of the cost of structuring. This
    one tests ``str`` and ``bool`` fields in place, reads the usual int, timestamp,
    price and enum values in place, and calls a hook only for the rest (nested parts,
    and anything unusual, which the hook reads or refuses). It accepts and refuses
    exactly what the cattrs hooks do; when it refuses, the detailed cattrs converter
    explains why.
    """
    attrs.resolve_types(cls)
    namespace: dict[str, Any] = {"cls": cls, "TypeError": TypeError, "str": str, "bool": bool}
    lines = [
        "def structure(o, _):",
        "    if type(o) is not dict and not isinstance(o, dict):",
        "        raise TypeError('expected a JSON object, got ' + type(o).__name__)",
        "    get = o.get",
    ]
    for field in attrs.fields(cls):
        lines += _field_lines(field, renames.get(field.name, field.name), conv, namespace)
    if _plain_slots(cls):
        # A frozen attrs __init__ sets each slot through object.__setattr__, about a
        # quarter of the structuring cost; with no validators, converters or
        # post-init there is nothing else it does, so set the slots directly.
        namespace["new"] = object.__new__
        lines.append("    instance = new(cls)")
        for field in attrs.fields(cls):
            namespace[f"set_{field.name}"] = cls.__dict__[field.name].__set__
            lines.append(f"    set_{field.name}(instance, v_{field.name})")
        lines.append("    return instance")
    else:  # pragma: no cover - every model today is plain
        arguments = ", ".join(f"{f.name}=v_{f.name}" for f in attrs.fields(cls))
        lines.append(f"    return cls({arguments})")
    # The source is built above from the model's own field names and fixed text only.
    exec("\n".join(lines), namespace)  # noqa: S102  # nosec B102
    structure: Callable[[Any, type], Any] = namespace["structure"]
    return structure


def _field_lines(
    field: attrs.Attribute[Any], key: str, conv: cattrs.Converter, namespace: dict[str, Any]
) -> list[str]:
    """The generated lines that read ``field`` (wire name ``key``) into ``v_<name>``."""
    value, hook = f"v_{field.name}", f"h_{field.name}"
    required = field.default is attrs.NOTHING
    lines = [f"    {value} = o[{key!r}]" if required else f"    {value} = get({key!r})"]
    inner = _non_optional(field.type)
    if inner in _INLINE_CHECKS:
        test = f"type({value}) is not {_INLINE_CHECKS[inner]}"
        return [
            *lines,
            f"    if {test if required else f'{value} is not None and {test}'}:",
            f"        raise TypeError({f'{key}: expected {inner.__name__}'!r})",
        ]
    if field.type in _OPEN_ENUMS:
        # A plain string is looked up in place (one the enum lacks is kept as it is).
        namespace[f"m_{field.name}"] = _members(_OPEN_ENUMS[field.type]).get
        fast: tuple[str, str | None] | None = (
            "type({v}) is str",
            f"m_{field.name}({{v}}, {{v}})",
        )
        inner = field.type
    elif inner is field.type:  # not optional: the hook reads it all
        namespace[hook] = conv.get_structure_hook(inner)
        return [*lines, f"    {value} = {hook}({value}, None)"]
    else:
        fast = _READ_IN_PLACE.get(inner)
        namespace.update(_IN_PLACE_NAMES)
    namespace[hook] = conv.get_structure_hook(inner)
    if fast is None:  # a nested part: always its hook
        return [*lines, f"    if {value} is not None:", f"        {value} = {hook}({value}, None)"]
    test = fast[0].format(v=value)
    read = None if fast[1] is None else fast[1].format(v=value)
    if read is None:  # taken as it is when the test passes
        return [
            *lines,
            f"    if {value} is not None and not ({test}):",
            f"        {value} = {hook}({value}, None)",
        ]
    return [
        *lines,
        f"    if {value} is not None:",
        f"        if {test}:",
        f"            {value} = {read}",
        "        else:",
        f"            {value} = {hook}({value}, None)",
    ]


_READ_IN_PLACE: Final[dict[Any, tuple[str, str | None]]] = {
    # type: (when a value needs no hook, and how it is read then: None, as it is).
    # Any other value goes through the type's hook, which reads it the same way or
    # refuses it.
    int: ("type({v}) is int", None),
    datetime: ("type({v}) is str and {v}[-1:] == 'Z'", "fromisoformat({v})"),  # UTC
    Decimal: ("type({v}) is float and isfinite({v})", "Decimal(repr({v}))"),
}
_IN_PLACE_NAMES: Final = {
    "fromisoformat": datetime.fromisoformat,
    "Decimal": Decimal,
    "repr": repr,
    "isfinite": math.isfinite,
}


def _plain_slots(cls: type) -> bool:
    """Whether instances can be made by setting slots: nothing else in __init__."""
    return (
        "__slots__" in cls.__dict__
        and not hasattr(cls, "__attrs_post_init__")
        and not hasattr(cls, "__attrs_pre_init__")
        and all(f.validator is None and f.converter is None for f in attrs.fields(cls))
    )


def _non_optional(annotation: Any) -> Any:
    args = get_args(annotation)
    if len(args) == 2 and type(None) in args:
        return next(arg for arg in args if arg is not type(None))
    return annotation


WIRE_NAMES: Final[Mapping[str, str]] = MappingProxyType({"from_": "from"})
"""Attribute names whose wire name differs: the one that is a Python keyword."""


def make_converter(*, detailed_validation: bool = False) -> cattrs.Converter:
    """Build a converter with every hook for 2Chat's wire format registered.

    ``detailed_validation=True`` is slower and reports every bad field with its path
    (see :func:`cattrs.transform_error`); the SDK uses it only to explain an answer
    the fast converter refused.
    """
    conv = cattrs.Converter(detailed_validation=detailed_validation, forbid_extra_keys=False)
    scalars: list[tuple[type, Callable[[Any, type], Any]]] = [
        (str, _structure_str),
        (bool, _structure_bool),
        (int, _structure_int),
        (Decimal, _structure_decimal),
        (datetime, parse_timestamp),
    ]
    for cls, hook in scalars:
        conv.register_structure_hook(cls, hook)
        conv.register_structure_hook(cls | None, _or_none(hook))
    for annotation, enum_type in _OPEN_ENUMS.items():
        conv.register_structure_hook(annotation, _open_enum(enum_type))
    conv.register_unstructure_hook(datetime, format_timestamp)
    for enum_type in (CallDirection, CallStatus):  # plain JSON strings on the wire
        conv.register_unstructure_hook(enum_type, str)
    conv.register_unstructure_hook(Decimal, _unstructure_decimal)
    renames = WIRE_NAMES
    models: list[type[AttrsInstance]] = [Agent, CallCost, CallDetailRecord]
    for model in models:
        if detailed_validation:
            overrides = {
                name: override(rename=key)
                for name, key in renames.items()
                if name in attrs.fields_dict(model)
            }
            hook = _objects_only(make_dict_structure_fn(model, conv, **overrides))  # type: ignore[arg-type]
        else:
            hook = _compile_structure(model, conv, renames)
        conv.register_structure_hook(model, hook)
        conv.register_structure_hook(model | None, _or_none(hook))
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
