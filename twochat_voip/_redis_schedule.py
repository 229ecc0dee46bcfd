"""An account's schedule in Redis: the Lua that moves it on atomically (the GCRA of
:class:`~twochat_voip._gcra.Gcra` in microseconds on Redis's clock, and the shared
pause), the key it lives at, and the client made from a URL."""

from __future__ import annotations

import hashlib
from typing import Final

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

__all__ = ["ACQUIRE", "DEFAULT_KEY_PREFIX", "PAUSE", "account_key", "client_for"]

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
    """A client that gives up on a dead Redis in seconds: ``redis_down_after`` decides the rest."""
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
