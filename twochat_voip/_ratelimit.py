"""Client-wide pacing: :class:`RateLimiter`, the seam, and :class:`AdaptiveRateLimiter`,
the in-process limiter: a GCRA at a given, asked or found rate, adapted to 429s by the
law in ``_rate_law.py``.
"""

from __future__ import annotations

import asyncio
import collections
import math
from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from twochat_voip._clock import loop_time
from twochat_voip._gcra import Gcra
from twochat_voip._rate_law import (
    CUT,
    DOUBLING,
    IDLE,
    MEASURED,
    PLAN_CUT,
    START_PER_SECOND,
    UNPACED_ABOVE,
    WALL_AFTER,
    WINDOW,
    climb_with_plan,
    climb_without_plan,
    is_a_limit,
)
from twochat_voip._retry import is_testing

__all__ = ["AdaptiveRateLimiter", "RateLimiter"]


@runtime_checkable
class RateLimiter(Protocol):
    """What a client needs from a rate limiter: ``VoIPClient(rate_limiter=...)``."""

    async def acquire(self) -> float:
        """Wait until a request may leave; return the time (monotonic) it left."""
        ...

    def feedback(self, *, sent_at: float, status: int, retry_after: float | None) -> None:
        """Learn from the answer to a request that left at ``sent_at``."""
        ...

    async def aclose(self) -> None:
        """Let go of what the limiter holds (called by a client that owns it)."""
        ...


