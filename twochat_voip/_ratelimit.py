"""Client-wide pacing: every request of a client waits here for its slot.

2Chat limits each account per minute and charges a credit for every request, 429s
included. The limiter is the one owner of "when may the next request leave":

- with a rate (the plan's limit, told or asked of ``GET /open/info``) it paces
  requests evenly (a GCRA: slot ``k`` leaves at ``t0 + k * interval``; no minute's
  worth of burst at the start, which fires a 429 storm at any server that counts more
  finely than per minute);
- a ``Retry-After`` (on a 429 or a 503) holds every request of the client, not just
  the one that was told, for that long;
- without a rate it sends freely and *adapts* when the server pushes back.

Adapting (when to cut, how to climb back, and what knowing the plan's limit changes)
is :mod:`twochat_voip._adapting`'s: the law, apart from the pacing here.

Waiting requests queue for their slots, and only the first plans one, from the rate at
that moment: a rate that climbs (or is cut) applies to the very next request, not
after slots planned at the old pace.

:class:`RateLimiter` is the seam: the client calls :meth:`~RateLimiter.acquire` before
every attempt and :meth:`~RateLimiter.feedback` after every answer, so another
implementation (one shared through Redis, say) can take its place.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from collections.abc import Awaitable, Callable

from twochat_voip._adapting import (
    CUT,
    IDLE,
    MEASURED,
    PLAN_CUT,
    START_PER_SECOND,
    UNPACED_ABOVE,
    WINDOW,
    climb_with_plan,
    climb_without_plan,
    is_a_limit,
    rate_of,
    slow_start,
)
from twochat_voip._gcra import Gcra
from twochat_voip._limiter import RateLimiter
from twochat_voip._retry import is_testing

__all__ = ["AdaptiveRateLimiter", "RateLimiter"]


class AdaptiveRateLimiter:
    """The in-process limiter every client has: paced, adaptive, pausable.

    Args:
        requests_per_minute: The rate to pace at, and the ceiling the adaptive rate
            climbs back to; ``None``: find the limit, starting at 4 requests a second
            and doubling every half second until the server pushes back.
        burst: Requests that may leave back to back after a quiet spell.
        adaptive: Lower the rate when 429s show a limit (the default); ``False``
            keeps the configured rate (or none: unpaced, with no slow start)
            whatever the server says (Retry-After still holds).
        min_requests_per_minute: The floor the adaptive rate never goes under.
        clock: The monotonic clock, and ``sleep`` the way to wait on it (tests
            pass fakes; a client passes its own, which its close interrupts).
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
        if requests_per_minute is not None:
            _check_rate(requests_per_minute)
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self._ceiling = None if requests_per_minute is None else requests_per_minute / 60.0
        self._floor = min_requests_per_minute / 60.0
        self._adaptive = adaptive
        self._clock = clock
        self._sleep = sleep
        # After a cut at `_cut_at` the rate climbs from `_cut_to` back to `_accepted`
        # within _REGAIN_SECONDS, then on (or doubles, in a slow start); `_rate` is None
        # while unpaced.
        self._rate: float | None = self._ceiling
        self._cut_to = 0.0
        self._cut_at = float("-inf")
        self._fresh_after = float("-inf")  # the last cut: later requests count towards the next
        self._accepted_rate = 0.0
        self._gcra = Gcra(interval=0.0, burst=burst)  # its TAT: the next request's slot
        self._paused_until = 0.0
        self._answers = 0
        self._fresh_answers = 0  # answers to requests sent since the last cut
        self._fresh_limited = 0  # of which 429s
        # A rate that has not met a limit yet doubles from _cut_to (a slow start); an
        # adaptive limiter starts that way, from the first request.
        self._slow_start = requests_per_minute is None and adaptive and not is_testing()
        if self._slow_start:
            self._rate = self._cut_to = self._accepted_rate = START_PER_SECOND
            self._cut_at = float("inf")  # set by the first request
        self._limited_at: collections.deque[int] = collections.deque()  # answer numbers
        # Send times of the last requests, and of the last accepted ones.
        self._sent: collections.deque[float] = collections.deque(maxlen=MEASURED)
        self._accepted: collections.deque[float] = collections.deque(maxlen=MEASURED)
        self._waiting = 0
        self._queue = asyncio.Lock()

    @property
    def requests_per_minute(self) -> float | None:
        """The rate in force now (``None``: unpaced)."""
        rate = self._rate_now(self._clock())
        return None if rate is None else rate * 60.0

    async def aclose(self) -> None:
        """Nothing to let go of: waiters sleep through the ``sleep`` they were given
        (a client's, which its close interrupts). Here for :class:`RateLimiter`."""

    def set_requests_per_minute(self, requests_per_minute: float) -> None:
        """Pace at this rate from now on, and never climb above it (the plan's limit,
        learnt from the API)."""
        _check_rate(requests_per_minute)
        self._ceiling = self._rate = requests_per_minute / 60.0
        self._cut_at = self._fresh_after = float("-inf")
        self._slow_start = False
        # The request that learnt the rate was one of its slots, at this rate (not at
        # the pace the limiter kept before it knew).
        last = self._sent[-1] if self._sent else self._clock()
        self._gcra.tat = last + 60.0 / requests_per_minute

    def learn_plan(self, requests_per_minute: float) -> None:
        """The plan's limit, learnt after the limiter started without it (the client
        asks ``GET /open/info`` when the server first answers 429): never climb above
        it, and climb back after a cut in steps of it (see the module's notes). Unlike
        :meth:`set_requests_per_minute`, the pace in force stays: a process that shares
        the account with others finds its share from where it is."""
        _check_rate(requests_per_minute)
        ceiling = self._ceiling = requests_per_minute / 60.0
        self._cut_to = min(self._cut_to, ceiling)
        self._accepted_rate = min(self._accepted_rate, ceiling)
        if self._rate is None:  # unpaced: from now on, at most the plan's pace
            self._rate = ceiling
            self._slow_start = False
            self._gcra.tat = self._clock()

    def pause(self, seconds: float) -> None:
        """Hold every request for ``seconds`` (a server's Retry-After); testing mode
        (:func:`~twochat_voip.set_testing`) skips it."""
        if is_testing():
            return
        until = self._clock() + seconds
        self._paused_until = max(self._paused_until, until)

    def _rate_now(self, now: float) -> float | None:
        """The rate at ``now``: a slow start doubles, and after a cut it climbs back by
        time."""
        rate = self._rate
        if rate is None or rate == self._ceiling:
            return rate
        if self._sent:  # the climb's clock stops a quiet spell after the last request
            now = min(now, self._sent[-1] + self._quiet_after())
        since = now - self._cut_at
        if since <= 0:
            return rate
        if self._slow_start:
            rate = slow_start(self._cut_to, since)
        elif self._ceiling is not None:
            rate = climb_with_plan(self._cut_to, self._ceiling, since)
        else:
            rate = climb_without_plan(self._cut_to, self._accepted_rate, since)
        if self._ceiling is not None:
            if rate >= self._ceiling:
                rate = self._rate = self._ceiling  # climbed all the way back
                self._slow_start = False
        elif rate > UNPACED_ABOVE:
            # Far past any plan and no limit met: stop pacing; the next limit starts
            # the search again.
            self._rate = None
            self._slow_start = False
            return None
        return max(rate, self._cut_to)

    def _quiet_after(self) -> float:
        """Seconds without a request that make a quiet spell: IDLE, or two intervals
        of the rate a climb started from, whichever is longer."""
        return max(IDLE, 2.0 / self._cut_to) if self._cut_to > 0 else IDLE

    def _started(self, now: float) -> None:
        """A request leaves at ``now``: a climb's clock starts with the first, and
        resumes after a quiet spell where it stopped."""
        sent = self._sent
        if sent:
            quiet = now - sent[-1] - self._quiet_after()
            if quiet > 0:
                self._cut_at += quiet
        elif self._cut_at > now:
            self._cut_at = now  # the first request: a slow start's clock starts

    def _due(self, now: float) -> float:
        """When the next request is due, as things stand at ``now`` (maybe earlier)."""
        rate = None if self._rate is None else self._rate_now(now)
        if rate is None:
            return self._paused_until
        gcra = self._gcra
        gcra.interval = 1.0 / rate
        return max(self._paused_until, gcra.earliest())

    def _take(self, now: float, due: float) -> float:
        """The next request leaves at ``now``, for its slot ``due`` (see
        :meth:`Gcra.take`)."""
        self._started(now)
        rate = None if self._rate is None else self._rate_now(now)
        if rate is not None:
            gcra = self._gcra
            gcra.interval = 1.0 / rate
            gcra.take(now, due)
        self._sent.append(now)
        return now

    def try_acquire(self) -> float | None:
        """Take a slot that is free now, without waiting: the time (monotonic) the
        request leaves, or ``None`` when it would have to wait (then :meth:`acquire`).

        The slot :meth:`acquire` would give, without a coroutine: nearly every request
        of an unpaced client, or of one paced above what it asks for, leaves at once.
        """
        if self._waiting:
            return None  # others wait for their slots already, and go first
        now = self._clock()
        if self._paused_until > now:
            return None
        # A request that finds its slot free leaves now (the GCRA admits it), and the
        # next is due an interval after its slot.
        rate = self._rate
        if rate is not None and rate != self._ceiling:
            rate = self._rate_now(now)
        if rate is not None:
            gcra = self._gcra
            gcra.interval = 1.0 / rate
            if gcra.police(now):
                return None
        sent = self._sent  # _started(), inline where it is cheap
        if not sent or now - sent[-1] > IDLE:
            self._started(now)
        sent.append(now)
        return now

    async def acquire(self) -> float:
        """Wait for this request's slot; slots are handed out in call order.

        Only the first waiter plans a slot, from the rate at that moment, and looks
        again when it wakes: a cut or a pause meanwhile holds it longer, and a rate
        that climbed while others waited is used at once, not after slots planned
        at the old pace.
        """
        sent_at = self.try_acquire()
        if sent_at is not None:
            return sent_at
        self._waiting += 1
        try:
            async with self._queue:
                while True:
                    now = self._clock()
                    due = self._due(now)
                    if due <= now:
                        return self._take(now, due)
                    await self._sleep(due - now)
        finally:
            self._waiting -= 1

    def feedback(self, *, sent_at: float, status: int, retry_after: float | None) -> None:
        """Count an accepted answer, or judge a 429; honour any Retry-After."""
        if retry_after is not None:
            self.pause(retry_after)
        if status != 429:
            self.accepted(sent_at)
            return
        self._answers += 1
        if sent_at <= self._fresh_after:
            return  # sent before the last cut: that cut answered it already
        self._fresh_answers += 1
        self._fresh_limited += 1
        limited = self._limited_at
        limited.append(self._answers)
        while limited[0] <= self._answers - WINDOW:
            limited.popleft()
        if self._adaptive and is_a_limit(
            limited, self._answers, self._fresh_answers, plan_known=self._ceiling is not None
        ):
            self._cut(self._clock())

    def accepted(self, sent_at: float) -> None:
        """``feedback(sent_at=sent_at, status=200, retry_after=None)``: the answer to
        nearly every request, told in the cheapest call."""
        self._answers += 1
        if sent_at > self._fresh_after:
            self._fresh_answers += 1
        self._accepted.append(sent_at)

    def _cut(self, now: float) -> None:
        """A limit: pace at 80% (90% with the plan known) of what the server accepted,
        then climb back."""
        sending = self._rate_now(now)
        if sending is None:
            # Unpaced until now: what was accepted came in a burst the server allowed,
            # not at a rate it keeps up. Start slow from what it accepted in the last
            # second, and double until the limit shows again.
            accepted = sum(1 for sent_at in self._accepted if sent_at > now - 1.0)
            self._slow_start = True
            self._accepted_rate = self._cut_to = self._rate = max(self._floor, accepted)
        else:
            self._slow_start = False
            accepted_rate = rate_of(self._accepted)
            if accepted_rate is None or accepted_rate > sending:
                accepted_rate = sending
            self._accepted_rate = max(self._floor, accepted_rate)
            cut = CUT if self._ceiling is None else PLAN_CUT
            self._cut_to = self._rate = max(self._floor, cut * accepted_rate)
        self._cut_at = self._fresh_after = now
        self._limited_at.clear()
        self._fresh_answers = self._fresh_limited = 0
        # Waiters re-plan at the new pace, one interval from now.
        self._gcra.tat = now + 1.0 / self._cut_to


def _check_rate(requests_per_minute: float) -> None:
    if not 0 < requests_per_minute < math.inf:  # NaN too
        raise ValueError(
            f"requests_per_minute must be a positive number, not {requests_per_minute!r}"
        )
