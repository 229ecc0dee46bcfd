"""Sans-I/O, as :mod:`twochat_voip._protocol`: the requests and answers of the account's
other endpoints (its info, webhooks, virtual numbers and caller ids)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, Final, TypeVar
from urllib.parse import quote

from yarl import URL

from twochat_voip._converter import explain_invalid, sdk_converter
from twochat_voip._protocol import Request, Requests, Response, _invalid, parse_envelope
from twochat_voip._resources import AccountInfo, CallerId, VirtualNumber, Webhook, WebhookEvent

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "account_info",
    "caller_ids",
    "check_page_size",
    "delete_webhook",
    "parse_account_info",
    "parse_caller_ids",
    "parse_deleted",
    "parse_virtual_numbers",
    "parse_webhook",
    "parse_webhooks",
    "subscribe_webhook",
    "virtual_numbers",
    "webhooks",
]

_T = TypeVar("_T")

MAX_PAGE_SIZE: Final = 200
"""The largest ``results_per_page`` 2Chat documents (one page says 200, others 50)."""

DEFAULT_PAGE_SIZE: Final = 50
"""What the lists ask for: the smaller size 2Chat documents. A page shorter than asked
ends a list, so asking more than 2Chat serves would cut it short."""

_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,128}")


def _id(value: object, what: str) -> str:
    """A 2Chat id that is a plain path segment, or a ValueError before any I/O."""
    if not isinstance(value, str) or _ID.fullmatch(value) is None:
        raise ValueError(f"{what} must be a 2Chat id (letters, digits, '-', '_'), got {value!r}")
    return value


def _hook_url(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError("hook_url must be a URL string")
    url = URL(value)
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("hook_url must be an absolute http(s) URL that 2Chat can reach")
    return value


def account_info(requests: Requests) -> Request:
    """``GET /open/info``."""
    return requests.info()


def subscribe_webhook(
    requests: Requests, event: WebhookEvent | str, hook_url: str, channel_uuid: str
) -> Request:
    """``POST /open/webhooks/subscribe/{event}`` with the hook URL and the channel."""
    name = str(event)
    if not re.fullmatch(r"[a-z]+(\.[a-z]+)+", name):
        raise ValueError(f"not a webhook event name: {name!r}")
    body = json.dumps(
        {"hook_url": _hook_url(hook_url), "channel_uuid": _id(channel_uuid, "channel_uuid")}
    ).encode()
    url = f"{requests.base_url}/open/webhooks/subscribe/{quote(name)}"
    return Request(
        "POST", url, requests.headers, body=body, route="/open/webhooks/subscribe/{event}"
    )


def webhooks(requests: Requests, channel_uuid: str | None = None) -> Request:
    """``GET /open/webhooks``, or only one channel's (``/open/webhooks/channel/{uuid}``)."""
    path = route = "/open/webhooks"
    if channel_uuid is not None:
        path += f"/channel/{_id(channel_uuid, 'channel_uuid')}"
        route += "/channel/{channel_uuid}"
    return Request("GET", requests.base_url + path, requests.headers, route=route)


def delete_webhook(requests: Requests, webhook_uuid: str) -> Request:
    """``DELETE /open/webhooks/{webhook_uuid}``."""
    url = f"{requests.base_url}/open/webhooks/{_id(webhook_uuid, 'webhook_uuid')}"
    return Request("DELETE", url, requests.headers, route="/open/webhooks/{webhook_uuid}")


def check_page_size(page_size: int) -> None:
    """Refuse a page size 2Chat does not serve, before anything is sent."""
    if type(page_size) is not int or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be a whole number from 1 to {MAX_PAGE_SIZE}")


def _page(requests: Requests, path: str, page: int, page_size: int) -> Request:
    check_page_size(page_size)
    query = f"page_number={int(page)}&results_per_page={int(page_size)}"
    return Request("GET", f"{requests.base_url}{path}?{query}", requests.headers)


def virtual_numbers(requests: Requests, page: int, page_size: int) -> Request:
    """One page of ``GET /open/voip/virtual-numbers``."""
    return _page(requests, "/open/voip/virtual-numbers", page, page_size)


def caller_ids(requests: Requests, page: int, page_size: int) -> Request:
    """One page of ``GET /open/voip/caller-ids``."""
    return _page(requests, "/open/voip/caller-ids", page, page_size)


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

    parse.__name__ = f"parse_{key}"
    parse.__doc__ = f"The {cls.__name__} objects in an answer's ``{key}`` list."
    return parse


def parse_account_info(response: Response, call_uuid: str | None = None) -> AccountInfo:
    """The account, limits and usage in a ``GET /open/info`` answer."""
    payload: Any = parse_envelope(response, call_uuid)
    return _structure(response, payload, AccountInfo, "info")


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
