"""CallSuccess and CallFailure, and CallResult their union: what runs yield, what type
checkers see."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import attrs
import pytest
from typecheck import mypy_strict

import twochat_voip as tv
from twochat_voip import AnyCallResult, CallFailure, CallResult, CallSuccess, VoIPClient
from twochat_voip.testing import EXAMPLE_CDR, FakeTwoChatServer

RECORD = tv.CallDetailRecord(uuid="CDR1")
MISSING = tv.NotFoundError("gone", status_code=404)


def test_both_are_call_results_with_a_fixed_ok() -> None:
    """A success is ok, a failure is not, and both are CallResults (a runtime union)."""
    made: list[CallResult] = [
        CallSuccess(call_uuid="a", cdr=RECORD),
        CallFailure(call_uuid="b", error=MISSING),
    ]
    assert [isinstance(r, CallResult) for r in made] == [True, True]
    assert [r.ok for r in made] == [True, False]
    assert AnyCallResult is CallResult  # the older name, the same union
    assert not isinstance(("a", RECORD, None, 0), CallResult)


def test_results_are_equal_and_hash_alike_when_their_fields_are() -> None:
    """Two results of one class with the same fields are equal and hash alike; any
    field apart, or the other class, and they differ."""
    for make in (
        lambda: CallSuccess(call_uuid="a", cdr=RECORD, index=1),
        lambda: CallFailure(call_uuid="b", error=MISSING, index=1),
    ):
        assert make() == make()
        assert hash(make()) == hash(make())
    assert CallSuccess(call_uuid="a", cdr=RECORD) != CallSuccess(call_uuid="a", cdr=RECORD, index=1)
    either: list[CallResult] = [
        CallFailure(call_uuid="a", error=MISSING),
        CallSuccess(call_uuid="a", cdr=RECORD),
    ]
    assert either[0] != either[1]


@pytest.mark.parametrize(
    ("cls", "fields"),
    [(CallSuccess, {"error": None}), (CallFailure, {"cdr": None})],
    ids=["success without a record", "failure without an error"],
)
def test_the_field_that_makes_the_class_is_required(
    cls: type[CallResult], fields: dict[str, Any]
) -> None:
    """A CallSuccess needs its record and a CallFailure its error."""
    with pytest.raises(TypeError, match="missing 1 required keyword-only argument"):
        cls(call_uuid="a", **fields)


def test_results_pickle_as_the_class_they_are() -> None:
    """A pickled result comes back as the same class, with the same fields (its error
    a copy: exceptions are equal only to themselves)."""
    success = CallSuccess(call_uuid="a", cdr=RECORD, index=3)
    assert pickle.loads(pickle.dumps(success)) == success  # noqa: S301 - our own bytes
    for failure in (
        CallFailure(call_uuid="b", error=MISSING, index=4),
        CallFailure(call_uuid="c", error=ValueError("bad id"), index=5),
    ):
        copy = pickle.loads(pickle.dumps(failure))  # noqa: S301 - our own bytes
        assert type(copy) is CallFailure
        assert type(copy.error) is type(failure.error)
        assert repr(copy) == repr(failure)


def test_both_classes_have_the_same_fields_in_order() -> None:
    """call_uuid, cdr, error, index on both: the reprs read alike."""
    names = ["call_uuid", "cdr", "error", "index"]
    assert [f.name for f in attrs.fields(CallSuccess)] == names
    assert [f.name for f in attrs.fields(CallFailure)] == names
    assert repr(CallFailure(call_uuid="x", error=ValueError("bad"))) == (
        "CallFailure(call_uuid='x', cdr=None, error=ValueError('bad'), index=0)"
    )


async def test_a_run_yields_successes_and_failures() -> None:
    """get_calls answers a fetched id with a CallSuccess, a missing one with a
    CallFailure."""
    async with (
        FakeTwoChatServer() as server,
        VoIPClient(
            api_key=server.api_key, base_url=server.base_url, transport=server.transport()
        ) as voip,
    ):
        results = [
            r async for r in voip.get_calls([EXAMPLE_CDR["uuid"], "CDRnothere"], ordered=True)
        ]
    assert [type(r) for r in results] == [CallSuccess, CallFailure]
    assert isinstance(results[1].error, tv.NotFoundError)


NARROWING = """
from typing import assert_type

from twochat_voip import (
    AnyCallResult,
    CallDetailRecord,
    CallFailure,
    CallResult,
    CallSuccess,
    TwoChatError,
)


def on_ok(result: CallResult) -> str:
    if result.ok:
        assert_type(result, CallSuccess)
        return result.cdr.uuid
    assert_type(result, CallFailure)
    assert_type(result.error, TwoChatError | ValueError)
    return str(result.error)


def on_not_ok(result: CallResult) -> str:
    if not result.ok:
        return type(result.error).__name__
    else:
        return result.cdr.uuid


def on_error(result: CallResult) -> CallDetailRecord | None:
    if result.error is None:
        assert_type(result.cdr, CallDetailRecord)
        return result.cdr
    return None


def on_match(result: CallResult) -> str:
    match result:
        case CallSuccess(cdr=cdr):
            return cdr.uuid
        case CallFailure(error=error):
            return str(error)


def on_the_older_name(result: AnyCallResult) -> str:
    return result.cdr.uuid if result.ok else str(result.error)
"""


@pytest.mark.slow
def test_ok_narrows_a_result_under_mypy_strict(tmp_path: Path, mypy_cache: Path) -> None:
    """`if result.ok:`, `if not result.ok:`, `if result.error is None:` and a match
    narrow a CallResult (or an AnyCallResult), so result.cdr needs no None check there."""
    snippet = tmp_path / "narrowing.py"
    snippet.write_text(NARROWING)
    report, status = mypy_strict([snippet], mypy_cache)
    assert status == 0, report


def test_a_result_not_narrowed_is_refused_under_mypy_strict(
    tmp_path: Path, mypy_cache: Path
) -> None:
    """The control: without narrowing, mypy --strict rejects result.cdr.uuid (so the
    test above can fail)."""
    snippet = tmp_path / "wide.py"
    snippet.write_text(
        "from twochat_voip import CallResult\n\n\n"
        "def uuid(result: CallResult) -> str:\n"
        "    return result.cdr.uuid\n"
    )
    report, status = mypy_strict([snippet], mypy_cache)
    assert status == 1
    assert 'Item "None" of "CallDetailRecord | None" has no attribute "uuid"' in report
