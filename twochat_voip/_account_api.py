"""The account's endpoints besides call records (its call history, info, webhooks,
virtual numbers, caller ids): :class:`AccountMethods`, a mixin of
:class:`~twochat_voip.VoIPClient`, and the sans-I/O parsing of their answers."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import AsyncGenerator, Callable
from typing import TYPE_CHECKING, Final, Literal, TypeVar
from urllib.parse import quote

from yarl import URL

from twochat_voip._converter import explain_invalid, sdk_converter
from twochat_voip._errors import ResponseValidationError
from twochat_voip._models import CallDetailRecord
from twochat_voip._protocol import (
    Request,
    Requests,
    Response,
    _invalid,
    parse_envelope,
    parse_history_page,
)
from twochat_voip._resources import AccountInfo, CallerId, VirtualNumber, Webhook, WebhookEvent

_T = TypeVar("_T")

MAX_PAGE_SIZE: Final = 200
"""The largest ``results_per_page`` 2Chat documents (one page says 200, others 50)."""

DEFAULT_PAGE_SIZE: Final = 50
"""The smaller size 2Chat documents: a page shorter than asked ends a list."""

_SLACK_PAGES: Final = 2
"""Pages a history may run past what its ``count`` says before it is stopped."""

_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,128}")


def _id(value: object, what: str) -> str:
    """A 2Chat id that is a plain path segment, or a ValueError before any I/O."""
    if not isinstance(value, str) or _ID.fullmatch(value) is None:
        raise ValueError(f"{what} must be a 2Chat id (letters, digits, '-', '_'), got {value!r}")
    return value


def _page_size(page_size: int) -> int:
    """``page_size`` if 2Chat serves it, checked before anything is sent."""
    if type(page_size) is not int or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be a whole number from 1 to {MAX_PAGE_SIZE}")
    return page_size


def _structure(response: Response, value: object, cls: type[_T], where: str) -> _T:
    try:
        result: _T = sdk_converter().structure(value, cls)
    except Exception as exc:  # cattrs and its hooks raise many types
        raise _invalid(response, None, f"{where}: {explain_invalid(value, cls, exc)}") from exc
    return result


def _list_of(key: str, cls: type[_T]) -> Callable[[Response, str | None], list[_T]]:
    def parse(response: Response, call_uuid: str | None = None) -> list[_T]:
        items = parse_envelope(response, call_uuid).get(key)
        if not isinstance(items, list):
            raise _invalid(response, call_uuid, f"expected a {key!r} list")
        return [_structure(response, item, cls, f"{key}[{i}]") for i, item in enumerate(items)]

    return parse


def parse_account_info(response: Response, call_uuid: str | None = None) -> AccountInfo:
    """The account, limits and usage in a ``GET /open/info`` answer."""
    return _structure(response, parse_envelope(response, call_uuid), AccountInfo, "info")


def parse_webhook(response: Response, call_uuid: str | None = None) -> Webhook:
    """The subscription in a subscribe answer's ``data``."""
    data = parse_envelope(response, call_uuid).get("data")
    return _structure(response, data, Webhook, "data")


parse_webhooks: Final = _list_of("webhooks", Webhook)
parse_virtual_numbers: Final = _list_of("numbers", VirtualNumber)
parse_caller_ids: Final = _list_of("caller_ids", CallerId)


def parse_deleted(response: Response, call_uuid: str | None = None) -> None:
    """A delete's answer: success, or the error it amounts to."""
    parse_envelope(response, call_uuid)


