"""The fake server's account: webhooks (and call events delivered to them), virtual
numbers and caller ids."""

from __future__ import annotations

import json
import uuid as uuid_module
from collections.abc import Mapping
from ipaddress import ip_address
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp

from twochat_voip.testing._faults import Answer, error_answer, json_answer

__all__ = ["FakeAccount", "make_caller_id", "make_virtual_number"]

ACCOUNT_UUID: Final = "ACC00000000-0000-4000-8000-000000000000"
_WEBHOOKS: Final = "/open/webhooks"
_SUBSCRIBE: Final = "/open/webhooks/subscribe/"
_CHANNEL: Final = "/open/webhooks/channel/"
_NUMBERS: Final = "/open/voip/virtual-numbers"
_CALLER_IDS: Final = "/open/voip/caller-ids"
_EVENTS: Final = frozenset(
    {"call.status.update", "call.incoming.completed", "call.outbound.completed"}
)
_STAMP: Final = "2025-01-01T00:00:00Z"


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
        "created_at": _STAMP,
        "updated_at": _STAMP,
        "expires_at": "2030-01-01T00:00:00Z",
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
        "created_at": _STAMP,
        "updated_at": _STAMP,
        "expires_at": "2030-01-01T00:00:00Z",
    }


class FakeAccount:
    """The account behind a :class:`FakeTwoChatServer`.

    Attributes:
        webhooks: The subscriptions, as 2Chat lists them, in the order made.
        virtual_numbers: The numbers listed by ``GET /open/voip/virtual-numbers``.
        caller_ids: The caller ids listed by ``GET /open/voip/caller-ids``.
        deliveries: ``(hook_url, status)`` of each event delivered (``None``: not reached).
    """

    def __init__(self, *, virtual_numbers: int = 3, caller_ids: int = 2) -> None:
        self.webhooks: list[dict[str, Any]] = []
        self.virtual_numbers = [make_virtual_number(n) for n in range(virtual_numbers)]
        self.caller_ids = [make_caller_id(n) for n in range(caller_ids)]
        self.deliveries: list[tuple[str, int | None]] = []
        self._made = 0

    def answer(
        self, method: str, path: str, query: Mapping[str, str], body: bytes
    ) -> Answer | None:
        """The answer to a request for one of these resources; ``None``: not one."""
        if path.startswith(_SUBSCRIBE) and method == "POST":
            return self._subscribe(path[len(_SUBSCRIBE) :], body)
        if path == _WEBHOOKS and method == "GET":
            return json_answer(200, {"success": True, "webhooks": self.webhooks})
        if path.startswith(_CHANNEL) and method == "GET":
            channel = path[len(_CHANNEL) :]
            hooks = [h for h in self.webhooks if h["channel_uuid"] == channel]
            return json_answer(200, {"success": True, "webhooks": hooks})
        if path.startswith(_WEBHOOKS + "/") and method == "DELETE":
            return self._delete(path[len(_WEBHOOKS) + 1 :])
        listed = {
            _NUMBERS: ("numbers", self.virtual_numbers),
            _CALLER_IDS: ("caller_ids", self.caller_ids),
        }
        if path in listed and method == "GET":
            return self._page(*listed[path], query)
        return None

    @staticmethod
    def info(api_request_count: int, requests_per_minute: float | None) -> Answer:
        """The answer to ``GET /open/info``; no ``limits`` without ``requests_per_minute``."""
        body: dict[str, Any] = {
            "success": True,
            "account": {
                "name": f"Fake account ({ACCOUNT_UUID})",
                "uuid": ACCOUNT_UUID,
                "on_trial": False,
                "blocked": False,
                "created_at": _STAMP,
                "expires_at": "2030-01-01T00:00:00Z",
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
        return json_answer(200, body)

    def _subscribe(self, event: str, body: bytes) -> Answer:
        if event not in _EVENTS:
            return error_answer(422, f"unknown event {event}")
        try:
            wanted = json.loads(body)
            hook_url, channel = wanted["hook_url"], wanted["channel_uuid"]
        except (ValueError, KeyError, TypeError):
            return error_answer(422, "hook_url and channel_uuid are required")
        if not any(n["uuid"] == channel for n in self.virtual_numbers):
            return error_answer(404, "Channel not found")
        wanted = {"event_name": event, "channel_uuid": channel, "hook_url": hook_url}
        if any(hook.items() >= wanted.items() for hook in self.webhooks):
            return error_answer(409, "Webhook already exists")
        self._made += 1
        hook = {"uuid": _id("WHK", self._made), **wanted, "hook_params": {}, "created_at": _STAMP}
        self.webhooks.append(hook)
        return json_answer(200, {"success": True, "data": hook})

    def _delete(self, webhook_uuid: str) -> Answer:
        for index, hook in enumerate(self.webhooks):
            if hook["uuid"] == webhook_uuid:
                del self.webhooks[index]
                return json_answer(200, {"success": True})
        return error_answer(404, "Webhook not found")

    @staticmethod
    def _page(key: str, items: list[dict[str, Any]], query: Mapping[str, str]) -> Answer:
        try:
            page = int(query.get("page_number", "0"))
            size = int(query.get("results_per_page", "50"))
        except ValueError:
            return error_answer(422, "page_number and results_per_page must be whole numbers")
        chunk = items[page * size : (page + 1) * size] if page >= 0 and size > 0 else []
        return json_answer(200, {"success": True, "count": len(items), "page": page, key: chunk})

    async def deliver_call(
        self, cdr: Mapping[str, Any], *, channel_uuid: str | None
    ) -> list[int | None]:
        """POST ``cdr``'s events to their webhooks on ``channel_uuid`` (default: the first
        number), loopback URLs only; the receivers' statuses (``None``: not reached)."""
        number = next(n for n in self.virtual_numbers if channel_uuid in (None, n["uuid"]))
        status = cdr["status"]
        events = ["call.status.update"]
        if status in ("COMPLETED", "MISSED", "FAILED"):
            events.append(
                "call.outbound.completed"
                if cdr.get("direction") == "O"
                else "call.incoming.completed"
            )
        payload = {k: v for k, v in cdr.items() if k not in ("call_cost", "agent_id")}
        payload.update(
            active=status in ("RINGING", "ANSWERED"),
            received_on_number=number["phone_number"],
            received_on_number_uuid=number["uuid"],
            is_toll_free=number["is_toll_free"],
            contact={"uuid": _id("CON", 0), "first_name": "Juan", "last_name": "Pérez"},
        )
        statuses: list[int | None] = []
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            for event in events:
                wanted = (event, number["uuid"])
                hooks = [h for h in self.webhooks if (h["event_name"], h["channel_uuid"]) == wanted]
                for hook in hooks:
                    status = None
                    if _is_loopback(hook["hook_url"]):
                        try:
                            # As a plain POST: a receiver that redirects gets no event.
                            async with session.post(
                                hook["hook_url"], json=payload, allow_redirects=False
                            ) as answer:
                                status = answer.status
                        except aiohttp.ClientError:
                            pass
                    self.deliveries.append((hook["hook_url"], status))
                    statuses.append(status)
        return statuses


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    try:
        return host == "localhost" or ip_address(host).is_loopback
    except ValueError:
        return False
