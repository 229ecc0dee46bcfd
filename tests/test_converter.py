"""The converter: wire JSON <-> models, exact and strict about types."""

from __future__ import annotations

import collections
import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from twochat_voip import CallDetailRecord, CallDirection, CallStatus, converter
from twochat_voip._converter import explain_invalid, format_timestamp, parse_timestamp
from twochat_voip.testing import EXAMPLE_CDR


def test_example_structures_every_field(example_answer: dict[str, Any]) -> None:
    """Every documented field lands typed in the model."""
    record = converter.structure(example_answer["cdr"], CallDetailRecord)
    assert record.uuid == "CDR8b3e7a1f-6c94-4d52-ae17-5f2b9d4c8e63"
    assert record.from_ == "USR5a8c3e7f-2d14-4b96-a7e3-9f1c6d4b8a52"
    assert record.direction is CallDirection.OUTBOUND
    assert record.status is CallStatus.COMPLETED
    assert record.is_sip_trunk_call is None
    assert record.created_at == datetime(2025, 11, 5, 17, 46, 27, tzinfo=UTC)
    assert record.duration == 3
    assert record.call_cost is not None
    assert record.call_cost.call_price == Decimal("0.0594")
    assert str(record.call_cost.call_price) == "0.0594"
    assert record.call_cost.end_dt == datetime(2025, 11, 5, 17, 46, 33, tzinfo=UTC)
    assert record.agent is not None
    assert record.agent.full_name == "Jane Doe"


def test_round_trip_is_exact(example_answer: dict[str, Any]) -> None:
    """unstructure(structure(x)) gives back the wire dict, key `from` and all."""
    wire = example_answer["cdr"]
    back = converter.unstructure(converter.structure(wire, CallDetailRecord))
    assert back == wire
    assert json.dumps(back, sort_keys=True) == json.dumps(wire, sort_keys=True)


@pytest.mark.parametrize("price", [0.0594, 0.1, 1.0, 2, 0.30000000000000004, 123456.789012])
def test_price_is_exact_decimal(price: float, example_answer: dict[str, Any]) -> None:
    """The price reads as the decimal the JSON spelled, and writes back the same."""
    wire = example_answer["cdr"]
    wire["call_cost"]["call_price"] = price
    record = converter.structure(wire, CallDetailRecord)
    assert record.call_cost is not None
    assert record.call_cost.call_price == Decimal(repr(price))
    assert json.dumps(converter.unstructure(record)["call_cost"]["call_price"]) == json.dumps(price)


def test_price_as_string_is_accepted(example_answer: dict[str, Any]) -> None:
    """Money sent as a string is read exactly too."""
    wire = example_answer["cdr"]
    wire["call_cost"]["call_price"] = "0.0594"
    record = converter.structure(wire, CallDetailRecord)
    assert record.call_cost is not None
    assert record.call_cost.call_price == Decimal("0.0594")


def test_unknown_status_is_kept_as_str(example_answer: dict[str, Any]) -> None:
    """A status 2Chat adds tomorrow is data, not an error."""
    wire = example_answer["cdr"] | {"status": "VOICEMAIL", "direction": "X"}
    record = converter.structure(wire, CallDetailRecord)
    assert record.status == "VOICEMAIL"
    assert not isinstance(record.status, CallStatus)
    assert record.direction == "X"
    assert converter.unstructure(record)["status"] == "VOICEMAIL"


def test_extra_fields_are_ignored(example_answer: dict[str, Any]) -> None:
    """New fields in the answer do not break structuring."""
    wire = example_answer["cdr"] | {"brand_new": {"x": 1}}
    wire["agent"]["nickname"] = "JD"
    assert converter.structure(wire, CallDetailRecord).uuid == wire["uuid"]