class AccountMethods:
    """What :class:`~twochat_voip.VoIPClient` can ask besides call records. Each
    request costs a credit, is paced by the client's limiter and counted in its
    stats; GETs and DELETEs are retried as records are, a subscription (a POST) only
    after a 429, which the server surely did not act on."""

    _requests: Requests

    if TYPE_CHECKING:

        async def _call(
            self,
            request: Request,
            parse: Callable[[Response, str | None], _T],
            *,
            rate_limits_are_free: bool = False,
        ) -> _T:
            """The client's call (see :meth:`~twochat_voip.VoIPClient._call`)."""

    async def iter_call_history(
        self,
        direction: Literal["inbound", "outbound"] | None = None,
        *,
        start_page: int = 0,
        on_page: Callable[[int], None] | None = None,
    ) -> AsyncGenerator[CallDetailRecord, None]:
        """Yield the account's call records from ``GET /open/voip/call-history``, each
        once, page by page from ``start_page`` until an empty page.

        Calls arriving meanwhile shift the pages; a record seen on an earlier page is
        not yielded again. ``on_page`` is called after each page with the page to
        resume at: pass it as ``start_page`` to go on after a stop (resuming never
        skips a record, though it may see some again). History records carry no
        ``agent``: :meth:`~twochat_voip.VoIPClient.get_call` has it.

        Raises:
            ResponseValidationError: a page holds nothing new, or the listing runs on
                past the pages its ``count`` says, instead of spending credits forever.
        """
        if type(start_page) is not int or start_page < 0:
            raise ValueError("start_page must be a whole number, 0 or more")
        page = start_page
        seen: dict[str, int] = {}  # id -> the page it was first seen on
        limit: int | None = None
        while True:
            request = self._requests.history(page, direction)
            records, count = await self._call(
                request, parse_history_page, rate_limits_are_free=True
            )
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

    async def get_account_info(self) -> AccountInfo:
        """The account, its plan's limits and its usage (``GET /open/info``): the call
        ``requests_per_minute="auto"`` makes."""
        return await self._call(self._requests.info(), parse_account_info)

    async def subscribe_webhook(
        self, event: WebhookEvent | str, *, hook_url: str, channel_uuid: str
    ) -> Webhook:
        """Have 2Chat POST ``event`` for the calls of a virtual number to ``hook_url``.

        Args:
            event: A :class:`WebhookEvent` (or its name).
            hook_url: Your receiver's address; put a secret in it (``?token=...``,
                see :class:`twochat_voip.webhooks.WebhookReceiver`).
            channel_uuid: The virtual number (``DID…``).

        Raises:
            APIStatusError: 2Chat refused it (a 409 may mean it exists already).
        """
        name = str(event)
        if not re.fullmatch(r"[a-z]+(\.[a-z]+)+", name):
            raise ValueError(f"not a webhook event name: {name!r}")
        if not isinstance(hook_url, str):
            raise TypeError("hook_url must be a URL string")
        url = URL(hook_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("hook_url must be an absolute http(s) URL that 2Chat can reach")
        body = {"hook_url": hook_url, "channel_uuid": _id(channel_uuid, "channel_uuid")}
        request = Request(
            "POST",
            f"{self._requests.base_url}/open/webhooks/subscribe/{quote(name)}",
            self._requests.headers,
            body=json.dumps(body).encode(),
            route="/open/webhooks/subscribe/{event}",
        )
        return await self._call(request, parse_webhook)

    async def list_webhooks(self, channel_uuid: str | None = None) -> list[Webhook]:
        """The account's webhooks, or one virtual number's."""
        path = route = "/open/webhooks"
        if channel_uuid is not None:
            path += f"/channel/{_id(channel_uuid, 'channel_uuid')}"
            route += "/channel/{channel_uuid}"
        request = Request(
            "GET", self._requests.base_url + path, self._requests.headers, route=route
        )
        return await self._call(request, parse_webhooks)

    async def delete_webhook(self, webhook_uuid: str) -> None:
        """Delete a subscription (``DELETE /open/webhooks/{webhook_uuid}``).

        Raises:
            NotFoundError: there is no such subscription; also when a first attempt
                deleted it and its answer was lost, so that a retry found it gone.
        """
        url = f"{self._requests.base_url}/open/webhooks/{_id(webhook_uuid, 'webhook_uuid')}"
        route = "/open/webhooks/{webhook_uuid}"
        await self._call(Request("DELETE", url, self._requests.headers, route=route), parse_deleted)

    def iter_virtual_numbers(
        self, *, page_size: int = DEFAULT_PAGE_SIZE
    ) -> AsyncGenerator[VirtualNumber, None]:
        """Every virtual number of the account, page by page (one credit a page)."""
        return self._pages("virtual-numbers", parse_virtual_numbers, _page_size(page_size))

    def iter_caller_ids(
        self, *, page_size: int = DEFAULT_PAGE_SIZE
    ) -> AsyncGenerator[CallerId, None]:
        """Every caller id of the account, page by page (one credit a page)."""
        return self._pages("caller-ids", parse_caller_ids, _page_size(page_size))

    async def _pages(
        self, path: str, parse: Callable[[Response, str | None], list[_T]], page_size: int
    ) -> AsyncGenerator[_T, None]:
        """Pages from 0 until an empty or short one (``count`` is not always a total),
        each item once; a page repeating the one before raises ResponseValidationError."""
        url = f"{self._requests.base_url}/open/voip/{path}"
        seen: set[object] = set()
        previous: list[_T] | None = None
        for page in itertools.count():
            query = f"page_number={page}&results_per_page={page_size}"
            request = Request("GET", f"{url}?{query}", self._requests.headers)
            items = await self._call(request, parse, rate_limits_are_free=True)
            if not items:
                return
            if items == previous:
                raise ResponseValidationError(
                    f"{path.replace('-', ' ')}: page {page} repeats page {page - 1}; stopping",
                    status_code=200,
                )
            previous = items
            for item in items:
                uuid = getattr(item, "uuid", item)
                if uuid not in seen:
                    seen.add(uuid)
                    yield item
            if len(items) < page_size:
                return
