"""The fake server's account: webhooks (and call events delivered to them), virtual
numbers and caller ids."""

from __future__ import annotations

import contextlib
import json
import uuid as uuid_module
from collections.abc import Mapping
from ipaddress import ip_address
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp

from twochat_voip.testing._faults import error

__all__ = ["FakeAccount", "make_caller_id", "make_virtual_number"]

ACCOUNT_UUID: Final = "ACC00000000-0000-4000-8000-000000000000"
_WEBHOOKS: Final = "/open/webhooks"
_NUMBERS: Final = "/open/voip/virtual-numbers"
_IDS: Final = "/open/voip/caller-ids"
_SUBSCRIBE: Final = "/open/webhooks/subscribe/"
_CHANNEL: Final = "/open/webhooks/channel/"
_EVENTS: Final = ("call.status.update", "call.incoming.completed", "call.outbound.completed")
_STAMP: Final = "2025-01-01T00:00:00Z"
_STAMPS: Final = {"created_at": _STAMP, "updated_at": _STAMP, "expires_at": "2030-01-01T00:00:00Z"}


def _id(prefix: str, n: int) -> str:
    return f"{prefix}{uuid_module.UUID(int=n + 1, version=4)}"


def make_virtual_number(n: int) -> dict[str, Any]:
    """The ``n``-th fake virtual number, as 2Chat lists one."""
    phone = f"+1813252{n:04d}"
    return {
        "uuid": _id("DID", n),
        "account_uuid": ACCOUNT_UUID,
        "phone_number": phone,
        "formatted_phone_number": f"+1 813-252-{n:04d}",
        "iso_country_code": "US",
        "region_name": "Tampa",
        "emoji": None,
        "friendly_name": phone,
        "record_inbound": True,
        "is_toll_free": False,
        "provider_type": "local",
        "priced_per_minute": False,
        "incoming_price_per_minute": 0.0,
        "ivr_uuid": None,
        "timezone": "America/New_York",
        "status": 1,
        "status_text": "ACTIVE",
        **_STAMPS,
    }


def make_caller_id(n: int) -> dict[str, Any]:
    """The ``n``-th fake caller id, as 2Chat lists one."""
    phone = f"+6113007{n:05d}"
    return {
        "uuid": _id("VCI", n),
        "account_uuid": ACCOUNT_UUID,
        "channel_uuid": _id("DID", n),
        "phone_number": phone,
        "friendly_name": phone,
        "iso_country_code": "AU",
        "type": "VN",
        "verified": True,
        **_STAMPS,
    }


def account_info(api_request_count: int, requests_per_minute: float | None) -> dict[str, Any]:
    """The answer to ``GET /open/info``; no ``limits`` without ``requests_per_minute``."""
    body: dict[str, Any] = {
        "success": True,
        "account": {
            "name": f"Fake account ({ACCOUNT_UUID})",
            "uuid": ACCOUNT_UUID,
            "on_trial": False,
            "blocked": False,
            "created_at": _STAMP,
            "expires_at": _STAMPS["expires_at"],
        },
        "usage": {
            "api_request_count": api_request_count,
            "max_api_request_count": 500000,
            "number_check_count": 0,
            "max_number_check_count": 500000,
        },
    }
    if requests_per_minute is not None:
        body["limits"] = {"requests_per_minute": requests_per_minute}
    return body


