"""Call history, page by page: ``GET /open/voip/call-history`` from page 0 until an
empty page."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Literal

from twochat_voip._errors import ResponseValidationError
from twochat_voip._models import CallDetailRecord
from twochat_voip._protocol import Request, Requests

__all__ = ["iterate_history"]

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
