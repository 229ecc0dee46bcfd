"""The account's endpoints besides a call record (history, info, webhooks, numbers,
caller ids): :class:`AccountMethods`, a mixin of the client, and their answers' parsing."""

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
from twochat_voip._protocol import _invalid, parse_envelope, parse_history_page
from twochat_voip._requests import Request, Requests, Response
from twochat_voip._resources import AccountInfo, CallerId, VirtualNumber, Webhook, WebhookEvent

_T = TypeVar("_T")
_Parse = Callable[[Response, str | None], _T]

MAX_PAGE_SIZE: Final = 200  # the largest results_per_page 2Chat documents (or 50)
DEFAULT_PAGE_SIZE: Final = 50  # a page shorter than asked ends a list
_SLACK_PAGES: Final = 2  # pages a history may run past what its count says
_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,128}")


def _id(value: object, what: str) -> str:
    if not isinstance(value, str) or _ID.fullmatch(value) is None:
        raise ValueError(f"{what} must be a 2Chat id (letters, digits, '-', '_'), got {value!r}")
    return value


def _page_size(page_size: int) -> int:
    if type(page_size) is not int or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be a whole number from 1 to {MAX_PAGE_SIZE}")
    return page_size


def _structure(response: Response, value: object, cls: type[_T], where: str) -> _T:
    try:
        result: _T = sdk_converter().structure(value, cls)
    except Exception as exc:  # cattrs and its hooks raise many types
        raise _invalid(response, None, f"{where}: {explain_invalid(value, cls, exc)}") from exc
    return result


def _list_of(key: str, cls: type[_T]) -> _Parse[list[_T]]:
    def parse(response: Response, call_uuid: str | None = None) -> list[_T]:
        items = parse_envelope(response, call_uuid).get(key)
        if not isinstance(items, list):
            raise _invalid(response, call_uuid, f"expected a {key!r} list")
        return [_structure(response, item, cls, f"{key}[{i}]") for i, item in enumerate(items)]

    return parse


def parse_account_info(response: Response, call_uuid: str | None = None) -> AccountInfo:
    return _structure(response, parse_envelope(response, call_uuid), AccountInfo, "info")


def parse_webhook(response: Response, call_uuid: str | None = None) -> Webhook:
    data = parse_envelope(response, call_uuid).get("data")
    return _structure(response, data, Webhook, "data")


def parse_deleted(response: Response, call_uuid: str | None = None) -> None:
    parse_envelope(response, call_uuid)


parse_webhooks: Final = _list_of("webhooks", Webhook)
parse_virtual_numbers: Final = _list_of("numbers", VirtualNumber)
parse_caller_ids: Final = _list_of("caller_ids", CallerId)


class AccountMethods:
    """What the client can ask besides call records."""

    _requests: Requests

    if TYPE_CHECKING:

        async def _call(
            self, request: Request, parse: _Parse[_T], *, rate_limits_are_free: bool = False
        ) -> _T: ...

    def _request(
        self, method: str, path: str, route: str | None = None, body: object = None
    ) -> Request:
        data = None if body is None else json.dumps(body).encode()
        url = self._requests.base_url + path
        return Request(method, url, self._requests.headers, body=data, route=route)

    async def iter_call_history(
        self,
        direction: Literal["inbound", "outbound"] | None = None,
        *,
        start_page: int = 0,
        on_page: Callable[[int], None] | None = None,
    ) -> AsyncGenerator[CallDetailRecord, None]:
        """Yield the account's call records, each once, page by page from ``start_page``
        until an empty page; ``on_page`` gets the page to resume at after each page.
        History records carry no ``agent``.

        Raises:
            ResponseValidationError: a page holds nothing new, or the listing runs on
                past the pages its ``count`` says (instead of spending credits forever).
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
        """The account, its plan's limits and its usage (``GET /open/info``)."""
        return await self._call(self._requests.info(), parse_account_info)

    async def subscribe_webhook(
        self, event: WebhookEvent | str, *, hook_url: str, channel_uuid: str
    ) -> Webhook:
        """Have 2Chat POST ``event`` (a :class:`WebhookEvent` or its name) for the calls
        of a virtual number (``channel_uuid``: ``DID…``) to ``hook_url``, your receiver's
        address with a secret in it (``?token=...``).

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
        path = f"/open/webhooks/subscribe/{quote(name)}"
        request = self._request("POST", path, "/open/webhooks/subscribe/{event}", body)
        return await self._call(request, parse_webhook)

    async def list_webhooks(self, channel_uuid: str | None = None) -> list[Webhook]:
        """The account's webhooks, or one virtual number's."""
        if channel_uuid is None:
            return await self._call(self._request("GET", "/open/webhooks"), parse_webhooks)
        path = f"/open/webhooks/channel/{_id(channel_uuid, 'channel_uuid')}"
        request = self._request("GET", path, "/open/webhooks/channel/{channel_uuid}")
        return await self._call(request, parse_webhooks)

    async def delete_webhook(self, webhook_uuid: str) -> None:
        """Delete a subscription.

        Raises:
            NotFoundError: no such subscription (or a lost answer's attempt deleted it).
        """
        path = f"/open/webhooks/{_id(webhook_uuid, 'webhook_uuid')}"
        await self._call(
            self._request("DELETE", path, "/open/webhooks/{webhook_uuid}"), parse_deleted
        )

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
        self, path: str, parse: _Parse[list[_T]], page_size: int
    ) -> AsyncGenerator[_T, None]:
        # Until an empty or short page: `count` is not always a total.
        seen: set[object] = set()
        previous: list[_T] | None = None
        for page in itertools.count():
            query = f"?page_number={page}&results_per_page={page_size}"
            request = self._request("GET", f"/open/voip/{path}{query}")
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
                if (uuid := getattr(item, "uuid", item)) not in seen:
                    seen.add(uuid)
                    yield item
            if len(items) < page_size:
                return
