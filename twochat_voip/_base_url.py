"""The API's base URL: checked once (https, or http only to a loopback host), and
where its origin ends."""

from __future__ import annotations

import ipaddress
from typing import Final

from yarl import URL

__all__ = ["DEFAULT_BASE_URL", "normalise_base_url", "origin_end"]

DEFAULT_BASE_URL: Final = "https://api.p.2chat.io"
_LOOPBACK_NAMES: Final = frozenset({"localhost"})


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def normalise_base_url(base_url: str) -> str:
    """Check a base URL and return it without a trailing slash.

    Only ``https`` is accepted, or ``http`` to a loopback host (the fake server, a
    local proxy): the API key must not cross a network in clear text.
    """
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


def origin_end(base_url: str) -> int:
    """Where the origin of a normalised base URL ends (``scheme://host[:port]``)."""
    path = base_url.find("/", base_url.find("://") + 3)
    return len(base_url) if path < 0 else path
