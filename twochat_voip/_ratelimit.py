"""Client-wide pacing: every request of a client waits here for its slot.

2Chat limits each account per minute and charges a credit for every request, 429s
included, without saying the limit in its answers. So the limiter:

- paces requests evenly at a configured rate (a GCRA: slot ``k`` leaves at
  ``t0 + k * interval``; no minute's worth of burst at the start, which fires a 429
  storm at any server that counts more finely than per minute);
- without a configured rate, sends freely until the first 429, then *adapts* (AIMD):
  while it knows little, it halves its rate on each 429 and grows it 2% with every
  accepted answer (TCP's slow start); once it has seen a window of accepted answers,
  a 429 sets the rate to 90% of what the server demonstrably accepted over that
  window, and the rate then grows only 0.2% an answer, so a run settles just under the
  server's limit with a 429 every few hundred requests;
- holds every request, not just the one that was told, while a ``Retry-After`` lasts.

A 429 answers a request sent earlier; only one sent after the last decrease may
decrease the rate again, so a volley of 429s for requests already in flight counts
once, the way TCP reacts once per round trip. And a lone 429 among the last 64
answers is taken for noise, not a limit: without that, stray 429s (which any busy API
sends now and then) would ratchet the rate down for good.

:class:`RateLimiter` is the seam: the client calls :meth:`~RateLimiter.acquire` before
every attempt and :meth:`~RateLimiter.feedback` after every answer, so another
implementation (one shared through Redis, say) can take its place.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable
from typing import Final, Protocol, runtime_checkable

__all__ = ["AdaptiveRateLimiter", "RateLimiter"]

_WINDOW: Final = 64
"""Answers (and sends) the adaptive rate is measured over."""
_FAST_GROWTH: Final = 0.02
_SLOW_GROWTH: Final = 0.002
_HALVE: Final = 0.5
_BACK_OFF: Final = 0.9


@runtime_checkable
class RateLimiter(Protocol):
    """What a client needs from a rate limiter."""

    async def acquire(self) -> float:
        """Wait until a request may leave; return the time (monotonic) it left."""
        ...

    def feedback(self, *, sent_at: float, status: int, retry_after: float | None) -> None:
        """Learn from the answer to a request that left at ``sent_at``."""
        ...


def _rate_of(times: collections.deque[float]) -> float | None:
    """Events per second over a deque of their times, if it can tell."""
    if len(times) < 2:
        return None
    span = times[-1] - times[0]
    return (len(times) - 1) / span if span > 0 else None


class AdaptiveRateLimiter:
    """The in-process limiter every client has: paced, adaptive, pausable.

    Args:
        requests_per_minute: The rate to pace at, and the ceiling the adaptive rate
            climbs back to; ``None``: no pacing until the server answers 429.
        burst: Requests that may leave back to back after a quiet spell.
        adaptive: Lower the rate on a 429 (the default); ``False`` keeps the
            configured rate whatever the server says (Retry-After still holds).
        min_requests_per_minute: The floor the adaptive rate never goes under.
        clock: The monotonic clock, and ``sleep`` the way to wait on it (tests
            pass fakes).
    """

    def __init__(
        self,
        requests_per_minute: float | None = None,
        *,
        burst: int = 1,
        adaptive: bool = True,
        min_requests_per_minute: float = 6.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if requests_per_minute is not None and requests_per_minute <= 0:
            raise ValueError("requests_per_minute must be positive")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self._ceiling = None if requests_per_minute is None else requests_per_minute / 60.0
        self._floor = min_requests_per_minute / 60.0
        self._burst = burst
        self._adaptive = adaptive
        self._clock = clock
        self._sleep = sleep
        self._rate: float | None = self._ceiling  # requests per second; None: unpaced
        self._growth = _FAST_GROWTH
        self._next_slot = 0.0  # the GCRA's theoretical arrival time
        self._paused_until = 0.0
        self._last_decrease = float("-inf")
        self._sent: collections.deque[float] = collections.deque(maxlen=_WINDOW)
        self._accepted: collections.deque[float] = collections.deque(maxlen=_WINDOW)
        self._limited: collections.deque[bool] = collections.deque(maxlen=_WINDOW)
        self._generation = 0  # bumped by every decrease and pause: waiters re-plan

    @property
    def requests_per_minute(self) -> float | None:
        """The rate in force now (``None``: unpaced)."""
        return None if self._rate is None else self._rate * 60.0

    def pause(self, seconds: float) -> None:
        """Hold every request for ``seconds`` (a server's Retry-After)."""
        until = self._clock() + seconds
        if until > self._paused_until:
            self._paused_until = until
            self._generation += 1

    async def acquire(self) -> float:
        """Wait for this request's slot; slots are handed out in call order.

        A waiter whose slot was planned before a decrease or a pause plans again,
        so no request leaves at a pace the server has just refused.
        """
        while True:
            now = self._clock()
            generation = self._generation
            start = max(now, self._paused_until)
            rate = self._rate
            if rate is None:
                slot = start
            else:
                interval = 1.0 / rate
                slot = max(start, self._next_slot - (self._burst - 1) * interval)
                self._next_slot = max(self._next_slot, slot) + interval
            if slot > now:
                await self._sleep(slot - now)
                if generation != self._generation:
                    continue
                now = self._clock()
            self._sent.append(now)
            return now

    def feedback(self, *, sent_at: float, status: int, retry_after: float | None) -> None:
        """Count an accepted answer, or react to a 429; honour any Retry-After."""
        now = self._clock()
        if retry_after is not None:
            self.pause(retry_after)
        self._limited.append(status == 429)
        if status != 429:
            self._accepted.append(now)
            rate = self._rate
            if rate is not None and rate != self._ceiling:
                rate *= 1.0 + self._growth
                self._rate = rate if self._ceiling is None else min(rate, self._ceiling)
            return
        if self._adaptive and sent_at > self._last_decrease and self._limited.count(True) > 1:
            self._decrease(now)

    def _decrease(self, now: float) -> None:
        current = self._rate if self._rate is not None else _rate_of(self._sent)
        if current is None:
            # A 429 for the very first request says nothing about a rate (others may
            # share the account): leave it to the retry backoff and Retry-After.
            return
        accepted = _rate_of(self._accepted) if len(self._accepted) == _WINDOW else None
        if accepted is None:
            new_rate = _HALVE * current
            self._growth = _FAST_GROWTH
        else:
            new_rate = _BACK_OFF * min(current, accepted)
            self._growth = _SLOW_GROWTH
        self._rate = max(self._floor, new_rate)
        self._last_decrease = now
        # Waiters re-plan at the new pace, one interval from now.
        self._next_slot = now + 1.0 / self._rate
        self._generation += 1
