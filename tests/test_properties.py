"""Property tests (hypothesis): whatever the server sends and whatever id a caller
passes, the outcome is a record or a typed error, never anything else."""

from __future__ import annotations

import copy
import json
from typing import Any

import cattrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict
from yarl import URL

from twochat_voip import (
    CallDetailRecord,
    InvalidCallUUIDError,
    ResponseValidationError,
    TwoChatError,
    converter,
)
from twochat_voip._converter import _explaining_converter, sdk_converter
from twochat_voip._protocol import parse_call
from twochat_voip._requests import Requests, Response, validate_call_uuid
from twochat_voip.testing import EXAMPLE_ANSWER, EXAMPLE_CDR, generate_cdrs

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
statuses = st.sampled_from(
    [200, 201, 204, 400, 401, 402, 403, 404, 406, 409, 410, 422, 429, 486, 500, 502, 503, 504]
)


def outcome(status: int, body: bytes) -> object:
    try:
        return parse_call(Response(status, CIMultiDict(), body), "CDR1")
    except TwoChatError as exc:
        return exc


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(value=json_values, status=statuses)
def test_any_json_body_is_a_record_or_a_typed_error(value: Any, status: int) -> None:
    """Any JSON value, under any status, ends in a record or a TwoChatError."""
    result = outcome(status, json.dumps(value).encode())
    assert isinstance(result, CallDetailRecord | TwoChatError)


@given(body=st.binary(max_size=300), status=statuses)
def test_any_bytes_are_a_record_or_a_typed_error(body: bytes, status: int) -> None:
    """Any bytes at all (not JSON, not UTF-8, empty) end in a typed outcome."""
    assert isinstance(outcome(status, body), CallDetailRecord | TwoChatError)


FIELDS = list(EXAMPLE_CDR)
mutation = st.one_of(
    st.tuples(st.just("remove"), st.sampled_from(FIELDS), st.none()),
    st.tuples(st.just("null"), st.sampled_from(FIELDS), st.none()),
    st.tuples(st.just("retype"), st.sampled_from(FIELDS), json_values),
    st.tuples(st.just("extra"), st.text(min_size=1, max_size=12), json_values),
    st.tuples(st.just("nested"), st.sampled_from(["agent", "call_cost"]), json_values),
)


def mutated(mutations: list[tuple[str, str, Any]]) -> dict[str, Any]:
    """The example answer with ``mutations`` applied to its record."""
    answer = copy.deepcopy(EXAMPLE_ANSWER)
    cdr = answer["cdr"]
    for kind, field, value in mutations:
        if kind == "remove":
            cdr.pop(field, None)
        elif kind == "null":
            cdr[field] = None
        elif kind in ("retype", "extra"):
            cdr[field] = value
        elif isinstance(cdr.get(field), dict) and isinstance(value, dict):
            cdr[field].update(value)
    return answer


@pytest.mark.slow
@given(mutations=st.lists(mutation, min_size=1, max_size=6))
def test_mutated_example_is_a_record_or_a_validation_error(
    mutations: list[tuple[str, str, Any]],
) -> None:
    """Fields removed, nulled, retyped or added: a record, or ResponseValidationError."""
    answer = mutated(mutations)
    cdr = answer["cdr"]
    result = outcome(200, json.dumps(answer).encode())
    assert isinstance(result, CallDetailRecord | ResponseValidationError)
    if isinstance(result, CallDetailRecord):
        assert result.uuid == cdr["uuid"]


@given(seed=st.integers(0, 2**32), count=st.integers(1, 5))
def test_valid_records_round_trip_exactly(seed: int, count: int) -> None:
    """unstructure(structure(wire)) == wire, and structure(unstructure(model)) == model."""
    for wire in generate_cdrs(count, seed=seed):
        model = converter.structure(wire, CallDetailRecord)
        assert converter.unstructure(model) == wire
        assert converter.structure(converter.unstructure(model), CallDetailRecord) == model


@given(price=st.decimals(min_value=0, max_value=10_000, places=4, allow_nan=False))
def test_any_four_place_price_survives_a_round_trip(price: Any) -> None:
    """Money with up to 15 significant digits reads back as the same Decimal."""
    wire = copy.deepcopy(EXAMPLE_CDR)
    wire["call_cost"]["call_price"] = json.loads(json.dumps(float(price)))
    record = converter.structure(wire, CallDetailRecord)
    assert record.call_cost is not None
    assert record.call_cost.call_price == price


@given(call_uuid=st.text(max_size=140))
def test_any_string_is_refused_or_sent_verbatim_and_safe(call_uuid: str) -> None:
    """An id is refused before the network, or becomes exactly one safe path segment."""
    try:
        checked = validate_call_uuid(call_uuid)
    except InvalidCallUUIDError:
        return
    request = Requests("https://api.p.2chat.io", {}).call(checked)
    url = URL(request.url, encoded=True)
    assert url.host == "api.p.2chat.io"
    assert url.raw_path == f"/open/voip/call/{call_uuid}"
    assert not url.raw_query_string
    assert not url.raw_fragment
    assert not set(call_uuid) & set("/?#%. \\\r\n")


def structured_by(conv: cattrs.Converter, wire: object) -> object:
    try:
        return conv.structure(wire, CallDetailRecord)
    except Exception as exc:  # that it failed is the outcome compared
        return type(exc)


@pytest.mark.slow
@settings(max_examples=300)
@given(mutations=st.lists(mutation, min_size=1, max_size=6))
def test_the_explaining_converter_agrees_with_the_sdks(
    mutations: list[tuple[str, str, Any]],
) -> None:
    """The converter that explains a refusal (detailed validation) reads a record as
    the SDK's does: the same model, or both refuse it, so a refused record is never
    explained as valid."""
    wire = json.loads(json.dumps(mutated(mutations)["cdr"]))
    parsed = structured_by(sdk_converter(), wire)
    explained = structured_by(_explaining_converter(), wire)
    assert isinstance(parsed, CallDetailRecord) is isinstance(explained, CallDetailRecord)
    if isinstance(parsed, CallDetailRecord):
        assert parsed == explained
