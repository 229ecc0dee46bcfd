"""The bulk engine: each id fetched in a task of an ``asyncio.TaskGroup``, with
``concurrency`` fetches at once and ``2 * concurrency`` ids read ahead; every id answered
once. A 401, a 402 or another event loop cancels every fetch; a spent budget lets those
under way finish (paid for); so does nothing succeeding for ``give_up_after`` seconds
(cancelled). The ids left are answered with that error."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
)
from typing import Any, Final

from twochat_voip._errors import (
    APITimeoutError,
    AuthenticationError,
    BudgetExhaustedError,
    ClientClosedError,
    EventLoopMismatchError,
    InvalidCallUUIDError,
    NotFoundError,
    PaymentRequiredError,
    TwoChatError,
)
from twochat_voip._models import CallDetailRecord
from twochat_voip._results import CallFailure, CallResult, CallSuccess

__all__ = ["RUN_ENDING_ERRORS", "CallResult", "iterate_bulk"]

READ_AHEAD_FACTOR: Final = 2

# Errors no other id of the run can escape: the key, the credits, the budget, a loop.
RUN_ENDING_ERRORS: Final = (
    AuthenticationError,
    PaymentRequiredError,
    BudgetExhaustedError,
    EventLoopMismatchError,
)
_ANSWERS_ABOUT_THE_ID: Final = (NotFoundError, InvalidCallUUIDError)  # progress all the same
# Fetches one id; told (second argument) each failed attempt it retries.
Fetch = Callable[[Any, Callable[[BaseException], object]], Awaitable[CallDetailRecord]]


async def _ids(call_uuids: Iterable[str] | AsyncIterable[str]) -> AsyncIterator[Any]:
    if isinstance(call_uuids, AsyncIterable):
        async for value in call_uuids:
            yield value
    else:
        for value in call_uuids:
            yield value


class _Run:
    """One bulk run: its tasks, its bounds, and why it stopped."""

    def __init__(self, fetch: Fetch, concurrency: int, give_up_after: float | None) -> None:
        self._fetch = fetch
        self._give_up_after = give_up_after
        self.window = asyncio.Semaphore(READ_AHEAD_FACTOR * concurrency)
        self._slots = asyncio.Semaphore(concurrency)
        self.results: asyncio.Queue[CallResult | None] = asyncio.Queue()
        self.input_error: Exception | None = None
        self._stopped: TwoChatError | None = None
        self._fetching: set[asyncio.Task[CallDetailRecord | Exception]] = set()
        self._last_progress = 0.0
        self._last_failure: TwoChatError | None = None
        self._runner: asyncio.Task[None] | None = None

    async def run(self, call_uuids: Iterable[str] | AsyncIterable[str]) -> None:
        loop = asyncio.get_running_loop()
        self._runner = asyncio.current_task()
        self._last_progress = loop.time()
        watchdog = None
        if self._give_up_after is not None:
            watchdog = loop.create_task(self._watch(self._give_up_after))
        ids = aiter(_ids(call_uuids))
        try:
            async with asyncio.TaskGroup() as tasks:
                index = 0
                while True:
                    await self.window.acquire()  # given back when the caller has its result
                    try:
                        value = await anext(ids)
                    except StopAsyncIteration:
                        break
                    except Exception as exc:  # noqa: BLE001 - raised to the caller after the drain
                        self.input_error = exc
                        break
                    await self._start(tasks, value, index)
                    index += 1
        finally:
            if watchdog is not None:
                watchdog.cancel()

    async def _start(self, tasks: asyncio.TaskGroup, value: Any, index: int) -> None:
        shown = value if isinstance(value, str) else repr(value)
        if self._stopped is None:
            await self._slots.acquire()
            if self._stopped is None:
                task = tasks.create_task(self._fetch_one(value))
                self._fetching.add(task)
                task.add_done_callback(functools.partial(self._answer, shown, index))
                return
            self._slots.release()  # it stopped while this id waited for a slot
        stopped = self._stopped
        self.results.put_nowait(CallFailure(call_uuid=shown, error=stopped, index=index))

    async def _fetch_one(self, value: Any) -> CallDetailRecord | Exception:
        """The record, or the error (returned: raised, it would end the TaskGroup)."""
        try:
            return await self._fetch(value, self._note_failure)
        except Exception as exc:  # noqa: BLE001 - every id is answered, even after a bug
            return exc

    def _answer(
        self, shown: str, index: int, task: asyncio.Task[CallDetailRecord | Exception]
    ) -> None:
        """Answer an id when its task ends, however it ends."""
        self._slots.release()
        self._fetching.discard(task)
        result: CallResult
        if task.cancelled():
            if self._runner is not None and self._runner.cancelling():
                return  # the run itself was cancelled: nobody reads its results
            error = self._stopped or TwoChatError("the fetch was cancelled")
            result = CallFailure(call_uuid=shown, error=error, index=index)
        else:
            outcome = task.result()
            if isinstance(outcome, Exception):
                result = CallFailure(call_uuid=shown, error=self._judge(outcome), index=index)
            else:
                self._last_progress = asyncio.get_running_loop().time()
                result = CallSuccess(call_uuid=shown, cdr=outcome, index=index)
        self.results.put_nowait(result)

    def _note_failure(self, error: BaseException) -> None:
        """A failed attempt, about to be retried: what the run answers if it gives up."""
        if isinstance(error, TwoChatError):
            self._last_failure = error

    def _judge(self, exc: Exception) -> TwoChatError | ValueError:
        """The error a failed fetch answers its id with; it may end the run."""
        if isinstance(exc, _ANSWERS_ABOUT_THE_ID):
            self._last_progress = asyncio.get_running_loop().time()
            return exc
        if isinstance(exc, BudgetExhaustedError):
            self._stop(exc, cancel=False)  # the fetches under way were paid for
        elif isinstance(exc, RUN_ENDING_ERRORS):
            self._stop(exc, cancel=True)
        elif isinstance(exc, TwoChatError):
            self._last_failure = exc
        else:
            error = TwoChatError(f"unexpected {type(exc).__name__}: {exc}")
            error.__cause__ = exc
            return error
        return exc

    def _stop(self, error: TwoChatError, *, cancel: bool) -> None:
        """Answer every id not fetched (with ``cancel``, under way) with the first error."""
        if self._stopped is None:
            self._stopped = error
        if cancel:
            for task in self._fetching:
                task.cancel()

    async def _watch(self, give_up_after: float) -> None:
        """Give up when no record (nor a "no such record") came for ``give_up_after``
        seconds of fetching."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._last_progress + give_up_after - loop.time())
            if not self._fetching:  # waiting for the caller or the input: no failure
                self._last_progress = loop.time()
            elif loop.time() >= self._last_progress + give_up_after:  # the sleep's own sum
                error = self._last_failure or APITimeoutError(
                    f"nothing succeeded for {give_up_after:g} s; gave up"
                )
                self._stop(error, cancel=True)
                return


