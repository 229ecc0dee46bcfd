"""The models: what a record needs, equality, wire-valued enums."""

from __future__ import annotations

from decimal import Decimal

from twochat_voip import CallCost, CallDetailRecord, CallDirection, CallStatus


def test_record_needs_only_uuid() -> None:
    """A record of a call that never happened beyond its id is still a record."""
    record = CallDetailRecord(uuid="CDR1")
    assert record.agent is None
    assert record.call_cost is None
    assert record.start_time is None


def test_equal_records_hash_equal() -> None:
    """Records can be put in sets and used as dict keys."""
    a = CallDetailRecord(uuid="CDR1", call_cost=CallCost(call_price=Decimal("0.0594")))
    b = CallDetailRecord(uuid="CDR1", call_cost=CallCost(call_price=Decimal("0.0594")))
    assert a == b
    assert len({a, b}) == 1


def test_enums_are_the_wire_values() -> None:
    """Enum members are 2Chat's wire values."""
    assert str(CallDirection.OUTBOUND) == "O"
    assert CallDirection("I") is CallDirection.INBOUND
    assert {s.value for s in CallStatus} >= {"COMPLETED", "ANSWERED", "RINGING", "FAILED", "MISSED"}


def test_a_record_is_final_unless_its_call_is_not_over() -> None:
    """Active, RINGING or ANSWERED (in any case, blanks around) is not final; anything else is,
    a status the SDK does not know and a record without a status too."""
    not_final = [
        CallDetailRecord(uuid="C", status=CallStatus.RINGING),
        CallDetailRecord(uuid="C", status="answered"),
        CallDetailRecord(uuid="C", status=CallStatus.COMPLETED, active=True),
        CallDetailRecord(uuid="C", active=True),
        CallDetailRecord(uuid="C", status=" RINGING "),
    ]
    final = [
        CallDetailRecord(uuid="C", status=CallStatus.COMPLETED, active=False),
        CallDetailRecord(uuid="C", status=CallStatus.MISSED),
        CallDetailRecord(uuid="C", status="ON_HOLD_FOREVER"),
        CallDetailRecord(uuid="C"),
    ]
    assert [record.is_final for record in not_final] == [False] * 5
    assert [record.is_final for record in final] == [True] * 4
