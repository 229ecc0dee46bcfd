"""JSON answers decoded one way: with orjson when it is installed (the ``speed``
extra), else with the standard library, and refused alike either way.

orjson refuses a body nested deeper than 1024 levels with a ``ValueError``; the
standard library recurses until Python stops it with a ``RecursionError``, which no
caller expects from a parser. :func:`loads_stdlib` turns that into the same
``ValueError``, so an answer of ``"[" * 100000`` is "not JSON" with or without orjson.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = ["choose_loads", "loads_stdlib"]


def loads_stdlib(body: bytes | str) -> Any:
    """``json.loads``, with a body nested too deeply for Python refused as not JSON
    (``ValueError``) instead of raising ``RecursionError``."""
    try:
        return json.loads(body)
    except RecursionError:
        raise ValueError("the JSON is nested too deeply") from None


def choose_loads() -> Callable[[bytes], Any]:
    """orjson's ``loads`` when it can be imported, else :func:`loads_stdlib`."""
    try:
        from orjson import loads  # noqa: PLC0415 - optional: the speed extra
    except ImportError:
        return loads_stdlib
    return loads
