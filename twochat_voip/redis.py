"""One account's rate limit shared through Redis (``pip install 'twochat-voip[redis]'``)::

limiter = RedisRateLimiter("redis://localhost:6379/0", requests_per_minute=600)
async with limiter, VoIPClient(rate_limiter=limiter) as voip:
    ...
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Final, Literal, Self

from twochat_voip._clock import loop_time

try:
    from redis.asyncio import Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import RedisError
except ImportError as exc:  # pragma: no cover - exercised only without the redis extra
    raise ImportError(
        "twochat_voip.redis needs the redis package: pip install 'twochat-voip[redis]'"
    ) from exc

from twochat_voip._errors import (
    ClientClosedError,
    MissingAPIKeyError,
    RateLimiterStoreError,
    RateLimiterUnavailableError,
)
from twochat_voip._ratelimit import AdaptiveRateLimiter
from twochat_voip._redis_schedule import (
    DEFAULT_KEY_PREFIX,
    SharedSchedule,
    account_key,
    shared_plan,
)
from twochat_voip._retry import is_testing

__all__ = [
    "DEFAULT_KEY_PREFIX",
    "RateLimiterStoreError",
    "RateLimiterUnavailableError",
    "RedisRateLimiter",
    "account_key",
]

logger: Final = logging.getLogger("twochat_voip")


class RedisRateLimiter:
    """A :class:`~twochat_voip.RateLimiter` whose schedule lives in Redis, per account.

    Give every process the same Redis, account and ``requests_per_minute`` (the plan's).

    Args:
        redis: A ``redis.asyncio.Redis`` client (yours to close), or a URL such as
            ``"redis://localhost:6379/0"`` (the limiter's client, 2 s timeouts, closed by it).
        requests_per_minute: The account's limit, shared by all the processes, or
            ``"auto"``: the plan's, asked once a day for all of them (:meth:`learn_plan`).
        api_key: The account's key, hashed to name its schedule (``TWOCHAT_API_KEY``).
        burst: Requests that may leave back to back after a quiet spell.
        pause_on_rate_limit: Seconds every process holds off after a bare 429.
        on_redis_down: ``"raise"`` (:class:`~twochat_voip.RateLimiterUnavailableError`,
            nothing sent) or ``"local"`` (pace this process alone) once Redis is down.
        local_requests_per_minute: This process's rate while Redis is down (adapting to
            429s); default ``requests_per_minute`` (or adapting, with ``"auto"``).
        redis_down_after: Seconds of failed tries before Redis counts as down.
        key_prefix: The start of the Redis key's name.
        clock: The monotonic clock, and ``sleep`` the way to wait on it (tests pass fakes).
    """

    def __init__(
        self,
        redis: Redis | str,
        *,
        requests_per_minute: float | Literal["auto"],
        api_key: str | None = None,
        burst: int = 1,
        pause_on_rate_limit: float = 1.0,
        on_redis_down: Literal["raise", "local"] = "raise",
        local_requests_per_minute: float | None = None,
        redis_down_after: float = 5.0,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        clock: Callable[[], float] = loop_time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        rpm = requests_per_minute
        if rpm != "auto" and not (isinstance(rpm, float | int) and rpm > 0):
            raise ValueError('requests_per_minute must be a positive number or "auto"')
        if burst < 1:
            raise ValueError("burst must be at least 1")
        if pause_on_rate_limit < 0 or redis_down_after < 0:
            raise ValueError("pause_on_rate_limit and redis_down_after must not be negative")
        if on_redis_down not in {"raise", "local"}:
            raise ValueError('on_redis_down must be "raise" or "local"')
        key = api_key if api_key is not None else os.environ.get("TWOCHAT_API_KEY")
        if not key or not key.strip():
            raise MissingAPIKeyError(
                "no API key to name the shared limit by: pass api_key= or set TWOCHAT_API_KEY"
            )
        self._owns_redis = isinstance(redis, str)
        if isinstance(redis, str):  # a dead Redis fails in seconds; redis_down_after decides
            retry = Retry(NoBackoff(), 1)
            redis = Redis.from_url(redis, socket_connect_timeout=2, socket_timeout=2, retry=retry)
        self._key = account_key(key, key_prefix)
        self._schedule = SharedSchedule(
            redis, self._key, burst, down_after=redis_down_after, clock=clock, sleep=sleep
        )
        rate = None if rpm == "auto" else float(rpm)
        if rate is not None:
            self._schedule.set_rate(rate)
        self._auto = rate is None
        # While "auto" has not learned the plan (or cannot), this process adapts alone.
        self._alone = AdaptiveRateLimiter(None, burst=burst, clock=clock, sleep=sleep)
        self._pause_on_rate_limit = pause_on_rate_limit
        self._local: AdaptiveRateLimiter | None = None
        if on_redis_down == "local":
            rate = local_requests_per_minute or rate
            self._local = AdaptiveRateLimiter(rate, burst=burst, clock=clock, sleep=sleep)
        self._clock = clock
        self._sleep = sleep
        self._lock = asyncio.Lock()
        self._paused_until = 0.0
        self._pause_set_at = float("-inf")
        self._generation = 0  # bumped by every pause of this process: its waiter re-plans
        self._pause_unshared = False  # a pause this process took and Redis has not heard of
        self._pause_taken = asyncio.Event()
        self._sharer: asyncio.Task[None] | None = None
        self._waker: asyncio.Future[None] | None = None  # wakes the head waiter on a pause
        self._closed = False
        self._refusal_told = False  # (once: a refusal in "local" mode is logged once)

    def __repr__(self) -> str:
        rate = self._schedule.requests_per_minute
        shown = "'auto'" if rate is None else f"{rate:g}"
        return f"{type(self).__name__}(key={self._key!r}, requests_per_minute={shown})"

    @property
    def key(self) -> str:
        """The Redis key holding this account's schedule."""
        return self._key

    @property
    def requests_per_minute(self) -> float | None:
        """The shared rate (``None`` while ``"auto"`` has not learned the plan's)."""
        return self._schedule.requests_per_minute

    @property
    def needs_plan(self) -> bool:
        """``"auto"`` and the plan's rate not known yet: a client calls :meth:`learn_plan`
        before its first request."""
        return self._auto and self._schedule.requests_per_minute is None

    async def learn_plan(self, ask: Callable[[], Awaitable[float | None]]) -> float | None:
        """Pace at the plan's rate, as one process stored it in Redis within the day, or
        as ``ask`` (``GET /open/info``) says it, asked by one process at a time and stored
        for the others for a day. Until then, and if it cannot be learned, this process
        adapts to 429s alone. Errors of ``ask`` propagate."""
        rpm = await shared_plan(self._schedule.redis, self._key, ask, self._sleep)
        if rpm is not None:
            self._schedule.set_rate(rpm)
        return rpm

    @property
    def redis_available(self) -> bool:
        """Whether the last try reached Redis (``False``: failing closed, or local)."""
        return self._schedule.down_since is None

    async def acquire(self) -> float:
        """Wait for this request's slot in the account's shared schedule.

        Raises:
            RateLimiterUnavailableError: Redis has been unreachable for
                ``redis_down_after`` seconds (unless ``on_redis_down="local"``).
            RateLimiterStoreError: Redis answered but refused: another kind of value
                at :attr:`key`, say (the same, unless ``on_redis_down="local"``).
        """
        if self._closed:
            raise ClientClosedError("this RedisRateLimiter is closed")
        if self._schedule.requests_per_minute is None:
            return await self._alone.acquire()  # "auto", the plan not known
        if self._sharer is None:
            self._sharer = asyncio.get_running_loop().create_task(self._share_pauses())
        # The lock is this process's queue: it holds one unused slot at most, since a
        # pause would waste every slot reserved ahead.
        async with self._lock:
            while True:
                await self._share_pause()
                now = self._clock()
                if self._paused_until > now:
                    await self._nap(self._paused_until - now)
                    continue
                generation = self._generation
                try:
                    delay = await self._schedule.reserve()
                except RateLimiterUnavailableError as exc:
                    if self._local is None:
                        raise
                    if isinstance(exc, RateLimiterStoreError) and not self._refusal_told:
                        self._refusal_told = True
                        logger.warning("%s: pacing this process alone", exc)
                    return await self._local.acquire()  # Redis is down: pace alone
                if delay > 0:
                    await self._nap(delay)
                    if generation != self._generation:
                        continue  # paused meanwhile: that slot is given up
                return self._clock()

    def feedback(self, *, sent_at: float, status: int, retry_after: float | None) -> None:
        """Pause every process for a ``Retry-After``, or ``pause_on_rate_limit`` after a
        bare 429 (not in testing mode)."""
        if self._schedule.requests_per_minute is None:
            self._alone.feedback(sent_at=sent_at, status=status, retry_after=retry_after)
            return
        if self._local is not None:
            self._local.feedback(sent_at=sent_at, status=status, retry_after=retry_after)
        if (status != 429 and retry_after is None) or is_testing():
            return
        if retry_after is None:
            if sent_at < self._pause_set_at:
                return  # sent before the pause began: that pause already answers it
            retry_after = self._pause_on_rate_limit
        now = self._clock()
        if retry_after > 0 and now + retry_after > self._paused_until:
            self._paused_until = now + retry_after
            self._pause_set_at = now
            self._generation += 1
            self._pause_unshared = True
            self._pause_taken.set()  # the sharer tells Redis now
            if self._waker is not None and not self._waker.done():
                self._waker.set_result(None)  # the head waiter re-plans

    async def aclose(self) -> None:
        """Share a pause not shared yet; close the Redis client if the limiter made it."""
        if self._closed:
            return
        self._closed = self._schedule.closed = True
        sharer, self._sharer = self._sharer, None
        if sharer is not None:
            # Told to stop, not cancelled: redis-py can swallow a cancellation in a command.
            self._pause_taken.set()
            await asyncio.gather(sharer, return_exceptions=True)
        await self._share_pause(closing=True)
        if self._owns_redis:
            await self._schedule.redis.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _nap(self, seconds: float) -> None:
        """Sleep ``seconds``, or until a pause wakes the head waiter."""
        self._waker = asyncio.get_running_loop().create_future()
        sleeper = asyncio.ensure_future(self._sleep(seconds))
        try:
            await asyncio.wait([sleeper, self._waker], return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._waker = None
            sleeper.cancel()  # woken by a pause, or cancelled; nothing if it is done
        if sleeper.done() and not sleeper.cancelled():
            sleeper.result()  # its error, if it failed

    async def _share_pauses(self) -> None:
        while not self._closed:
            await self._pause_taken.wait()
            self._pause_taken.clear()
            await self._share_pause()  # (does nothing once closed)

    async def _share_pause(self, *, closing: bool = False) -> None:
        """Tell Redis of this process's pause, if not yet told."""
        if self._closed and not closing:
            return
        # What is left of it: the time since it began has been waited out already.
        seconds = self._paused_until - self._clock() if self._pause_unshared else 0.0
        self._pause_unshared = False
        if seconds <= 0:
            return
        try:
            await self._schedule.pause(seconds)
        except asyncio.CancelledError:
            self._pause_unshared = True  # not told for sure: whoever shares next, does
            raise
        except (RedisError, OSError, RateLimiterStoreError) as exc:
            logger.warning(
                "could not share a %.2f s rate-limit pause through Redis (%s): "
                "only this process holds off",
                seconds,
                type(exc).__name__,
            )
