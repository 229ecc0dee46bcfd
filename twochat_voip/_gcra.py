"""The generic cell rate algorithm (GCRA): one number, the theoretical arrival time
(TAT) of the next request, keeps a rate with a burst. The fake server polices with it,
the in-process limiter schedules with it, and the Redis limiter runs it in Lua."""

from __future__ import annotations

import attrs


@attrs.define
class Gcra:
    """One rate, policed.

    Attributes:
        interval: Seconds between requests at the rate.
        burst: Requests that may arrive back to back after a quiet spell.
        tat: The next request's theoretical arrival time (``0.0``: none yet).
    """

    interval: float
    burst: int = 1
    tat: float = 0.0

    def earliest(self) -> float:
        """The earliest time the next request conforms."""
        return self.tat - (self.burst - 1) * self.interval

    def take(self, now: float, due: float) -> None:
        """A request that waited for its slot ``due`` leaves at ``now``: the next one
        is due an interval after ``due``, not after ``now``, so that a sleeper woken a
        little late does not push every later slot back (which cost 17% of a 6,000 a
        minute rate). Lateness is made up for up to half an interval only: a loop
        stalled for a second must not be followed by a second's worth at once."""
        self.tat = max(self.tat, due, now - 0.5 * self.interval) + self.interval

    def police(self, now: float) -> float:
        """Admit a request arriving at ``now`` (``0.0``; the TAT moves on), or refuse it:
        the seconds until one would be admitted."""
        tat = self.tat
        if tat <= now:  # the usual case, first: no max(), no product (a limiter runs
            self.tat = now + self.interval  # this once a request)
            return 0.0
        earliest = tat - (self.burst - 1) * self.interval  # earliest(), inline
        if now < earliest:
            return earliest - now
        self.tat = tat + self.interval
        return 0.0
