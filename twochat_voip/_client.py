"""VoIPClient: owns the transport, the limiter and the lifecycle, and runs each call
in a task it holds (closing the client cancels it) through its ``Caller``."""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Final, Literal, Protocol, Self, TypeVar, runtime_checkable

import aiohttp

from twochat_voip._account_api import AccountMethods
from twochat_voip._bulk import DEFAULT_GIVE_UP_AFTER, BulkMethods
from twochat_voip._call import Caller, ClientStats
from twochat_voip._errors import ClientClosedError, EventLoopMismatchError
from twochat_voip._models import CallDetailRecord
from twochat_voip._options import (
    DEFAULT_MAX_RESPONSE_SIZE,
    DEFAULT_MAX_RETRIES,
    DEFAULT_MAX_RETRY_WAIT,
    ClientOptions,
)
from twochat_voip._plan_rate import PLAN_ATTEMPTS, PLAN_TIMEOUT, PlanRate
from twochat_voip._protocol import parse_call, parse_requests_per_minute
from twochat_voip._ratelimit import AdaptiveRateLimiter, RateLimiter
from twochat_voip._requests import API_KEY_HEADER, Request, Requests, Response
from twochat_voip._retry import RetryPolicy
from twochat_voip._transport import AiohttpTransport, Transport
from twochat_voip._version import __version__
from twochat_voip.hooks import Hook

__all__ = ["DEFAULT_GIVE_UP_AFTER", "ClientStats", "VoIPClient"]

logger: Final = logging.getLogger("twochat_voip")
_USER_AGENT: Final = {"User-Agent": f"twochat-voip/{__version__} aiohttp/{aiohttp.__version__}"}
_T = TypeVar("_T")


class _State(enum.Enum):
    UNOPENED = "unopened"
    OPENED = "opened"
    CLOSED = "closed"


@runtime_checkable
class _LearnsPlan(Protocol):
    """A limiter told the plan's rate by the client (``RedisRateLimiter`` with "auto")."""

    needs_plan: bool

    async def learn_plan(self, ask: Callable[[], Awaitable[float | None]]) -> float | None: ...