def test_unanswered_call_with_nulls_and_missing_fields() -> None:
    """A missed call: most fields null or absent, still a valid record."""
    wire = {
        "uuid": "CDR1",
        "direction": None,
        "status": "MISSED",
        "duration": None,
        "call_cost": None,
        "agent": None,
        "start_time": None,
    }
    record = converter.structure(wire, CallDetailRecord)
    assert record.status is CallStatus.MISSED
    assert record.direction is None
    assert record.call_cost is None
    assert record.end_time is None


def test_missing_uuid_is_invalid() -> None:
    """A record without its id is refused."""
    with pytest.raises(KeyError):
        converter.structure({"status": "COMPLETED"}, CallDetailRecord)


@pytest.mark.parametrize(
    ("field", "value", "error", "says"),
    [
        ("active", "false", TypeError, "expected true or false, got str"),
        ("active", 0, TypeError, "expected true or false, got int"),
        ("duration", "3", TypeError, "expected an integer, got str"),
        ("duration", 3.5, TypeError, "expected an integer, got float"),
        ("duration", True, TypeError, "expected an integer, got bool"),
        ("uuid", 123, TypeError, "expected a string, got int"),
        ("created_at", 1730828787, TypeError, "expected an ISO 8601 timestamp, got int"),
        ("created_at", "yesterday", ValueError, "Invalid isoformat string: 'yesterday'"),
        ("status", 7, TypeError, "expected a string, got int"),
        ("agent", "Jane", TypeError, "expected a JSON object, got str"),
    ],
)
def test_wrong_types_are_refused(
    field: str,
    value: object,
    error: type[Exception],
    says: str,
    example_answer: dict[str, Any],
) -> None:
    """Strict types: "false" is not a bool and "3" is not an int; each refusal is the
    hook's own TypeError (a malformed date: ValueError) saying what it expected, never
    an AttributeError from reading the wrong type."""
    wire = example_answer["cdr"] | {field: value}
    with pytest.raises(error, match=re.escape(says)) as caught:
        converter.structure(wire, CallDetailRecord)
    assert type(caught.value) is error


@pytest.mark.parametrize("price", ["abc", "NaN", True, [1]])
def test_bad_prices_are_refused(price: object, example_answer: dict[str, Any]) -> None:
    """A price must be a finite number."""
    wire = example_answer["cdr"]
    wire["call_cost"]["call_price"] = price
    with pytest.raises((TypeError, ValueError)):
        converter.structure(wire, CallDetailRecord)


def test_integral_float_duration_is_accepted(example_answer: dict[str, Any]) -> None:
    """3.0 seconds is 3 seconds."""
    wire = example_answer["cdr"] | {"duration": 3.0}
    assert converter.structure(wire, CallDetailRecord).duration == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-11-05T17:46:27Z", datetime(2025, 11, 5, 17, 46, 27, tzinfo=UTC)),
        ("2025-11-05T17:46:27+00:00", datetime(2025, 11, 5, 17, 46, 27, tzinfo=UTC)),
        ("2025-11-05T17:46:27", datetime(2025, 11, 5, 17, 46, 27, tzinfo=UTC)),
        ("2025-11-05T14:46:27-03:00", datetime(2025, 11, 5, 17, 46, 27, tzinfo=UTC)),
        ("2025-11-05T17:46:27.250Z", datetime(2025, 11, 5, 17, 46, 27, 250000, tzinfo=UTC)),
    ],
)
def test_timestamps_become_aware_utc(text: str, expected: datetime) -> None:
    """Every timestamp is a timezone-aware UTC datetime."""
    parsed = parse_timestamp(text)
    assert parsed == expected
    assert parsed.tzinfo is UTC


def test_timestamps_format_like_the_wire() -> None:
    """Timestamps go back out as UTC with a Z."""
    local = datetime.fromisoformat("2025-11-05T14:46:27-03:00")
    assert format_timestamp(local) == "2025-11-05T17:46:27Z"
    assert format_timestamp(datetime(2025, 1, 2, 3, 4, 5)) == "2025-01-02T03:04:05Z"


