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

__all__ = ["MAX_REDIRECTS", "request_headers", "send"]

MAX_REDIRECTS: Final = 5


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
    response: aiohttp.ClientResponse, limit: int, call_uuid: str | None
) -> Awaitable[bytes]:
    """The body, read no further than ``limit`` bytes (decompressed).

    A plain function that hands back the read to await: the common answer (a
    Content-Length, no compression) then costs no coroutine layer of its own.
    """
    declared = response.content_length
    if declared is not None and declared > limit:
        raise _too_large(limit, response.status, call_uuid, f"Content-Length {declared}")
    if declared is not None and "Content-Encoding" not in response.headers:
        # The parser stops at Content-Length, so this read is bounded already.
        return response.read()
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
    on_request: Callable[[], None] | None = None,
    on_not_sent: Callable[[], None] | None = None,
) -> Response:
    """Send ``request`` and read its answer, following same-origin redirects.

    ``on_request`` is called before every HTTP request, redirects included (each
    costs the account a credit), and may raise to stop it; ``on_not_sent`` when one
    never reached a connection (refused, DNS, TLS, a connect timeout), so that only
    requests written to a connection are counted.

    Raises :class:`APIConnectionError` (or :class:`APITimeoutError`) when no complete
    answer arrives, :class:`RedirectError` for a redirect that is not followed, and
    :class:`ResponseValidationError` for an answer over ``max_body`` bytes.
    """
    call_uuid = request.call_uuid
    if session.closed:
        raise ClientClosedError("the aiohttp session is closed")
    url = request.url
    origin_end = request.origin_end
    for _ in range(MAX_REDIRECTS + 1):
        failure: APIConnectionError
        if on_request is not None:
            on_request()
        try:
            async with session.request(
                request.method,
                _as_url(url, origin_end),
                headers=request.headers,
                allow_redirects=False,
                raise_for_status=False,
                timeout=timeout,
            ) as answer:
                status = answer.status
                body = await _read_capped(answer, max_body, call_uuid)
                headers = answer.headers
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            if on_not_sent is not None:
                on_not_sent()
            if isinstance(exc, TimeoutError):
                raise APITimeoutError(
                    f"could not connect within {timeout.total} s", call_uuid=call_uuid
                ) from exc
            raise APIConnectionError(_describe(exc), call_uuid=call_uuid) from exc
        except TimeoutError as exc:
            raise APITimeoutError(
                f"no complete answer within {timeout.total} s", call_uuid=call_uuid
            ) from exc
        except aiohttp.ClientResponseError as exc:
            # Its request_info holds our request headers, the key among them: keep only
            # the words, and raise outside this block so that it is not even the
            # __context__ of what we raise.
            failure = APIConnectionError(
                f"{type(exc).__name__}: {exc.status} {exc.message}", call_uuid=call_uuid
            )
        except aiohttp.ClientError as exc:
            raise APIConnectionError(_describe(exc), call_uuid=call_uuid) from exc
        else:
            # Only a redirect status needs the protocol's judgement (and its Location).
            target = (
                redirect_target(url, status, headers.get("Location"), call_uuid)
                if status in REDIRECT_STATUSES
                else None
            )
            if target is None:
                return Response(status, headers, body)
            url = target
            origin_end = 0
            continue
        raise failure
    raise RedirectError(
        f"more than {MAX_REDIRECTS} redirects", status_code=status, call_uuid=call_uuid
    )


def _describe(exc: aiohttp.ClientError) -> str:
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        # Its str() is the half-parsed answer's repr: noise, not news.
        return "the server closed the connection before the answer was complete"
    detail = str(exc)
    name = type(exc).__name__
    return f"{name}: {detail}" if detail else name
