"""Bulk fetches: many ids through a bounded pool of workers, every id answered once.

No task per id: ``concurrency`` workers pull ids lazily from the caller's (async)
iterable. A semaphore of ``2 * concurrency`` window slots is taken before an id is
read and given back when its result has been handed to the caller, so the run never
reads further ahead than that, however long the input, and ordered output never
buffers more than the window either.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
)
from typing import Any, Final

import attrs

from twochat_voip._errors import ClientClosedError, TwoChatError
from twochat_voip._models import CallDetailRecord

__all__ = ["CallResult", "iterate_bulk"]

READ_AHEAD_FACTOR: Final = 2


@attrs.frozen(kw_only=True)
class CallResult:
    """The outcome for one id of a bulk run: a record or the error that stopped it.

    Attributes:
        call_uuid: The id as given (``repr()`` of it, if it was not a string).
        cdr: The record, when it was fetched.
        error: Why it was not: a :class:`TwoChatError` (an ``InvalidCallUUIDError``
            is also a ``ValueError``), after any retries.
        index: The id's position in the input, from 0.
    """

    call_uuid: str
    cdr: CallDetailRecord | None = None
    error: TwoChatError | ValueError | None = None
    index: int = 0

    @property
    def ok(self) -> bool:
        """Whether the record was fetched."""
        return self.error is None


class _Done:
    pass


_DONE: Final = _Done()


async def _answer(
    fetch: Callable[[Any], Awaitable[CallDetailRecord]], index: int, value: object
) -> CallResult:
    shown = value if isinstance(value, str) else repr(value)
    try:
        return CallResult(call_uuid=shown, cdr=await fetch(value), index=index)
    except (TwoChatError, ValueError) as exc:
        return CallResult(call_uuid=shown, error=exc, index=index)
    except Exception as exc:  # noqa: BLE001 - every id is answered, even after a bug
        error = TwoChatError(f"unexpected {type(exc).__name__}: {exc}")
        error.__cause__ = exc
        return CallResult(call_uuid=shown, error=error, index=index)


class _Workers:
    """A bulk run's worker pool and the hand-over of results to the caller.

    Workers pull ids straight from the caller's iterable (a lock serialises an async
    one) once a window slot is free, and drop results into a deque the caller drains;
    a semaphore and an event do what a feeder task and two queues would, at a
    fraction of the cost per id.
    """

    def __init__(
        self,
        fetch: Callable[[Any], Awaitable[CallDetailRecord]],
        call_uuids: Iterable[str] | AsyncIterable[str],
        concurrency: int,
    ) -> None:
        self._fetch = fetch
        self._concurrency = concurrency
        self._sync_source: Iterator[str] | None = None
        self._async_source: AsyncIterator[str] | None = None
        if isinstance(call_uuids, AsyncIterable):
            self._async_source = aiter(call_uuids)
        else:
            self._sync_source = iter(call_uuids)
        self._source_lock = asyncio.Lock()
        self._exhausted = False
        self._next_index = 0
        # A slot per id read whose result the caller has not taken yet; a semaphore
        # wakes one waiting worker per freed slot, not all of them.
        self._slots = asyncio.Semaphore(READ_AHEAD_FACTOR * concurrency)
        self.results: collections.deque[CallResult] = collections.deque()
        self.ready = asyncio.Event()
        self.input_errors: list[BaseException] = []

    async def run(self) -> None:
        try:
            await asyncio.gather(*(self._work() for _ in range(self._concurrency)))
        finally:
            self._exhausted = True
            self.ready.set()

    def give_slot(self) -> None:
        """The caller took a result: one more id may be read."""
        self._slots.release()

    async def _next(self) -> tuple[int, object] | None:
        await self._slots.acquire()
        if self._exhausted:
            self._slots.release()
            return None
        try:
            if self._sync_source is not None:
                value = next(self._sync_source, _DONE)
            else:
                async with self._source_lock:
                    value = await anext(self._async_source, _DONE)  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - handed to the caller after the drain
            self.input_errors.append(exc)
            value = _DONE
        if value is _DONE or self._exhausted:
            self._exhausted = True
            self._slots.release()
            return None
        index = self._next_index
        self._next_index += 1
        return index, value

    async def _work(self) -> None:
        while (item := await self._next()) is not None:
            self.results.append(await _answer(self._fetch, *item))
            self.ready.set()


async def iterate_bulk(
    fetch: Callable[[Any], Awaitable[CallDetailRecord]],
    call_uuids: Iterable[str] | AsyncIterable[str],
    *,
    concurrency: int,
    ordered: bool,
    runs: set[asyncio.Task[None]] | None = None,
) -> AsyncGenerator[CallResult, None]:
    """Fetch every id with ``fetch`` on ``concurrency`` workers; yield one result each.

    An exception raised by the input iterable ends the run after the ids read before it
    have been answered, and is then raised here. A closed client ends the run with
    :class:`ClientClosedError` (after the results already fetched).

    The run's workers live in one task, added to ``runs`` while it lasts, so that the
    client can stop a run nobody closed (a ``break`` out of a loop that keeps the
    generator referenced) when it is itself closed.
    """
    if not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError("concurrency must be a whole number of at least 1")
    workers = _Workers(fetch, call_uuids, concurrency)
    runner = asyncio.get_running_loop().create_task(workers.run())
    if runs is not None:
        runs.add(runner)
        runner.add_done_callback(runs.discard)
    results = workers.results
    buffered: dict[int, CallResult] = {}
    next_index = 0
    try:
        while True:
            while results:
                result = results.popleft()
                if isinstance(result.error, ClientClosedError):
                    raise result.error
                if not ordered:
                    yield result
                    workers.give_slot()
                    continue
                buffered[result.index] = result
                while next_index in buffered:
                    yield buffered.pop(next_index)
                    next_index += 1
                    workers.give_slot()
            if runner.done():
                break
            workers.ready.clear()
            await workers.ready.wait()
        if workers.input_errors:
            raise workers.input_errors[0]
        if runner.cancelled():
            raise ClientClosedError("the VoIPClient was closed during this run")
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
