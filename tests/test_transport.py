"""The transport's request URLs: built cheaply, and the same as yarl's own parse."""

from __future__ import annotations

import pytest
from yarl import URL

from twochat_voip._protocol import Requests, normalise_base_url
from twochat_voip._transport import _as_url


def _same_url(built: URL, url: str) -> None:
    parsed = URL(url, encoded=True)
    assert built == parsed
    assert str(built) == str(parsed) == url
    assert (built.host, built.port, built.raw_path, built.raw_query_string) == (
        parsed.host,
        parsed.port,
        parsed.raw_path,
        parsed.raw_query_string,
    )


@pytest.mark.parametrize(
    "base_url",
    [
        "https://api.p.2chat.io",
        "http://127.0.0.1:8080",
        "http://[::1]:8080/prefix",
        "https://example.com/2chat/v1",
        "https://example.com/a%2Fb",
    ],
)
def test_request_urls_split_at_their_origin_are_yarls_parse(base_url: str) -> None:
    """A call's or the info request's URL, built from a cached origin and its path,
    is exactly yarl's parse of the whole URL; a history page (a query) is parsed whole."""
    base_url = normalise_base_url(base_url)
    requests = Requests(base_url, {})
    for request in (requests.call("CDR8b3e7a1f-6c94-4d52-ae17-5f2b9d4c8e63"), requests.info()):
        assert request.url[: request.origin_end] == str(URL(base_url).origin())
        _same_url(_as_url(request.url, request.origin_end), request.url)
    page = requests.history(3, "inbound")
    assert page.origin_end == 0
    _same_url(_as_url(page.url, page.origin_end), page.url)


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/2chat/open/voip/call-history?page_number=3&direction=inbound",
        "https://example.com/a%2Fb/open/voip/call/x#frag",
        "https://example.com",
        "https://example.com/",
    ],
)
def test_urls_of_unknown_shape_are_parsed_whole(url: str) -> None:
    _same_url(_as_url(url, 0), url)
