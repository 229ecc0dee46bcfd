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


async def iterate_bulk(
    fetch: Callable[[Any], Awaitable[CallDetailRecord]],
    call_uuids: Iterable[str] | AsyncIterable[str],
    *,
    concurrency: int,
    ordered: bool,
) -> AsyncGenerator[CallResult, None]:
    """Fetch every id with ``fetch`` on ``concurrency`` workers; yield one result each.

    An exception raised by the input iterable ends the run after the ids read before it
    have been answered, and is then raised here. A closed client ends the run with
    :class:`ClientClosedError`.
    """
    if not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError("concurrency must be a whole number of at least 1")
    window = asyncio.Semaphore(READ_AHEAD_FACTOR * concurrency)
    inputs: asyncio.Queue[tuple[int, object] | None] = asyncio.Queue()
    outputs: asyncio.Queue[CallResult | _Done] = asyncio.Queue()
    input_errors: list[BaseException] = []

    async def feed() -> None:
        index = 0
        try:
            async for value in _lazily(call_uuids, window):
                inputs.put_nowait((index, value))
                index += 1
        except Exception as exc:  # noqa: BLE001 - handed to the caller after the drain
            input_errors.append(exc)
        finally:
            for _ in range(concurrency):
                inputs.put_nowait(None)

    async def work() -> None:
        while (item := await inputs.get()) is not None:
            outputs.put_nowait(await _answer(fetch, *item))

    async def run() -> None:
        try:
            await asyncio.gather(feed(), *(work() for _ in range(concurrency)))
        finally:
            outputs.put_nowait(_DONE)

    runner = asyncio.get_running_loop().create_task(run())
    buffered: dict[int, CallResult] = {}
    next_index = 0
    try:
        while not isinstance(result := await outputs.get(), _Done):
            if isinstance(result.error, ClientClosedError):
                raise result.error
            if not ordered:
                yield result
                window.release()
                continue
            buffered[result.index] = result
            while next_index in buffered:
                yield buffered.pop(next_index)
                next_index += 1
                window.release()
        if input_errors:
            raise input_errors[0]
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
