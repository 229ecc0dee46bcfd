"""A fake monotonic clock for the limiters' ``clock=`` and ``sleep=``: time moves only
when someone sleeps on it, and every sleep is recorded."""

from __future__ import annotations

import asyncio


class FakeClock:
    """A clock that moves only when someone sleeps on it.

    Attributes:
        now: The time it reads.
        slept: Every sleep asked of it, in seconds, in order.
        asleep: Set when someone starts a sleep (a test waits on it instead of
            sleeping itself, hoping the other task got there).
        hold: While set, sleepers wait until it is cleared (or they are cancelled)
            before the clock moves: a test can act on a request mid-wait.
    """

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.slept: list[float] = []
        self.asleep = asyncio.Event()
        self.hold = False
        self._released = asyncio.Event()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Record the sleep, then move the clock to its end (never backwards, so that
        concurrent sleepers wake in the order of their deadlines)."""
        self.slept.append(seconds)
        self.asleep.set()
        deadline = self.now + seconds
        if self.hold:
            await self._released.wait()
        await asyncio.sleep(0)
        self.now = max(self.now, deadline)

    def release(self) -> None:
        """Let held sleepers (and later ones) go on."""
        self.hold = False
        self._released.set()
