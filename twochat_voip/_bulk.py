"""Bulk fetches: many ids through a bounded pool of workers, every id answered once.

No task per id: ``concurrency`` workers pull ids lazily from the caller's (async)
iterable. One of ``2 * concurrency`` window slots is taken before an id is read and
given back when its result has been handed to the caller, so the run never
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
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
)
from typing import Any, Final, cast

from twochat_voip._errors import (
    APITimeoutError,
    AuthenticationError,
    BudgetExhaustedError,
    ClientClosedError,
    EventLoopMismatchError,
    NotFoundError,
    PaymentRequiredError,
    TwoChatError,
)
from twochat_voip._models import CallDetailRecord
from twochat_voip._results import AnyCallResult, CallFailure, CallResult, CallSuccess
from twochat_voip._waits import RunStopped, Stop, current_stop

__all__ = ["RUN_ENDING_ERRORS", "AnyCallResult", "CallResult", "iterate_bulk", "note_failure"]

READ_AHEAD_FACTOR: Final = 2

RUN_ENDING_ERRORS: Final = (
    AuthenticationError,
    PaymentRequiredError,
    BudgetExhaustedError,
    EventLoopMismatchError,
)
"""Errors that no other id of the run can escape: the key, the credits, the budget, a
client used in a loop it was not opened in."""

_ANSWERS_ABOUT_THE_ID: Final = (NotFoundError, ValueError)
"""Failures that are progress all the same: the server works, the id is no record."""


def note_failure(error: TwoChatError) -> None:
    """Remember a failed attempt for the bulk run the current task works for, if any:
    a run that gives up answers the ids left with the last one."""
    run = current_stop().get()
    if run is not None and not isinstance(
        error, (*_ANSWERS_ABOUT_THE_ID, RunStopped, ClientClosedError)
    ):
        run.last_failure = error


class _Done:
    pass


_DONE: Final = _Done()


class _Workers:
    """A bulk run's worker pool and the hand-over of results to the caller.

    Workers pull ids straight from the caller's iterable (a lock serialises an async
    one) once a window slot is free, and drop results into a deque the caller drains.
    The window is a counter and the caller's wake-up a single future: an
    ``asyncio.Semaphore`` and an ``Event`` would cost a coroutine and several calls per
    id for what is, nearly always, a counter going down and a flag going up.
    """

    def __init__(
        self,
        fetch: Callable[[Any], Awaitable[CallDetailRecord]],
        call_uuids: Iterable[str] | AsyncIterable[str],
        concurrency: int,
        give_up_after: float | None,
    ) -> None:
        self._fetch = fetch
        self.stop = Stop(RunStopped)
        self._give_up_after = give_up_after
        self._last_success = 0.0
        self._in_fetch: set[asyncio.Task[None]] = set()  # the workers fetching now
        self._cancelled_by_stop: set[asyncio.Task[None]] = set()
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
        # Free window slots: one is taken per id read and given back when the caller
        # has taken its result. A freed slot goes to one waiting worker, not all.
        # (Public to iterate_bulk, which gives a slot back inline once a result.)
        self.free_slots = READ_AHEAD_FACTOR * concurrency
        self.slot_waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self.results: collections.deque[AnyCallResult] = collections.deque()
        self._caller_waiting: asyncio.Future[None] | None = None
        self.input_errors: list[BaseException] = []

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self._last_success = time.monotonic()
        if self._give_up_after is not None:
            self._watchdog = loop.call_later(
                self._give_up_after, self._check_progress, self._give_up_after
            )
        workers = [loop.create_task(self._work()) for _ in range(self._concurrency)]
        try:
            await asyncio.gather(*workers)
        finally:
            self._exhausted = True
            self._wake_caller()
            if self._watchdog is not None:
                self._watchdog.cancel()

    def _check_progress(self, give_up_after: float) -> None:
        """Give up when nothing has succeeded for ``give_up_after`` seconds (a record
        fetched, or a definite "no such record", counts as success)."""
        loop = asyncio.get_running_loop()
        if not self._in_fetch:
            # Nothing is being fetched: the run waits for its caller or its input,
            # which is no failure of the server's.
            self._last_success = time.monotonic()
        idle = time.monotonic() - self._last_success
        if idle < give_up_after:
            self._watchdog = loop.call_later(
                give_up_after - idle, self._check_progress, give_up_after
            )
            return
        last = self.stop.last_failure
        self._give_up(
            last
            if isinstance(last, TwoChatError)
            else APITimeoutError(f"nothing succeeded for {give_up_after:g} s; gave up"),
            abandon_in_flight=True,
        )

    def _give_up(self, error: TwoChatError, *, abandon_in_flight: bool = False) -> None:
        """End the run: nothing more is sent, and every id left is answered with
        ``error`` (the first reason is kept).

        With ``abandon_in_flight`` (nothing has succeeded for ``give_up_after``: the
        requests in flight are most likely hanging) those are cancelled too and their
        ids answered with ``error``, instead of holding the run up to their timeout.
        Otherwise (a 401, a 402, the budget) they were sent and paid for, and may
        still bring a record: they are waited for.
        """
        if self.stopped_with is None:
            self.stopped_with = error
        self.stop.stop(error)
        if abandon_in_flight:
            for worker in self._in_fetch - self._cancelled_by_stop:
                self._cancelled_by_stop.add(worker)
                worker.cancel()

    def give_slot(self) -> None:
        """The caller took a result (or a worker found the input exhausted): one more
        id may be read."""
        waiters = self.slot_waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():  # a cancelled waiter's task is gone
                waiter.set_result(None)  # the slot is handed straight to it
                return
        self.free_slots += 1

    async def _wait_for_slot(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self.slot_waiters.append(waiter)
        await waiter

    async def results_ready(self) -> None:
        """Wait until a worker has added a result, or the run has ended."""
        waiter = self._caller_waiting = asyncio.get_running_loop().create_future()
        try:
            await waiter
        finally:
            self._caller_waiting = None

    def wake_caller(self, _: object = None) -> None:
        """Wake the caller waiting in :meth:`results_ready` (a task's done-callback too)."""
        self._wake_caller()

    def _wake_caller(self) -> None:
        waiter = self._caller_waiting
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _read(self) -> object:
        """The next id of a plain iterable, or ``_DONE`` (and the slot given back)."""
        if not self._exhausted:
            try:
                value = next(self._sync_source, _DONE)  # type: ignore[arg-type]
            except Exception as exc:  # noqa: BLE001 - handed to the caller after the drain
                self.input_errors.append(exc)
                value = _DONE
            if value is not _DONE:
                return value
        return self._input_ended()

    def _input_ended(self) -> object:
        """The input is exhausted: the slot taken for the id is given back."""
        self._exhausted = True
        self.give_slot()
        return _DONE

    async def _read_async(self) -> object:
        """The next id of an async iterable, or ``_DONE`` (and the slot given back)."""
        if not self._exhausted:
            try:
                async with self._source_lock:
                    value = await anext(self._async_source, _DONE)  # type: ignore[arg-type]
            except Exception as exc:  # noqa: BLE001 - handed to the caller after the drain
                self.input_errors.append(exc)
                value = _DONE
            if value is not _DONE and not self._exhausted:
                return value
        return self._input_ended()

    async def _work(self) -> None:
        current_stop().set(self.stop)  # this worker's task only: its waits end with the run
        # One coroutine per worker, not per id: each layer awaited per id costs on
        # every suspension of the request under it.
        fetch = self._fetch
        results = self.results
        in_fetch = self._in_fetch
        sync_source = self._sync_source
        clock = time.monotonic  # the run's clock: C, unlike loop.time()
        me = cast("asyncio.Task[None]", asyncio.current_task())  # run() made it a task
        while True:
            if self.free_slots:
                self.free_slots -= 1
            else:
                await self._wait_for_slot()
            value = self._read() if sync_source is not None else await self._read_async()
            if value is _DONE:
                return
            index = self._next_index
            self._next_index = index + 1
            shown = value if isinstance(value, str) else repr(value)
            result: AnyCallResult
            if self.stopped_with is not None:
                result = CallFailure(call_uuid=shown, error=self.stopped_with, index=index)
            else:
                in_fetch.add(me)
                try:
                    cdr = await fetch(value)
                except asyncio.CancelledError:
                    if not self._stopped_it(me):
                        raise
                    # Only a stop cancels a worker this way, and a stop has its reason.
                    stopped = self.stopped_with or TwoChatError("the bulk run stopped")
                    result = CallFailure(call_uuid=shown, error=stopped, index=index)
                except Exception as exc:  # noqa: BLE001 - every id is answered, even after a bug
                    result = CallFailure(call_uuid=shown, error=self._judge(exc), index=index)
                else:
                    self._last_success = clock()
                    result = CallSuccess(call_uuid=shown, cdr=cdr, index=index)
                finally:
                    in_fetch.discard(me)
            results.append(result)
            caller = self._caller_waiting  # _wake_caller(), inline: it runs once an id
            if caller is not None and not caller.done():
                caller.set_result(None)

    def _stopped_it(self, worker: asyncio.Task[None]) -> bool:
        """Whether ``worker`` was cancelled by the run's stop alone (which is then taken
        back), not from outside as well."""
        if worker not in self._cancelled_by_stop:
            return False
        self._cancelled_by_stop.discard(worker)
        return worker.uncancel() == 0

    def _judge(self, exc: Exception) -> TwoChatError | ValueError:
        """The error a failed fetch answers its id with; it may end the run."""
        if isinstance(exc, RunStopped):
            return self.stopped_with or TwoChatError("the bulk run stopped")
        if isinstance(exc, TwoChatError | ValueError):
            if isinstance(exc, _ANSWERS_ABOUT_THE_ID):
                self._last_success = time.monotonic()
            elif isinstance(exc, RUN_ENDING_ERRORS):
                self._give_up(exc)
            return exc
        error = TwoChatError(f"unexpected {type(exc).__name__}: {exc}")
        error.__cause__ = exc
        return error


def _check_options(concurrency: int, give_up_after: float | None) -> None:
    if not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError("concurrency must be a whole number of at least 1")
    if give_up_after is not None and not give_up_after > 0:
        raise ValueError("give_up_after must be a positive number of seconds, or None")


async def iterate_bulk(
    fetch: Callable[[Any], Awaitable[CallDetailRecord]],
    call_uuids: Iterable[str] | AsyncIterable[str],
    *,
    concurrency: int,
    ordered: bool,
    runs: set[asyncio.Task[None]] | None = None,
    give_up_after: float | None = None,
) -> AsyncGenerator[AnyCallResult, None]:
    """Fetch every id with ``fetch`` on ``concurrency`` workers; yield one result each.

    An exception raised by the input iterable ends the run after the ids read before it
    have been answered, and is then raised here. A closed client ends the run with
    :class:`ClientClosedError` (after the results already fetched).

    The run's workers live in one task, added to ``runs`` while it lasts, so that the
    client can stop a run nobody closed (a ``break`` out of a loop that keeps the
    generator referenced) when it is itself closed.

    The run gives up (see the module's docstring) on a :data:`RUN_ENDING_ERRORS`
    error, or when nothing has succeeded for ``give_up_after`` seconds; then every id
    not yet answered gets the last error of an attempt of this run (not a 404: those
    are progress), else an :class:`APITimeoutError` that says nothing succeeded.
    """
    _check_options(concurrency, give_up_after)
    workers = _Workers(fetch, call_uuids, concurrency, give_up_after)
    runner = asyncio.get_running_loop().create_task(workers.run())
    # Wakes the caller even when the runner is cancelled before its first step (the
    # client closed at once), when run()'s own finally never runs.
    runner.add_done_callback(workers.wake_caller)
    if runs is not None:
        runs.add(runner)
        runner.add_done_callback(runs.discard)
    results = workers.results
    slot_waiters = workers.slot_waiters
    buffered: dict[int, AnyCallResult] = {}
    next_index = 0
    try:
        while True:
            while results:
                result = results.popleft()
                if result.error is not None and isinstance(result.error, ClientClosedError):
                    raise result.error
                if not ordered:
                    yield result
                    if slot_waiters:
                        workers.give_slot()
                    else:
                        workers.free_slots += 1  # give_slot() for an idle pool, inline
                    continue
                buffered[result.index] = result
                while next_index in buffered:
                    yield buffered.pop(next_index)
                    next_index += 1
                    workers.give_slot()
            if runner.done():
                break
            await workers.results_ready()
        if workers.input_errors:
            raise workers.input_errors[0]
        if runner.cancelled():
            raise ClientClosedError("the VoIPClient was closed during this run")
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
