"""Every wait a client makes, and the two things that end them early.

A client waits in three places: for its rate limiter's slot, for a backoff between
retries, and for a ``Retry-After`` pause (the limiter's). They all go through
:meth:`Waits.sleep` (or :meth:`Waits.guard` for a limiter the client did not make),
so that

- closing the client wakes every waiter at once with :class:`ClientClosedError`;
- a bulk run that gives up (a dead key, no credits, nothing succeeding) wakes its own
  workers' waiters with :class:`RunStopped`, and nobody else's.

Testing mode (:func:`set_testing`) lives here too: the retry policy skips its
backoff and the limiters skip their pauses while it is on.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

import attrs

from twochat_voip._errors import ClientClosedError, TwoChatError

__all__ = ["RunStopped", "Stop", "Waits", "current_stop", "is_testing", "set_testing"]

_T = TypeVar("_T")


@attrs.frozen
class _TestingMode:
    attempts: int


_testing: _TestingMode | None = None


class _TestingSwitch(contextlib.AbstractContextManager[None]):
    def __init__(self, previous: _TestingMode | None) -> None:
        self._previous = previous

    def __exit__(self, *exc_info: object) -> None:
        global _testing  # noqa: PLW0603 - the switch is process-wide on purpose
        _testing = self._previous


def set_testing(testing: bool, *, attempts: int = 1) -> contextlib.AbstractContextManager[None]:
    """Turn retry waits off (and cap attempts) for your own tests, like stamina's.

    With ``testing=True`` every client makes at most ``attempts`` attempts per call
    (1: no retries) and never waits for a retry: no backoff, no ``Retry-After`` pause,
    no pause after a 429, and a client made while it is on sends at once instead of
    starting slow. Pacing at a rate you configured is kept. Call it plainly to
    switch for the process, or use it as a context manager to switch back on exit::

        with twochat_voip.set_testing(True, attempts=3):
            ...  # up to 3 attempts, no waiting
    """
    global _testing  # noqa: PLW0603 - the switch is process-wide on purpose
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    previous = _testing
    _testing = _TestingMode(attempts) if testing else None
    return _TestingSwitch(previous)


def is_testing() -> bool:
    """Whether :func:`set_testing` is on."""
    return _testing is not None


def testing_attempts() -> int | None:
    """The attempts testing mode allows, ``None`` when it is off."""
    return None if _testing is None else _testing.attempts


class RunStopped(TwoChatError):
    """A bulk run gave up while this call waited; the run answers with its reason."""


class Stop:
    """Something that can end waits early: a client's close, or a bulk run's give-up.

    Attributes:
        error: Why it stopped, once it has (``None`` until then).
        last_failure: The last failed attempt of the run (a bulk run's stop only).
    """

    def __init__(self, make_error: Callable[[], BaseException]) -> None:
        self.error: BaseException | None = None
        self.last_failure: BaseException | None = None
        self._make_error = make_error
        self._waiting: set[asyncio.Future[None]] = set()

    def stop(self, error: BaseException) -> None:
        """Stop (the first reason is kept) and wake every wait registered here."""
        if self.error is None:
            self.error = error
        for waiter in self._waiting:
            if not waiter.done():
                waiter.set_exception(self._make_error())
        self._waiting.clear()

    def raise_if_stopped(self) -> None:
        if self.error is not None:
            raise self._make_error()


_current_stop: Final[contextvars.ContextVar[Stop | None]] = contextvars.ContextVar(
    "twochat_voip_run_stop", default=None
)


def current_stop() -> contextvars.ContextVar[Stop | None]:
    """The bulk run the current task works for (its workers set it)."""
    return _current_stop


class Waits:
    """A client's waits: every one ends at once when the client closes."""

    def __init__(self) -> None:
        self.closed = Stop(_closed)

    def close(self) -> None:
        """Wake every waiter with :class:`ClientClosedError`."""
        self.closed.stop(_closed())

    def check(self) -> None:
        """Raise if the client closed, or the current task's bulk run stopped."""
        # Called before every request: read the flags here, call only to raise.
        if self.closed.error is not None:
            self.closed.raise_if_stopped()
        run = _current_stop.get()
        if run is not None and run.error is not None:
            run.raise_if_stopped()

    async def sleep(self, seconds: float) -> None:
        """Sleep, unless the client closes or the current bulk run stops first."""
        if seconds <= 0:
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        timer = loop.call_later(seconds, _wake, waiter)
        try:
            await self._wait(waiter)
        finally:
            timer.cancel()

    async def guard(self, awaitable: Awaitable[_T]) -> _T:
        """Await ``awaitable`` (a limiter the client did not make), unless the client
        closes or the current bulk run stops first; it is then cancelled."""
        task = asyncio.ensure_future(awaitable)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        task.add_done_callback(lambda _: _wake(waiter))
        try:
            await self._wait(waiter)
        finally:
            if not task.done():
                task.cancel()
                # Wait for it to unwind; a cancellation of this task still propagates.
                await asyncio.gather(task, return_exceptions=True)
            elif not task.cancelled():
                # Failed as this wait ended for another reason: its error is taken
                # here, not logged as "never retrieved" when the task is collected.
                task.exception()
        return task.result()

    async def _wait(self, waiter: asyncio.Future[None]) -> None:
        """Await ``waiter``, which the client's close and the run's stop may fail."""
        self.check()
        stops = (self.closed, _current_stop.get())
        for stop in stops:
            if stop is not None:
                stop._waiting.add(waiter)
        try:
            await waiter
        finally:
            for stop in stops:
                if stop is not None:
                    stop._waiting.discard(waiter)


def _closed() -> ClientClosedError:
    return ClientClosedError("the VoIPClient was closed")


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
