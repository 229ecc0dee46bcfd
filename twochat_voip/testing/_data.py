"""Call detail records for tests: the documented example, and generated ones."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from typing import Any

from twochat_voip.testing._faults import error

__all__ = ["EXAMPLE_ANSWER", "EXAMPLE_CDR", "generate_cdrs", "history_page"]

EXAMPLE_ANSWER: dict[str, Any] = json.loads(
    files("twochat_voip.testing").joinpath("example_answer.json").read_text("utf-8")
)
"""2Chat's documented answer to ``GET /open/voip/call/{uuid}``, as wire JSON."""

EXAMPLE_CDR: dict[str, Any] = EXAMPLE_ANSWER["cdr"]
"""The ``cdr`` object of :data:`EXAMPLE_ANSWER`."""

_RECORDINGS = f"https://2chat-user-data.s3.amazonaws.com/{EXAMPLE_CDR['account_uuid']}/calls"
_AGENTS = [("Jane", "Doe"), ("Ana", "Benítez"), ("Kofi", "Mensah"), ("Mei", "Chen")]
_COUNTRIES = [("PY", "+5959"), ("US", "+1415"), ("BR", "+5511"), ("DE", "+4930")]


def history_page(
    cdrs: list[Mapping[str, Any]], query: Mapping[str, str], size: int
) -> tuple[int, Any]:
    """The answer to ``GET /open/voip/call-history`` over ``cdrs``, ``size`` a page."""
    direction = {"inbound": "I", "outbound": "O"}.get(query.get("direction", ""))
    if "direction" in query and direction is None:
        return error(422, "direction must be inbound or outbound")
    try:
        page = int(query.get("page_number", "0"))
    except ValueError:
        return error(422, "page_number must be a whole number")
    records = [
        {k: v for k, v in cdr.items() if k != "agent"}
        for cdr in cdrs
        if direction is None or cdr.get("direction") == direction
    ]
    chunk = records[page * size : (page + 1) * size] if page >= 0 else []
    return 200, {"success": True, "count": len(records), "page": page, "cdrs": chunk}


def _id(prefix: str, rng: random.Random) -> str:
    return prefix + str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def generate_cdrs(count: int, *, seed: int = 0) -> list[dict[str, Any]]:
    """``count`` varied, valid CDRs as wire JSON, the same for the same ``seed``.

    About 70% completed outbound calls with agent and cost, 10% inbound without an
    agent, 10% missed (no times, duration, recording or cost), 5% ringing right now,
    5% failed, so code under test meets the nulls real records have.
    """
    # Test data, repeatable from a seed: not secrets.
    rng = random.Random(seed)  # noqa: S311  # nosec B311
    start = datetime(2025, 11, 5, 9, 0, tzinfo=UTC)
    records = []
    for n in range(count):
        kind = rng.random()
        created = start + timedelta(seconds=37 * n)
        callid = "".join(rng.choices("abcdefghijkmnpqrstuvwxyz23456789", k=20))
        country, prefix = rng.choice(_COUNTRIES)
        first, last = rng.choice(_AGENTS)
        agent_uuid = _id("USR", rng)
        record: dict[str, Any] = {
            **EXAMPLE_CDR,
            "uuid": _id("CDR", rng),
            "callid": callid,
            "from": agent_uuid,
            "iso_country_code": country,
            "is_whatsapp_call": rng.random() < 0.2,
            "created_at": _ts(created),
            "updated_at": _ts(created + timedelta(seconds=30)),
            "to_number": prefix + "".join(rng.choices("0123456789", k=7)),
            "caller_id_uuid": _id("VCI", rng),
            **dict.fromkeys(["duration", "recording_url", "start_time", "end_time", "call_cost"]),
            "agent_id": agent_uuid,
            "agent": {
                "uuid": agent_uuid,
                "first_name": first,
                "last_name": last,
                "full_name": f"{first} {last}",
                "profile_pic_url": f"https://example.com/avatars/{agent_uuid}.png",
            },
        }
        if kind < 0.80:
            answered = created + timedelta(seconds=rng.randint(1, 20))
            duration = rng.randint(1, 900)
            ended = answered + timedelta(seconds=duration)
            record.update(
                duration=duration,
                start_time=_ts(answered),
                end_time=_ts(ended),
                recording_url=f"{_RECORDINGS}/{callid}.mp3",
                call_cost={
                    "callid": callid,
                    "forwarded": False,
                    "toll_free": rng.random() < 0.05,
                    "start_dt": _ts(answered),
                    "end_dt": _ts(ended + timedelta(seconds=1)),
                    "duration": duration + 1,
                    "call_price": round(0.0198 * (1 + duration // 60), 4),
                },
            )
            if kind >= 0.70:  # inbound, answered by nobody in particular
                record.update(direction="I", agent_id=None, agent=None)
                record["from"] = "+5511987654321"
        elif kind < 0.90:
            record.update(status="MISSED")
        elif kind < 0.95:
            record.update(status="RINGING", active=True, updated_at=record["created_at"])
        else:
            record.update(status="FAILED")
        records.append(record)
    return records
