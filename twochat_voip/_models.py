"""The call detail record and its parts: frozen attrs classes and str-enums, no I/O.

Every field but the record's ``uuid`` is optional. An enum-typed field keeps a value
the SDK does not know as a plain ``str``: 2Chat adds statuses without notice.
"""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal

import attrs

_IN_PROGRESS = frozenset({"RINGING", "ANSWERED"})  # statuses of a call not over yet


class CallDirection(enum.StrEnum):
    """Which way a call went."""

    OUTBOUND = "O"
    INBOUND = "I"


class CallStatus(enum.StrEnum):
    """The states 2Chat is known to report (the list is open: fields also take a ``str``)."""

    ANSWERED = "ANSWERED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    MISSED = "MISSED"
    RINGING = "RINGING"


@attrs.frozen(kw_only=True)
class CallCost:
    """What a call was billed.

    Attributes:
        callid: The provider's call session id; matches the record's ``callid``.
        forwarded: Whether the call was forwarded.
        toll_free: Whether the destination was toll free.
        start_dt, end_dt: Start and end of the billing window (UTC).
        duration: Billed seconds.
        call_price: Price in USD, exact: ``Decimal("0.0594")``, never a float.
    """

    callid: str | None = None
    forwarded: bool | None = None
    toll_free: bool | None = None
    start_dt: datetime | None = None
    end_dt: datetime | None = None
    duration: int | None = None
    call_price: Decimal | None = None


@attrs.frozen(kw_only=True)
class Agent:
    """The 2Chat user who handled a call.

    Attributes:
        uuid: The agent's user id (``USR…``).
        first_name, last_name, full_name: The names, the last as 2Chat shows it.
        profile_pic_url: Address of the agent's picture.
    """

    uuid: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    full_name: str | None = None
    profile_pic_url: str | None = None


@attrs.frozen(kw_only=True)
class CallDetailRecord:
    """One call's full detail record (CDR), as ``GET /open/voip/call/{uuid}`` answers it.

    Attributes:
        uuid: The record's id (``CDR…``); the only required field.
        account_uuid: The account the call belongs to (``ACC…``).
        callid: The provider's opaque call session id.
        direction: :class:`CallDirection`, or the raw string for a new one.
        active: Whether the call is in progress now.
        from_: Id of the user or number that started the call (``from`` on the wire).
        to_number: Destination number, international format.
        iso_country_code: Two-letter country of the destination.
        status: :class:`CallStatus`, or the raw string for a new one.
        is_whatsapp_call, is_sip_trunk_call: Placed over WhatsApp, a SIP trunk.
        created_at, updated_at: When the record was created, and last changed (UTC).
        caller_id_uuid, caller_id_used: The caller id (``VCI…``) and the number shown.
        duration: Call duration in seconds.
        recording_url: Address of the mp3 recording, on another host.
        start_time, end_time: When the call was answered, and ended (UTC).
        agent_id: Id of the agent who handled the call (``USR…``).
        call_cost, agent: What the call was billed, and who handled it.

    A record is *final* (:attr:`is_final`) unless its call is not over: ``active`` is
    ``True``, or ``status`` is ``RINGING`` or ``ANSWERED`` (in any case).
    """

    uuid: str
    account_uuid: str | None = None
    callid: str | None = None
    direction: CallDirection | str | None = None
    active: bool | None = None
    from_: str | None = None
    to_number: str | None = None
    iso_country_code: str | None = None
    status: CallStatus | str | None = None
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

    @property
    def is_final(self) -> bool:
        """Whether the call is over, so this record will not change: ``active`` is not
        ``True`` and ``status`` is not ``RINGING`` or ``ANSWERED`` (in any case; a status
        the SDK does not know counts as final, so a new one never makes an export fetch
        the call again and again)."""
        in_progress = str(self.status).strip().upper() in _IN_PROGRESS
        return self.active is not True and not in_progress