async def iterate_bulk(
    fetch: Fetch,
    call_uuids: Iterable[str] | AsyncIterable[str],
    *,
    concurrency: int,
    ordered: bool,
    runs: set[asyncio.Task[None]] | None = None,
    give_up_after: float | None = None,
) -> AsyncGenerator[CallResult, None]:
    """Fetch every id with ``fetch``, ``concurrency`` at a time; yield one result each.

    An error of the input is raised after the ids read before it are answered. The run
    is one task, in ``runs`` while it lasts, so that closing the client cancels it.
    """
    if not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError("concurrency must be a whole number of at least 1")
    if give_up_after is not None and not give_up_after > 0:
        raise ValueError("give_up_after must be a positive number of seconds, or None")
    run = _Run(fetch, concurrency, give_up_after)
    runner = asyncio.get_running_loop().create_task(run.run(call_uuids))
    # The end of the results, however the runner ends (even cancelled before it ran).
    runner.add_done_callback(lambda _: run.results.put_nowait(None))
    if runs is not None:
        runs.add(runner)
        runner.add_done_callback(runs.discard)
    buffered: dict[int, CallResult] = {}
    next_index = 0
    try:
        while (result := await run.results.get()) is not None:
            if isinstance(result.error, ClientClosedError):
                raise ClientClosedError("the VoIPClient was closed during this run")
            if not ordered:
                next_index = result.index
            buffered[result.index] = result
            while next_index in buffered:
                yield buffered.pop(next_index)
                next_index += 1
                run.window.release()
        if run.input_error is not None:
            raise run.input_error
        if runner.cancelled():
            raise ClientClosedError("the VoIPClient was closed during this run")
        runner.result()  # a bug in the run itself, raised rather than lost
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
