"""The compiled structure hook is cattrs' generated hook, only faster.

hypothesis generates attrs models of many shapes (defaults, factories, optional
collections, ``init=False``, subclasses, aliases, cached hashes, validators,
converters) and records for them, and checks the converter's hook (compiled where the
model allows it, cattrs' otherwise) accepts, refuses and builds exactly what plain
cattrs does.
"""

from __future__ import annotations

import collections
from datetime import datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar, get_args

import attrs
import cattrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twochat_voip import Agent, CallCost, CallDetailRecord, CallDirection, CallStatus
from twochat_voip._converter import explain_invalid, in_place_of, make_converter, register_model
from twochat_voip._fast_structure import compiled_structure_hook
from twochat_voip.testing import EXAMPLE_CDR

ANNOTATIONS: list[Any] = [
    str,
    str | None,
    bool,
    bool | None,
    int,
    int | None,
    Decimal,
    Decimal | None,
    datetime,
    datetime | None,
    CallStatus | str | None,
    CallDirection | str | None,
    list[str] | None,
    list[int],
    dict[str, int] | None,
    Agent | None,
    Agent,
]
NAMES = ["uuid", "from_", "status", "_private", "o", "get", "cls", "new", "MISSING", "repr"]
"""Field names, some of them names the generated source uses itself."""

VALUES: list[Any] = [
    None,
    "x",
    "",
    "O",
    "COMPLETED",
    "VOICEMAIL",
    "2025-11-05T14:46:27Z",
    "2025-11-05T14:46:27+02:00",
    "2025-11-05T14:46:27",
    "2025-11-05Z",
    "not a date",
    "0.5",
    0,
    13,
    -5,
    2.0,
    2.5,
    0.0594,
    float("inf"),
    True,
    False,
    Decimal("1.5"),
    Decimal("NaN"),
    [],
    ["a"],
    [1, 2],
    {},
    {"uuid": "USR1", "full_name": "Jane"},
    {"a": 1},
]


def _refuse_13(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value == 13:
        raise ValueError(f"{attribute.name} may not be 13")


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


VALID: dict[Any, list[Any]] = {
    str: ["x", ""],
    bool: [True, False],
    int: [0, 13, -5, 2.0],
    Decimal: [0.0594, 2.5, 0, "0.5", Decimal("1.5")],
    datetime: ["2025-11-05T14:46:27Z", "2025-11-05T14:46:27+02:00", "2025-11-05T14:46:27"],
    CallStatus | str | None: ["COMPLETED", "VOICEMAIL", None],
    CallDirection | str | None: ["O", "I", "X", None],
    list[str]: [[], ["a"]],
    list[int]: [[1, 2]],
    dict[str, int]: [{"a": 1}],
    Agent: [{"uuid": "USR1", "full_name": "Jane"}, {}],
}
"""Values each annotation (or, for an optional one, its non-None part) accepts."""


def _valid_values(annotation: Any) -> list[Any]:
    if annotation in VALID:
        return VALID[annotation]
    inner = [arg for arg in get_args(annotation) if arg is not type(None)]
    return [*VALID[inner[0]], None]


@st.composite
def field_specs(draw: st.DrawFn, *, handled: bool) -> dict[str, Any]:
    """A field; with ``handled``, of the shape the compiled hook takes."""
    annotation = draw(st.sampled_from(ANNOTATIONS))
    spec: dict[str, Any] = {"type": annotation}
    defaults = ["none", "none", "required"] + ([] if handled else ["value", "factory"])
    default = draw(st.sampled_from(defaults))
    if default == "none":
        spec["default"] = None
    elif default == "value":
        spec["default"] = 7
    elif default == "factory":
        spec["default"] = attrs.Factory(list)
    if not handled:
        spec["init"] = draw(st.sampled_from([True] * 3 + [False]))
    extra = draw(st.sampled_from([None] * 6 + ["validator", "converter"]))
    if extra == "validator":
        spec["validator"] = _refuse_13
    elif extra == "converter":
        spec["converter"] = _upper
    return spec


@st.composite
def models(draw: st.DrawFn) -> type:
    # Half the models are of the compiled hook's shape (all but "_private", whose
    # attrs alias is "private", and no other defaults), half of any shape at all.
    handled = draw(st.booleans())
    pool = [name for name in NAMES if not (handled and name.startswith("_"))]
    names = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=6, unique=True))
    fields = {name: attrs.field(**draw(field_specs(handled=handled))) for name in names}
    options: dict[str, Any] = {
        "slots": draw(st.booleans()),
        "frozen": draw(st.booleans()),
        "kw_only": True,
    }
    if options["frozen"] and draw(st.booleans()):
        options["cache_hash"] = True
    split = draw(st.integers(0, len(names))) if draw(st.booleans()) else 0
    bases: tuple[type, ...] = ()
    if split:
        base_fields = dict(list(fields.items())[:split])
        bases = (attrs.make_class("Base", base_fields, **options),)
        fields = dict(list(fields.items())[split:])
    return attrs.make_class("Model", fields, bases=bases, **options)


