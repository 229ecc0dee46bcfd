"""What a client sends and gets, as plain values, and where the API key may go: an
https base URL (http to loopback), ids as plain path segments, same-origin redirects."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Final

import attrs
from yarl import URL

from twochat_voip._errors import InvalidCallUUIDError, RedirectError

API_KEY_HEADER: Final = "X-User-API-Key"
DEFAULT_BASE_URL: Final = "https://api.p.2chat.io"
REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS: Final = 5
_CALL_UUID: Final = re.compile(r"[A-Za-z0-9_-]{1,128}")


@attrs.define(eq=False)
class Request:
    """An HTTP request ready to send.

    Attributes:
        method: The HTTP method.
        url: The absolute, already percent-safe URL.
        headers: Headers to send; they hold the API key, so never log them.
        call_uuid: The record asked for, for error messages.
        body: A JSON body, encoded, or ``None``.
        route: The path's template (``/open/voip/call/{call_uuid}``), what hooks and
            metrics label a request with; ``None``: the path, without its query.
    """

    method: str
    url: str
    headers: Mapping[str, str] = attrs.field(repr=False)
    call_uuid: str | None = None
    body: bytes | None = attrs.field(default=None, repr=False)
    route: str | None = None

    @property
    def idempotent(self) -> bool:
        """Whether sending it twice does no more than once (GET, DELETE): only such a
        request is retried after a failure the server may have acted on."""
        return self.method in ("GET", "DELETE")


@attrs.define(eq=False)
class Response:
    """An HTTP answer as read off the wire.

    Attributes:
        status: The HTTP status.
        headers: The answer's headers (case-insensitive mapping).
        body: The body, decompressed, at most the size cap.
    """

    status: int
    headers: Mapping[str, str]
    body: bytes


def validate_call_uuid(call_uuid: object) -> str:
    """Return ``call_uuid`` if it is a safe path segment (``[A-Za-z0-9_-]{1,128}``:
    nothing that could change which URL is asked for), else raise before any I/O."""
    if not isinstance(call_uuid, str):
        raise InvalidCallUUIDError(f"call_uuid must be a str, not {type(call_uuid).__name__}")
    if _CALL_UUID.fullmatch(call_uuid) is None:
        shown = call_uuid if len(call_uuid) <= 60 else call_uuid[:57] + "..."
        raise InvalidCallUUIDError(
            f"invalid call_uuid {shown!r}: expected 1-128 letters, digits, '-' or '_', "
            "such as 'CDR8b3e7a1f-6c94-4d52-ae17-5f2b9d4c8e63'"
        )
    return call_uuid


@attrs.frozen
class Requests:
    """A client's requests: its base URL and the headers each carries (the key too)."""

    base_url: str
    headers: Mapping[str, str] = attrs.field(repr=False)

    def call(self, call_uuid: object) -> Request:
        """``GET /open/voip/call/{call_uuid}``; see :func:`validate_call_uuid`."""
        call_uuid = validate_call_uuid(call_uuid)
        url = f"{self.base_url}/open/voip/call/{call_uuid}"
        return Request("GET", url, self.headers, call_uuid, route="/open/voip/call/{call_uuid}")

    def info(self) -> Request:
        """``GET /open/info``: the account, its plan's limit and usage."""
        return Request("GET", f"{self.base_url}/open/info", self.headers)

    def history(self, page: int, direction: str | None) -> Request:
        """One page of ``GET /open/voip/call-history``."""
        if direction not in (None, "inbound", "outbound"):
            raise ValueError("direction must be 'inbound', 'outbound' or None (both)")
        query = f"page_number={int(page)}" + (f"&direction={direction}" if direction else "")
        return Request("GET", f"{self.base_url}/open/voip/call-history?{query}", self.headers)


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def normalise_base_url(base_url: str) -> str:
    """Check a base URL and return it without a trailing slash: ``https``, or ``http``
    to a loopback host only, so that the key never crosses a network in clear text."""
    url = URL(base_url)
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"base_url must be an absolute http(s) URL, got {base_url!r}")
    if url.user is not None or url.password is not None:
        raise ValueError("base_url must not carry credentials")
    if url.query_string or url.fragment:
        raise ValueError("base_url must not have a query or a fragment")
    if url.scheme == "http" and not _is_loopback(url.host):
        raise ValueError(
            f"refusing plain http to {url.host}: the API key would travel unencrypted; "
            "use https (http is allowed only to a loopback host)"
        )
    return str(url).rstrip("/")


def _origin(url: URL) -> tuple[str, str | None, int | None]:
    return (url.scheme, url.host, url.port)


def redirected(request: Request, response: Response) -> Request | None:
    """The request a redirect sends ``request`` on to, or ``None`` if the answer is
    not one to follow. :class:`RedirectError` for a ``Location`` that is no URL, one of
    another origin (the key would go with it), and a request with a body (the server
    may have acted on it: not sent twice)."""
    status, call_uuid = response.status, request.call_uuid
    location = response.headers.get("Location") if status in REDIRECT_STATUSES else None
    if not location:
        return None
    current = URL(request.url)
    try:
        target = current.join(URL(location))
        origin = _origin(target)
    except ValueError:  # yarl's words for an unreadable URL ("Invalid IPv6 URL", a port)
        raise RedirectError(
            f"a redirect to an unreadable Location ({location[:80]!r}); not following",
            status_code=status,
            call_uuid=call_uuid,
        ) from None
    if origin != _origin(current):
        port = "" if target.explicit_port is None else f":{target.explicit_port}"
        raise RedirectError(
            f"refused to follow a redirect to another origin "
            f"({target.scheme}://{target.host}{port}): the API key would go with it",
            status_code=status,
            call_uuid=call_uuid,
        )
    if request.body is not None:
        raise RedirectError(
            f"a {request.method} was redirected ({status}); not following",
            status_code=status,
            call_uuid=call_uuid,
        )
    return attrs.evolve(request, url=str(target))