class VoIPClient(AccountMethods, BulkMethods):
    """An async client for 2Chat's VoIP API; one per application, shared by every task.

    Use it as an async context manager, or call :meth:`aclose` when done::

        async with VoIPClient() as voip:  # key from TWOCHAT_API_KEY
            cdr = await voip.get_call("CDR8b3e7a1f-6c94-4d52-ae17-5f2b9d4c8e63")

    Enter it once: a second ``async with`` on an open client raises ``RuntimeError``.

    Args:
        api_key: Defaults to ``TWOCHAT_API_KEY``; sent only as ``X-User-API-Key`` to
            ``base_url``'s origin, and never shown.
        base_url: Defaults to ``TWOCHAT_BASE_URL``, then ``https://api.p.2chat.io``;
            plain ``http`` only to a loopback host.
        timeout: Seconds one attempt may take, connecting and reading included.
        max_retries: Retries after the first attempt (408, 429, 5xx gateway answers,
            dropped connections, timeouts); 0 turns retrying off.
        max_retry_wait: The longest ``Retry-After`` waited out; a longer one raises.
        retry_policy: A whole :class:`RetryPolicy`, instead of the two above.
        session: An ``aiohttp.ClientSession`` you own and close; by default the
            client makes one and closes it in :meth:`aclose`.
        max_response_size: Bytes an answer may have; a CDR is ~1.5 KB.
        requests_per_minute: Pace every request evenly at this rate; ``"auto"``: ask
            the plan's limit once (``GET /open/info``, a credit) and pace at it; by
            default, start at 4 a second, double every half second until 429s show a
            limit, then adapt.
        rate_limiter: A :class:`RateLimiter` to use instead (one shared through Redis).
        rate_limiter_owner: Close ``rate_limiter`` in :meth:`aclose` (by default it
            is yours to close, as other clients may share it).
        max_requests: Send at most this many requests (credits), 429s and retries
            included; then every call raises :class:`BudgetExhaustedError`.
        hooks: Callables told each step of each call (:mod:`twochat_voip.hooks`).
        trace_configs: ``aiohttp.TraceConfig`` objects for the session the client
            makes; they see every header, the key too: never record those.
        transport: What sends the requests instead of aiohttp (a
            :class:`~twochat_voip.testing.MockTransport` in unit tests); excludes
            ``session``, ``trace_configs`` and ``max_response_size``.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float = 30.0,
        max_retries: int = DEFAULT_MAX_RETRIES,
        max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT,
        retry_policy: RetryPolicy | None = None,
        session: aiohttp.ClientSession | None = None,
        max_response_size: int = DEFAULT_MAX_RESPONSE_SIZE,
        requests_per_minute: float | Literal["auto"] | None = None,
        rate_limiter: RateLimiter | None = None,
        rate_limiter_owner: bool = False,
        max_requests: int | None = None,
        hooks: Iterable[Hook] = (),
        trace_configs: Sequence[aiohttp.TraceConfig] | None = None,
        transport: Transport | None = None,
    ) -> None:
        options = ClientOptions.resolve(
            api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            max_retry_wait=max_retry_wait,
            retry_policy=retry_policy,
            max_response_size=max_response_size,
            requests_per_minute=requests_per_minute,
            has_rate_limiter=rate_limiter is not None,
            max_requests=max_requests,
            hooks=hooks,
            trace_configs=trace_configs,
            has_session=session is not None,
            has_transport=transport is not None,
        )
        self._options: Final = options
        headers = {API_KEY_HEADER: options.api_key, "Accept": "application/json"}
        self._requests = Requests(options.base_url, headers | _USER_AGENT)
        self._transport: Final = (
            transport
            if transport is not None
            else AiohttpTransport(
                session,
                trace_configs=options.trace_configs,
                max_response_size=options.max_response_size,
            )
        )
        rpm = options.requests_per_minute
        own_limiter = None
        if rate_limiter is None:
            own_limiter = rate_limiter = AdaptiveRateLimiter(None if rpm == "auto" else rpm)
        self._limiter: RateLimiter = rate_limiter
        self._owns_limiter = own_limiter is not None or rate_limiter_owner
        self._loop: asyncio.AbstractEventLoop | None = None  # the one it opened in
        self._state = _State.UNOPENED
        self._entered = False
        self._calls: set[asyncio.Task[Any]] = set()
        self._bulk_runs: set[asyncio.Task[None]] = set()

        def ask() -> Awaitable[float | None]:  # (not through _paced_call, which waits for it)
            timeout, info = min(PLAN_TIMEOUT, options.timeout), self._requests.info()
            return self._caller.call(
                info, parse_requests_per_minute, timeout=timeout, attempts=PLAN_ATTEMPTS
            )

        # A limiter shared with "auto" (Redis) is told the plan, asked once for all.
        shared = rate_limiter if isinstance(rate_limiter, _LearnsPlan) else None
        shared = shared if shared is not None and shared.needs_plan else None
        self._plan: Final = PlanRate(
            ask if shared is None else functools.partial(shared.learn_plan, ask),
            own_limiter,
            when="first" if rpm == "auto" or shared else None if rpm else "limit",
        )
        self._caller = Caller(
            options,
            limiter=self._limiter,
            transport=self._transport,
            check_open=self._check_open,
            on_rate_limited=self._plan.limit_met,
        )

    @property
    def base_url(self) -> str:
        """The API's base URL this client talks to."""
        return self._options.base_url

    @property
    def retry_policy(self) -> RetryPolicy:
        """The retry policy in force."""
        return self._options.retry_policy

    @property
    def rate_limiter(self) -> RateLimiter:
        """The rate limiter every request of this client waits on."""
        return self._limiter

    @property
    def stats(self) -> ClientStats:
        """A snapshot of what this client has done (requests, 429s, retries, ...)."""
        return ClientStats(**self._caller.counts)

    @property
    def max_requests(self) -> int | None:
        """The request budget (``None``: unlimited)."""
        return self._options.max_requests

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` has been called."""
        return self._state is _State.CLOSED

    def __repr__(self) -> str:
        return f"<VoIPClient base_url={self._options.base_url!r} state={self._state.value}>"

    async def __aenter__(self) -> Self:
        if self._entered and self._state is _State.OPENED and not self._loop_changed():
            # Two `async with` blocks on one client: the first to end would close it.
            raise RuntimeError(
                "this VoIPClient is already open in an `async with` block; share that "
                "one client instead of entering it again"
            )
        await self._check_open()
        self._entered = True
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client and its transport (the aiohttp session, if it made one);
        calls still in flight end with :class:`ClientClosedError`. Idempotent."""
        if self._state is _State.CLOSED:
            return
        opened_in = self._loop
        if opened_in not in (None, asyncio.get_running_loop()) and not opened_in.is_closed():
            # Its session can be closed only in its own loop, which still runs.
            raise EventLoopMismatchError("closed")
        self._state = _State.CLOSED
        tasks = [*self._calls, *self._bulk_runs]
        for task in tasks:
            task.cancel()
        try:
            if tasks:  # (wait, not gather: a cancellation of the closer goes through)
                await asyncio.wait(tasks)
            await self._plan.aclose()
            if self._owns_limiter:
                await self._limiter.aclose()
        except Exception:  # logged, not raised: it would hide the error ending the block
            logger.exception("closing the rate limiter failed")
        finally:
            await self._transport.aclose()

    def _loop_changed(self) -> bool:
        return self._loop is not None and self._loop is not asyncio.get_running_loop()

    async def _check_open(self) -> None:
        """Refuse a call once closed or in another loop (whose dead connections go)."""
        if self._loop_changed():
            if self._loop is not None and self._loop.is_closed():
                await self._transport.aclose()
            raise EventLoopMismatchError("used")
        if self._state is _State.CLOSED:
            raise ClientClosedError("this VoIPClient is closed; make a new one")
        self._state = _State.OPENED
        if self._loop is None:
            self._loop = asyncio.get_running_loop()

    async def get_call(self, call_uuid: str, *, timeout: float | None = None) -> CallDetailRecord:
        """Fetch one call's detail record; ``timeout``: seconds for each attempt of
        this call, instead of the client's.

        Raises:
            InvalidCallUUIDError: ``call_uuid`` is not a valid id (nothing is sent);
                it is also a ``ValueError`` and a ``TypeError``.
            TwoChatError: a subclass saying what went wrong, after any retries.
        """
        request = self._requests.call(call_uuid)
        return await self._call(request, parse_call, timeout=timeout)

    async def _call(
        self, request: Request, parse: Callable[[Response, str | None], _T], **options: Any
    ) -> _T:
        """One call in a task that closing the client cancels (not the caller's)."""
        task = asyncio.ensure_future(self._paced_call(request, parse, **options))
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)
        try:
            return await task
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if self.closed and task.cancelled() and (me is None or not me.cancelling()):
                raise ClientClosedError(
                    "the VoIPClient was closed while this call was in flight"
                ) from None
            raise

    async def _paced_call(
        self, request: Request, parse: Callable[[Response, str | None], _T], **options: Any
    ) -> _T:
        """A call, after the plan's limit when ``"auto"`` still has to ask it."""
        if self._plan.first:
            await self._plan.before_first_call()
        return await self._caller.call(request, parse, **options)
