"""Receiving 2Chat's call events: :func:`parse_call_event` reads a delivery;
:class:`WebhookReceiver` checks its ``?token=`` and hands it on once."""

from __future__ import annotations

import asyncio
import collections
import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs

import attrs

from twochat_voip._converter import explain_invalid, sdk_converter
from twochat_voip._errors import (
    InvalidCallEventError,
    InvalidCallUUIDError,
    NotFoundError,
    TwoChatError,
)
from twochat_voip._models import Agent, CallCost, CallDetailRecord, CallDirection, CallStatus

if TYPE_CHECKING:
    from aiohttp import web

    from twochat_voip._client import VoIPClient

__all__ = ["MAX_EVENT_SIZE", "CallEvent", "Contact", "WebhookReceiver", "parse_call_event"]

logger: Final = logging.getLogger("twochat_voip")

MAX_EVENT_SIZE: Final = 256 * 1024
"""Bytes a delivery may have; a call event is about one kilobyte."""

_MAX_REASON: Final = 300  # characters of an explanation in an error (and a 400)
# What a URL's query carries as it is (a "+" would arrive as a space), long enough to be secret.
_TOKEN: Final = re.compile(r"[A-Za-z0-9._~-]{16,256}")
DEFAULT_HANDLER_TIMEOUT: Final = 10.0
_REMEMBERED: Final = 10_000  # events a receiver remembers, to tell redeliveries from news

_STATUSES: Final = {member.value.lower(): member.value for member in CallStatus}

_Answer = tuple[int, str]  # a status and its message


@attrs.frozen(kw_only=True)
class Contact:
    """The other party of a call (``uuid``: ``CON…``); fields as on :class:`Agent`."""

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


EventHandler = Callable[[CallEvent], Awaitable[None]]


def parse_call_event(body: bytes | str) -> CallEvent:
    """Read a webhook delivery's body into a :class:`CallEvent`.

    Unknown fields are ignored; a status is matched to :class:`CallStatus` without case.

    Raises:
        InvalidCallEventError: the body is not a call event (too big, not UTF-8 JSON,
            not an object, no ``uuid``, a field of the wrong type); a ``ValueError`` too.
    """
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    if len(raw) > MAX_EVENT_SIZE:
        raise InvalidCallEventError(f"a call event of {len(raw)} bytes is too big")
    try:
        payload: Any = json.loads(raw.decode("utf-8"))  # UTF-8 only, as JSON on the web
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise InvalidCallEventError("the body is not JSON in UTF-8") from None
    if not isinstance(payload, dict):
        raise InvalidCallEventError(f"a call event is a JSON object, not {type(payload).__name__}")
    payload = {k: v for k, v in payload.items() if k != "record"}  # ours, never 2Chat's
    status = payload.get("status")
    if isinstance(status, str) and status.lower() in _STATUSES:
        payload["status"] = _STATUSES[status.lower()]
    try:
        event: CallEvent = sdk_converter().structure(payload, CallEvent)
    except Exception as exc:  # cattrs and its hooks raise many types
        why = explain_invalid(payload, CallEvent, exc)
        if len(why) > _MAX_REASON:  # it may quote values; never a whole body
            why = why[:_MAX_REASON] + "..."
        raise InvalidCallEventError(f"not a call event: {why}") from exc
    return event


