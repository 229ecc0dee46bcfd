"""An account's schedule in Redis: the Lua that moves it on atomically (the GCRA of
:class:`~twochat_voip._gcra.Gcra` in microseconds on Redis's clock, and the shared
pause), the key it lives at, the client made from a URL, and :class:`SharedSchedule`,
which takes slots from it and decides when Redis is down."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Final

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from twochat_voip._errors import ClientClosedError, RateLimiterUnavailableError

__all__ = [
    "ACQUIRE",
    "DEFAULT_KEY_PREFIX",
    "PAUSE",
    "SharedSchedule",
    "account_key",
    "client_for",
]

logger: Final = logging.getLogger("twochat_voip")

DEFAULT_KEY_PREFIX: Final = "twochat-voip:ratelimit"
_REDIS_TIMEOUT: Final = 2.0  # seconds a client made from a URL waits to connect, or to hear

# Times are integer microseconds on Redis's clock (exact in Lua's doubles). The hash
# holds `tat`, the GCRA's theoretical arrival time, and `paused_until`; the key lives
# exactly as long as either lies in the future, since a missing key means the same.
ACQUIRE: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tat', 'paused_until')
local tat = tonumber(state[1]) or 0
local paused_until = tonumber(state[2]) or 0
local slot = math.max(now, paused_until, tat - (burst - 1) * interval)
local new_tat = math.max(tat, slot) + interval
redis.call('HSET', KEYS[1], 'tat', string.format('%.0f', new_tat))
redis.call('PEXPIRE', KEYS[1], math.ceil((math.max(new_tat, paused_until) - now) / 1000))
return slot - now
"""

PAUSE: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local pause_end = now + tonumber(ARGV[1])
local state = redis.call('HMGET', KEYS[1], 'tat', 'paused_until')
local tat = tonumber(state[1]) or 0
local paused_until = tonumber(state[2]) or 0
if pause_end > paused_until then
  paused_until = pause_end
  redis.call('HSET', KEYS[1], 'paused_until', string.format('%.0f', pause_end))
end
redis.call('PEXPIRE', KEYS[1], math.ceil((math.max(tat, paused_until) - now) / 1000))
return paused_until - now
"""


def client_for(url: str) -> Redis:
    """A client that gives up on a dead Redis in seconds, not minutes: the limiter's
    own ``redis_down_after`` decides how long to keep trying."""
    return Redis.from_url(
        url,
        socket_connect_timeout=_REDIS_TIMEOUT,
        socket_timeout=_REDIS_TIMEOUT,
        retry=Retry(NoBackoff(), 1),
    )


def account_key(api_key: str, prefix: str = DEFAULT_KEY_PREFIX) -> str:
    """The Redis key of an account's shared schedule: a hash of the key, never the key.

    The braces make it one Redis Cluster hash slot.
    """
    digest = hashlib.sha256(b"twochat-voip rate limit\0" + api_key.strip().encode()).hexdigest()
    return f"{prefix}:{{{digest[:32]}}}"


class SharedSchedule:
    """Takes slots from an account's schedule in Redis, one round trip each; tries
    again while Redis is away, and refuses once it has been for ``down_after`` s."""

    def __init__(
        self,
        redis: Redis,
        key: str,
        *,
        requests_per_minute: float,
        burst: int,
        down_after: float,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self._script = redis.register_script(ACQUIRE)
        self._key = key
        self._args = [max(1, round(60_000_000 / requests_per_minute)), burst]
        self._down_after = down_after
        self._clock = clock
        self._sleep = sleep
        self.down_since: float | None = None  # when Redis stopped answering
        self._next_try = 0.0
        self.closed = False

    async def reserve(self) -> float:
        """Seconds until the slot Redis gave this request.

        Raises:
            RateLimiterUnavailableError: Redis has been unreachable for ``down_after`` s.
        """
        backoff = 0.05
        while True:
            if self.closed:  # a waiter still unwinding must not open a new connection
                raise ClientClosedError("this RedisRateLimiter is closed")
            if self.down_since is not None and self._clock() < self._next_try:
                raise self._unavailable() from None
            try:
                waited_us = await self._script(keys=[self._key], args=self._args)
            except (RedisError, OSError) as exc:
                now = self._clock()
                if self.down_since is None:
                    self.down_since = now
                    logger.warning(
                        "Redis is unreachable for the shared rate limit (%s); "
                        "trying again for %.1f s",
                        type(exc).__name__,
                        self._down_after,
                    )
                if now - self.down_since < self._down_after:
                    await self._sleep(backoff)
                    backoff = min(2 * backoff, 0.5)
                    continue
                self._next_try = now + 1.0  # a Redis that is down is tried once a second
                raise self._unavailable() from exc
            if self.down_since is not None:
                logger.warning("Redis is reachable again: the shared rate limit is back")
                self.down_since = None
            return int(waited_us) / 1_000_000

    def _unavailable(self) -> RateLimiterUnavailableError:
        down_for = self._clock() - (self.down_since or 0.0)
        return RateLimiterUnavailableError(
            f"Redis has been unreachable for {down_for:.1f} s, so the account's shared "
            "rate limit cannot be kept; nothing was sent "
            '(RedisRateLimiter(on_redis_down="local") paces locally instead)'
        )