class AdaptiveRateLimiter:
    """The in-process limiter every client has: paced, adaptive, pausable.

    Waiters queue in call order; the first plans its slot from the rate at that moment,
    so a cut or a climb applies at once.

    Args:
        requests_per_minute: The rate to pace at, and the ceiling the rate climbs back
            to after a cut; ``None``: find the limit, starting at 4 requests a second
            and doubling every half second until the server pushes back.
        burst: Requests that may leave back to back after a quiet spell.
        min_requests_per_minute: The floor a cut never goes under: a wall of 429s
            (from the second after a cut on, nothing accepted between) halves the
            pace down to it.
        clock: The monotonic clock, and ``sleep`` the way to wait on it (tests pass fakes).
    """

    def __init__(
        self,
        requests_per_minute: float | None = None,
        *,
        burst: int = 1,
        min_requests_per_minute: float = 6.0,
        clock: Callable[[], float] = loop_time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if requests_per_minute is not None:
            _check_rate(requests_per_minute)
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self._ceiling = None if requests_per_minute is None else requests_per_minute / 60.0
        self._floor = min_requests_per_minute / 60.0
        self._clock = clock
        self._sleep = sleep
        self._rate: float | None = self._ceiling
        self._cut_to = 0.0
        self._cut_at = float("-inf")
        self._fresh_after = float("-inf")  # the last cut: only later requests judge the next
        self._unanswered = -1  # fresh 429s since a cut, nothing accepted (-1: none)
        self._walled = False  # halved: the climb waits for an accepted answer
        self._accepted_rate = 0.0
        self._gcra = Gcra(interval=0.0, burst=burst)
        self._paused_until = 0.0
        self._answers = 0
        self._fresh_answers = 0  # answers to requests sent since the last cut
        self._limited_at: collections.deque[int] = collections.deque()  # answer numbers
        # No rate: double from the first request on (testing mode: no pacing).
        self._slow_start = requests_per_minute is None and not is_testing()
        if self._slow_start:
            self._rate = self._cut_to = self._accepted_rate = START_PER_SECOND
            self._cut_at = float("inf")  # set by the first request
        self._sent: collections.deque[float] = collections.deque(maxlen=MEASURED)
        self._accepted: collections.deque[float] = collections.deque(maxlen=MEASURED)
        self._queue = asyncio.Lock()

    @property
    def requests_per_minute(self) -> float | None:
        """The rate in force now (``None``: unpaced)."""
        rate = self._rate_now(self._clock())
        return None if rate is None else rate * 60.0

    async def aclose(self) -> None:
        """Nothing to let go of."""

    def set_requests_per_minute(self, requests_per_minute: float) -> None:
        """Pace at this rate from now on, and never climb above it (``"auto"``)."""
        _check_rate(requests_per_minute)
        self._ceiling = self._rate = requests_per_minute / 60.0
        self._cut_at = self._fresh_after = float("-inf")
        self._slow_start = self._walled = False
        self._unanswered = -1
        # The request that asked was one of the slots at this rate.
        last = self._sent[-1] if self._sent else self._clock()
        self._gcra.tat = last + 60.0 / requests_per_minute

    def learn_plan(self, requests_per_minute: float) -> None:
        """The plan's limit, learnt while adapting: never climb above it, and climb back
        after a cut in steps of it; the pace in force stays."""
        _check_rate(requests_per_minute)
        ceiling = self._ceiling = requests_per_minute / 60.0
        self._cut_to = min(self._cut_to, ceiling)
        self._accepted_rate = min(self._accepted_rate, ceiling)
        if self._rate is None:  # unpaced: from now on, at most the plan's pace
            self._rate = ceiling
            self._slow_start = False
            self._gcra.tat = self._clock()

    def pause(self, seconds: float) -> None:
        """Hold every request for ``seconds`` (a Retry-After); skipped in testing mode."""
        if not is_testing():
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    async def acquire(self) -> float:
        """Wait for this request's slot, in call order; return when it left."""
        async with self._queue:
            slept = False
            while True:
                now = self._clock()
                due = self._due(now)
                if due <= now:  # one that waited makes up for a late wake-up
                    return self._take(now, due if slept else now)
                await self._sleep(due - now)
                slept = True

    def feedback(self, *, sent_at: float, status: int, retry_after: float | None) -> None:
        """Count an accepted answer, or judge a 429; honour any Retry-After."""
        if retry_after is not None:
            self.pause(retry_after)
        self._answers += 1
        if sent_at > self._fresh_after:
            self._fresh_answers += 1
        if status != 429:
            self._accepted.append(sent_at)
            if sent_at > self._fresh_after:
                self._unanswered = -1
                if self._walled:  # past the wall: the climb starts now
                    self._walled = False
                    self._cut_at = self._clock()
            return
        if sent_at <= self._fresh_after:
            return  # sent before the last cut: that cut answered it already
        if self._unanswered >= 0:
            self._unanswered += 1
            if self._walled or self._unanswered >= WALL_AFTER:
                self._halve(self._clock())
                return
        limited = self._limited_at
        limited.append(self._answers)
        while limited[0] <= self._answers - WINDOW:
            limited.popleft()
        if is_a_limit(
            limited, self._answers, self._fresh_answers, plan_known=self._ceiling is not None
        ):
            self._cut(self._clock())

    def _rate_now(self, now: float) -> float | None:
        """The rate at ``now``; a climb's clock stops a quiet spell after the last request."""
        rate = self._rate
        if rate is None or rate == self._ceiling or self._walled:
            return rate
        if self._sent:
            now = min(now, self._sent[-1] + self._quiet_after())
        since = now - self._cut_at
        if since <= 0:
            return rate
        if self._slow_start:
            rate = self._cut_to * 2.0 ** min(since / DOUBLING, 64.0)
        elif self._ceiling is not None:
            rate = climb_with_plan(self._cut_to, self._ceiling, since)
        else:
            rate = climb_without_plan(self._cut_to, self._accepted_rate, since)
        if self._ceiling is not None:
            if rate >= self._ceiling:
                rate = self._rate = self._ceiling  # climbed all the way back
                self._slow_start = False
        elif rate > UNPACED_ABOVE:
            # Far past any plan with no limit met: stop pacing until the next limit.
            self._rate = None
            self._slow_start = False
            return None
        return max(rate, self._cut_to)

    def _quiet_after(self) -> float:
        """Seconds without a request that make a quiet spell."""
        return max(IDLE, 2.0 / self._cut_to) if self._cut_to > 0 else IDLE

    def _due(self, now: float) -> float:
        rate = self._rate_now(now)
        if rate is None:
            return self._paused_until
        self._gcra.interval = 1.0 / rate
        return max(self._paused_until, self._gcra.earliest())

    def _take(self, now: float, due: float) -> float:
        """The next request leaves at ``now`` for its slot ``due``."""
        sent = self._sent
        if sent:
            quiet = now - sent[-1] - self._quiet_after()
            if quiet > 0:
                self._cut_at += quiet
        elif self._cut_at > now:
            self._cut_at = now
        sent.append(now)  # before _rate_now: the climb's clock runs to `now`
        rate = self._rate_now(now)
        if rate is not None:
            self._gcra.interval = 1.0 / rate
            self._gcra.take(now, due)
        return now

    def _cut(self, now: float) -> None:
        """A limit: pace at a share of what the server accepted, then climb back."""
        sending = self._rate_now(now)
        if sending is None:
            # Unpaced: start slow from what the server accepted in the last second.
            accepted = sum(1 for sent_at in self._accepted if sent_at > now - 1.0)
            self._slow_start = True
            self._accepted_rate = self._cut_to = self._rate = max(self._floor, accepted)
        else:
            self._slow_start = False
            times = self._accepted  # the rate the server accepted, if they tell it
            span = times[-1] - times[0] if len(times) > 1 else 0.0
            accepted_rate = min((len(times) - 1) / span, sending) if span > 0 else sending
            self._accepted_rate = max(self._floor, accepted_rate)
            cut = CUT if self._ceiling is None else PLAN_CUT
            self._cut_to = self._rate = max(self._floor, cut * accepted_rate)
        self._restart(now)

    def _halve(self, now: float) -> None:
        """A 429 right after a cut: a wall. Halve the pace, down to the floor, and
        hold it until an answer is accepted (the rate to climb back to stays)."""
        self._cut_to = self._rate = max(self._floor, 0.5 * self._cut_to)
        self._walled = True
        self._restart(now)

    def _restart(self, now: float) -> None:
        """Pace at ``_cut_to`` from ``now``; only requests sent from now on judge it."""
        self._unanswered = 0
        self._cut_at = self._fresh_after = now
        self._limited_at.clear()
        self._fresh_answers = 0
        self._gcra.tat = now + 1.0 / self._cut_to  # waiters re-plan at the new pace


def _check_rate(requests_per_minute: float) -> None:
    if not 0 < requests_per_minute < math.inf:  # NaN too
        raise ValueError(
            f"requests_per_minute must be a positive number, not {requests_per_minute!r}"
        )
