"""The Lua the Redis limiter runs, atomically, in Redis: the account's GCRA (the same
arithmetic as :class:`twochat_voip._gcra.Gcra`, in microseconds on Redis's clock) and
its shared pause."""

from __future__ import annotations

from typing import Final

__all__ = ["ACQUIRE", "PAUSE"]

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
