"""The diagnosis stack of ``bench.instructions``: get_calls with the record
structuring replaced by a stub, i.e. the SDK's machinery without building models."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

STUBBED = "twochat_voip get_calls, structuring stubbed"

STUB_TARGET = "twochat_voip._protocol._structure_cdr"
"""What turns the decoded ``cdr`` dict into a model: the converter's structure hook
for CallDetailRecord, (wire dict, class)."""
STUB_PARAMETERS = ["o", "_"]


def _stub_module() -> tuple[ModuleType, str]:
    module, _, name = STUB_TARGET.rpartition(".")
    return importlib.import_module(module), name


def check_stub_target() -> None:
    """Fail loudly if ``STUB_TARGET`` is gone or changed shape: stubbing something else
    would silently measure the wrong thing."""
    module, name = _stub_module()
    function = getattr(module, name, None)
    if function is None:
        raise RuntimeError(
            f"bench.instructions: {STUB_TARGET} no longer exists, so the "
            f"{STUBBED!r} stack cannot stub structuring. Find the function in "
            "twochat_voip/_protocol.py that turns the decoded 'cdr' dict into a "
            "CallDetailRecord and point STUB_TARGET (bench/stub.py) at it."
        )
    parameters = list(inspect.signature(function).parameters)
    if parameters != STUB_PARAMETERS:
        raise RuntimeError(
            f"bench.instructions: {STUB_TARGET} now takes {parameters}, not "
            f"{STUB_PARAMETERS}; check what it does (twochat_voip/_protocol.py) before "
            f"stubbing it for the {STUBBED!r} stack."
        )


class Stub:
    """What ``STUB_TARGET`` is while the stubbed stack runs.

    First a Python function that counts its calls, so that the warm-up run shows
    get_calls still structures through it (:meth:`check`). Then, for the measured
    runs, C's ``dict.get``: called as ``(wire dict, class)`` it answers ``None`` in
    about a hundred instructions, where a Python stub's own frame costs about a
    thousand a record, which the diagnosis would count as the SDK's machinery.
    """

    def __init__(self) -> None:
        self.calls = 0
        self._module, self._name = _stub_module()
        self._original = getattr(self._module, self._name)
        setattr(self._module, self._name, self._counting)

    def _counting(self, cdr: object, cls: object) -> object:
        self.calls += 1
        return cdr

    def check(self, expected: int) -> None:
        """Fail unless the stub was called once a record; then stop counting."""
        if self.calls != expected:
            raise RuntimeError(
                f"bench.instructions: the stub of {STUB_TARGET} was called {self.calls} "
                f"times for {expected} records: get_calls no longer structures through it. "
                "Find the equivalent in twochat_voip/_protocol.py (or wherever parse_call "
                "went) and point STUB_TARGET at it."
            )
        setattr(self._module, self._name, dict.get)

    def restore(self) -> None:
        setattr(self._module, self._name, self._original)


@contextmanager
def structuring_stubbed() -> Iterator[Stub]:
    """Replace ``STUB_TARGET`` by a :class:`Stub` until the block ends."""
    check_stub_target()
    stub = Stub()
    try:
        yield stub
    finally:
        stub.restore()
