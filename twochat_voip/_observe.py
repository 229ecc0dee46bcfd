"""What a client tells about its requests: its hooks' events and its log lines.

Each step of a call is one event (see :mod:`twochat_voip.hooks`), told to the hooks.
The ``twochat_voip`` logger's DEBUG line per request (method, path, status,
milliseconds, attempt; never a header, so never the key) is written from the same
event (:func:`log_attempt`), and each retry's INFO line from its
:class:`~twochat_voip.hooks.RetryScheduled` (:func:`log_retry`; a 429 that a bulk run
waits out with its limiter, DEBUG: a run finding its limit meets many).
"""

from __future__ import annotations

import collections
import inspect
import logging
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, Final

from twochat_voip._clock import loop_time
from twochat_voip._errors import TwoChatError
from twochat_voip._protocol import Request
from twochat_voip._retry import RetryNotice
from twochat_voip.hooks import (
    BudgetExhausted,
    CallEnded,
    CallStarted,
    ClientEvent,
    Hook,
    RateLimitWait,
    RequestFailed,
    RequestSent,
    ResponseReceived,
    RetryScheduled,
)

__all__ = ["CallWatch", "Observer", "configure_logging_from_env", "log_attempt", "log_retry"]

logger: Final = logging.getLogger("twochat_voip")

_LEAST_WAIT: Final = 0.001
"""Seconds of waiting for a slot worth telling as a :class:`RateLimitWait`."""
_LOG_LEVELS: Final = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}


