"""MockTransport: a transport that answers from a function, as httpx's does."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

from multidict import CIMultiDict, CIMultiDictProxy

from twochat_voip._requests import Request, Response

__all__ = ["MockTransport"]


class MockTransport:
    """Answers each request with ``handler(request)``: a :class:`~twochat_voip.Response`
    (headers read case-insensitively), or an awaitable of one, for tests without a socket.

    An exception it raises is the transport's: raise
    :class:`~twochat_voip.APIConnectionError` for a dropped connection (``sent=False``:
    never connected, no credit spent). It caps no body size.

    Attributes:
        requests: Every request it was given, in order.
    """

    def __init__(self, handler: Callable[[Request], Response | Awaitable[Response]]) -> None:
        self._handler = handler
        self.requests: list[Request] = []

    async def send(self, request: Request, *, timeout: float) -> Response:
        """Hand ``request`` to the handler; its answer is the response."""
        self.requests.append(request)
        answer = self._handler(request)
        if inspect.isawaitable(answer):
            answer = await answer
        if not isinstance(answer, Response):
            raise TypeError(
                f"a MockTransport handler returns a Response, not {type(answer).__name__}"
            )
        headers = CIMultiDictProxy(CIMultiDict(answer.headers))
        return Response(answer.status, headers, answer.body)

    async def aclose(self) -> None:
        """Nothing to let go of."""