class FakeAccount:
    """The account behind a :class:`FakeTwoChatServer`.

    Attributes:
        webhooks: The subscriptions, as 2Chat lists them, in the order made.
        virtual_numbers: The numbers listed by ``GET /open/voip/virtual-numbers``.
        caller_ids: The caller ids listed by ``GET /open/voip/caller-ids``.
        deliveries: ``(hook_url, status)`` of each event delivered (``None``: not reached).
    """

    def __init__(self) -> None:
        self.webhooks: list[dict[str, Any]] = []
        self.virtual_numbers = [make_virtual_number(n) for n in range(3)]
        self.caller_ids = [make_caller_id(n) for n in range(2)]
        self.deliveries: list[tuple[str, int | None]] = []
        self._made = 0

    def answer(
        self, method: str, path: str, query: Mapping[str, str], body: bytes
    ) -> tuple[int, Any] | None:
        """The answer to a request for one of these resources; ``None``: not one."""
        if method == "POST" and path.startswith(_SUBSCRIBE):
            return self._subscribe(path[len(_SUBSCRIBE) :], body)
        if method == "DELETE" and path.startswith(_WEBHOOKS + "/"):
            return self._delete(path[len(_WEBHOOKS) + 1 :])
        if method == "GET" and (path == _WEBHOOKS or path.startswith(_CHANNEL)):
            channel = path.removeprefix(_CHANNEL) if path != _WEBHOOKS else None
            hooks = [h for h in self.webhooks if channel in (None, h["channel_uuid"])]
            return 200, {"success": True, "webhooks": hooks}
        listed = {
            _NUMBERS: ("numbers", self.virtual_numbers),
            _IDS: ("caller_ids", self.caller_ids),
        }
        if method == "GET" and path in listed:
            return _page(*listed[path], query)
        return None

    def _subscribe(self, event: str, body: bytes) -> tuple[int, Any]:
        if event not in _EVENTS:
            return error(422, f"unknown event {event}")
        try:
            wanted = json.loads(body)
            hook_url, channel = wanted["hook_url"], wanted["channel_uuid"]
        except (ValueError, KeyError, TypeError):
            return error(422, "hook_url and channel_uuid are required")
        if not any(n["uuid"] == channel for n in self.virtual_numbers):
            return error(404, "Channel not found")
        wanted = {"event_name": event, "channel_uuid": channel, "hook_url": hook_url}
        if any(hook.items() >= wanted.items() for hook in self.webhooks):
            return error(409, "Webhook already exists")
        self._made += 1
        hook = {"uuid": _id("WHK", self._made), **wanted, "hook_params": {}, "created_at": _STAMP}
        self.webhooks.append(hook)
        return 200, {"success": True, "data": hook}

    def _delete(self, webhook_uuid: str) -> tuple[int, Any]:
        for index, hook in enumerate(self.webhooks):
            if hook["uuid"] == webhook_uuid:
                del self.webhooks[index]
                return 200, {"success": True}
        return error(404, "Webhook not found")

    async def deliver_call(
        self, cdr: Mapping[str, Any], *, channel_uuid: str | None
    ) -> list[int | None]:
        """POST ``cdr``'s events to their webhooks on ``channel_uuid`` (default: the first
        number), loopback URLs only; the receivers' statuses (``None``: not reached)."""
        number = next(n for n in self.virtual_numbers if channel_uuid in (None, n["uuid"]))
        status = cdr["status"]
        direction = "outbound" if cdr.get("direction") == "O" else "incoming"
        events = ["call.status.update"]
        if status in ("COMPLETED", "MISSED", "FAILED"):
            events.append(f"call.{direction}.completed")
        payload = {k: v for k, v in cdr.items() if k not in ("call_cost", "agent_id")}
        payload.update(
            active=cdr.get("active") is True,
            received_on_number=number["phone_number"],
            received_on_number_uuid=number["uuid"],
            is_toll_free=number["is_toll_free"],
            contact={"uuid": _id("CON", 0), "first_name": "Juan", "last_name": "Pérez"},
        )
        urls = [
            hook["hook_url"]
            for event in events
            for hook in self.webhooks
            if (hook["event_name"], hook["channel_uuid"]) == (event, number["uuid"])
        ]
        statuses: list[int | None] = []
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            for url in urls:
                statuses.append(await _post(session, url, payload))
                self.deliveries.append((url, statuses[-1]))
        return statuses


def _page(key: str, items: list[dict[str, Any]], query: Mapping[str, str]) -> tuple[int, Any]:
    try:
        page = int(query.get("page_number", "0"))
        size = int(query.get("results_per_page", "50"))
    except ValueError:
        return error(422, "page_number and results_per_page must be whole numbers")
    chunk = items[page * size : (page + 1) * size] if page >= 0 and size > 0 else []
    return 200, {"success": True, "count": len(items), "page": page, key: chunk}


async def _post(session: aiohttp.ClientSession, url: str, payload: Any) -> int | None:
    """POST an event to a loopback ``url``; its status, ``None`` if not sent or not reached."""
    host = urlsplit(url).hostname or ""
    with contextlib.suppress(ValueError, aiohttp.ClientError):
        if host == "localhost" or ip_address(host).is_loopback:
            # As a plain POST: a receiver that redirects gets no event.
            async with session.post(url, json=payload, allow_redirects=False) as answer:
                return answer.status
    return None