def test_explanation_names_the_bad_field(example_answer: dict[str, Any]) -> None:
    """The slow path says which field is wrong and why."""
    wire = example_answer["cdr"] | {"duration": "3"}
    del wire["uuid"]
    message = explain_invalid(wire, CallDetailRecord)
    assert "CallDetailRecord.duration" in message
    assert "expected an integer" in message
    assert "CallDetailRecord.uuid" in message
    assert "required field missing" in message


def test_explanation_of_a_flag_that_is_not_a_bool(example_answer: dict[str, Any]) -> None:
    """A quoted "false" is refused, and the explanation says a bool was expected."""
    wire = example_answer["cdr"] | {"active": "false"}
    with pytest.raises(TypeError):
        converter.structure(wire, CallDetailRecord)
    message = explain_invalid(wire, CallDetailRecord)
    assert "CallDetailRecord.active" in message
    assert "expected true or false, got str" in message


def test_explanation_of_a_non_mapping() -> None:
    """Even a record that is not an object gets an explanation, not a crash."""
    assert explain_invalid([1, 2], CallDetailRecord)


def test_unstructured_enums_are_plain_strings(example_answer: dict[str, Any]) -> None:
    """The wire form holds plain str, and structures back (found by hypothesis)."""
    record = converter.structure(example_answer["cdr"], CallDetailRecord)
    wire = converter.unstructure(record)
    assert type(wire["direction"]) is str
    assert type(wire["status"]) is str
    assert converter.structure(wire, CallDetailRecord) == record


def test_a_dict_subclass_structures_like_a_dict(example_answer: dict[str, Any]) -> None:
    """converter is public: an OrderedDict (or any dict subclass) reads as its dict does,
    as cattrs' own hooks read it."""
    wire = example_answer["cdr"]
    ordered = collections.OrderedDict(wire)
    ordered["agent"] = collections.OrderedDict(wire["agent"])
    assert converter.structure(ordered, CallDetailRecord) == converter.structure(
        wire, CallDetailRecord
    )


@pytest.mark.parametrize(
    ("wire", "expected"),
    [(3, 3), (3.0, 3), (Decimal("3.0"), 3), (Decimal("1E2"), 100), (2.0**53, 2**53)],
)
def test_an_integral_number_is_an_integer_however_it_was_read(
    example_answer: dict[str, Any], wire: object, expected: int
) -> None:
    """3.0 read by orjson (a float) or by the export path (a Decimal) is 3 either way."""
    record = converter.structure(example_answer["cdr"] | {"duration": wire}, CallDetailRecord)
    assert record.duration == expected
    assert type(record.duration) is int


@pytest.mark.parametrize(
    ("wire", "error", "says"),
    [
        (2.0**60, ValueError, "too long to read exactly"),
        (Decimal("3.5"), TypeError, "expected an integer"),
        (Decimal("Infinity"), TypeError, "expected an integer"),
    ],
)
def test_an_integer_that_cannot_be_read_exactly_is_refused(
    example_answer: dict[str, Any], wire: object, error: type[Exception], says: str
) -> None:
    """A float past 2**53 (orjson's reading of a long integer) is not silently another
    number; a fraction or infinity is not an integer."""
    with pytest.raises(error, match=says):
        converter.structure(example_answer["cdr"] | {"duration": wire}, CallDetailRecord)


def test_a_refusal_is_explained_even_if_the_detailed_converter_finds_nothing() -> None:
    """Were the detailed converter to accept a record the SDK's refused, the message
    says what the SDK's raised, never that the record is valid."""
    error = TypeError("uuid: expected str")
    assert explain_invalid(EXAMPLE_CDR, CallDetailRecord, error) == (
        "TypeError: uuid: expected str"
    )
    assert explain_invalid(EXAMPLE_CDR, CallDetailRecord) == (
        "the record was refused, but no field is wrong"
    )
