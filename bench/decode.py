"""Decoding + structuring one record: orjson alone, msgspec, our converter path,
pydantic; microseconds per record, interleaved repeats, medians."""

from __future__ import annotations

import timeit
from datetime import datetime
from decimal import Decimal

import msgspec
import orjson
from multidict import CIMultiDict

from bench.measure import Row, median
from bench.server import BODY
from bench.stacks import Envelope
from twochat_voip._protocol import Response, parse_call


class _Agent(msgspec.Struct, frozen=True):
    uuid: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    full_name: str | None = None
    profile_pic_url: str | None = None


class _Cost(msgspec.Struct, frozen=True):
    callid: str | None = None
    forwarded: bool | None = None
    toll_free: bool | None = None
    start_dt: datetime | None = None
    end_dt: datetime | None = None
    duration: int | None = None
    call_price: Decimal | None = None


class _Record(msgspec.Struct, frozen=True, rename={"from_": "from"}):
    uuid: str
    account_uuid: str | None = None
    callid: str | None = None
    direction: str | None = None
    active: bool | None = None
    from_: str | None = None
    to_number: str | None = None
    iso_country_code: str | None = None
    status: str | None = None
    is_whatsapp_call: bool | None = None
    is_sip_trunk_call: bool | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    caller_id_uuid: str | None = None
    caller_id_used: str | None = None
    duration: int | None = None
    recording_url: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    agent_id: str | None = None
    call_cost: _Cost | None = None
    agent: _Agent | None = None


class _Envelope(msgspec.Struct):
    success: bool
    cdr: _Record


def measure(rounds: int, number: int) -> list[Row]:
    msgspec_decoder = msgspec.json.Decoder(_Envelope, float_hook=Decimal)
    response = Response(200, CIMultiDict({"Content-Type": "application/json"}), BODY)
    cases = {
        "orjson.loads (dicts, no validation)": lambda: orjson.loads(BODY),
        "msgspec Struct": lambda: msgspec_decoder.decode(BODY),
        "twochat_voip parse_call": lambda: parse_call(response, "CDR1"),
        "pydantic model_validate_json": lambda: Envelope.model_validate_json(BODY),
    }
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, case in cases.items():
            samples[name].append(min(timeit.repeat(case, number=number, repeat=3)) / number * 1e6)
    base = median(samples["orjson.loads (dicts, no validation)"])
    rows = [
        {"decoder": name, "us_per_record": median(v), "ratio_to_orjson": median(v) / base}
        for name, v in samples.items()
    ]
    for row in rows:
        ratio = row["ratio_to_orjson"]
        print(f"  {row['decoder']:<38} {row['us_per_record']:6.1f} us  {ratio:.2f}x orjson")
    return rows
