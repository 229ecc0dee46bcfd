"""The plan's rate limit, asked of ``GET /open/info`` once per client.

Two kinds of client ask it:

- one told ``requests_per_minute="auto"`` asks before its first call (every first
  call waits for the one request) and paces at the answer;
- an adaptive one (no rate given) asks when the server first answers 429, in the
  background: no call waits for it. From the answer on, its limiter never climbs above
  the plan's limit, and climbs back after a cut in steps of it, which evens out the
  shares of several processes on one account (see :mod:`twochat_voip._adapting`).
  A client that never meets a 429 never asks, and one whose server does not say
  (or fails to answer) goes on adapting without it.

The request is a credit like any other: it counts in the stats and the budget.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Final, Literal

from twochat_voip._errors import (
    APIConnectionError,
    AuthenticationError,
    BudgetExhaustedError,
    ClientClosedError,
    PaymentRequiredError,
    TwoChatError,
)
from twochat_voip._ratelimit import AdaptiveRateLimiter
from twochat_voip._retry import is_testing

__all__ = ["PlanRate"]

logger: Final = logging.getLogger("twochat_voip")


class PlanRate:
    """Asks the plan's limit for one client, and tells its limiter.

    Args:
        ask: Sends ``GET /open/info`` through the client: the plan's requests a
            minute, or ``None`` when the answer names none.
        limiter: The client's own limiter (``None``: a limiter of the caller's,
            which is told nothing).
        when: ``"first"``: before the first call (``"auto"``); ``"limit"``: at the
            first 429 (an adaptive client without a rate); ``None``: never.
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
        self.first = when == "first"
        """Whether a first call must wait for the plan (``"auto"``, not yet known)."""
        self.at_a_limit = when == "limit" and limiter is not None
        """Whether the next 429 asks for the plan (cleared once asked)."""
        self._learning: asyncio.Future[None] | None = None
        self._background: asyncio.Task[None] | None = None

    async def before_first_call(self) -> None:
        """``requests_per_minute="auto"``: ask once; concurrent first calls share the
        one request."""
        learning = self._learning
        if learning is None:
            # A task of its own, shielded: the request is every caller's, so one
            # caller cancelled must not stop it for the others.
            learning = self._learning = asyncio.get_running_loop().create_task(self._ask_for_pace())
            learning.add_done_callback(self._forget_failed_request)
        await asyncio.shield(learning)

    def _forget_failed_request(self, learning: asyncio.Future[None]) -> None:
        """A failed ``GET /open/info`` is asked again by the next call, even when every
        caller that waited for it was cancelled (its error is taken here, not logged
        as never retrieved)."""
        failed = learning.cancelled() or learning.exception() is not None
        if failed and self._learning is learning:
            self._learning = None

    async def _ask_for_pace(self) -> None:
        try:
            rpm = await self._ask()
        except (
            AuthenticationError,
            PaymentRequiredError,
            BudgetExhaustedError,
            ClientClosedError,
            APIConnectionError,
        ):
            raise  # no request would do better; the next call asks again
        except TwoChatError as exc:
            rpm = None
            reason = str(exc)
        else:
            reason = "the answer names no limits.requests_per_minute"
        self.first = False
        if rpm is None:
            logger.warning(
                "requests_per_minute='auto': could not learn the plan's limit (%s); "
                "adapting to 429s instead",
                reason,
            )
            return
        if self._limiter is not None:  # pragma: no branch - "auto" is the own limiter's
            self._limiter.set_requests_per_minute(rpm)
        logger.info("requests_per_minute='auto': pacing at the plan's %g requests/minute", rpm)

    def limit_met(self) -> None:
        """The server answered 429: an adaptive client asks for the plan now, in the
        background (once)."""
        if not self.at_a_limit or is_testing():
            return  # (testing mode paces nothing, and asks nothing a test did not script)
        self.at_a_limit = False
        asking = self._background = asyncio.get_running_loop().create_task(self._ask_for_ceiling())
        asking.add_done_callback(_log_failure)

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
            return
        if self._limiter is not None:  # pragma: no branch - asked only for the own limiter
            self._limiter.learn_plan(rpm)
        logger.info(
            "the plan allows %g requests/minute: never above it, and climbing back "
            "after a 429 in steps of it",
            rpm,
        )

    async def aclose(self) -> None:
        """The client closes: a request still asking in the background ends, and a
        429 answered after this asks nothing."""
        self.at_a_limit = False
        asking = [task for task in (self._background, self._learning) if task is not None]
        self._background = None
        for task in asking:
            task.cancel()
        if asking:
            # (wait, not await: a cancellation of the closer itself must go through)
            await asyncio.wait(asking)


def _log_failure(asking: asyncio.Task[None]) -> None:
    """What no one awaits must not fail unseen: an error other than the API's (which
    the question logs itself) is logged here, and taken."""
    if not asking.cancelled() and (error := asking.exception()) is not None:
        logger.error("asking the plan's limit failed", exc_info=error)
