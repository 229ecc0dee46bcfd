"""The only module that touches aiohttp's request API: send a Request, read a Response.

aiohttp's exceptions end here, translated into the SDK's tree. Redirects are followed
by hand and only within the request's origin, because aiohttp forwards custom headers
such as ``X-User-API-Key`` to whatever host a redirect names.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

import aiohttp
from aiohttp.http_exceptions import (
    ContentEncodingError,
    ContentLengthError,
    HttpProcessingError,
    TransferEncodingError,
)
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from twochat_voip._errors import (
    APIConnectionError,
    APITimeoutError,
    ClientClosedError,
    RedirectError,
    ResponseValidationError,
)
from twochat_voip._protocol import REDIRECT_STATUSES, Request, Response, redirect_target

__all__ = ["MAX_REDIRECTS", "attempt_timeout", "new_session", "request_headers", "send"]

MAX_REDIRECTS: Final = 5


def attempt_timeout(seconds: float) -> aiohttp.ClientTimeout:
    """An attempt's timeout: ``seconds`` in all, and a connection not made within 90%
    of them ends the attempt as "could not connect". Without the connect limit aiohttp
    ends a connect that stalls (a full backlog, a silent TLS handshake) with the same
    plain timeout as a slow answer: told as "no complete answer" and counted as a
    request written, a credit, though nothing was sent."""
    return aiohttp.ClientTimeout(total=seconds, sock_connect=seconds * 0.9)


def new_session(
    headers: Mapping[str, str], trace_configs: list[aiohttp.TraceConfig] | None
) -> aiohttp.ClientSession:
    """The session a client makes for itself: it sends ``headers`` on every request
    (so they are not merged into each one; see :func:`send`) and never resends."""
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=100),
        cookie_jar=aiohttp.DummyCookieJar(),
        headers=headers,
        trace_configs=trace_configs,
    )
    # aiohttp silently resends an idempotent request once when a kept-alive
    # connection drops; every request costs the account a credit, so the retry
    # policy must be the one place that resends, counted and logged. (aiohttp's own
    # test client switches it off the same way.)
    if hasattr(session, "_retry_connection"):  # pragma: no branch
        session._retry_connection = False
    return session


def request_headers(headers: Mapping[str, str]) -> Mapping[str, str]:
    """``headers`` made once into what aiohttp merges per request without a copy:
    a plain dict would be copied into a new ``CIMultiDict`` on every request."""
    return CIMultiDictProxy(CIMultiDict(headers))


@functools.lru_cache(maxsize=16)
def _origin(origin: str) -> URL:
    return URL(origin, encoded=True)


def _as_url(url: str, origin_end: int) -> URL:
    """``url`` as the yarl URL aiohttp takes, already percent-safe (not re-quoted).

    Parsing a whole URL costs ~20k instructions a request, most of them on the origin
    (``scheme://host:port``), which is the same for every request. When the request
    says where its origin ends (and that the rest is a plain path), the origin is
    parsed once and the path set on it; any other URL (a history page's query, a
    redirect's target) is parsed whole.
    """
    if origin_end <= 0:
        return URL(url, encoded=True)
    return _origin(url[:origin_end]).with_path(url[origin_end:], encoded=True)


def _too_large(
    limit: int, status: int, call_uuid: str | None, size: str
) -> ResponseValidationError:
    return ResponseValidationError(
        f"the answer is larger than the {limit}-byte cap ({size})",
        status_code=status,
        call_uuid=call_uuid,
    )


def _read_capped(
    response: aiohttp.ClientResponse, limit: int, call_uuid: str | None, declared: str | None
) -> Awaitable[bytes]:
    """The body, read no further than ``limit`` bytes (decompressed).

    For the answers send() does not read whole itself: one without a
    Content-Length, a compressed one (its Content-Length is not what it inflates to)
    or one declared larger than the cap. ``declared`` is its Content-Length header
    (digits: aiohttp's parser checked them).
    """
    if declared is not None and int(declared) > limit:
        raise _too_large(limit, response.status, call_uuid, f"Content-Length {declared}")
    return _read_chunks(response, limit, call_uuid)


async def _read_chunks(
    response: aiohttp.ClientResponse, limit: int, call_uuid: str | None
) -> bytes:
    body = bytearray()
    async for chunk in response.content.iter_any():
        body += chunk
        if len(body) > limit:
            raise _too_large(limit, response.status, call_uuid, "more than that arrived")
    return bytes(body)


async def send(
    session: aiohttp.ClientSession,
    request: Request,
    *,
    timeout: aiohttp.ClientTimeout,
    max_body: int,
    headers_in_session: bool = False,
    on_redirect: Callable[[], None],
    on_not_sent: Callable[[], None],
) -> Response:
    """Send ``request`` and read its answer, following same-origin redirects.

    Every HTTP request costs the account a credit. The caller counts the first;
    ``on_redirect`` is called before each request that follows a redirect, and may
    raise to stop it; ``on_not_sent`` when one never reached a connection (refused,
    DNS, TLS, a connect timeout), so that only requests written to a connection are
    counted. ``headers_in_session``: the session was made with the request's headers
    and sends them itself (passed again, aiohttp would merge them key by key).

    Raises :class:`APIConnectionError` (or :class:`APITimeoutError`) when no complete
    answer arrives, :class:`RedirectError` for a redirect that is not followed, and
    :class:`ResponseValidationError` for an answer over ``max_body`` bytes.
    """
    call_uuid = request.call_uuid
    url = request.url
    origin_end = request.origin_end
    headers = None if headers_in_session else request.headers
    data = request.body
    if data is not None:
        headers = {**(headers or {}), "Content-Type": "application/json"}
    for hop in range(MAX_REDIRECTS + 1):
        failure: APIConnectionError
        if hop:
            on_redirect()
        try:
            async with session.request(
                request.method,
                _as_url(url, origin_end),
                headers=headers,
                data=data,
                allow_redirects=False,
                raise_for_status=False,
                timeout=timeout,
            ) as answer:
                status = answer.status
                answer_headers = answer.headers
                declared = answer_headers.get("Content-Length")  # digits: aiohttp checked
                body = await (
                    # The common answer, read whole: the parser stops at Content-Length.
                    answer.read()
                    if declared is not None
                    and int(declared) <= max_body
                    and "Content-Encoding" not in answer_headers
                    else _read_capped(answer, max_body, call_uuid, declared)
                )
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            on_not_sent()
            if isinstance(exc, TimeoutError):
                raise APITimeoutError(
                    f"could not connect to {_where(url)} (timed out: "
                    f"{timeout.sock_connect or timeout.total:g} s to connect)",
                    call_uuid=call_uuid,
                ) from exc
            raise APIConnectionError(
                f"could not connect to {_where(url)} ({_connect_failure(exc)})",
                call_uuid=call_uuid,
            ) from exc
        except TimeoutError as exc:
            raise APITimeoutError(
                f"no complete answer from {_where(url)} (timed out: {timeout.total:g} s "
                "an attempt)",
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
            on_not_sent()
            raise ClientClosedError("the aiohttp session is closed") from None
        else:
            # Only a redirect status needs the protocol's judgement (and its Location).
            target = (
                _redirect(request, url, status, answer_headers.get("Location"))
                if status in REDIRECT_STATUSES
                else None
            )
            if target is None:
                return Response(status, answer_headers, body)
            url = target
            origin_end = 0
            continue
        raise failure
    raise RedirectError(
        f"more than {MAX_REDIRECTS} redirects", status_code=status, call_uuid=call_uuid
    )


def _redirect(request: Request, url: str, status: int, location: str | None) -> str | None:
    """Where a redirect answer sends ``request`` next (``None``: it is the answer)."""
    target = redirect_target(url, status, location, request.call_uuid)
    if target is not None and request.body is not None:
        # A body is not sent again elsewhere: the server may have acted on it.
        raise RedirectError(
            f"a {request.method} was redirected ({status}); not following",
            status_code=status,
            call_uuid=request.call_uuid,
        )
    return target


def _where(url: str) -> str:
    """``host:port`` of ``url``, as a message names it."""
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


def _describe(exc: aiohttp.ClientError, where: str) -> str:
    """What went wrong after the connection was made."""
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
