"""The models: what a record needs, keyword-only fields, equality, wire-valued enums."""

from __future__ import annotations

from decimal import Decimal

import pytest

from twochat_voip import CallCost, CallDetailRecord, CallDirection, CallStatus


def test_record_needs_only_uuid() -> None:
    """A record of a call that never happened beyond its id is still a record."""
    record = CallDetailRecord(uuid="CDR1")
    assert record.agent is None
    assert record.call_cost is None
    assert record.start_time is None


def test_models_are_keyword_only() -> None:
    """Fields are passed by name, so a new field never shifts the others."""
    with pytest.raises(TypeError):
        CallCost("callid")  # type: ignore[call-arg]


def test_equal_records_hash_equal() -> None:
    """Records can be put in sets and used as dict keys."""
    a = CallDetailRecord(uuid="CDR1", call_cost=CallCost(call_price=Decimal("0.0594")))
    b = CallDetailRecord(uuid="CDR1", call_cost=CallCost(call_price=Decimal("0.0594")))
    assert a == b
    assert len({a, b}) == 1


def test_enums_are_str() -> None:
    """Enum members compare equal to their wire values."""
    assert str(CallDirection.OUTBOUND) == "O"
    assert CallDirection("I") is CallDirection.INBOUND
    assert {s.value for s in CallStatus} >= {"COMPLETED", "ANSWERED", "RINGING", "FAILED", "MISSED"}
