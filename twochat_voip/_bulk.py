"""Bulk fetches: :meth:`VoIPClient.get_calls`, on :mod:`twochat_voip._bulk_engine`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Final

from twochat_voip._bulk_engine import RUN_ENDING_ERRORS, iterate_bulk
from twochat_voip._protocol import parse_call
from twochat_voip._results import CallResult

if TYPE_CHECKING:
    from twochat_voip._requests import Request, Requests, Response

__all__ = ["DEFAULT_GIVE_UP_AFTER", "RUN_ENDING_ERRORS", "BulkMethods", "CallResult"]

DEFAULT_GIVE_UP_AFTER: Final = 300.0


class BulkMethods:
    """:meth:`get_calls`, a mixin of :class:`~twochat_voip.VoIPClient`."""

    _requests: Requests
    _bulk_runs: set[asyncio.Task[None]]

    if TYPE_CHECKING:

        async def _paced_call(
            self, request: Request, parse: Callable[[Response, str | None], Any], **options: Any
        ) -> Any: ...

    def get_calls(
        self,
        call_uuids: Iterable[str] | AsyncIterable[str],
        *,
        concurrency: int = 16,
        ordered: bool = False,
        give_up_after: float | None = DEFAULT_GIVE_UP_AFTER,
    ) -> AsyncGenerator[CallResult, None]:
        """Fetch many records; yield one :data:`CallResult` for every id given: a
        :class:`CallSuccess` or a :class:`CallFailure` (``if result.ok:`` narrows it).

        Ids are read lazily, fetched at most ``concurrency`` at a time under the
        client's rate limit, and answered as they complete (in input order with
        ``ordered=True``). A malformed id or a failed fetch is a result with ``error``
        set, never an exception; 429s use up none of a record's retries.

        After a 401, a 402, :class:`BudgetExhaustedError`, or ``give_up_after`` seconds
        (``None``: never) with nothing succeeding, every id not yet sent is answered
        with that error (the last one, after ``give_up_after``).

        Close the generator when you stop early, so its fetches stop at once::

            async with aclosing(voip.get_calls(ids)) as results:
                async for result in results:
                    ...
        """
        return self._get_calls(
            call_uuids, concurrency=concurrency, ordered=ordered, give_up_after=give_up_after
        )

    def _get_calls(
        self,
        call_uuids: Iterable[str] | AsyncIterable[str],
        *,
        concurrency: int,
        ordered: bool,
        give_up_after: float | None,
        parse: Callable[[Response, str | None], Any] = parse_call,
    ) -> AsyncGenerator[CallResult, None]:
        """:meth:`get_calls`, each result's ``cdr`` what ``parse`` makes of its answer."""

        def fetch(call_uuid: str, on_retry: Callable[[BaseException], object]) -> Awaitable[Any]:
            request = self._requests.call(call_uuid)
            return self._paced_call(request, parse, rate_limits_are_free=True, on_retry=on_retry)

        # Returned, not re-yielded: a wrapping generator would outlive the caller's aclose().
        return iterate_bulk(
            fetch,
            call_uuids,
            concurrency=concurrency,
            ordered=ordered,
            runs=self._bulk_runs,
            give_up_after=give_up_after,
        )
