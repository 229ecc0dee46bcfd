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
        """A request that waited for its slot ``due`` leaves at ``now``: the next is
        due an interval after ``due`` (a sleeper woken late does not push every later
        slot back), but lateness is made up for up to half an interval only."""
        self.tat = max(self.tat, due, now - 0.5 * self.interval) + self.interval

    def police(self, now: float) -> float:
        """Admit a request arriving at ``now`` (``0.0``; the TAT moves on), or refuse it:
        the seconds until one would be admitted."""
        earliest = self.earliest()
        if now < earliest:
            return earliest - now
        self.tat = max(self.tat, now) + self.interval
        return 0.0