@st.composite
def records(draw: st.DrawFn, model: type) -> Any:
    shape = draw(st.sampled_from(["dict"] * 8 + ["ordered", "list", "str"]))
    if shape == "list":
        return [1]
    if shape == "str":
        return "uuid"
    record: dict[str, Any] = {}
    for field in attrs.fields(model):
        key = "from" if field.name == "from_" else field.name
        present = draw(st.sampled_from(["valid"] * 6 + ["any", "missing"]))
        if present == "valid":
            record[key] = draw(st.sampled_from(_valid_values(field.type)))
        elif present == "any":
            record[key] = draw(st.sampled_from(VALUES))
    if draw(st.booleans()):
        record["unknown"] = "kept out"
    return collections.OrderedDict(record) if shape == "ordered" else record


def plain_cattrs() -> cattrs.Converter:
    """The SDK's converter with cattrs' generated hooks for its models too."""
    plain = make_converter()
    for model in (Agent, CallCost, CallDetailRecord):
        register_model(plain, model, fast=False)
    return plain


def converters(model: type) -> tuple[Any, Any]:
    """The model's hook as the SDK registers it, and plain cattrs' generated hook."""
    fast, plain = make_converter(), plain_cattrs()
    register_model(fast, model)
    register_model(plain, model, fast=False)
    return fast.get_structure_hook(model), plain.get_structure_hook(model)


_UNSET = object()


def _never(value: object, cls: object) -> object:
    raise AssertionError("the fallback is for what is not a plain dict")


OPTIONAL_INT: Any = int | None
OPTIONAL_STR: Any = str | None


def observed(value: Any) -> Any:
    """What a built model holds: each field's value and its exact type, and its hash."""
    held = []
    for field in attrs.fields(type(value)):
        got = getattr(value, field.name, _UNSET)
        held.append((field.name, type(got), got))
    hashed = hash(value) if type(value).__hash__ is not None else None
    return held, hashed


def outcome(hook: Any, record: Any, model: type) -> Any:
    try:
        return observed(hook(record, model))
    except Exception:
        return "refused"


