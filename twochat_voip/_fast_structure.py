"""A faster structure hook for plain attrs models, proved equal to cattrs' own.

cattrs' generated hook calls a function per field (and its Optional handling another);
for 2Chat's flat records that is most of the cost of structuring one. The hook made
here reads the common values in place (a ``str`` that is a ``str``, a timestamp ending
in ``Z``, a finite price) and hands every other value to the very hook cattrs would
call, so it accepts, refuses and builds exactly what cattrs' generated hook does.

It is made only for models of the shape it was proved on, which
:func:`compiled_structure_hook` checks: every field set by ``__init__`` under its own
name, with no default or a ``None`` default. For anything else it answers ``None`` and
the converter uses cattrs' generated hook. ``tests/test_fast_structure.py`` holds the
proof: hypothesis generates models (defaults, factories, optional collections,
``init=False``, subclasses, aliases, cached hashes, validators) and records, and checks
the two hooks agree on every one.
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

import attrs
import cattrs

__all__ = ["InPlace", "compiled_structure_hook"]

_MISSING: Final = object()


@attrs.frozen
class InPlace:
    """How a value of one annotation is read without calling its hook.

    Attributes:
        hook: The hook the converter has for the annotation; the in-place reading is
            used only while the converter still has this one.
        test: When a value needs no hook (``{v}`` stands for the value).
        read: How a value that passes ``test`` is read; ``None``: as it is.
        none_is_none: Whether the hook turns ``None`` into ``None`` (an optional field).
        names: What ``test`` and ``read`` name besides the builtins they use.
    """

    hook: Callable[[Any, type], Any]
    test: str
    read: str | None = None
    none_is_none: bool = False
    names: Mapping[str, object] = attrs.field(factory=dict)


_NAMES: Final[Mapping[str, object]] = types.MappingProxyType(
    {
        "fromisoformat": datetime.fromisoformat,
        "Decimal": Decimal,
        "repr": repr,
        "isfinite": math.isfinite,
        "MISSING": _MISSING,
        "dict": dict,
        "type": type,
    }
)
"""What the generated source may name, besides the model and its fields' hooks."""


def compiled_structure_hook(
    cls: type,
    conv: cattrs.Converter,
    renames: Mapping[str, str],
    in_place: Mapping[Any, InPlace],
    fallback: Callable[[Any, type], Any],
) -> Callable[[Any, type], Any] | None:
    """A hook for ``cls`` equal to cattrs' generated one, or ``None`` when ``cls`` is
    not of the shape this module handles.

    Args:
        cls: An attrs class.
        conv: The converter whose hooks read each field's value.
        renames: Field name -> wire key, where they differ.
        in_place: The annotations whose common values are read in place.
        fallback: cattrs' hook for ``cls``, for anything but a plain ``dict`` (a dict
            subclass may answer ``get`` otherwise than ``in`` and ``[]``, which
            cattrs' hook uses).
    """
    if not _handled(cls):
        return None
    attrs.resolve_types(cls)
    namespace: dict[str, Any] = {**_NAMES, "cls": cls, "fallback": fallback}
    lines = [
        "def structure(o, _):",
        "    if type(o) is not dict:",
        "        return fallback(o, _)",
        "    get = o.get",
    ]
    fields = attrs.fields(cls)
    for field in fields:
        key = renames.get(field.name, field.name)
        lines += _field_lines(field, key, conv, in_place, namespace)
    setters = _slot_setters(cls)
    if setters is not None:
        # A frozen attrs __init__ sets each slot through object.__setattr__, about a
        # quarter of the structuring cost; _slot_setters() made sure it does nothing
        # else, so set the slots directly.
        namespace["new"] = object.__new__
        lines.append("    instance = new(cls)")
        for field in fields:
            namespace[f"set_{field.name}"] = setters[field.name]
            lines.append(f"    set_{field.name}(instance, v_{field.name})")
        lines.append("    return instance")
    else:
        arguments = ", ".join(f"{f.name}=v_{f.name}" for f in fields)
        lines.append(f"    return cls({arguments})")
    # The source is built from the model's field names (identifiers, checked by
    # _handled) and fixed text only; keys are written as repr() literals.
    code = compile("\n".join(lines), f"<twochat_voip structure {cls.__qualname__}>", "exec")
    exec(code, namespace)  # noqa: S102  # nosec B102
    structure: Callable[[Any, type], Any] = namespace["structure"]
    return structure


