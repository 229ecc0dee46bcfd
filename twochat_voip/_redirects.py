"""Redirects: which to follow, and the one kind refused (to another origin, where
the API key header would go too)."""

from __future__ import annotations

from typing import Final

from yarl import URL

from twochat_voip._errors import RedirectError

__all__ = ["MAX_REDIRECTS", "REDIRECT_STATUSES", "redirect_target"]

REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS: Final = 5
"""Redirects one request may follow."""


def _origin(url: URL) -> tuple[str, str | None, int | None]:
    return (url.scheme, url.host, url.port)


def redirect_target(
    request_url: str, status: int, location: str | None, call_uuid: str | None = None
) -> str | None:
    """Where to follow a redirect, ``None`` if the answer is not one to follow.

    Raises :class:`RedirectError` for a redirect to another origin (scheme, host or
    port), where the API key header would go with it, and for a ``Location`` that is
    no URL.
    """
    if status not in REDIRECT_STATUSES or not location:
        return None
    current = URL(request_url)
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
    return str(target)
