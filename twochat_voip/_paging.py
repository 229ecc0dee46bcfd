"""Call history, page by page: ``GET /open/voip/call-history`` from page 0 until an
empty page."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Final, Literal, TypeVar

from twochat_voip._errors import ResponseValidationError
from twochat_voip._models import CallDetailRecord
from twochat_voip._protocol import Request, Requests

__all__ = ["iterate_history", "iterate_pages"]

_Item = TypeVar("_Item")

FetchPage = Callable[[Request], Awaitable[tuple[list[CallDetailRecord], int | None]]]
"""Sends one page's request: its records and the answer's ``count``, if any."""

_SLACK_PAGES: Final = 2
"""Pages a listing may run past what its ``count`` says before it is stopped."""


async def iterate_history(
    fetch_page: FetchPage,
    requests: Requests,
    direction: Literal["inbound", "outbound"] | None,
    *,
    start_page: int = 0,
    on_page: Callable[[int], None] | None = None,
) -> AsyncGenerator[CallDetailRecord, None]:
    """Yield every record of the account's history once, in the server's order.

    Calls arriving during a long listing shift the pages, so a record may come back
    on a later page: it is yielded once (the listing keeps the ids it has seen). After
    each page, ``on_page`` gets the page to resume at (``start_page=``) if the listing
    stops; resuming never skips a record that was there (new calls only push records
    to later pages), though it may see some again.

    Raises:
        ResponseValidationError: a page holds nothing new (a server that ignores
            ``page_number``, or alternates between pages, would be asked forever, a
            credit a page), or the listing runs on past the pages its ``count`` says.
    """
    if type(start_page) is not int or start_page < 0:
        raise ValueError("start_page must be a whole number, 0 or more")
    page = start_page
    seen: dict[str, int] = {}  # id -> the page it was first seen on
    limit: int | None = None
    while True:
        records, count = await fetch_page(requests.history(page, direction))
        if not records:
            return
        if limit is None and count is not None and count > len(records):
            # A count past the page is the total (a count equal to it tells nothing).
            limit = start_page + -(-count // len(records)) + _SLACK_PAGES
        new = [r for r in records if r.uuid not in seen]
        if not new:
            first = min(seen[r.uuid] for r in records)
            raise ResponseValidationError(
                f"page {page} repeats page {first}; stopping", status_code=200
            )
        for record in new:
            seen[record.uuid] = page
            yield record
        page += 1
        if on_page is not None:
            on_page(page)
        if limit is not None and page >= limit:
            raise ResponseValidationError(
                f"the history goes on past page {page - 1}, more than its count of "
                f"{count} records needs; stopping",
                status_code=200,
            )


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
