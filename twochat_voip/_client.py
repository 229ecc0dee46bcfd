"""VoIPClient: owns the session and its lifecycle, and joins protocol, transport and
retry policy into ``get_call``."""

from __future__ import annotations

import enum
import os
from importlib.metadata import version
from types import TracebackType
from typing import Final, Self

import aiohttp

from twochat_voip._errors import (
    APIConnectionError,
    ClientClosedError,
    MissingAPIKeyError,
    TwoChatError,
)
from twochat_voip._models import CallDetailRecord
from twochat_voip._protocol import (
    API_KEY_HEADER,
    DEFAULT_BASE_URL,
    Request,
    Response,
    call_request,
    normalise_base_url,
    parse_call,
    validate_call_uuid,
)
from twochat_voip._retry import RetryPolicy, is_retryable
from twochat_voip._transport import send

__all__ = ["VoIPClient"]

DEFAULT_MAX_RESPONSE_SIZE: Final = 1024 * 1024
_USER_AGENT: Final = f"twochat-voip/{version('twochat-voip')} aiohttp/{aiohttp.__version__}"


class _State(enum.Enum):
    UNOPENED = "unopened"
    OPENED = "opened"
    CLOSED = "closed"


class VoIPClient:
    """An async client for 2Chat's VoIP API; one per application, shared by every task.

    Use it as an async context manager, or call :meth:`aclose` when done::

        async with VoIPClient() as voip:  # key from TWOCHAT_API_KEY
            cdr = await voip.get_call("CDR8b3e7a1f-6c94-4d52-ae17-5f2b9d4c8e63")

    Args:
        api_key: The account's key; defaults to ``TWOCHAT_API_KEY``. It is sent only as
            the ``X-User-API-Key`` header to ``base_url``'s origin, and never shown.
        base_url: Defaults to ``TWOCHAT_BASE_URL``, then ``https://api.p.2chat.io``.
            Plain ``http`` is refused except to a loopback host.
        timeout: Seconds one attempt may take, connecting and reading included.
        max_retries: Retries after the first attempt, for 408, 429, 5xx gateway
            statuses, dropped connections and timeouts; 0 turns retrying off.
        max_retry_wait: The longest ``Retry-After`` the client waits out; a longer one
            raises at once.
        session: An ``aiohttp.ClientSession`` you own and close (a web app's shared
            one); without it the client makes one and closes it in :meth:`aclose`.
        max_response_size: Bytes an answer may have; a CDR is ~1.5 KB.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 3,
        max_retry_wait: float = 60.0,
        session: aiohttp.ClientSession | None = None,
        max_response_size: int = DEFAULT_MAX_RESPONSE_SIZE,
    ) -> None:
        key = api_key if api_key is not None else os.environ.get("TWOCHAT_API_KEY")
        if not key or not key.strip():
            raise MissingAPIKeyError(
                "no API key: pass VoIPClient(api_key=...) or set TWOCHAT_API_KEY"
            )
        if any(ch in key for ch in "\r\n\0"):
            raise ValueError("the API key contains a line break or NUL")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if max_response_size <= 0:
            raise ValueError("max_response_size must be positive")
        self._base_url = normalise_base_url(
            base_url or os.environ.get("TWOCHAT_BASE_URL") or DEFAULT_BASE_URL
        )
        self._headers: Final = {
            API_KEY_HEADER: key.strip(),
            "Accept": "application/json",
            "User-Agent": _USER_AGENT,
        }
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._retry = RetryPolicy(max_retries=max_retries, max_retry_wait=max_retry_wait)
        self._max_response_size = max_response_size
        self._session = session
        self._owns_session = session is None
        self._state = _State.UNOPENED

    @property
    def base_url(self) -> str:
        """The API's base URL this client talks to."""
        return self._base_url

    @property
    def retry_policy(self) -> RetryPolicy:
        """The retry policy in force."""
        return self._retry

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` has been called."""
        return self._state is _State.CLOSED

    def __repr__(self) -> str:
        return f"<VoIPClient base_url={self._base_url!r} state={self._state.value}>"

    async def __aenter__(self) -> Self:
        self._open_session()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client, and its session if it made one. Idempotent."""
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        if self._owns_session and self._session is not None:
            await self._session.close()

    def _open_session(self) -> aiohttp.ClientSession:
        if self._state is _State.CLOSED:
            raise ClientClosedError("this VoIPClient is closed; make a new one")
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=100),
                cookie_jar=aiohttp.DummyCookieJar(),
            )
            # aiohttp silently resends an idempotent request once when a kept-alive
            # connection drops; every request costs the account a credit, so the
            # retry policy must be the one place that resends, counted and logged.
            # (aiohttp's own test client switches it off the same way.)
            if hasattr(self._session, "_retry_connection"):  # pragma: no branch
                self._session._retry_connection = False
        self._state = _State.OPENED
        return self._session

    async def get_call(self, call_uuid: str, *, timeout: float | None = None) -> CallDetailRecord:
        """Fetch one call's detail record.

        Args:
            call_uuid: The record's id, e.g. ``"CDR8b3e7a1f-6c94-4d52-ae17-5f2b9d4c8e63"``.
            timeout: Seconds for each attempt of this call, instead of the client's.

        Raises:
            ValueError, TypeError: ``call_uuid`` is not a valid id (nothing is sent).
            TwoChatError: a subclass saying what went wrong, after any retries.
        """
        request = call_request(self._base_url, self._headers, validate_call_uuid(call_uuid))
        attempt_timeout = self._timeout if timeout is None else aiohttp.ClientTimeout(total=timeout)

        async def attempt() -> CallDetailRecord:
            return parse_call(await self._send(request, attempt_timeout), request.call_uuid)

        first_error: TwoChatError
        try:
            return await attempt()
        except TwoChatError as exc:
            if not is_retryable(exc):
                raise
            first_error = exc
        return await self._retry.retry_after_failure(
            attempt, first_error, describe=f"GET call {request.call_uuid}"
        )

    async def _send(self, request: Request, timeout: aiohttp.ClientTimeout) -> Response:
        session = self._open_session()
        try:
            return await send(session, request, timeout=timeout, max_body=self._max_response_size)
        except APIConnectionError as exc:
            if self._state is _State.CLOSED:
                raise ClientClosedError(
                    "the VoIPClient was closed while this request was in flight"
                ) from exc
            raise