def _handled(cls: type) -> bool:
    """Whether ``cls`` is of the shape the generated hook is proved equal on."""
    if not isinstance(cls, type) or not attrs.has(cls) or getattr(cls, "__parameters__", None):
        # A generic model, or one with its parameters filled in, is cattrs' to read.
        return False
    return all(
        field.init
        and field.alias == field.name
        and field.name.isidentifier()
        and (field.default is attrs.NOTHING or field.default is None)
        for field in attrs.fields(cls)
    )


def _field_lines(
    field: attrs.Attribute[Any],
    key: str,
    conv: cattrs.Converter,
    in_place: Mapping[Any, InPlace],
    namespace: dict[str, Any],
) -> list[str]:
    """The lines that read ``field`` (wire key ``key``) into ``v_<name>``."""
    name, annotation = field.name, field.type
    value, hook = f"v_{name}", f"h_{name}"
    namespace[hook] = conv.get_structure_hook(annotation)
    namespace[f"t_{name}"] = annotation
    fast = _in_place(annotation, conv, in_place)
    if fast is not None:
        namespace.update(fast.names)
    if field.default is attrs.NOTHING:  # required: a missing key raises KeyError
        return [f"    {value} = o[{key!r}]", *_reading(value, name, fast, "    ")]
    if fast is not None and fast.none_is_none:
        # Missing and null both come out None, the default.
        return [f"    {value} = get({key!r})", *_reading(value, name, fast, "    ")]
    return [
        f"    {value} = get({key!r}, MISSING)",
        f"    if {value} is MISSING:",
        f"        {value} = None",
        "    else:",
        *_reading(value, name, fast, "        "),
    ]


def _in_place(
    annotation: Any, conv: cattrs.Converter, in_place: Mapping[Any, InPlace]
) -> InPlace | None:
    fast = in_place.get(annotation)  # hashable: cattrs has found its hook already
    if fast is None or conv.get_structure_hook(annotation) is not fast.hook:
        return None
    return fast


def _reading(value: str, name: str, fast: InPlace | None, indent: str) -> list[str]:
    """The lines that turn a present value into the field's value."""
    call = f"{value} = h_{name}({value}, t_{name})"
    if fast is None:
        return [indent + call]
    test = fast.test.format(v=value)
    if fast.read is None:  # a value that passes is kept as it is
        skip = f"{value} is None or {test}" if fast.none_is_none else test
        return [f"{indent}if not ({skip}):", f"{indent}    {call}"]
    lines = [
        f"{indent}if {test}:",
        f"{indent}    {value} = {fast.read.format(v=value)}",
        f"{indent}else:",
        f"{indent}    {call}",
    ]
    if fast.none_is_none:
        return [f"{indent}if {value} is not None:", *("    " + line for line in lines)]
    return lines


def _slot_setters(cls: type) -> dict[str, Callable[[object, object], None]] | None:
    """Each field's slot setter, when setting the slots is all ``__init__`` does."""
    init = getattr(cls.__dict__.get("__init__"), "__code__", None)
    if (
        init is None
        or not init.co_filename.startswith("<attrs generated")
        or hasattr(cls, "__attrs_pre_init__")
        or hasattr(cls, "__attrs_post_init__")
    ):
        return None
    fields = attrs.fields(cls)
    if any(f.validator is not None or f.converter is not None for f in fields):
        return None
    setters: dict[str, Callable[[object, object], None]] = {}
    for klass in cls.__mro__[:-1]:  # all but object
        own = klass.__dict__.get("__slots__")
        if own is None:  # instances have a __dict__: __init__ may do more
            return None
        for slot in (own,) if isinstance(own, str) else own:
            descriptor = klass.__dict__.get(slot)
            if type(descriptor) is types.MemberDescriptorType:  # not __weakref__
                setters.setdefault(slot, descriptor.__set__)
    # Any other slot (a cached hash, say) is state __init__ sets and this would not.
    if setters.keys() != {f.name for f in fields}:
        return None
    return setters
