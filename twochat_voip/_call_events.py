"""A call event as 2Chat delivers it to a webhook: a call record and a few fields more."""

from __future__ import annotations

from datetime import datetime

import attrs

from twochat_voip._models import Agent, CallCost, CallDetailRecord, CallDirection, CallStatus


@attrs.frozen(kw_only=True)
class Contact:
    """The other party of a call (``uuid``: ``CON…``); the other fields as on :class:`Agent`."""

    uuid: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    full_name: str | None = None
    profile_pic_url: str | None = None


@attrs.frozen(kw_only=True)
class CallEvent:
    """One call event delivered to a webhook (not signed: a hint until the record is
    fetched); fields not listed are as on :class:`CallDetailRecord`.

    Attributes:
        status: :class:`CallStatus`, matched without case, or the raw string.
        from_: ``from`` on the wire: a phone number in webhooks.
        received_on_number, received_on_number_uuid: The virtual number the call came
            in on, and its id (``DID…``); ``is_toll_free``: whether it is toll free.
        contact: The other party.
        record: The call's record, fetched by a receiver made with ``verify=True``.
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
    received_on_number: str | None = None
    received_on_number_uuid: str | None = None
    is_toll_free: bool | None = None
    is_whatsapp_call: bool | None = None
    is_sip_trunk_call: bool | None = None
    caller_id_uuid: str | None = None
    caller_id_used: str | None = None
    agent_id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    duration: int | None = None
    recording_url: str | None = None
    call_cost: CallCost | None = None
    contact: Contact | None = None
    agent: Agent | None = None
    record: CallDetailRecord | None = None

    @property
    def key(self) -> tuple[str, str | None, datetime | None]:
        """What tells one event from a redelivery of it: uuid, status, updated_at."""
        status = self.status
        return (self.uuid, None if status is None else str(status), self.updated_at)
