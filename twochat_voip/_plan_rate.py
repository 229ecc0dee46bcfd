"""The plan's rate limit, asked of ``GET /open/info`` once per client: before the first
call with ``requests_per_minute="auto"`` (first calls wait for it), or in the background
at an adaptive client's first 429 (its limiter then never climbs above the plan, and
climbs back in steps of it). The question is a credit like any other; it never blocks
a run: :data:`PLAN_TIMEOUT` an attempt, :data:`PLAN_ATTEMPTS` in all, and on any
failure but the key's, the credits' or the client's own the client adapts at once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Final, Literal

from twochat_voip._errors import (
    AuthenticationError,
    BudgetExhaustedError,
    ClientClosedError,
    PaymentRequiredError,
    TwoChatError,
)
from twochat_voip._ratelimit import AdaptiveRateLimiter
from twochat_voip._retry import is_testing

logger: Final = logging.getLogger("twochat_voip")

PLAN_TIMEOUT: Final = 5.0
"""Seconds an attempt at the plan question may take (less if the client's timeout is)."""
PLAN_ATTEMPTS: Final = 2
"""Attempts at the plan question, the first included."""

# What fails "auto"'s question for every waiting call (the calls would fail alike), and
# the next call asks again. Anything else, a timeout included: adapt, asking no more.
_ASK_AGAIN: Final = (
    AuthenticationError,
    PaymentRequiredError,
    BudgetExhaustedError,
    ClientClosedError,
)


class PlanRate:
    """Asks the plan's limit for one client, and tells its limiter.

    Args:
        ask: Sends ``GET /open/info``: the plan's requests a minute, or ``None``.
        limiter: The client's own limiter (``None``: the caller's, told nothing).
        when: ``"first"`` (``"auto"``), ``"limit"`` (at the first 429), or ``None``.
    """

    def __init__(
        self,
        ask: Callable[[], Awaitable[float | None]],
        limiter: AdaptiveRateLimiter | None,
        *,
        when: Literal["first", "limit"] | None,
    ) -> None:
        self._ask = ask
        self._limiter = limiter
        self.first = when == "first"  # a first call must wait for the plan
        self.at_a_limit = when == "limit" and limiter is not None  # the next 429 asks
        self._asking: set[asyncio.Task[None]] = set()
        self._learning: asyncio.Task[None] | None = None

    async def before_first_call(self) -> None:
        """``"auto"``: ask once; concurrent first calls share the one request."""
        if self._learning is None:
            # Shielded: one caller cancelled must not stop it for the others.
            self._learning = self._start(self._ask_for_pace())
        await asyncio.shield(self._learning)

    def limit_met(self) -> None:
        """A 429: an adaptive client asks for the plan once, in the background (not in
        testing mode, which asks nothing a test did not script)."""
        if self.at_a_limit and not is_testing():
            self.at_a_limit = False
            self._start(self._ask_for_ceiling())

    def _start(self, asking: Coroutine[object, object, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(asking)
        self._asking.add(task)
        task.add_done_callback(self._ended)
        return task

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._asking.discard(task)
        failed = task.cancelled() or task.exception() is not None  # (taken, not logged)
        if failed and task is self._learning:
            self._learning = None  # the next call asks again
        elif failed and not task.cancelled():  # pragma: no cover - a bug, not the API's
            logger.error("asking the plan's limit failed", exc_info=task.exception())

    async def _ask_for_pace(self) -> None:
        try:
            rpm = await self._ask()
        except _ASK_AGAIN:
            raise
        except TwoChatError as exc:
            rpm, reason = None, str(exc)
        else:
            reason = "the answer names no limits.requests_per_minute"
        self.first = False
        if rpm is None:
            logger.warning(
                "requests_per_minute='auto': could not learn the plan's limit (%s); "
                "adapting to 429s instead",
                reason,
            )
        elif self._limiter is not None:  # pragma: no branch - "auto" is the own limiter's
            self._limiter.set_requests_per_minute(rpm)
            logger.info("requests_per_minute='auto': pacing at the plan's %g requests/minute", rpm)

    async def _ask_for_ceiling(self) -> None:
        try:
            rpm = await self._ask()
        except TwoChatError as exc:
            logger.info("could not learn the plan's limit (%s); adapting to 429s without it", exc)
            return
        if rpm is None:
            logger.info(
                "GET /open/info names no limits.requests_per_minute; adapting to 429s without it"
            )
        elif self._limiter is not None:  # pragma: no branch - asked only for the own limiter
            self._limiter.learn_plan(rpm)
            logger.info(
                "the plan allows %g requests/minute: never above it, and climbing back "
                "after a 429 in steps of it",
                rpm,
            )

    async def aclose(self) -> None:
        """The client closes: a question still asked ends, and a later 429 asks nothing."""
        self.at_a_limit = False
        asking = list(self._asking)
        for task in asking:
            task.cancel()
        if asking:  # (wait, not gather: a cancellation of the closer itself goes through)
            await asyncio.wait(asking)
