"""JSON answers decoded one way: with orjson when it is installed (the ``speed``
extra), else with the standard library, and refused alike either way.

orjson refuses a body nested deeper than 1024 levels with a ``ValueError``; the
standard library recurses until Python stops it with a ``RecursionError``, which no
caller expects from a parser. :func:`loads_stdlib` turns that into a ``ValueError``
too, and :func:`is_too_deep` tells both apart from other bodies that are not JSON: an
answer of ``"[" * 100000`` is refused alike with or without orjson, on any status.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = ["choose_loads", "is_too_deep", "loads_stdlib"]

_TOO_DEEP = "the JSON is nested too deeply"


def loads_stdlib(body: bytes | str) -> Any:
    """``json.loads``, with a body nested too deeply for Python refused as not JSON
    (``ValueError``) instead of raising ``RecursionError``."""
    try:
        return json.loads(body)
    except RecursionError:
        raise ValueError(_TOO_DEEP) from None


def is_too_deep(error: ValueError) -> bool:
    """Whether a decoding error says the body was nested too deeply (orjson's "depth
    limit exceeded", or :func:`loads_stdlib`'s), rather than not JSON at all."""
    text = str(error)
    return text == _TOO_DEEP or text.startswith("depth limit exceeded")


def choose_loads() -> Callable[[bytes], Any]:
    """orjson's ``loads`` when it can be imported, else :func:`loads_stdlib`."""
    try:
        from orjson import loads  # noqa: PLC0415 - optional: the speed extra
    except ImportError:
        return loads_stdlib
    return loads