class WebhookReceiver:
    """Receives 2Chat's call events: an ASGI app, and an aiohttp.web handler.

    Args:
        on_event: Awaited with each new :class:`CallEvent`, once per event.
        token: The secret the hook URL carries as ``?token=`` (``secrets.token_urlsafe(32)``).
        client: A :class:`VoIPClient` for ``verify``.
        verify: Fetch each event's record into ``event.record`` first (a credit an event);
            an event whose record does not exist is refused (404).
        timeout: Seconds a delivery may take, fetch and handler included; past it: 504.
    """

    def __init__(
        self,
        on_event: EventHandler,
        *,
        token: str,
        client: VoIPClient | None = None,
        verify: bool = False,
        timeout: float = DEFAULT_HANDLER_TIMEOUT,
    ) -> None:
        if not isinstance(token, str) or _TOKEN.fullmatch(token) is None:
            raise ValueError(
                "token must be 16 to 256 characters from A-Z a-z 0-9 . _ ~ - "
                "(secrets.token_urlsafe(32) makes one): other characters change in a URL"
            )
        if not (isinstance(timeout, int | float) and 0 < timeout < float("inf")):
            raise ValueError("timeout must be a positive number of seconds")
        self._timeout = timeout
        if verify and client is None:
            raise ValueError("verify=True needs client=VoIPClient(...) to fetch records with")
        self._on_event = on_event
        self._token = token.encode()
        self._client = client
        self._verify = verify
        self._seen: collections.OrderedDict[tuple[Any, ...], None] = collections.OrderedDict()
        self._in_flight: dict[tuple[Any, ...], asyncio.Future[_Answer]] = {}

    def __repr__(self) -> str:
        return f"<WebhookReceiver verify={self._verify}>"

    async def handle(self, method: str, query: str, body: bytes) -> tuple[int, bytes]:
        """Answer one delivery (method, the URL's query string, body): status, JSON body."""
        return _encoded(self._refused(method, query) or await self._handle(body))

    def _refused(self, method: str, query: str) -> _Answer | None:
        if method != "POST":
            return (405, "deliveries are POSTs")
        given = parse_qs(query).get("token")
        if not given:
            return (401, "no token")
        if not hmac.compare_digest(given[0].encode(), self._token):
            logger.warning("refused a call event delivery with a wrong token")
            return (403, "wrong token")
        return None

    async def _handle(self, body: bytes) -> _Answer:
        try:
            event = parse_call_event(body)
        except InvalidCallEventError as exc:
            return (413 if len(body) > MAX_EVENT_SIZE else 400, str(exc))
        key = event.key
        if key in self._seen:
            logger.debug("call event %s (%s) delivered again: acknowledged", *key[:2])
            return (200, "already delivered")
        running = self._in_flight.get(key)
        if running is not None:  # the same event, delivered twice at once
            return await asyncio.shield(running)
        future: asyncio.Future[_Answer] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        answer: _Answer = (500, "the handler failed")  # if this delivery is cancelled
        try:
            answer = await asyncio.wait_for(self._deliver(event), self._timeout)
        except TimeoutError:
            logger.warning("a call event for %s took over %g s", event.uuid, self._timeout)
            answer = (504, "the delivery took too long")
        finally:
            del self._in_flight[key]
            future.set_result(answer)
        if answer[0] == 200:
            self._seen[key] = None
            if len(self._seen) > _REMEMBERED:
                self._seen.popitem(last=False)
        return answer

    async def _deliver(self, event: CallEvent) -> _Answer:
        if self._client is not None and self._verify:
            try:
                record = await self._client.get_call(event.uuid)
            except NotFoundError:
                logger.warning("refused a call event for %s: no such record", event.uuid)
                return (404, "no such call record")
            except InvalidCallUUIDError:
                return (400, "the event's uuid is not a call id")
            except TwoChatError as exc:
                logger.warning("could not verify a call event (%s)", type(exc).__name__)
                return (503, "could not verify the event now")
            event = attrs.evolve(event, record=record)
        try:
            await self._on_event(event)
        except Exception:
            logger.exception("the call event handler failed for %s", event.uuid)
            return (500, "the handler failed")
        logger.debug("call event %s (%s) handed on", event.uuid, event.status)
        return (200, "delivered")

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
        send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ) -> None:
        """The ASGI app: mount it (Starlette ``app.mount(path, receiver)``)."""
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        query = scope.get("query_string", b"").decode("latin-1")
        answer = self._refused(scope["method"], query)
        if answer is None:  # a refused delivery's body is never read
            body = bytearray()
            more = True
            while more and len(body) <= MAX_EVENT_SIZE:  # past it, it is refused unread
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                body += message.get("body", b"")
                more = message.get("more_body", False)
            answer = await self._handle(bytes(body))
        status, payload = _encoded(answer)
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def aiohttp_handler(self, request: web.Request) -> web.Response:
        """The aiohttp.web handler: ``app.router.add_post(path, receiver.aiohttp_handler)``."""
        from aiohttp import web  # noqa: PLC0415 - only for aiohttp.web users

        answer = self._refused(request.method, request.query_string)
        if answer is None:
            try:  # one byte past the limit tells a body too big
                body = await request.content.readexactly(MAX_EVENT_SIZE + 1)
            except asyncio.IncompleteReadError as exc:
                body = exc.partial
            answer = await self._handle(body)
        status, payload = _encoded(answer)
        return web.Response(status=status, body=payload, content_type="application/json")


def _encoded(answer: _Answer) -> tuple[int, bytes]:
    status, message = answer
    return status, json.dumps({"success": 200 <= status < 300, "message": message}).encode()
