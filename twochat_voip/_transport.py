"""The transport seam: one request in, one answer out. :class:`AiohttpTransport` is
the default, and aiohttp's exceptions end there, translated into the SDK's."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

import aiohttp
from aiohttp.http_exceptions import (
    ContentEncodingError,
    ContentLengthError,
    HttpProcessingError,
    TransferEncodingError,
)
from yarl import URL

from twochat_voip._errors import (
    APIConnectionError,
    APITimeoutError,
    ClientClosedError,
    ResponseValidationError,
)
from twochat_voip._requests import Request, Response


@runtime_checkable
class Transport(Protocol):
    """What a client needs to move its requests: a transport sends one request and
    reads its whole answer. It follows no redirect and retries nothing."""

    async def send(self, request: Request, *, timeout: float) -> Response:
        """Send ``request`` and read its answer within ``timeout`` seconds.

        Raises:
            APIConnectionError: no complete answer (``APITimeoutError`` when out of
                time); ``sent=False`` when no connection was made (no credit spent).
        """
        ...

    async def aclose(self) -> None:
        """Let go of connections; the client calls it when it closes."""
        ...


class AiohttpTransport:
    """The default transport: an ``aiohttp.ClientSession``, made when first needed
    (or yours, which you close), never resending on its own.

    Args:
        session: A session you own and close; without it one is made (with
            ``trace_configs``) and closed in :meth:`aclose`.
        trace_configs: ``aiohttp.TraceConfig`` objects for the session made here.
        max_response_size: Bytes an answer may have.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession | None = None,
        *,
        trace_configs: list[aiohttp.TraceConfig] | None = None,
        max_response_size: int = 1024 * 1024,
    ) -> None:
        if session is not None and trace_configs is not None:
            raise ValueError(
                "trace_configs are for the session the client makes; "
                "give them to your own session instead"
            )
        self._session = session
        self._owns_session = session is None
        self._trace_configs = trace_configs
        self._max_body = max_response_size

    @property
    def session(self) -> aiohttp.ClientSession | None:
        """The session in use (``None`` until the first request, if it is made here)."""
        return self._session

    async def aclose(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()

    def _new_session(self) -> aiohttp.ClientSession:
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=100),
            cookie_jar=aiohttp.DummyCookieJar(),
            trace_configs=self._trace_configs,
        )
        # aiohttp silently resends an idempotent request once when a kept-alive
        # connection drops; every request costs a credit, so the retry policy must be
        # the one place that resends, counted and logged. (aiohttp's own test client
        # switches it off the same way.)
        if hasattr(session, "_retry_connection"):  # pragma: no branch
            session._retry_connection = False
        return session

    async def send(self, request: Request, *, timeout: float) -> Response:
        if self._session is None:
            self._session = self._new_session()
        session, url, call_uuid = self._session, request.url, request.call_uuid
        headers: Mapping[str, str] = request.headers
        if request.body is not None:
            headers = {**headers, "Content-Type": "application/json"}
        # A connection not made within 90% of the time ends the attempt as "could not
        # connect" (no credit spent), not as a slow answer.
        limits = aiohttp.ClientTimeout(total=timeout, sock_connect=timeout * 0.9)
        try:
            async with session.request(
                request.method,
                URL(url, encoded=True),  # percent-safe already: not quoted again
                headers=headers,
                data=request.body,
                allow_redirects=False,
                raise_for_status=False,
                timeout=limits,
            ) as answer:
                limit = self._max_body
                declared = answer.headers.get("Content-Length")  # digits: aiohttp checked
                if declared is not None and int(declared) > limit:
                    too_large = f"Content-Length {declared}"
                    raise _too_large(limit, answer.status, call_uuid, too_large)
                body = bytearray()
                while chunk := await answer.content.readany():  # decompressed
                    body += chunk
                    if len(body) > limit:
                        too_large = "more than that arrived"
                        raise _too_large(limit, answer.status, call_uuid, too_large)
                return Response(answer.status, answer.headers, bytes(body))
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            if isinstance(exc, TimeoutError):
                raise APITimeoutError(
                    f"could not connect to {_where(url)} (timed out: "
                    f"{limits.sock_connect:g} s to connect)",
                    call_uuid=call_uuid,
                    sent=False,
                ) from exc
            raise APIConnectionError(
                f"could not connect to {_where(url)} ({_connect_failure(exc)})",
                call_uuid=call_uuid,
                sent=False,
            ) from exc
        except TimeoutError as exc:
            raise APITimeoutError(
                f"no complete answer from {_where(url)} (timed out: {timeout:g} s an attempt)",
                call_uuid=call_uuid,
            ) from exc
        except aiohttp.ClientResponseError as exc:
            # Its request_info holds our request headers, the key among them: keep only
            # the words, and raise outside this block so that it is not even the
            # __context__ of what we raise.
            failure = APIConnectionError(
                f"the answer from {_where(url)} is not valid HTTP ({_first_line(exc)})",
                call_uuid=call_uuid,
            )
        except aiohttp.ClientError as exc:
            raise APIConnectionError(_describe(exc, _where(url)), call_uuid=call_uuid) from exc
        except RuntimeError:
            # aiohttp's "Session is closed", raised before anything is sent.
            if not session.closed:
                raise
            raise ClientClosedError("the aiohttp session is closed") from None
        raise failure


