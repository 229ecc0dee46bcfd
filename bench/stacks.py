"""The clients being compared, each fetching N records at a concurrency.

Every stack gets the same server, ids and concurrency, and returns how many records
it got and how many it failed; the runner times them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from contextlib import aclosing
from datetime import datetime
from decimal import Decimal
from typing import Any, Final, Literal

import aiohttp
import httpx
import orjson
import pydantic
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from twochat_voip import CallDetailRecord as CDR
from twochat_voip import VoIPClient, make_converter

KEY = "bench-key"
HEADERS = {"X-User-API-Key": KEY, "Accept": "application/json"}

Outcome = tuple[int, int]  # (records fetched, records failed)

FAR_ABOVE: Final = 1e12
"""The rate (per minute) the SDK's throughput runs are told, so that they measure the
client's cost per request and not an adaptive client's slow start (4 requests a second
at first): 60 picoseconds apart, it never holds a request (a rate the client could
reach, say 100,000 a second, would hold every request after the first of a burst
for its few microseconds, which costs a timer each)."""
Stack = Callable[[str, list[str], int], Coroutine[Any, Any, Outcome]]


def _url(base_url: str, call_uuid: str) -> str:
    return f"{base_url}/open/voip/call/{call_uuid}"


async def _aiohttp_workers(
    base_url: str, ids: list[str], concurrency: int, parse: Callable[[bytes], object]
) -> Outcome:
    """``concurrency`` workers over one aiohttp session, each answer's body parsed."""
    queue = iter(ids)
    got = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal got
            for call_uuid in queue:
                async with session.get(_url(base_url, call_uuid), headers=HEADERS) as answer:
                    parse(await answer.read())
                    got += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return got, len(ids) - got


async def raw_aiohttp(base_url: str, ids: list[str], concurrency: int) -> Outcome:
    """The limit: aiohttp GET + orjson.loads, no validation, no retries."""
    return await _aiohttp_workers(base_url, ids, concurrency, orjson.loads)


async def ours_get_calls(
    base_url: str, ids: list[str], concurrency: int, rpm: float | Literal["auto"] | None = FAR_ABOVE
) -> Outcome:
    """twochat_voip's bulk path: get_calls with retries and rate limiting on."""
    got = failed = 0
    async with (
        VoIPClient(api_key=KEY, base_url=base_url, requests_per_minute=rpm) as voip,
        aclosing(voip.get_calls(ids, concurrency=concurrency)) as results,
    ):
        async for result in results:
            if result.ok:
                got += 1
            else:
                failed += 1
    return got, failed


async def ours_get_call_gather(base_url: str, ids: list[str], concurrency: int) -> Outcome:
    """twochat_voip's single-call path, the way a user would fan it out."""
    limit = asyncio.Semaphore(concurrency)
    async with VoIPClient(api_key=KEY, base_url=base_url, requests_per_minute=FAR_ABOVE) as voip:

        async def one(call_uuid: str) -> bool:
            async with limit:
                await voip.get_call(call_uuid)
                return True

        done = await asyncio.gather(*(one(i) for i in ids), return_exceptions=True)
    got = sum(1 for d in done if d is True)
    return got, len(ids) - got


class Agent(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True)
    uuid: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    full_name: str | None = None
    profile_pic_url: str | None = None


class CallCost(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True)
    callid: str | None = None
    forwarded: bool | None = None
    toll_free: bool | None = None
    start_dt: datetime | None = None
    end_dt: datetime | None = None
    duration: int | None = None
    call_price: Decimal | None = None


class CallDetailRecord(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, populate_by_name=True)
    uuid: str
    account_uuid: str | None = None
    callid: str | None = None
    direction: str | None = None
    active: bool | None = None
    from_: str | None = pydantic.Field(default=None, alias="from")
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
    call_cost: CallCost | None = None
    agent: Agent | None = None


class Envelope(pydantic.BaseModel):
    success: bool
    cdr: CallDetailRecord


async def httpx_pydantic(base_url: str, ids: list[str], concurrency: int) -> Outcome:
    """The stack of the popular generated SDKs: httpx.AsyncClient + pydantic models."""
    queue = iter(ids)
    got = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, headers=HEADERS) as client:

        async def worker() -> None:
            nonlocal got
            for call_uuid in queue:
                answer = await client.get(_url(base_url, call_uuid))
                Envelope.model_validate_json(answer.content)
                got += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return got, len(ids) - got


async def aiohttp_pydantic(base_url: str, ids: list[str], concurrency: int) -> Outcome:
    """aiohttp with pydantic models: the same transport as ours, validation by pydantic."""
    return await _aiohttp_workers(base_url, ids, concurrency, Envelope.model_validate_json)


class _Retryable(Exception):
    pass


async def _tenacity_get(
    session: aiohttp.ClientSession, url: str, parse: Callable[[bytes], object], *, attempts: int
) -> None:
    """One GET inside tenacity's ``AsyncRetrying``, as its docs show it: 429s, 5xx and
    connection errors retried with jittered backoff; the body parsed."""
    async for attempt in AsyncRetrying(
        stop=stop_after_attempt(attempts),
        wait=wait_exponential_jitter(max=8),
        retry=retry_if_exception_type((_Retryable, aiohttp.ClientError)),
        reraise=True,
    ):
        with attempt:
            async with session.get(url, headers=HEADERS) as answer:
                if answer.status == 429 or answer.status >= 500:
                    raise _Retryable(answer.status)
                parse(await answer.read())


async def naive_gather_tenacity(base_url: str, ids: list[str], concurrency: int) -> Outcome:
    """What users write today: gather + a semaphore + tenacity around each call."""
    limit = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession() as session:

        async def one(call_uuid: str) -> bool:
            async with limit:
                await _tenacity_get(session, _url(base_url, call_uuid), orjson.loads, attempts=5)
            return True

        done = await asyncio.gather(*(one(i) for i in ids), return_exceptions=True)
    got = sum(1 for d in done if d is True)
    return got, len(ids) - got


async def design_parts(base_url: str, ids: list[str], concurrency: int) -> Outcome:
    """The design card's libraries alone, as their docs show them, and nothing else:
    aiohttp's GET inside tenacity's ``AsyncRetrying`` (one per request), orjson, and
    cattrs structuring the record with the SDK's converter. No limiter, no budget, no
    hooks: the least any client built on these parts can spend per request."""
    structure = make_converter().structure

    def parse(body: bytes) -> object:
        return structure(orjson.loads(body)["cdr"], CDR)

    queue = iter(ids)
    got = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal got
            for call_uuid in queue:
                await _tenacity_get(session, _url(base_url, call_uuid), parse, attempts=4)
                got += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return got, len(ids) - got


DESIGN_PARTS = "aiohttp + tenacity + cattrs, nothing else"

THROUGHPUT_STACKS: dict[str, Stack] = {
    "raw aiohttp + orjson": raw_aiohttp,
    DESIGN_PARTS: design_parts,
    "twochat_voip get_calls": ours_get_calls,
    "twochat_voip get_call + gather": ours_get_call_gather,
    "aiohttp + pydantic": aiohttp_pydantic,
    "httpx + pydantic": httpx_pydantic,
}
