"""An account's state in Redis: its schedule, the Lua that moves it on atomically, and
its key (``twochat_voip.redis`` imports this only once redis is known to be installed)."""

from __future__ import annotations

import hashlib
import logging
from typing import Final

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import ReadOnlyError, ResponseError

from twochat_voip._errors import RateLimiterStoreError

__all__ = ["DEFAULT_KEY_PREFIX", "MAX_PAUSE", "SharedSchedule", "account_key"]

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
    """One account's schedule in Redis, moved on by one script call a request.

    Its methods raise redis-py's errors (``RedisError``, ``OSError``) when Redis cannot
    be reached, and :class:`RateLimiterStoreError` when it answers but refuses.
    """

    def __init__(self, redis: Redis, key: str, requests_per_minute: float, burst: int) -> None:
        self.redis = redis
        self.key = key
        self._acquire = redis.register_script(ACQUIRE)
        self._pause = redis.register_script(PAUSE)
        interval_us = max(1, round(60_000_000 / requests_per_minute))
        max_pause = round(MAX_PAUSE * 1_000_000)
        self._bounds = [max_pause, max_pause + (MOST_WAITING + burst) * interval_us]
        self._pacing = [*self._bounds, interval_us, burst]

    async def reserve(self) -> float:
        """Take the next slot: the seconds until it comes."""
        answer = await self._run(self._acquire, self._pacing)
        return int(answer[0]) / 1_000_000

    async def pause(self, seconds: float) -> None:
        """Hold every process for ``seconds`` (:data:`MAX_PAUSE` at most) from now."""
        await self._run(self._pause, [*self._bounds, round(seconds * 1_000_000)])

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


def _text(value: object) -> str:
    """A Redis answer as text, whether the client decodes answers or not."""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
