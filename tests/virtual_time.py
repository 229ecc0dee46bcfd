"""An event loop with a virtual clock, for tests whose subject is time: pacing,
backoff, ``Retry-After``, give-up windows, the adaptive law.

Its ``time()`` stands still while the loop has work, and jumps to the next timer when
the loop would otherwise wait for it: a run paced at 20 requests a second over 40
requests takes 2 s of the loop's time and milliseconds of the machine's, and a busy
machine changes neither. Sockets stay real: before a jump the loop looks for I/O
(loopback data is in the peer's buffer when ``send`` returns; a millisecond of grace
covers the rest), and while a thread of its executor works, time does not move.

For tests whose sockets and servers all live in the test's own loop (the fake 2Chat
server, aiohttp): mark them ``@pytest.mark.virtual_time``. A subprocess, Redis or
PostgreSQL answers on the machine's clock; their tests keep the default loop.
"""

from __future__ import annotations

import asyncio
import math
import selectors
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

__all__ = ["VirtualTimeLoop"]

_T = TypeVar("_T")

_GRACE = 0.001
"""Real seconds a loop with nothing to do looks for I/O before its clock jumps."""


class _JumpingSelector(selectors.DefaultSelector):
    """The loop's selector: where the loop would wait for a timer, the clock jumps."""

    def __init__(self, loop: VirtualTimeLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready: list[tuple[selectors.SelectorKey, int]] = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None or self._loop.threads_at_work:
            # Nothing scheduled, or a thread will call back: wait for real (briefly,
            # and look again, when a timer is due meanwhile).
            waited: list[tuple[selectors.SelectorKey, int]] = super().select(
                None if timeout is None else min(timeout, 0.01)
            )
            return waited
        ready = super().select(_GRACE)
        if not ready:
            self._loop.advance(timeout)
        return ready


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose clock moves only when it would wait for a timer."""

    def __init__(self) -> None:
        self._now = time.monotonic()
        self.threads_at_work = 0
        super().__init__(_JumpingSelector(self))

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Jump ``seconds``, and onto the next timer exactly: its deadline is the sum
        its owner will compare the clock with."""
        self._now += seconds
        timers: list[asyncio.TimerHandle] = self._scheduled  # type: ignore[attr-defined]
        if timers and math.isfinite(timers[0].when()):  # (the loop's heap: earliest first)
            self._now = max(self._now, timers[0].when())

    async def subprocess_exec(self, *args: Any, **kwargs: Any) -> Any:
        """Refused: a process answers on the machine's clock, and the loop's would jump
        past its answer (mark such a test as real time)."""
        raise RuntimeError("a virtual_time test cannot run a subprocess")

    subprocess_shell = subprocess_exec

    def run_in_executor(  # type: ignore[override]
        self, executor: Any, func: Callable[..., _T], *args: Any
    ) -> asyncio.Future[_T]:
        future = super().run_in_executor(executor, func, *args)
        self.threads_at_work += 1  # (after: a refused call leaves no thread counted)
        future.add_done_callback(self._thread_done)
        return future

    def _thread_done(self, _: asyncio.Future[Any] | Future[Any]) -> None:
        self.threads_at_work -= 1