def configure_logging_from_env() -> None:
    """``TWOCHAT_LOG=debug`` (or ``info``): log the ``twochat_voip`` logger's lines
    at that level to standard error, as ``OPENAI_LOG`` and ``ANTHROPIC_LOG`` do,
    without touching the application's own logging set-up."""
    value = os.environ.get("TWOCHAT_LOG", "").strip().lower()
    if not value:
        return
    level = _LOG_LEVELS.get(value)
    if level is None:
        logger.warning("TWOCHAT_LOG=%r is not one of debug, info, warning; ignored", value)
        return
    logger.setLevel(level)
    if not any(getattr(h, "_twochat_env", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        handler._twochat_env = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        # Written here only: through the application's handlers too, every line would
        # show twice (a propagated record skips its ancestors' levels).
        logger.propagate = False


def log_attempt(event: ResponseReceived | RequestFailed) -> None:
    """An attempt's DEBUG line, written from its event: method, path, status (or "no
    answer"), milliseconds, attempt; never a header, so never the key."""
    if isinstance(event, ResponseReceived):
        logger.debug(
            "%s %s -> %d in %.1f ms (attempt %d)",
            event.method,
            event.path,
            event.status_code,
            event.elapsed * 1000.0,
            event.attempt,
        )
    else:
        logger.debug(
            "%s %s -> no answer after %.1f ms (attempt %d): %s",
            event.method,
            event.path,
            event.elapsed * 1000.0,
            event.attempt,
            event.error,
        )


def log_retry(event: RetryScheduled) -> None:
    """A retry's line, written from its event: INFO, or DEBUG for a 429 a bulk run
    waits out with its limiter (a run finding its limit meets many)."""
    level = logging.DEBUG if event.retries is None else logging.INFO
    if not logger.isEnabledFor(level):
        return
    if event.retries is None:
        when, which = "when the rate limiter allows", f"attempt {event.attempt + 1}"
    else:
        which = f"attempt {event.attempt + 1} of {event.retries + 1}"
        if event.retry_after is not None:
            when = f"after the server's Retry-After of {event.retry_after:.2f} s"
        else:
            when = f"in {event.wait:.2f} s"
    logger.log(
        level, "retrying %s %s %s (%s): %s", event.method, event.path, when, which, event.error
    )


class CallWatch:
    """One call as its events tell it, and what :class:`CallEnded` says of it."""

    __slots__ = ("_about", "_base_url", "attempts", "request", "started", "status_code")

    def __init__(self, request: Request, base_url: str, started: float) -> None:
        self.request: Final = request
        self.started = started
        self.attempts = 0
        self.status_code: int | None = None
        self._base_url = base_url
        self._about: dict[str, Any] | None = None

    @property
    def about(self) -> dict[str, Any]:
        """The fields every event of the call starts with (worked out when first told:
        a call nobody listens to never needs them)."""
        if self._about is None:
            self._about = _about(self.request, self.request.url.removeprefix(self._base_url))
        return self._about


def _about(request: Request, path: str) -> dict[str, Any]:
    return {
        "method": request.method,
        "route": request.route or path.partition("?")[0],
        "path": path,
        "call_uuid": request.call_uuid,
    }


class Observer:
    """A client's hooks and log, told what each call does.

    Args:
        hooks: Told every event.
        base_url: Stripped from URLs to make the paths told.
        clock: The monotonic clock elapsed times are read from.
    """

    def __init__(
        self,
        hooks: Sequence[Hook],
        base_url: str,
        clock: Callable[[], float] = loop_time,
    ) -> None:
        self.hooks: Final = tuple(hooks)
        self.clock: Final = clock
        self._base_url = base_url
        self._budget_told = False
        self._hook_failures: collections.Counter[int] = collections.Counter()

    def path_of(self, request: Request) -> str:
        return request.url.removeprefix(self._base_url)

    def _emit(self, event: ClientEvent, *, last_first: bool = False) -> None:
        for index, hook in (
            reversed(tuple(enumerate(self.hooks))) if last_first else enumerate(self.hooks)
        ):
            try:
                told = hook(event)
                if told is not None and inspect.isawaitable(told):
                    if inspect.iscoroutine(told):
                        told.close()  # never awaited: no "never awaited" warning later
                    raise TypeError("a hook must not be async: its awaitable was dropped")
            except Exception:  # noqa: BLE001 - logged in _hook_failed, then ignored
                self._hook_failed(index, hook, event)

    def _hook_failed(self, index: int, hook: Hook, event: ClientEvent) -> None:
        """Log a hook's failure: the first with its traceback, then at the 10th, 100th,
        ... only counted, so that a broken hook cannot fill a disk in a long run."""
        failures = self._hook_failures[index] = self._hook_failures[index] + 1
        name = getattr(hook, "__qualname__", type(hook).__qualname__)
        if failures == 1:
            logger.exception("the hook %s failed on %s", name, type(event).__name__)
        elif math.log10(failures).is_integer():
            logger.error("the hook %s has failed %d times", name, failures)

    def call_started(self, request: Request) -> CallWatch:
        watch = CallWatch(request, self._base_url, self.clock())
        if self.hooks:
            self._emit(CallStarted(base_url=self._base_url, **watch.about))
        return watch

    def request_sent(self, watch: CallWatch, attempt: int) -> float:
        """An attempt leaves: the time it left."""
        watch.attempts += 1
        if self.hooks:
            self._emit(
                RequestSent(
                    **watch.about,
                    attempt=attempt,
                )
            )
        return self.clock()

    def answered(self, watch: CallWatch, attempt: int, status: int, sent: float) -> None:
        watch.status_code = status
        debug = logger.isEnabledFor(logging.DEBUG)
        if debug or self.hooks:
            elapsed = self.clock() - sent
            event = ResponseReceived(
                **watch.about, attempt=attempt, status_code=status, elapsed=elapsed
            )
            self._tell_attempt(event, debug)

    def failed(self, watch: CallWatch, attempt: int, error: TwoChatError, sent: float) -> None:
        """An attempt failed in the transport: its answer was refused (too large, a
        redirect not followed: told as answered, with its status), or none came."""
        status = getattr(error, "status_code", None)
        if isinstance(status, int):
            self.answered(watch, attempt, status, sent)
            return
        debug = logger.isEnabledFor(logging.DEBUG)
        if debug or self.hooks:
            elapsed = self.clock() - sent
            event = RequestFailed(**watch.about, attempt=attempt, error=error, elapsed=elapsed)
            self._tell_attempt(event, debug)

    def _tell_attempt(self, event: ResponseReceived | RequestFailed, debug: bool) -> None:
        """An attempt's end, told to the log (its DEBUG line is written from the event,
        as a hook's would be) and to the hooks."""
        if debug:
            log_attempt(event)
        if self.hooks:
            self._emit(event)

    def rate_waited(self, watch: CallWatch, attempt: int, seconds: float) -> None:
        """A request waited for its slot; not told under a millisecond (a shared
        limiter's round trip to Redis is no wait for a slot)."""
        if self.hooks and seconds >= _LEAST_WAIT:
            self._emit(
                RateLimitWait(
                    **watch.about,
                    attempt=attempt,
                    seconds=seconds,
                )
            )

    def budget_exhausted(self, budget: int) -> None:
        """The budget refused a request: told the first time only."""
        if self._budget_told:
            return
        self._budget_told = True
        logger.info("the request budget of %d is spent: no more requests are sent", budget)
        if self.hooks:
            self._emit(BudgetExhausted(budget=budget))

    def call_ended(self, watch: CallWatch, error: BaseException | None) -> None:
        if self.hooks:
            self._emit(
                CallEnded(
                    **watch.about,
                    attempts=watch.attempts,
                    status_code=watch.status_code,
                    error=error,
                    elapsed=self.clock() - watch.started,
                ),
                last_first=True,  # as with context managers: a hook's span ends inside
            )

    def retry_scheduled(self, request: Request, notice: RetryNotice) -> None:
        """A failed attempt is to be retried: told to the hooks and, from the same
        event, to the log (:func:`log_retry`)."""
        error = notice.error
        if not isinstance(error, TwoChatError):  # pragma: no cover - only they are retried
            return
        event = RetryScheduled(
            **_about(request, self.path_of(request)),
            attempt=notice.attempt,
            error=error,
            wait=notice.wait,
            retry_after=notice.retry_after,
            retries=None if notice.retry is None else notice.retries,
        )
        if self.hooks:
            self._emit(event)
        log_retry(event)
