"""Each step of a call as one event (:mod:`twochat_voip.hooks`), told first to the
SDK's log (never a header, so never the key) and then to the hooks."""

from __future__ import annotations

import collections
import inspect
import logging
import math
import os
import sys
from collections.abc import Sequence
from typing import Any, Final

import attrs

from twochat_voip import hooks as events
from twochat_voip._clock import loop_time
from twochat_voip._errors import TwoChatError
from twochat_voip._requests import Request
from twochat_voip._retry import RetryNotice

logger: Final = logging.getLogger("twochat_voip")

_LEAST_WAIT: Final = 0.001
"""Seconds of waiting for a slot worth telling: a shared limiter's round trip to Redis
is no wait for a slot."""
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
    if not any(h.get_name() == "TWOCHAT_LOG" for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        handler.set_name("TWOCHAT_LOG")
        logger.addHandler(handler)
        logger.propagate = False  # else the application's handlers would show it twice


def _log(event: events.ClientEvent) -> None:
    match event:
        case events.ResponseReceived(method=method, path=path, attempt=attempt, elapsed=elapsed):
            line = f"{method} {path} -> {event.status_code} in {elapsed * 1000.0:.1f} ms"
            logger.debug("%s (attempt %d)", line, attempt)
        case events.RequestFailed(method=method, path=path, attempt=attempt, elapsed=elapsed):
            line = f"{method} {path} -> no answer after {elapsed * 1000.0:.1f} ms"
            logger.debug("%s (attempt %d): %s", line, attempt, event.error)
        case events.RetryScheduled(method=method, path=path, attempt=attempt, retries=retries):
            if retries is None:
                when, which = "when the rate limiter allows", f"attempt {attempt + 1}"
            else:
                which = f"attempt {attempt + 1} of {retries + 1}"
                if event.retry_after is not None:
                    when = f"after the server's Retry-After of {event.retry_after:.2f} s"
                else:
                    when = f"in {event.wait:.2f} s"
            level = logging.DEBUG if retries is None else logging.INFO
            logger.log(level, "retrying %s %s %s (%s): %s", method, path, when, which, event.error)
        case events.BudgetExhausted(budget=budget):
            logger.info("the request budget of %d is spent: no more requests are sent", budget)


@attrs.define
class CallWatch:
    """One call as its events tell it; ``listened``: whether anyone hears its steps
    (a hook, or the log at DEBUG), asked as it starts."""

    request: Request
    started: float
    listened: bool
    attempts: int = 0
    sent: float = 0.0
    status_code: int | None = None


class Observer:
    """A client's log and hooks (told every event, after the log)."""

    def __init__(self, hooks: Sequence[events.Hook], base_url: str) -> None:
        self.hooks: Final = tuple(hooks)
        self.clock: Final = loop_time
        self._base_url = base_url
        self._budget_told = False
        self._failures: collections.Counter[int] = collections.Counter()

    def _emit(self, event: events.ClientEvent, *, last_first: bool = False) -> None:
        _log(event)
        told = list(enumerate(self.hooks))
        for index, hook in reversed(told) if last_first else told:
            try:
                result = hook(event)
                if inspect.isawaitable(result):
                    if inspect.iscoroutine(result):
                        result.close()  # never awaited: no "never awaited" warning later
                    raise TypeError("a hook must not be async: its awaitable was dropped")
            except Exception:  # noqa: BLE001 - logged in _hook_failed, then ignored
                self._hook_failed(index, hook, event)

    def _hook_failed(self, index: int, hook: events.Hook, event: events.ClientEvent) -> None:
        """Log a hook's 1st, 10th, 100th, ... failure: a broken hook must not fill a disk."""
        failures = self._failures[index] = self._failures[index] + 1
        name = getattr(hook, "__qualname__", type(hook).__qualname__)
        if failures == 1:
            logger.exception("the hook %s failed on %s", name, type(event).__name__)
        elif math.log10(failures).is_integer():
            logger.error("the hook %s has failed %d times", name, failures)

    def _about(self, request: Request) -> dict[str, Any]:
        path = request.url.removeprefix(self._base_url)
        return {
            "method": request.method,
            "route": request.route or path.partition("?")[0],
            "path": path,
            "call_uuid": request.call_uuid,
        }

    def call_started(self, request: Request) -> CallWatch:
        listened = bool(self.hooks) or logger.isEnabledFor(logging.DEBUG)
        watch = CallWatch(request, loop_time(), listened)
        if listened:
            self._emit(events.CallStarted(base_url=self._base_url, **self._about(request)))
        return watch

    def rate_waited(self, watch: CallWatch, waiting_since: float) -> None:
        watch.sent = loop_time()
        seconds = watch.sent - waiting_since
        if seconds >= _LEAST_WAIT and watch.listened:
            attempt = watch.attempts + 1
            about = self._about(watch.request)
            self._emit(events.RateLimitWait(**about, attempt=attempt, seconds=seconds))

    def request_sent(self, watch: CallWatch) -> None:
        watch.attempts += 1
        if watch.listened:
            self._emit(events.RequestSent(**self._about(watch.request), attempt=watch.attempts))

    def answered(self, watch: CallWatch, status: int) -> None:
        watch.status_code = status
        if watch.listened:
            elapsed = loop_time() - watch.sent
            self._emit(
                events.ResponseReceived(
                    **self._about(watch.request),
                    attempt=watch.attempts,
                    status_code=status,
                    elapsed=elapsed,
                )
            )

    def failed(self, watch: CallWatch, error: TwoChatError) -> None:
        """An attempt failed: an answer refused (too large, say) is told as answered."""
        status = getattr(error, "status_code", None)
        if isinstance(status, int):
            self.answered(watch, status)
            return
        about = self._about(watch.request)
        elapsed = loop_time() - watch.sent
        self._emit(
            events.RequestFailed(**about, attempt=watch.attempts, error=error, elapsed=elapsed)
        )

    def budget_exhausted(self, budget: int) -> None:
        """The budget refused a request: told the first time only."""
        if not self._budget_told:
            self._budget_told = True
            self._emit(events.BudgetExhausted(budget=budget))

    def call_ended(self, watch: CallWatch, error: BaseException | None) -> None:
        if not watch.listened:
            return
        event = events.CallEnded(
            **self._about(watch.request),
            attempts=watch.attempts,
            status_code=watch.status_code,
            error=error,
            elapsed=loop_time() - watch.started,
        )
        self._emit(event, last_first=True)  # as context managers exit: a span ends inside

    def retry_scheduled(self, watch: CallWatch, notice: RetryNotice) -> None:
        error = notice.error
        if not isinstance(error, TwoChatError):  # pragma: no cover - only they are retried
            return
        event = events.RetryScheduled(
            **self._about(watch.request),
            attempt=notice.attempt,
            error=error,
            wait=notice.wait,
            retry_after=notice.retry_after,
            retries=None if notice.retry is None else notice.retries,
        )
        self._emit(event)
