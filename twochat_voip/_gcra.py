"""The generic cell rate algorithm: one number, the next request's theoretical arrival
time (TAT), keeps a rate with a burst (the Redis limiter runs it in Lua)."""

from __future__ import annotations

import attrs


@attrs.define
class Gcra:
    """One rate: ``interval`` seconds apart, ``burst`` back to back after a quiet spell."""

    interval: float
    burst: int = 1
    tat: float = 0.0

    def earliest(self) -> float:
        """The earliest time the next request conforms."""
        return self.tat - (self.burst - 1) * self.interval

    def take(self, now: float, due: float) -> None:
        """A request due at ``due`` leaves at ``now``: the next is due an interval after
        ``due`` (a late wake-up pushes no later slot back), up to half an interval late."""
        self.tat = max(self.tat, due, now - 0.5 * self.interval) + self.interval

    def police(self, now: float) -> float:
        """Admit a request arriving at ``now`` (``0.0``), or the seconds until one would be."""
        earliest = self.earliest()
        if now < earliest:
            return earliest - now
        self.tat = max(self.tat, now) + self.interval
        return 0.0
