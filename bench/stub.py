"""The diagnosis stack of ``bench.instructions``: get_calls with the record
structuring replaced by a stub, i.e. the SDK's machinery without building models."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from multidict import CIMultiDict

from twochat_voip import CallDetailRecord
from twochat_voip._converter import sdk_converter
from twochat_voip._protocol import parse_call
from twochat_voip._requests import Response
from twochat_voip.testing import EXAMPLE_ANSWER

STUBBED = "twochat_voip get_calls, structuring stubbed"

STUB_TARGET = "the CallDetailRecord structure hook of twochat_voip._converter.sdk_converter()"
"""What turns the decoded ``cdr`` dict into a model: a hook called as (wire dict,
class), registered on the converter the SDK parses with."""


class Stub:
    """The structure hook ``STUB_TARGET`` is while the stubbed stack runs.

    First a Python function that counts its calls, so that the warm-up run shows
    get_calls still structures through it (:meth:`check`). Then, for the measured
    runs, C's ``dict.get``: called as ``(wire dict, class)`` it answers ``None`` in
    about a hundred instructions, where a Python stub's own frame costs about a
    thousand a record, which the diagnosis would count as the SDK's machinery.
    """

    def __init__(self) -> None:
        self.calls = 0
        self._original = sdk_converter().get_structure_hook(CallDetailRecord)
        self._register(self._counting)

    def _register(self, hook: Callable[[Any, Any], object]) -> None:
        sdk_converter().register_structure_hook(CallDetailRecord, hook)

    def _counting(self, cdr: object, cls: object) -> object:
        self.calls += 1
        return cdr

    def check(self, expected: int) -> None:
        """Fail unless the stub was called once a record; then stop counting."""
        if self.calls != expected:
            raise RuntimeError(
                f"bench.instructions: the stub of {STUB_TARGET} was called {self.calls} "
                f"times for {expected} records: get_calls no longer structures through it. "
                "Find the converter twochat_voip/_protocol.py (or wherever parse_call "
                "went) structures records with and point bench/stub.py at it."
            )
        self._register(dict.get)

    def restore(self) -> None:
        self._register(self._original)


@contextmanager
def structuring_stubbed() -> Iterator[Stub]:
    """Replace ``STUB_TARGET`` by a :class:`Stub` until the block ends."""
    stub = Stub()
    try:
        yield stub
    finally:
        stub.restore()


def check_stub_target() -> None:
    """Fail loudly, before minutes under valgrind, if parse_call no longer structures
    through ``STUB_TARGET``: stubbing it would silently measure the wrong thing."""
    answer = Response(200, CIMultiDict(), json.dumps(EXAMPLE_ANSWER).encode())
    with structuring_stubbed() as stub:
        parse_call(answer)
        stub.check(1)
