"""FakeTwoChatServer: 2Chat's VoIP API on 127.0.0.1, on aiohttp.web, with faults you script."""

from __future__ import annotations

import asyncio
import collections
import json
import random
from collections.abc import Iterable, Mapping
from typing import Any, Self
from urllib.parse import parse_qs

import attrs
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from twochat_voip._clock import loop_time
from twochat_voip._gcra import Gcra
from twochat_voip._requests import Request, Response
from twochat_voip.testing._account import FakeAccount, account_info
from twochat_voip.testing._data import EXAMPLE_CDR, history_page
from twochat_voip.testing._faults import Fault, ReceivedRequest, error, write_answer
from twochat_voip.testing._mock_transport import MockTransport
from twochat_voip.testing._progress import CallsInProgress

__all__ = ["DEFAULT_TEST_KEY", "FakeTwoChatServer", "Fault", "ReceivedRequest"]

DEFAULT_TEST_KEY = "test-key-not-a-secret"

_GOING_ON = ("RINGING", "ANSWERED")  # statuses of a call not over yet


class FakeTwoChatServer:
    """A fake of 2Chat's VoIP API on 127.0.0.1, for your tests and ours::

        async with FakeTwoChatServer(cdrs=generate_cdrs(100)) as server:
            server.fail_next(Fault(status=503), Fault(drop="mid_body"))
            async with VoIPClient(api_key=server.api_key, base_url=server.base_url) as voip:
                ...

    It serves the calls, history, info, webhooks, numbers and caller ids (see
    :attr:`account`) as 2Chat does; checks the key; can answer 429 past a limit.

    Args:
        cdrs: Records to serve, as wire JSON; default: the documented example only.
        api_key: The key it accepts; ``None`` accepts any key (but still wants one).
        requests_per_minute: Enforce this limit, like 2Chat, answering 429.
        rate_burst: Requests the limit (a leaky bucket) lets through back to back.
        rate_limit_retry_after: Send ``Retry-After`` with 429s (2Chat does not).
        history_page_size: Records per page of the call history.
        plan_requests_per_minute: The limit ``GET /open/info`` reports; default
            ``requests_per_minute`` (neither: no ``limits``).
        log_requests: Keep every request in :attr:`requests`; ``False`` keeps only counts.
        in_progress: Calls answered as still going on when first asked, final later.
    """

    def __init__(
        self,
        cdrs: Iterable[Mapping[str, Any]] | None = None,
        *,
        api_key: str | None = DEFAULT_TEST_KEY,
        requests_per_minute: float | None = None,
        rate_burst: int = 5,
        rate_limit_retry_after: bool = False,
        history_page_size: int = 50,
        plan_requests_per_minute: float | None = None,
        log_requests: bool = True,
        port: int = 0,
        in_progress: CallsInProgress | None = None,
    ) -> None:
        self.api_key = api_key
        self.requests: list[ReceivedRequest] = []
        self.request_count = 0
        """Requests received (each would have cost a credit), logged or not."""
        self._log_requests = log_requests
        self._status_counts: collections.Counter[int | None] = collections.Counter()
        self.requests_per_minute = requests_per_minute
        self.rate_burst = rate_burst
        self.rate_limit_retry_after = rate_limit_retry_after
        self.history_page_size = history_page_size
        self.plan_requests_per_minute = plan_requests_per_minute
        self.in_progress = in_progress
        self.account = FakeAccount()
        """Its webhooks, virtual numbers and caller ids (add, remove, inspect)."""
        self._wire: dict[str, Mapping[str, Any]] = {}
        self.add_cdrs([EXAMPLE_CDR] if cdrs is None else cdrs)
        self._faults: collections.deque[tuple[str | None, Fault]] = collections.deque()
        self._random_faults: tuple[float, list[Fault], random.Random] | None = None
        self._limit = Gcra(interval=0.0)
        self._port = port
        self._runner: web.AppRunner | None = None
        self._closed: asyncio.Future[None]  # done when it stops; made by start()
        self._arrived = asyncio.Event()
        self._in_flight = 0
        self.max_in_flight = 0
        """The most requests the server was answering at once."""

    async def start(self) -> Self:
        """Start listening; :attr:`base_url` is known from here on."""
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._handle)
        # The fake's own waits end when it closes; the timeout cuts a body that never arrives.
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", self._port).start()
        except BaseException:
            await runner.cleanup()  # e.g. the port is taken
            raise
        self._port = int(runner.addresses[0][1])
        self._closed = asyncio.get_running_loop().create_future()
        self._runner = runner
        return self

    async def aclose(self) -> None:
        """Stop listening, cut every connection and end every pending answer."""
        if self._runner is None:
            return
        self._closed.set_result(None)  # every wait in an answer ends, and cuts its connection
        runner, self._runner = self._runner, None
        await runner.cleanup()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``: give it to ``VoIPClient(base_url=...)``."""
        if self._runner is None:
            raise RuntimeError("the server is not started")
        return f"http://127.0.0.1:{self._port}"

    def add_cdrs(self, cdrs: Iterable[Mapping[str, Any]]) -> None:
        """Serve these records (wire JSON) from now on."""
        self._wire.update((cdr["uuid"], cdr) for cdr in cdrs)

    @property
    def call_uuids(self) -> list[str]:
        """The ids of the records served, in the order they were added."""
        return list(self._wire)

    def fail_next(self, *faults: Fault, call_uuid: str | None = None) -> None:
        """Spend these faults, in order, on the next requests (for ``call_uuid`` only, if given)."""
        self._faults.extend((call_uuid, fault) for fault in faults)

    def fail_randomly(self, rate: float, faults: Iterable[Fault], *, seed: int = 0) -> None:
        """Answer a share ``rate`` of requests with one of ``faults``, repeatably from
        ``seed``; ``rate=0`` stops it."""
        choices = list(faults)
        rng = random.Random(seed)  # noqa: S311  # nosec B311
        self._random_faults = (rate, choices, rng) if rate > 0 and choices else None

    async def wait_for_requests(self, count: int, *, timeout: float = 10.0) -> None:
        """Wait until at least ``count`` requests have arrived (no polling needed)."""
        async with asyncio.timeout(timeout):
            while self.request_count < count:
                self._arrived.clear()
                await self._arrived.wait()

    def requests_for(self, call_uuid: str) -> list[ReceivedRequest]:
        """The requests that asked for ``call_uuid``."""
        return [r for r in self.requests if r.call_uuid == call_uuid]

    async def complete_call(
        self, call_uuid: str, status: str = "COMPLETED", *, channel_uuid: str | None = None
    ) -> list[int | None]:
        """A served call reaches ``status``: POST its events to the webhooks on
        ``channel_uuid`` (default: the first number) as 2Chat would; the receivers' statuses."""
        cdr = {**self._wire[call_uuid], "status": status, "active": status in _GOING_ON}
        self.add_cdrs([cdr])
        return await self.account.deliver_call(cdr, channel_uuid=channel_uuid)

    @property
    def status_counts(self) -> collections.Counter[int | None]:
        """How many answers of each status were given (``None``: cut or hung)."""
        return self._status_counts.copy()

    def transport(self) -> MockTransport:
        """A transport answering as this server does, in memory (no socket, no HTTP):
        ``VoIPClient(base_url=server.base_url, transport=server.transport())``. A fault
        only a socket shows (``drop``, ``hang``, ``trickle``) raises ``ValueError``."""
        return MockTransport(self._answer_in_memory)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self._in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            body = await request.read()
            answer, fault = await self._receive(
                request.method, request.rel_url, request.headers, body, socket=True
            )
            return await write_answer(request, answer, fault, self._closed)
        finally:
            self._in_flight -= 1

    async def _answer_in_memory(self, request: Request) -> Response:
        self._in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            url = URL(request.url, encoded=True)
            body = request.body or b""
            return (await self._receive(request.method, url, request.headers, body))[0]
        finally:
            self._in_flight -= 1

    async def _receive(
        self, method: str, url: URL, headers: Mapping[str, str], body: bytes, socket: bool = False
    ) -> tuple[Response, Fault]:
        """Decide the answer to a request, log it, and wait as its fault says."""
        received = ReceivedRequest(
            method=method,
            path=url.raw_path,
            query={k: v[0] for k, v in parse_qs(url.raw_query_string).items()},
            headers={name.lower(): value for name, value in headers.items()},
            received_at=loop_time(),
            status=None,
        )
        (status, payload), fault = self._answer(received, body)
        answered = None if fault.hang or fault.drop else status
        self.request_count += 1
        self._status_counts[answered] += 1
        if self._log_requests:
            self.requests.append(attrs.evolve(received, status=answered))
        self._arrived.set()
        if not socket and (fault.drop or fault.hang or fault.trickle is not None):
            raise ValueError(f"{fault!r} needs a socket: make the client without transport=")
        if fault.hang or fault.delay:
            await asyncio.wait([self._closed], timeout=None if fault.hang else fault.delay)
        answer_headers = CIMultiDict([("Content-Type", fault.content_type or "application/json")])
        if fault.retry_after is not None:
            answer_headers["Retry-After"] = str(fault.retry_after)
        answer_headers.extend(fault.headers)
        data = payload if fault.body is None else fault.body
        if not isinstance(data, bytes):
            data = data.encode() if isinstance(data, str) else json.dumps(data).encode()
        return Response(status, answer_headers, data), fault

    def _next_fault(self, call_uuid: str | None) -> Fault:
        for index, (wanted, fault) in enumerate(self._faults):
            if wanted is None or wanted == call_uuid:
                del self._faults[index]
                return fault
        if self._random_faults is not None:
            rate, choices, rng = self._random_faults
            if rng.random() < rate:
                return rng.choice(choices)
        return Fault()

    def _answer(self, request: ReceivedRequest, body: bytes) -> tuple[tuple[int, Any], Fault]:
        key = request.headers.get("x-user-api-key")
        if not key:
            return (403, {"detail": "Not authenticated"}), Fault()
        if self.api_key is not None and key != self.api_key:
            return (401, {"detail": "Invalid API Key"}), Fault()
        if self.requests_per_minute is not None:
            # Read each time: a test may change the limit while the server runs.
            self._limit.interval = 60.0 / self.requests_per_minute
            self._limit.burst = self.rate_burst
            if wait := self._limit.police(request.received_at):
                after = max(1, round(wait)) if self.rate_limit_retry_after else None
                return error(429, "Too many requests, please retry later"), Fault(retry_after=after)
        fault = self._next_fault(request.call_uuid)
        if fault.status is not None:
            return error(fault.status), fault
        return self._served(request, body), fault

    def _served(self, request: ReceivedRequest, body: bytes) -> tuple[int, Any]:
        method, path, query = request.method, request.path, request.query
        resource = self.account.answer(method, path, query, body)
        if resource is not None:
            return resource
        if method != "GET":
            return error(405, "Method not allowed")
        if request.call_uuid is not None:
            cdr = self._wire.get(request.call_uuid)
            if cdr and self.in_progress is not None:
                cdr = self.in_progress.answer(cdr, request.received_at)
            return (200, {"success": True, "cdr": cdr}) if cdr else error(404, "Call not found")
        if path == "/open/info":
            plan = self.plan_requests_per_minute or self.requests_per_minute
            return 200, account_info(self.request_count, plan)
        if path == "/open/voip/call-history":
            return history_page(list(self._wire.values()), query, self.history_page_size)
        return 404, {"detail": "Not Found"}
