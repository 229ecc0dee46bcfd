"""CallResult and its two narrowing subclasses: what runs yield, what type checkers see."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import attrs
import pytest
from typecheck import mypy_strict

import twochat_voip as tv
from twochat_voip import AnyCallResult, CallFailure, CallResult, CallSuccess, VoIPClient
from twochat_voip._results import failure, success
from twochat_voip.testing import EXAMPLE_CDR, FakeTwoChatServer

RECORD = tv.CallDetailRecord(uuid="CDR1")
MISSING = tv.NotFoundError("gone", status_code=404)


def test_the_subclasses_are_call_results_with_a_fixed_ok() -> None:
    """A success is ok, a failure is not, and both are CallResults."""
    made = [CallSuccess(call_uuid="a", cdr=RECORD), CallFailure(call_uuid="b", error=MISSING)]
    assert [isinstance(r, CallResult) for r in made] == [True, True]
    assert [r.ok for r in made] == [True, False]
    assert all(isinstance(r, AnyCallResult) for r in made)  # the alias is a runtime union
    assert not isinstance(CallResult(call_uuid="c"), AnyCallResult)


@pytest.mark.parametrize(
    ("made", "built"),
    [
        (success("CDR1", RECORD, 7), CallSuccess(call_uuid="CDR1", cdr=RECORD, index=7)),
        (failure("CDR1", MISSING, 7), CallFailure(call_uuid="CDR1", error=MISSING, index=7)),
    ],
    ids=["success", "failure"],
)
def test_a_result_made_on_the_hot_path_is_the_one_the_class_makes(
    made: AnyCallResult, built: AnyCallResult
) -> None:
    """The bulk engine's positional constructors build the very instance (same class,
    equal, same hash and repr, still frozen) that the class's __init__ builds."""
    assert type(made) is type(built)
    assert made == built
    assert hash(made) == hash(built)
    assert repr(made) == repr(built)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        made.index = 8  # type: ignore[misc]


def test_results_are_equal_across_the_family_when_their_fields_are() -> None:
    """A CallResult(...) equals the success or failure with the same fields, and hashes
    the same: tests written against CallResult keep passing."""
    pairs = [
        (
            CallSuccess(call_uuid="a", cdr=RECORD, index=1),
            CallResult(call_uuid="a", cdr=RECORD, index=1),
        ),
        (CallFailure(call_uuid="b", error=MISSING), CallResult(call_uuid="b", error=MISSING)),
    ]
    for narrow, wide in pairs:
        assert narrow == wide
        assert wide == narrow
        assert hash(narrow) == hash(wide)
    assert CallSuccess(call_uuid="a", cdr=RECORD) != CallSuccess(call_uuid="a", cdr=RECORD, index=1)
    assert CallFailure(call_uuid="b", error=MISSING) != CallResult(call_uuid="b")
    assert CallResult(call_uuid="a") != ("a", None, None, 0)


def test_a_call_result_made_by_hand_is_the_kind_its_fields_say() -> None:
    """CallResult(cdr=...) is a CallSuccess, CallResult(error=...) a CallFailure: code
    written against CallResult gets results that narrow, and match their case."""
    assert type(CallResult(call_uuid="a", cdr=RECORD)) is CallSuccess
    assert type(CallResult(call_uuid="b", error=MISSING, index=3)) is CallFailure
    # Neither or both: the plain base, as before the subclasses.
    assert type(CallResult(call_uuid="c")) is CallResult
    assert type(CallResult(call_uuid="d", cdr=RECORD, error=MISSING)) is CallResult


def test_evolve_never_leaves_ok_contradicting_error() -> None:
    """attrs.evolve on a yielded result (old code marking a record bad, or good) makes
    the class its new fields say: ``ok`` follows ``error``."""
    fetched: CallResult = success("a", RECORD, 0)  # as old code, typed CallResult, sees it
    made_bad = attrs.evolve(fetched, cdr=None, error=MISSING)
    assert type(made_bad) is CallFailure
    assert made_bad.ok is False
    missing: CallResult = failure("a", MISSING, 0)
    made_good = attrs.evolve(missing, cdr=RECORD, error=None)
    assert type(made_good) is CallSuccess
    assert made_good.ok is True
    assert attrs.evolve(made_good, index=5) == CallSuccess(call_uuid="a", cdr=RECORD, index=5)


