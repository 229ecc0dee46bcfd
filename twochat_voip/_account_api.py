"""The client's methods for the account's other endpoints: its call history, its
info, its webhooks, its virtual numbers and caller ids (a mixin of
:class:`~twochat_voip.VoIPClient`)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TYPE_CHECKING, Literal, TypeVar

from twochat_voip import _endpoints as endpoints
from twochat_voip._models import CallDetailRecord
from twochat_voip._paging import iterate_history, iterate_pages
from twochat_voip._protocol import parse_history_page
from twochat_voip._resources import AccountInfo, CallerId, VirtualNumber, Webhook, WebhookEvent

if TYPE_CHECKING:
    from twochat_voip._protocol import Request, Requests, Response

__all__ = ["AccountMethods"]

_Item = TypeVar("_Item")
_T = TypeVar("_T")


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

    def iter_call_history(
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
        resume at: save it, and pass it as ``start_page`` to go on after a stop.
        A listing that repeats its pages or runs past its ``count`` raises
        :class:`ResponseValidationError` instead of spending credits for ever.

        History records carry no ``agent``; fetch a record's details with
        :meth:`~twochat_voip.VoIPClient.get_call` (or many with
        :meth:`~twochat_voip.VoIPClient.get_calls`) when you need it.
        """
        call = self._call

        def fetch_page(request: Request) -> Awaitable[tuple[list[CallDetailRecord], int | None]]:
            return call(request, parse_history_page, rate_limits_are_free=True)

        return iterate_history(
            fetch_page, self._requests, direction, start_page=start_page, on_page=on_page
        )

    async def get_account_info(self) -> AccountInfo:
        """The account, its plan's limits and its usage (``GET /open/info``): the call
        ``requests_per_minute="auto"`` makes."""
        return await self._call(
            endpoints.account_info(self._requests), endpoints.parse_account_info
        )

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
        request = endpoints.subscribe_webhook(self._requests, event, hook_url, channel_uuid)
        return await self._call(request, endpoints.parse_webhook)

    async def list_webhooks(self, channel_uuid: str | None = None) -> list[Webhook]:
        """The account's webhooks, or one virtual number's."""
        request = endpoints.webhooks(self._requests, channel_uuid)
        return await self._call(request, endpoints.parse_webhooks)

    async def delete_webhook(self, webhook_uuid: str) -> None:
        """Delete a subscription (``DELETE /open/webhooks/{webhook_uuid}``).

        Raises:
            NotFoundError: there is no such subscription; also when a first attempt
                deleted it and its answer was lost, so that a retry found it gone.
        """
        request = endpoints.delete_webhook(self._requests, webhook_uuid)
        await self._call(request, endpoints.parse_deleted)

    def iter_virtual_numbers(
        self, *, page_size: int = endpoints.DEFAULT_PAGE_SIZE
    ) -> AsyncGenerator[VirtualNumber, None]:
        """Every virtual number of the account, page by page (one credit a page)."""
        return self._pages(
            endpoints.virtual_numbers, endpoints.parse_virtual_numbers, page_size, "virtual numbers"
        )

    def iter_caller_ids(
        self, *, page_size: int = endpoints.DEFAULT_PAGE_SIZE
    ) -> AsyncGenerator[CallerId, None]:
        """Every caller id of the account, page by page (one credit a page)."""
        return self._pages(
            endpoints.caller_ids, endpoints.parse_caller_ids, page_size, "caller ids"
        )

    def _pages(
        self,
        make_request: Callable[[Requests, int, int], Request],
        parse: Callable[[Response, str | None], list[_Item]],
        page_size: int,
        what: str,
    ) -> AsyncGenerator[_Item, None]:
        """A paged list, each item once (see :func:`iterate_pages`); the page size is
        checked at once, before anything is sent."""
        endpoints.check_page_size(page_size)
        requests, call = self._requests, self._call

        def fetch(request: Request) -> Awaitable[list[_Item]]:
            return call(request, parse, rate_limits_are_free=True)

        return iterate_pages(
            fetch, lambda page: make_request(requests, page, page_size), page_size, what
        )
