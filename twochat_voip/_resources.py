"""The account's info, webhooks, virtual numbers and caller ids, shaped as records are."""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import attrs


class WebhookEvent(enum.StrEnum):
    """The call events 2Chat delivers to a webhook (``call.outgoing.completed`` is read
    as :attr:`CALL_OUTBOUND_COMPLETED`)."""

    CALL_STATUS_UPDATE = "call.status.update"
    CALL_INCOMING_COMPLETED = "call.incoming.completed"
    CALL_OUTBOUND_COMPLETED = "call.outbound.completed"


_SECRET_PARAMETERS = frozenset(
    {"token", "access_token", "secret", "key", "api_key", "apikey", "password", "signature"}
)


def redact_url(url: str | None) -> str | None:
    """``url`` with its password and secret-looking query values as ``***``."""
    if url is None:
        return None
    try:
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError:
        return "<unreadable URL>"
    if parts.password is not None:  # https://user:secret@host/...
        host = parts.netloc.rpartition("@")[2]
        parts = parts._replace(netloc=f"{parts.username}:***@{host}")
    if any(name.strip().lower() in _SECRET_PARAMETERS for name, _ in query):
        safe = [(n, "***" if n.strip().lower() in _SECRET_PARAMETERS else v) for n, v in query]
        parts = parts._replace(query=urlencode(safe, safe="*"))
    return urlunsplit(parts._replace(fragment="***" if parts.fragment else ""))


@attrs.frozen(kw_only=True)
class Account:
    """The account a key belongs to.

    Attributes:
        uuid: The account's id (``ACC…``).
        on_trial: Whether it is on a trial (about 30 requests a minute).
        created_at, expires_at: When it was created, and its plan expires (UTC).
    """

    uuid: str | None = None
    name: str | None = None
    on_trial: bool | None = None
    blocked: bool | None = None
    created_at: datetime | None = None
    expires_at: datetime | None = None


@attrs.frozen(kw_only=True)
class Limits:
    """The plan's limits: ``requests_per_minute``, what the account may make a minute."""

    requests_per_minute: int | None = None


@attrs.frozen(kw_only=True)
class Usage:
    """How much of the credit pools is used: API requests (credits) and number checks,
    each ``..._count`` used of ``max_..._count`` allowed."""

    api_request_count: int | None = None
    max_api_request_count: int | None = None
    number_check_count: int | None = None
    max_number_check_count: int | None = None


@attrs.frozen(kw_only=True)
class AccountInfo:
    """What ``GET /open/info`` tells: the ``account``, its plan's ``limits``, its ``usage``."""

    account: Account | None = None
    limits: Limits | None = None
    usage: Usage | None = None

    @property
    def credits_left(self) -> int | None:
        """API requests left in the pool, when 2Chat says both numbers."""
        usage = self.usage or Usage()
        if usage.api_request_count is None or usage.max_api_request_count is None:
            return None
        return max(0, usage.max_api_request_count - usage.api_request_count)


@attrs.frozen(kw_only=True)
class Webhook:
    """A subscription: 2Chat POSTs an event's payload to ``hook_url``.

    Attributes:
        uuid: The subscription's id (``WHK…``), for :meth:`VoIPClient.delete_webhook`.
        event_name: The event, or the raw name for one the SDK does not know.
        channel_uuid: The virtual number (``DID…``) whose calls it reports.
        hook_url: Where events go; its repr hides secrets (``token=***``).
    """

    uuid: str
    event_name: WebhookEvent | str | None = None
    channel_uuid: str | None = None
    hook_url: str | None = attrs.field(default=None, repr=lambda url: repr(redact_url(url)))
    hook_params: dict[str, Any] | None = attrs.field(default=None, hash=False)
    created_at: datetime | None = None


@attrs.frozen(kw_only=True)
class VirtualNumber:
    """A phone number the account rents (a ``DID…``), a channel for webhooks.

    Attributes:
        phone_number: International format (``formatted_phone_number``: as people write it).
        provider_type: ``mobile``, ``local``, ``shared-cost``, ``national``, or another.
        incoming_price_per_minute: Price of an incoming minute, exact.
        status_text: ``ACTIVE``, ``AWAITING_REGISTRATION``, ``PENDING_ACTIVATION``,
            ``PENDING_CANCELLATION``, ``RELEASED``, or another.
        created_at, updated_at, expires_at: Added, last changed, rent ends (UTC).
    """

    uuid: str
    account_uuid: str | None = None
    phone_number: str | None = None
    formatted_phone_number: str | None = None
    iso_country_code: str | None = None
    region_name: str | None = None
    emoji: str | None = None
    friendly_name: str | None = None
    record_inbound: bool | None = None
    is_toll_free: bool | None = None
    provider_type: str | None = None
    priced_per_minute: bool | None = None
    incoming_price_per_minute: Decimal | None = None
    ivr_uuid: str | None = None
    timezone: str | None = None
    status: int | None = None
    status_text: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    expires_at: datetime | None = None


@attrs.frozen(kw_only=True)
class CallerId:
    """A number the account may show when it calls (a ``VCI…``).

    Attributes:
        channel_uuid: The virtual number it belongs to (``DID…``), if any.
        type: ``VN`` virtual number, ``WW`` WhatsApp, ``WA`` WhatsApp Business API,
            ``CI`` imported caller id, or another.
    """

    uuid: str
    account_uuid: str | None = None
    channel_uuid: str | None = None
    phone_number: str | None = None
    friendly_name: str | None = None
    iso_country_code: str | None = None
    type: str | None = None
    verified: bool | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    expires_at: datetime | None = None