@pytest.mark.parametrize(
    ("cls", "fields"),
    [
        (CallSuccess, {"cdr": None}),
        (CallSuccess, {"cdr": RECORD, "error": MISSING}),
        (CallFailure, {"error": None}),
        (CallFailure, {"cdr": RECORD, "error": MISSING}),
    ],
)
def test_a_subclass_refuses_fields_it_cannot_hold(
    cls: type[CallResult], fields: dict[str, Any]
) -> None:
    """A CallSuccess without a record, or a CallFailure without an error, would tell
    a type checker something false: refused."""
    with pytest.raises(TypeError, match="picks the class from the fields"):
        cls(call_uuid="a", **fields)


def test_results_pickle_as_the_class_they_are() -> None:
    """A pickled result comes back as the same class, equal to the original."""
    for original in (
        CallSuccess(call_uuid="a", cdr=RECORD, index=3),
        CallFailure(call_uuid="b", error=ValueError("bad id"), index=4),
        CallResult(call_uuid="c"),
    ):
        copy = pickle.loads(pickle.dumps(original))  # noqa: S301 - our own bytes
        assert type(copy) is type(original)
        assert (copy.call_uuid, copy.cdr, copy.index) == (
            original.call_uuid,
            original.cdr,
            original.index,
        )
        assert repr(copy) == repr(original)


def test_the_subclasses_keep_call_results_fields_in_order() -> None:
    """Same fields, same order, no new slots: the repr reads like CallResult's."""
    names = [f.name for f in attrs.fields(CallResult)]
    assert [f.name for f in attrs.fields(CallSuccess)] == names
    assert [f.name for f in attrs.fields(CallFailure)] == names
    assert vars(CallSuccess)["__slots__"] == vars(CallFailure)["__slots__"] == ()
    assert repr(CallFailure(call_uuid="x", error=ValueError("bad"))) == (
        "CallFailure(call_uuid='x', cdr=None, error=ValueError('bad'), index=0)"
    )


async def test_a_run_yields_successes_and_failures() -> None:
    """get_calls answers a fetched id with a CallSuccess, a missing one with a
    CallFailure."""
    async with (
        FakeTwoChatServer() as server,
        VoIPClient(api_key=server.api_key, base_url=server.base_url) as voip,
    ):
        results = [
            r async for r in voip.get_calls([EXAMPLE_CDR["uuid"], "CDRnothere"], ordered=True)
        ]
    assert [type(r) for r in results] == [CallSuccess, CallFailure]
    assert isinstance(results[1].error, tv.NotFoundError)


NARROWING = """
from typing import assert_type

from twochat_voip import AnyCallResult, CallDetailRecord, CallFailure, CallSuccess, TwoChatError


def on_ok(result: AnyCallResult) -> str:
    if result.ok:
        assert_type(result, CallSuccess)
        return result.cdr.uuid
    assert_type(result, CallFailure)
    assert_type(result.error, TwoChatError | ValueError)
    return str(result.error)


def on_not_ok(result: AnyCallResult) -> str:
    if not result.ok:
        return type(result.error).__name__
    else:
        return result.cdr.uuid


def on_error(result: AnyCallResult) -> CallDetailRecord | None:
    if result.error is None:
        assert_type(result.cdr, CallDetailRecord)
        return result.cdr
    return None


def on_match(result: AnyCallResult) -> str:
    match result:
        case CallSuccess(cdr=cdr):
            return cdr.uuid
        case CallFailure(error=error):
            return str(error)
"""


def test_ok_narrows_a_result_under_mypy_strict(tmp_path: Path, mypy_cache: Path) -> None:
    """`if result.ok:`, `if not result.ok:`, `if result.error is None:` and a match
    narrow an AnyCallResult, so result.cdr needs no None check there."""
    snippet = tmp_path / "narrowing.py"
    snippet.write_text(NARROWING)
    report, status = mypy_strict([snippet], mypy_cache)
    assert status == 0, report


def test_a_wide_result_does_not_narrow_under_mypy_strict(tmp_path: Path, mypy_cache: Path) -> None:
    """The control: without narrowing, mypy --strict rejects result.cdr.uuid (so the
    test above can fail)."""
    snippet = tmp_path / "wide.py"
    snippet.write_text(
        "from twochat_voip import CallResult\n\n\n"
        "def uuid(result: CallResult) -> str:\n"
        "    if result.ok:\n"
        "        return result.cdr.uuid\n"
        "    return ''\n"
    )
    report, status = mypy_strict([snippet], mypy_cache)
    assert status == 1
    assert 'Item "None" of "CallDetailRecord | None" has no attribute "uuid"' in report
