"""An account's schedule in Redis: the Lua that moves it on atomically, and its key."""

from __future__ import annotations

import hashlib
from typing import Final

__all__ = ["ACQUIRE", "DEFAULT_KEY_PREFIX", "PAUSE", "account_key"]

DEFAULT_KEY_PREFIX: Final = "twochat-voip:ratelimit"

# The GCRA of twochat_voip._gcra in integer microseconds on Redis's clock (exact in
# Lua's doubles). The hash holds `tat`, the theoretical arrival time, and `paused_until`;
# the key lives exactly as long as either lies in the future (a missing key means the same).
_STATE: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local state = redis.call('HMGET', KEYS[1], 'tat', 'paused_until')
local tat = tonumber(state[1]) or 0
local paused_until = tonumber(state[2]) or 0
"""
ACQUIRE: Final = f"""{_STATE}
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local slot = math.max(now, paused_until, tat - (burst - 1) * interval)
local new_tat = math.max(tat, slot) + interval
redis.call('HSET', KEYS[1], 'tat', string.format('%.0f', new_tat))
redis.call('PEXPIRE', KEYS[1], math.ceil((math.max(new_tat, paused_until) - now) / 1000))
return slot - now
"""
PAUSE: Final = f"""{_STATE}
local pause_end = now + tonumber(ARGV[1])
if pause_end > paused_until then
  paused_until = pause_end
  redis.call('HSET', KEYS[1], 'paused_until', string.format('%.0f', pause_end))
end
redis.call('PEXPIRE', KEYS[1], math.ceil((math.max(tat, paused_until) - now) / 1000))
return paused_until - now
"""


def account_key(api_key: str, prefix: str = DEFAULT_KEY_PREFIX) -> str:
    """The Redis key of an account's shared schedule: a hash of the key, never the key
    (in braces: one Redis Cluster hash slot)."""
    digest = hashlib.sha256(b"twochat-voip rate limit\0" + api_key.strip().encode()).hexdigest()
    return f"{prefix}:{{{digest[:32]}}}"
