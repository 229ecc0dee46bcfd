"""An account's state in Redis: its schedule, the Lua that moves it on atomically, and
its key (``twochat_voip.redis`` imports this only once redis is known to be installed)."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Final

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import ReadOnlyError, RedisError, ResponseError

from twochat_voip._errors import (
    ClientClosedError,
    RateLimiterStoreError,
    RateLimiterUnavailableError,
)

__all__ = [
    "DEFAULT_KEY_PREFIX",
    "MAX_PAUSE",
    "PLAN_KEPT",
    "SharedSchedule",
    "account_key",
    "shared_plan",
]

logger: Final = logging.getLogger("twochat_voip")

DEFAULT_KEY_PREFIX: Final = "twochat-voip:ratelimit"

# The GCRA of twochat_voip._gcra in integer microseconds on Redis's clock (exact in
# Lua's doubles). The hash holds `tat`, the theoretical arrival time, and `paused_until`;
# the key lives exactly as long as either lies in the future (a missing key means the same).
# A field the limiter could not have written (not a number, inf, nan, negative, or
# further ahead than ARGV[1] for a pause, ARGV[2] for the schedule) is deleted and
# read as missing; the scripts return what they repaired, for the log.
_STATE: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local state = redis.call('HMGET', KEYS[1], 'paused_until', 'tat')
local repaired = {}
local function checked(i)
  local value = tonumber(state[i])
  if state[i] and not (value and value >= 0 and value <= now + tonumber(ARGV[i])) then
    local field = i == 1 and 'paused_until' or 'tat'
    redis.call('HDEL', KEYS[1], field)
    repaired[#repaired + 1] = field .. '=' .. string.sub(state[i], 1, 40)
    return 0
  end
  return value or 0
end
local paused_until = checked(1)
local tat = checked(2)
"""
ACQUIRE: Final = f"""{_STATE}
local interval = tonumber(ARGV[3])
local burst = tonumber(ARGV[4])
local slot = math.max(now, paused_until, tat - (burst - 1) * interval)
local new_tat = math.max(tat, slot) + interval
redis.call('HSET', KEYS[1], 'tat', string.format('%.0f', new_tat))
redis.call('PEXPIRE', KEYS[1], math.ceil((math.max(new_tat, paused_until) - now) / 1000))
return {{slot - now, table.concat(repaired, ', ')}}
"""
PAUSE: Final = f"""{_STATE}
local pause_end = now + math.min(tonumber(ARGV[3]), tonumber(ARGV[1]))
if pause_end > paused_until then
  paused_until = pause_end
  redis.call('HSET', KEYS[1], 'paused_until', string.format('%.0f', pause_end))
end
redis.call('PEXPIRE', KEYS[1], math.ceil((math.max(tat, paused_until) - now) / 1000))
return {{paused_until - now, table.concat(repaired, ', ')}}
"""

MAX_PAUSE: Final = 600.0
"""Seconds a pause shared through Redis lasts at most (a longer ``Retry-After`` still
holds the process it was told to)."""
MOST_WAITING: Final = 256
"""Processes holding a slot at once that the schedule allows for: one further ahead
than this many slots after the longest pause was not written by a limiter."""


def account_key(api_key: str, prefix: str = DEFAULT_KEY_PREFIX) -> str:
    """The Redis key of an account's shared schedule: a hash of the key, never the key
    (in braces: one Redis Cluster hash slot)."""
    digest = hashlib.sha256(b"twochat-voip rate limit\0" + api_key.strip().encode()).hexdigest()
    return f"{prefix}:{{{digest[:32]}}}"