# Each example builds a model class and compiles two hooks (about a tenth of a second
# under coverage): 120 a run keeps the suite in budget; every run draws new ones.
@settings(max_examples=120, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(data=st.data())
def test_the_converters_hook_equals_plain_cattrs(data: st.DataObject) -> None:
    """On any generated model and record: both refuse, or both build the same."""
    model = data.draw(models())
    try:
        fast, plain = converters(model)
    except Exception as exc:
        with pytest.raises(type(exc)):
            make_converter().get_structure_hook(model)
        return
    for _ in range(5):
        record = data.draw(records(model))
        assert outcome(fast, record, model) == outcome(plain, record, model), record


def test_the_sdks_models_get_the_compiled_hook() -> None:
    """The three models are of the handled shape: the fast path is the one in use."""
    conv = make_converter()
    for model in (Agent, CallCost, CallDetailRecord):
        hook = compiled_structure_hook(model, conv, {"from_": "from"}, in_place_of(conv), _never)
        assert hook is not None
        assert conv.get_structure_hook(model).__code__.co_filename.startswith("<twochat_voip")
    record = conv.structure(EXAMPLE_CDR, CallDetailRecord)
    assert conv.unstructure(record) == EXAMPLE_CDR


@pytest.mark.parametrize(
    "field",
    [
        attrs.field(type=int, default=7),
        attrs.field(type=list[str], factory=list),
        attrs.field(type=OPTIONAL_INT, default=None, init=False),
        attrs.field(type=OPTIONAL_INT, default=None, alias="other"),
    ],
    ids=["a default other than None", "a factory", "init=False", "an alias"],
)
def test_other_shapes_fall_back_to_cattrs(field: Any) -> None:
    """A model outside the handled shape gets no compiled hook; the converter then
    registers cattrs' own, which reads it right."""
    model = attrs.make_class("Model", {"uuid": attrs.field(type=str), "x": field}, kw_only=True)
    conv = make_converter()
    assert compiled_structure_hook(model, conv, {}, in_place_of(conv), _never) is None
    hook = register_model(conv, model)
    generated = hook.__closure__[0].cell_contents  # type: ignore[index]  # _objects_only's
    assert generated.__code__.co_filename.startswith("<cattrs generated structure")
    built: Any = conv.structure({"uuid": "a"}, model)
    expected = attrs.evolve(model(uuid="a"))
    assert observed(built) == observed(expected)


@pytest.mark.parametrize(
    ("options", "extra"),
    [
        ({"frozen": True, "cache_hash": True}, {}),
        ({}, {"validator": _refuse_13}),
        ({}, {"converter": _upper}),
        ({"slots": False}, {}),
    ],
    ids=["cache_hash", "a validator", "a converter", "no slots"],
)
def test_constructor_is_called_when_init_does_more(options: dict[str, Any], extra: Any) -> None:
    """When __init__ does more than set slots, the compiled hook calls it."""
    model = attrs.make_class(
        "Model",
        {"x": attrs.field(type=OPTIONAL_STR, default=None, **extra)},
        kw_only=True,
        **({"slots": True} | options),
    )
    conv = make_converter()
    hook = register_model(conv, model)
    assert observed(hook({"x": "a"}, model)) == observed(model(x="a"))


def test_a_disagreement_still_explains_the_refusal() -> None:
    """Were the fast hook to refuse a record the detailed one accepts, the message
    says what the fast one raised, never that the record is valid."""
    error = TypeError("uuid: expected str")
    message = explain_invalid(EXAMPLE_CDR, CallDetailRecord, error)
    assert message == "TypeError: uuid: expected str"
    assert "valid" not in explain_invalid(EXAMPLE_CDR, CallDetailRecord)
    # Without the fast hook's error, the words say exactly that nothing was found.
    assert explain_invalid(EXAMPLE_CDR, CallDetailRecord) == (
        "the record was refused, but no field is wrong"
    )


_T = TypeVar("_T")


@attrs.frozen(kw_only=True)
class _Generic(Generic[_T]):
    x: _T | None = None


def test_generic_models_are_cattrs_own() -> None:
    """A generic model, parametrised or not, gets no compiled hook."""
    conv = make_converter()
    for model in (_Generic, _Generic[int]):
        assert compiled_structure_hook(model, conv, {}, in_place_of(conv), _never) is None
    assert conv.structure({"x": 2}, _Generic[int]) == _Generic(x=2)
    with pytest.raises(TypeError):
        conv.structure({"x": "2"}, _Generic[int])


@attrs.frozen(kw_only=True)
class _PostInit:
    x: str | None = None

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "x", "set")


def test_post_init_runs() -> None:
    """A model with __attrs_post_init__ is built through __init__, which runs it."""
    conv = make_converter()
    hook = compiled_structure_hook(_PostInit, conv, {}, in_place_of(conv), _never)
    assert hook is not None
    assert hook({"x": "a"}, _PostInit).x == "set"


class _Normalising(dict[str, Any]):
    """Strips strings as they are read with [] (and only with [])."""

    def __getitem__(self, key: str) -> Any:
        value = super().__getitem__(key)
        return value.strip() if isinstance(value, str) else value


class _Hidden(dict[str, Any]):
    """Answers `in` for uuid only."""

    def __contains__(self, key: object) -> bool:
        return key == "uuid"


@pytest.mark.parametrize(
    "record",
    [
        _Normalising({**EXAMPLE_CDR, "to_number": "  +15551234567  "}),
        _Hidden({**EXAMPLE_CDR, "duration": "x"}),
    ],
    ids=["__getitem__ overridden", "__contains__ overridden"],
)
def test_a_dict_subclass_is_read_as_cattrs_reads_it(record: dict[str, Any]) -> None:
    """A dict subclass may answer get() otherwise than in and []: it goes to cattrs'
    own hook, so both converters build the same (found by a hostile review)."""
    fast, plain = make_converter(), plain_cattrs()
    assert observed(fast.structure(record, CallDetailRecord)) == observed(
        plain.structure(record, CallDetailRecord)
    )
