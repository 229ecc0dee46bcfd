"""Call history, page by page: ``GET /open/voip/call-history`` from page 0 until an
empty page."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Literal, TypeVar

from twochat_voip._errors import ResponseValidationError
from twochat_voip._models import CallDetailRecord
from twochat_voip._protocol import Request, Requests

__all__ = ["iterate_history", "iterate_pages"]

_Item = TypeVar("_Item")

FetchPage = Callable[[Request], Awaitable[list[CallDetailRecord]]]
"""Sends one page's request and parses its records (429s not using up its retries)."""


async def iterate_history(
    fetch_page: FetchPage,
    requests: Requests,
    direction: Literal["inbound", "outbound"] | None,
) -> AsyncGenerator[CallDetailRecord, None]:
    """Yield every record of the account's history, in the server's order.

    Raises:
        ResponseValidationError: a page repeats the one before it (a server that
            ignores ``page_number`` would otherwise be asked forever, a credit a page).
    """
    page = 0
    previous: CallDetailRecord | None = None
    while True:
        records = await fetch_page(requests.history(page, direction))
        if not records:
            return
        if records[0] == previous:
            raise ResponseValidationError(
                f"page {page} repeats page {page - 1}; stopping", status_code=200
            )
        previous = records[0]
        for record in records:
            yield record
        page += 1


async def iterate_pages(
    fetch_page: Callable[[Request], Awaitable[list[_Item]]],
    make_request: Callable[[int], Request],
    page_size: int,
    what: str,
) -> AsyncGenerator[_Item, None]:
    """Yield every item of a paged list (virtual numbers, caller ids), once each.

    Pages are asked from 0 until an empty or short page (2Chat's ``count`` is not a
    total on every endpoint). An item seen on an earlier page (the list shifted while
    it was read) is not yielded again.

    Raises:
        ResponseValidationError: a page repeats the one before it.
    """
    page = 0
    seen: set[object] = set()
    previous: list[_Item] | None = None
    while True:
        items = await fetch_page(make_request(page))
        if not items:
            return
        if items == previous:
            raise ResponseValidationError(
                f"{what}: page {page} repeats page {page - 1}; stopping", status_code=200
            )
        previous = items
        for item in items:
            uuid = getattr(item, "uuid", item)
            if uuid not in seen:
                seen.add(uuid)
                yield item
        if len(items) < page_size:
            return
        page += 1
