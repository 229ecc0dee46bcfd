"""The seam between a client and its pacing: what a rate limiter must do.

The client calls :meth:`~RateLimiter.acquire` before every attempt,
:meth:`~RateLimiter.feedback` after every answer, and :meth:`~RateLimiter.aclose` when
it closes, on a limiter it owns. :class:`~twochat_voip.AdaptiveRateLimiter` is the
in-process one; :class:`~twochat_voip.redis.RedisRateLimiter` shares one schedule
between processes.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["RateLimiter"]


@runtime_checkable
class RateLimiter(Protocol):
    """What a client needs from a rate limiter."""

    async def acquire(self) -> float:
        """Wait until a request may leave; return the time (monotonic) it left."""
        ...

    def feedback(self, *, sent_at: float, status: int, retry_after: float | None) -> None:
        """Learn from the answer to a request that left at ``sent_at``."""
        ...

    async def aclose(self) -> None:
        """Let go of what the limiter holds (connections, a pause not yet shared).

        The client calls it when it closes, on a limiter it owns: its own, or one
        passed with ``rate_limiter_owner=True``. (A limiter without it still works;
        nothing is closed then.)"""
        ...
