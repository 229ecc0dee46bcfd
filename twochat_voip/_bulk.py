"""Bulk fetches: many ids through a bounded pool of workers, every id answered once.

No task per id: ``concurrency`` workers pull ids lazily from the caller's (async)
iterable. A semaphore of ``2 * concurrency`` window slots is taken before an id is
read and given back when its result has been handed to the caller, so the run never
reads further ahead than that, however long the input, and ordered output never
buffers more than the window either.

A run gives up rather than spend credits on what cannot succeed: an answer that
says the account cannot go on (401 invalid key, 402 no credits, the client's own
request budget spent), or nothing succeeding for ``give_up_after`` seconds, stops
it. From then on nothing more is sent: waiting workers are woken, and every id not
yet sent is answered with that error, so every id is still answered once.
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

from twochat_voip._errors import (
    AuthenticationError,
    BudgetExhaustedError,
    ClientClosedError,
    NotFoundError,
    PaymentRequiredError,
    TwoChatError,
)
from twochat_voip._models import CallDetailRecord
from twochat_voip._waits import RunStopped, Stop, current_stop

__all__ = ["RUN_ENDING_ERRORS", "CallResult", "iterate_bulk"]

READ_AHEAD_FACTOR: Final = 2

RUN_ENDING_ERRORS: Final = (AuthenticationError, PaymentRequiredError, BudgetExhaustedError)
"""Errors that no other id of the run can escape: the key, the credits, the budget."""

_ANSWERS_ABOUT_THE_ID: Final = (NotFoundError, ValueError)
"""Failures that are progress all the same: the server works, the id is no record."""


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
        give_up_after: float | None,
        last_failure: Callable[[], TwoChatError | None] | None,
    ) -> None:
        self._fetch = fetch
        self._last_failure = last_failure
        self.stop = Stop(RunStopped)
        self._give_up_after = give_up_after
        self._last_success = 0.0
        self._last_error: TwoChatError | ValueError | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self.stopped_with: TwoChatError | None = None
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
        loop = asyncio.get_running_loop()
        self._last_success = loop.time()
        if self._give_up_after is not None:
            self._watchdog = loop.call_later(
                self._give_up_after, self._check_progress, self._give_up_after
            )
        try:
            await asyncio.gather(*(self._work() for _ in range(self._concurrency)))
        finally:
            self._exhausted = True
            self.ready.set()
            if self._watchdog is not None:
                self._watchdog.cancel()

    def _check_progress(self, give_up_after: float) -> None:
        """Give up when nothing has succeeded for ``give_up_after`` seconds (a record
        fetched, or a definite "no such record", counts as success)."""
        loop = asyncio.get_running_loop()
        idle = loop.time() - self._last_success
        if idle < give_up_after:
            self._watchdog = loop.call_later(
                give_up_after - idle, self._check_progress, give_up_after
            )
            return
        last = self._last_failure() if self._last_failure is not None else None
        if last is None and isinstance(self._last_error, TwoChatError):
            last = self._last_error
        self._give_up(last or TwoChatError(f"nothing succeeded for {give_up_after:g} s"))

    def _give_up(self, error: TwoChatError) -> None:
        """End the run: nothing more is sent, and every id left is answered with
        ``error`` (the first reason is kept)."""
        if self.stopped_with is None:
            self.stopped_with = error
        self.stop.stop(error)

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
        current_stop().set(self.stop)  # this worker's task only: its waits end with the run
        while (item := await self._next()) is not None:
            self.results.append(await self._answer(*item))
            self.ready.set()

    async def _answer(self, index: int, value: object) -> CallResult:
        shown = value if isinstance(value, str) else repr(value)
        stopped = self.stopped_with
        if stopped is None:
            try:
                cdr = await self._fetch(value)
            except RunStopped:
                stopped = self.stopped_with or TwoChatError("the bulk run stopped")
            except (TwoChatError, ValueError) as exc:
                if isinstance(exc, _ANSWERS_ABOUT_THE_ID):
                    self._last_success = asyncio.get_running_loop().time()
                else:
                    self._last_error = exc
                    if isinstance(exc, RUN_ENDING_ERRORS):
                        self._give_up(exc)
                return CallResult(call_uuid=shown, error=exc, index=index)
            except Exception as exc:  # noqa: BLE001 - every id is answered, even after a bug
                error = TwoChatError(f"unexpected {type(exc).__name__}: {exc}")
                error.__cause__ = exc
                return CallResult(call_uuid=shown, error=error, index=index)
            else:
                self._last_success = asyncio.get_running_loop().time()
                return CallResult(call_uuid=shown, cdr=cdr, index=index)
        return CallResult(call_uuid=shown, error=stopped, index=index)


async def iterate_bulk(
    fetch: Callable[[Any], Awaitable[CallDetailRecord]],
    call_uuids: Iterable[str] | AsyncIterable[str],
    *,
    concurrency: int,
    ordered: bool,
    runs: set[asyncio.Task[None]] | None = None,
    give_up_after: float | None = None,
    last_failure: Callable[[], TwoChatError | None] | None = None,
) -> AsyncGenerator[CallResult, None]:
    """Fetch every id with ``fetch`` on ``concurrency`` workers; yield one result each.

    An exception raised by the input iterable ends the run after the ids read before it
    have been answered, and is then raised here. A closed client ends the run with
    :class:`ClientClosedError` (after the results already fetched).

    The run's workers live in one task, added to ``runs`` while it lasts, so that the
    client can stop a run nobody closed (a ``break`` out of a loop that keeps the
    generator referenced) when it is itself closed.

    The run gives up (see the module's docstring) on a :data:`RUN_ENDING_ERRORS`
    error, or when nothing has succeeded for ``give_up_after`` seconds; then every id
    not yet answered gets the last error (``last_failure()``: the last failed attempt's,
    else the last failed id's).
    """
    if not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError("concurrency must be a whole number of at least 1")
    if give_up_after is not None and not give_up_after > 0:
        raise ValueError("give_up_after must be a positive number of seconds, or None")
    workers = _Workers(fetch, call_uuids, concurrency, give_up_after, last_failure)
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
