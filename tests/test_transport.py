"""The transport's request URLs: built cheaply, and the same as yarl's own parse."""

from __future__ import annotations

import pytest
from yarl import URL

from twochat_voip._transport import _as_url


@pytest.mark.parametrize(
    "url",
    [
        "https://api.p.2chat.io/open/voip/call/CDR8b3e7a1f-6c94-4d52-ae17-5f2b9d4c8e63",
        "http://127.0.0.1:8080/open/info",
        "http://[::1]:8080/prefix/open/voip/call/CDR1",
        "https://example.com/2chat/open/voip/call-history?page_number=3&direction=inbound",
        "https://example.com/a%2Fb/open/voip/call/x#frag",
        "https://example.com",
        "https://example.com/",
    ],
)
def test_request_url_is_yarls_parse(url: str) -> None:
    """Built from a cached origin or parsed whole, the URL is exactly yarl's parse."""
    built = _as_url(url)
    parsed = URL(url, encoded=True)
    assert built == parsed
    assert str(built) == str(parsed) == url
    assert (built.host, built.port, built.raw_path, built.raw_query_string) == (
        parsed.host,
        parsed.port,
        parsed.raw_path,
        parsed.raw_query_string,
    )
