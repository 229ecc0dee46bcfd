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

Adapting starts slow. A client that does not know the limit starts at 4 requests a
second and doubles that every half second until the server pushes back (as TCP's slow
start does), and stops pacing once past 1,000 a second: sixteen workers (or four
processes of them) starting at once would otherwise fire a 429 for nearly every one of
them before the first answer is in.

It tells a limit from noise. Busy APIs answer a stray 429 now and then; read as a
limit, each would ratchet the rate down for good. So the limiter cuts its rate only
when 429s are a real share of recent answers (at least 6 of the last 64, or 3 that are
half the answers since the last cut), and then to 80% of the rate the server
demonstrably *accepted* from this process meanwhile, not of the rate it was sending
at. Only 429s for requests sent after the last cut count towards the next one, so a
volley of 429s for requests already in flight counts once (the way TCP reacts once per
round trip), and noise cannot compound cuts. A limit met while unpaced starts a slow
start again, from what the server accepted in the last second.

After a cut the rate climbs back *by time*, not per answer: back to what was accepted
within 5 seconds, then by 1% a second of the configured rate (the plan's, the same for
every process told it, so that they converge on equal shares) or of the accepted rate;
after 2 seconds of that with no limit it doubles every second, so that a share another
process left free is taken up within seconds. A climb per accepted answer (as this
limiter did before) favours whoever is already fastest: four processes on one account
took 3.65x as long as the limit allowed. At a low rate the climb's seconds stretch, so
that a climb spans at least 32 answers: at 80 requests a minute a limit then shows
within a few requests of being reached, not after a burst of 429s.

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
import time
from collections.abc import Awaitable, Callable
from typing import Final

from twochat_voip._gcra import Gcra
from twochat_voip._limiter import RateLimiter
from twochat_voip._waits import is_testing

__all__ = ["AdaptiveRateLimiter", "RateLimiter"]

_WINDOW: Final = 64
"""Answers a limit is judged, and an accepted rate measured, over."""
_LIMITED_IN_WINDOW: Final = 6
"""429s among the last :data:`_WINDOW` answers that mean a limit, not noise. Stray
429s at 2% of answers reach it about once in 300 windows, and a cut they cause is
regained within seconds."""
_LIMITED_CLEARLY: Final = 3
"""Fewer 429s mean a limit when they are half the answers since the last cut, as at
the start of a run that was told too high a rate: stray 429s never look like that."""
_CUT: Final = 0.8
"""A cut sets this share of the rate the server accepted."""
_MEASURED: Final = 32
"""Accepted answers a rate is measured over."""
_START_PER_SECOND: Final = 4.0
"""An adaptive client's first rate: it doubles every :data:`_DOUBLING` seconds until the
server pushes back, so that many workers (or processes) starting at once do not fire a
429 for each of them before the first answer is in."""
_DOUBLING: Final = 0.5
"""Seconds in which a rate that has not yet met a limit doubles (a slow start)."""
_IDLE: Final = 1.0
"""Seconds after its last request for which a rate goes on climbing: a client that goes
quiet comes back at the pace it last used (or a little above), not at one it never
tried, which a burst after a pause would answer with a storm of 429s."""
_UNPACED_ABOVE: Final = 1000.0
"""Requests a second beyond which a slow start stops pacing at all."""
_REGAIN_SECONDS: Final = 5.0
"""Seconds to climb back from a cut to the rate that was accepted."""
_PROBE_PER_SECOND: Final = 0.01
"""Then the climb per second, as a share of the configured rate if there is one (the
plan's: the same for every process on the account), else of the accepted."""
_SPEED_UP_AFTER: Final = 2.0
"""Seconds of that slow climb without a limit after which the rate doubles every
second: capacity another process left free is taken up within seconds."""
_ANSWERS_PER_CYCLE: Final = 32
"""Answers a climb should span at least: at a low rate (80 a minute) the climb's
seconds stretch so that a limit is seen within a few requests of being reached."""


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
        if requests_per_minute is not None and requests_per_minute <= 0:
            raise ValueError("requests_per_minute must be positive")
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
            self._rate = self._cut_to = self._accepted_rate = _START_PER_SECOND
            self._cut_at = float("inf")  # set by the first request
        self._limited_at: collections.deque[int] = collections.deque()  # answer numbers
        # Send times of the last requests, and of the last accepted ones.
        self._sent: collections.deque[float] = collections.deque(maxlen=_MEASURED)
        self._accepted: collections.deque[float] = collections.deque(maxlen=_MEASURED)
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
        if requests_per_minute <= 0:
            raise ValueError("requests_per_minute must be positive")
        self._ceiling = self._rate = requests_per_minute / 60.0
        self._cut_at = self._fresh_after = float("-inf")
        self._slow_start = False
        # The request that learnt the rate was one of its slots, at this rate (not at
        # the pace the limiter kept before it knew).
        last = self._sent[-1] if self._sent else self._clock()
        self._gcra.tat = last + 60.0 / requests_per_minute

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
            rate = self._cut_to * 2.0 ** min(since / _DOUBLING, 64.0)
        else:
            accepted = self._accepted_rate
            # At a low rate the climb's clock runs slower, so that it spans enough
            # answers for a limit to show before the rate is far past it.
            since /= max(1.0, _ANSWERS_PER_CYCLE / (accepted * _REGAIN_SECONDS))
            if since < _REGAIN_SECONDS:
                rate = self._cut_to + (accepted - self._cut_to) * since / _REGAIN_SECONDS
            else:
                # Processes told one plan's rate climb by the same step, whatever their
                # rate now, so they converge on equal shares (additive increase).
                scale = accepted if self._ceiling is None else self._ceiling
                climbing = since - _REGAIN_SECONDS
                rate = accepted + _PROBE_PER_SECOND * scale * climbing
                if climbing > _SPEED_UP_AFTER:
                    rate *= 2.0 ** min(climbing - _SPEED_UP_AFTER, 64.0)
        if self._ceiling is not None:
            if rate >= self._ceiling:
                rate = self._rate = self._ceiling  # climbed all the way back
                self._slow_start = False
        elif rate > _UNPACED_ABOVE:
            # Far past any plan and no limit met: stop pacing; the next limit starts
            # the search again.
            self._rate = None
            self._slow_start = False
            return None
        return max(rate, self._cut_to)

    def _quiet_after(self) -> float:
        """Seconds without a request that make a quiet spell: _IDLE, or two intervals
        of the rate a climb started from, whichever is longer."""
        return max(_IDLE, 2.0 / self._cut_to) if self._cut_to > 0 else _IDLE

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
        if not sent or now - sent[-1] > _IDLE:
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
        while limited[0] <= self._answers - _WINDOW:
            limited.popleft()
        count = len(limited)
        if self._adaptive and (
            count >= _LIMITED_IN_WINDOW
            or (count >= _LIMITED_CLEARLY and 2 * count >= self._fresh_answers)
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
        """A limit: pace at 80% of what the server accepted, then climb back."""
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
            accepted_rate = _rate_of(self._accepted)
            if accepted_rate is None or accepted_rate > sending:
                accepted_rate = sending
            self._accepted_rate = max(self._floor, accepted_rate)
            self._cut_to = self._rate = max(self._floor, _CUT * accepted_rate)
        self._cut_at = self._fresh_after = now
        self._limited_at.clear()
        self._fresh_answers = self._fresh_limited = 0
        # Waiters re-plan at the new pace, one interval from now.
        self._gcra.tat = now + 1.0 / self._cut_to