class SharedSchedule:
    """One account's schedule in Redis, moved on by one script call a request, and
    whether Redis answers.

    Redis that cannot be reached is tried for ``down_after`` seconds, then once a second;
    a script Redis refuses raises :class:`RateLimiterStoreError` at once.
    """

    def __init__(
        self,
        redis: Redis,
        key: str,
        burst: int,
        *,
        down_after: float,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self.redis = redis
        self.key = key
        self.closed = False  # set by the limiter: a waiter unwinding opens no connection
        self.down_since: float | None = None  # when Redis stopped answering
        self.requests_per_minute: float | None = None  # None: not known yet ("auto")
        self._acquire = redis.register_script(ACQUIRE)
        self._pause = redis.register_script(PAUSE)
        self._burst = burst
        self._bounds: list[int] = []
        self._pacing: list[int] = []
        self._down_after = down_after
        self._next_try = 0.0
        self._clock = clock
        self._sleep = sleep

    def set_rate(self, requests_per_minute: float) -> None:
        """Pace at ``requests_per_minute``, the account's."""
        self.requests_per_minute = requests_per_minute
        interval_us = max(1, round(60_000_000 / requests_per_minute))
        max_pause = round(MAX_PAUSE * 1_000_000)
        self._bounds = [max_pause, max_pause + (MOST_WAITING + self._burst) * interval_us]
        self._pacing = [*self._bounds, interval_us, self._burst]

    async def reserve(self) -> float:
        """Take the next slot: the seconds until it comes.

        Raises:
            RateLimiterUnavailableError: Redis has not answered for ``down_after`` s.
            RateLimiterStoreError: Redis answered, and refused.
        """
        backoff = 0.05
        while True:
            if self.closed:
                raise ClientClosedError("this RedisRateLimiter is closed")
            if self.down_since is not None and self._clock() < self._next_try:
                raise self._unavailable() from None
            try:
                answer = await self._run(self._acquire, self._pacing)
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
            return int(answer[0]) / 1_000_000

    async def pause(self, seconds: float) -> None:
        """Hold every process for ``seconds`` (:data:`MAX_PAUSE` at most) from now."""
        await self._run(self._pause, [*self._bounds, round(seconds * 1_000_000)])

    def _unavailable(self) -> RateLimiterUnavailableError:
        down_for = self._clock() - (self.down_since or 0.0)
        return RateLimiterUnavailableError(
            f"Redis has been unreachable for {down_for:.1f} s, so the account's shared "
            "rate limit cannot be kept; nothing was sent "
            '(RedisRateLimiter(on_redis_down="local") paces locally instead)'
        )

    async def _run(self, script: AsyncScript, args: list[int]) -> list[int | bytes | str]:
        try:
            answer: list[int | bytes | str] = await script(keys=[self.key], args=args)
        except ResponseError as exc:
            if isinstance(exc, ReadOnlyError):  # a failover's replica, for a moment
                raise
            raise await self._refused(exc) from exc
        if answer[1]:
            logger.warning(
                "the shared rate limit's state at Redis key %s held what no limiter "
                "writes (%s): reset",
                self.key,
                _text(answer[1]),
            )
        return answer

    async def _refused(self, error: ResponseError) -> RateLimiterStoreError:
        said = str(error).split(" script: ", 1)[0]  # (not the script's hash and line)
        if said.startswith("WRONGTYPE"):
            try:
                kind = _text(await self.redis.type(self.key))
            except Exception:  # noqa: BLE001 - only to say which kind
                kind = "value of another kind"
            said = (
                f"it holds a {kind}, not the limiter's hash (another program's?): delete "
                f"it (redis-cli DEL '{self.key}') or give another key_prefix="
            )
        return RateLimiterStoreError(
            f"Redis refused the shared rate limit at key {self.key}: {said}; nothing was sent",
            key=self.key,
        )


PLAN_KEPT: Final = 86_400
"""Seconds the plan's rate stays in Redis for the account's other processes."""
_ASKING_FOR: Final = 15_000  # milliseconds one process may take to ask, before another does


async def shared_plan(
    redis: Redis,
    key: str,
    ask: Callable[[], Awaitable[float | None]],
    sleep: Callable[[float], Awaitable[None]],
) -> float | None:
    """The plan's rate: as a process stored it in Redis within the day, or asked with
    ``ask`` by one process at a time (the others wait for its answer) and stored for a
    day. A Redis that fails is passed by: ``ask`` is asked, and nothing stored."""
    plan_key, asking_key = f"{key}:plan", f"{key}:plan-asking"
    try:
        while (rpm := _rate(await redis.get(plan_key))) is None:
            if await redis.set(asking_key, "1", nx=True, px=_ASKING_FOR):
                break  # this process asks
            await sleep(0.1)  # another does: its answer will be there
        else:
            return rpm
    except (RedisError, OSError) as exc:
        logger.warning("the plan's rate could not be read from Redis (%s)", type(exc).__name__)
        return await ask()
    try:
        rpm = await ask()
        if rpm is not None:
            with contextlib.suppress(RedisError, OSError):
                await redis.set(plan_key, repr(float(rpm)), ex=PLAN_KEPT)
        return rpm
    finally:
        with contextlib.suppress(RedisError, OSError):
            await redis.delete(asking_key)


def _rate(stored: bytes | str | None) -> float | None:
    """A stored plan's rate, if it is one (anything else is asked again, and replaced)."""
    try:
        rate = float(stored) if stored is not None else math.nan
    except ValueError:
        return None
    return rate if math.isfinite(rate) and rate > 0 else None


def _text(value: object) -> str:
    """A Redis answer as text, whether the client decodes answers or not."""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
