"""Bulk fetches: many ids through a bounded pool of workers, every id answered once.

No task per id: ``concurrency`` workers take ids from a queue that a feeder fills
lazily from the caller's (async) iterable. A semaphore of ``2 * concurrency`` window
slots is taken when an id is read and given back when its result has been handed to
the caller, so the run never reads further ahead than that, however long the input,
and ordered output never buffers more than the window either.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable, Iterable
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
    """A bulk run's feeder and worker pool, and the queues between them."""

    def __init__(
        self,
        fetch: Callable[[Any], Awaitable[CallDetailRecord]],
        call_uuids: Iterable[str] | AsyncIterable[str],
        concurrency: int,
    ) -> None:
        self._fetch = fetch
        self._call_uuids = call_uuids
        self._concurrency = concurrency
        self.window = asyncio.Semaphore(READ_AHEAD_FACTOR * concurrency)
        self._inputs: asyncio.Queue[tuple[int, object] | None] = asyncio.Queue()
        self.outputs: asyncio.Queue[CallResult | _Done] = asyncio.Queue()
        self.input_errors: list[BaseException] = []

    async def run(self) -> None:
        try:
            await asyncio.gather(self._feed(), *(self._work() for _ in range(self._concurrency)))
        finally:
            self.outputs.put_nowait(_DONE)

    async def _feed(self) -> None:
        index = 0
        try:
            async for value in _lazily(self._call_uuids, self.window):
                self._inputs.put_nowait((index, value))
                index += 1
        except Exception as exc:  # noqa: BLE001 - handed to the caller after the drain
            self.input_errors.append(exc)
        finally:
            for _ in range(self._concurrency):
                self._inputs.put_nowait(None)

    async def _work(self) -> None:
        while (item := await self._inputs.get()) is not None:
            self.outputs.put_nowait(await _answer(self._fetch, *item))


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
    buffered: dict[int, CallResult] = {}
    next_index = 0
    try:
        while not isinstance(result := await workers.outputs.get(), _Done):
            if isinstance(result.error, ClientClosedError):
                raise result.error
            if not ordered:
                yield result
                workers.window.release()
                continue
            buffered[result.index] = result
            while next_index in buffered:
                yield buffered.pop(next_index)
                next_index += 1
                workers.window.release()
        if workers.input_errors:
            raise workers.input_errors[0]
        if runner.cancelled():
            raise ClientClosedError("the VoIPClient was closed during this run")
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)


async def _lazily(
    values: Iterable[str] | AsyncIterable[str], window: asyncio.Semaphore
) -> AsyncGenerator[object, None]:
    """Yield ``values`` one at a time, each read only once a window slot is free."""
    next_value: Callable[[], Awaitable[object]]
    if isinstance(values, AsyncIterable):
        source = aiter(values)

        async def next_value() -> object:
            return await anext(source, _DONE)
    else:
        plain = iter(values)

        async def next_value() -> object:
            return next(plain, _DONE)

    while True:
        await window.acquire()
        value = await next_value()
        if value is _DONE:
            window.release()
            return
        yield value