def _too_large(
    limit: int, status: int, call_uuid: str | None, size: str
) -> ResponseValidationError:
    return ResponseValidationError(
        f"the answer is larger than the {limit}-byte cap ({size})",
        status_code=status,
        call_uuid=call_uuid,
    )


def _where(url: str) -> str:  # host:port, as a message names it
    parsed = URL(url, encoded=True)
    host = parsed.raw_host or "?"
    return f"[{host}]:{parsed.port}" if ":" in host else f"{host}:{parsed.port}"


def _connect_failure(exc: aiohttp.ClientConnectorError) -> str:
    """Why a connection could not be made, in a few plain words."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cause = exc.certificate_error
        reason = getattr(cause, "verify_message", None) or getattr(cause, "reason", None)
        return f"TLS certificate not accepted: {reason or cause}"
    error = exc.os_error
    if isinstance(exc, aiohttp.ClientSSLError):
        reason = getattr(error, "reason", None)
        return f"TLS handshake failed: {str(reason).lower().replace('_', ' ') if reason else error}"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"the host name could not be resolved: {_os_words(error)}"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    return _os_words(error)


def _os_words(error: OSError) -> str:
    """An OS error's own words (``Network is unreachable``), without its number."""
    words = error.strerror or str(error) or type(error).__name__
    return words[:1].lower() + words[1:]


def _describe(exc: aiohttp.ClientError, where: str) -> str:  # after the connection was made
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        # Its str() is the half-parsed answer's repr: noise, not news.
        return f"connection dropped: {where} closed it before the answer was complete"
    if isinstance(exc, aiohttp.ClientPayloadError):
        cause = exc.__cause__
        if isinstance(cause, ContentEncodingError):
            return f"the answer from {where} could not be decompressed ({_first_line(cause)})"
        if isinstance(cause, ContentLengthError | TransferEncodingError):
            return f"connection dropped: the answer from {where} was cut off"
        return f"the answer from {where} could not be read"
    if isinstance(exc, OSError):
        return f"connection dropped while talking to {where} ({_os_words(exc)})"
    detail = exc.args[0] if exc.args and isinstance(exc.args[0], str) else ""
    return f"the request to {where} failed" + (f": {detail}" if detail else "")


def _first_line(error: HttpProcessingError | aiohttp.ClientResponseError) -> str:
    """The first line of an HTTP parser's message, in lower case (``bad status line``)."""
    lines = str(error.message).strip().splitlines() or ["no reason given"]
    return lines[0].rstrip(":").lower()
