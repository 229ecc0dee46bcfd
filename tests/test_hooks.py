"""Event hooks, the per-request DEBUG line, aggregated bulk retries, TWOCHAT_LOG and
trace_configs, against the fake 2Chat server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import re
import sys
import time
from collections.abc import Callable
from contextlib import aclosing
from typing import Any

import aiohttp
import pytest

import twochat_voip as tv
from twochat_voip import VoIPClient, set_testing
from twochat_voip._observe import configure_logging_from_env
from twochat_voip.hooks import (
    BudgetExhausted,
    CallEnded,
    CallStarted,
    ClientEvent,
    RateLimitWait,
    RequestFailed,
    RequestSent,
    ResponseReceived,
    RetryScheduled,
)
from twochat_voip.testing import EXAMPLE_CDR, FakeTwoChatServer, Fault, generate_cdrs

CALL = EXAMPLE_CDR["uuid"]
ROUTE = "/open/voip/call/{call_uuid}"
MakeClient = Callable[..., VoIPClient]


class Unpaced:
    """A rate limiter that lets every request go at once and learns nothing."""

    async def acquire(self) -> float:
        return time.monotonic()

    def feedback(self, *, sent_at: float, status: int, retry_after: float | None) -> None:
        pass

    async def aclose(self) -> None:
        pass


def steps(events: list[ClientEvent]) -> list[ClientEvent]:
    """The events but the waits for a slot: one lasting 1 ms or more is told, and a
    loaded machine can stall a process that long between any two lines."""
    return [event for event in events if not isinstance(event, RateLimitWait)]


def kinds(events: list[ClientEvent]) -> list[str]:
    return [type(event).__name__ for event in steps(events)]


async def test_a_retried_call_tells_every_step_in_order(
    twochat_server: FakeTwoChatServer, make_client: MakeClient
) -> None:
    """503 then 200: started, sent, answered, retry, sent, answered, ended."""
    events: list[ClientEvent] = []
    twochat_server.fail_next(Fault(status=503))
    with set_testing(True, attempts=4):
        await make_client(hooks=[events.append]).get_call(CALL)
    assert kinds(events) == [
        "CallStarted",
        "RequestSent",
        "ResponseReceived",
        "RetryScheduled",
        "RequestSent",
        "ResponseReceived",
        "CallEnded",
    ]
    started, sent, first, retry, _, second, ended = steps(events)
    assert started == CallStarted(
        base_url=twochat_server.base_url,
        method="GET",
        route=ROUTE,
        path=f"/open/voip/call/{CALL}",
        call_uuid=CALL,
    )
    assert isinstance(sent, RequestSent)
    assert sent.attempt == 1
    assert isinstance(first, ResponseReceived)
    assert (first.status_code, first.attempt, first.route) == (503, 1, ROUTE)
    assert first.elapsed > 0
    assert isinstance(retry, RetryScheduled)
    assert (retry.attempt, retry.wait) == (1, 0.0)
    assert retry.retries is not None
    assert retry.retries >= 1  # the call's retries in all: this one uses the first
    assert isinstance(retry.error, tv.ServerError)
    assert isinstance(second, ResponseReceived)
    assert (second.status_code, second.attempt) == (200, 2)
    assert isinstance(ended, CallEnded)
    assert (ended.attempts, ended.status_code, ended.error) == (2, 200, None)
    assert ended.elapsed >= first.elapsed + second.elapsed


async def test_a_failed_call_ends_with_its_error(
    twochat_server: FakeTwoChatServer, make_client: MakeClient
) -> None:
    """A 404 is answered, not retried, and the call ends with NotFoundError."""
    events: list[ClientEvent] = []
    twochat_server.fail_next(Fault(status=404))
    with pytest.raises(tv.NotFoundError) as caught:
        await make_client(hooks=[events.append]).get_call(CALL)
    assert kinds(events) == ["CallStarted", "RequestSent", "ResponseReceived", "CallEnded"]
    ended = events[-1]
    assert isinstance(ended, CallEnded)
    assert (ended.attempts, ended.status_code, ended.error) == (1, 404, caught.value)


@pytest.mark.socket  # aiohttp's timeouts, drops and decoding
async def test_a_dropped_connection_is_told_as_request_failed(
    twochat_server: FakeTwoChatServer, make_client: MakeClient
) -> None:
    """No answer: RequestFailed with the connection error, then the retry."""
    events: list[ClientEvent] = []
    twochat_server.fail_next(Fault(drop="before_status"))
    with set_testing(True, attempts=4):
        await make_client(hooks=[events.append]).get_call(CALL)
    failed = [e for e in events if isinstance(e, RequestFailed)]
    assert len(failed) == 1
    assert isinstance(failed[0].error, tv.APIConnectionError)
    assert failed[0].attempt == 1
    ended = events[-1]
    assert isinstance(ended, CallEnded)
    assert (ended.attempts, ended.status_code) == (2, 200)


async def test_a_paced_request_tells_its_wait(
    twochat_server: FakeTwoChatServer, make_client: MakeClient
) -> None:
    """At 300 a minute the second call waits ~0.2 s for its slot, and says so."""
    events: list[ClientEvent] = []
    client = make_client(hooks=[events.append], requests_per_minute=300)
    await client.get_call(CALL)
    await client.get_call(CALL)
    waits = [e for e in events if isinstance(e, RateLimitWait)]
    assert len(waits) == 1
    assert 0.1 < waits[0].seconds < 0.5
    assert (waits[0].call_uuid, waits[0].attempt) == (CALL, 1)


async def test_the_spent_budget_is_told_once(make_client: MakeClient) -> None:
    """max_requests=1: the second and third calls are refused, BudgetExhausted once."""
    events: list[ClientEvent] = []
    client = make_client(hooks=[events.append], max_requests=1)
    await client.get_call(CALL)
    for _ in range(2):
        with pytest.raises(tv.BudgetExhaustedError):
            await client.get_call(CALL)
    assert [e for e in events if isinstance(e, BudgetExhausted)] == [BudgetExhausted(budget=1)]
    refused = [e for e in events if isinstance(e, CallEnded)][1:]
    assert [(e.attempts, e.status_code) for e in refused] == [(0, None), (0, None)]
    assert all(isinstance(e.error, tv.BudgetExhaustedError) for e in refused)


@pytest.mark.slow
async def test_a_failing_hook_is_logged_and_the_call_goes_on(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A broken metric must not end a call, nor fill the log: its first failure is
    logged with the traceback, then only its 10th, 100th, ..."""
    told: list[ClientEvent] = []

    def broken(event: ClientEvent) -> None:
        raise RuntimeError("metrics backend down")

    client = make_client(hooks=[broken, told.append])
    for _ in range(12):  # 4 events a call: 48 failures
        record = await client.get_call(CALL)
        assert record.uuid == CALL
    # The next hook still heard everything (and the waits of the adaptive start).
    assert len([e for e in told if not isinstance(e, RateLimitWait)]) == 48
    assert len(told) < 100
    failures = [r for r in caplog.records if "the hook" in r.getMessage()]
    name = "test_a_failing_hook_is_logged_and_the_call_goes_on.<locals>.broken"
    assert [r.getMessage() for r in failures] == [
        f"the hook {name} failed on CallStarted",
        f"the hook {name} has failed 10 times",
    ]
    assert failures[0].exc_info is not None


async def test_an_async_hook_is_refused(make_client: MakeClient) -> None:
    """Nothing would await an async hook: refused when the client is made, whether a
    coroutine function or an object whose __call__ is one."""

    async def hook(event: ClientEvent) -> None: ...

    class Hook:
        async def __call__(self, event: ClientEvent) -> None: ...

    for given in (hook, Hook()):
        with pytest.raises(TypeError, match="must be a plain function"):
            make_client(hooks=[given])


async def test_a_hook_returning_an_awaitable_is_told_and_closed(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A lambda handing back a coroutine: the coroutine is closed (no "never awaited"
    warning, which the suite makes an error) and the mistake logged."""

    async def record(event: ClientEvent) -> None: ...

    await make_client(hooks=[lambda event: record(event)]).get_call(CALL)  # noqa: PLW0108
    (first, *_) = [r for r in caplog.records if "the hook" in r.getMessage()]
    assert first.exc_info is not None
    assert "must not be async" in str(first.exc_info[1])


async def test_two_hooks_hear_the_end_in_reverse(make_client: MakeClient) -> None:
    """CallEnded reaches the last hook first, as context managers exit: two tracing
    hooks restore the context each one set, innermost first."""
    heard: list[tuple[str, str]] = []
    client = make_client(
        hooks=[
            lambda event: heard.append(("first", type(event).__name__)),
            lambda event: heard.append(("second", type(event).__name__)),
        ]
    )
    await client.get_call(CALL)
    assert heard[:2] == [("first", "CallStarted"), ("second", "CallStarted")]
    assert heard[-2:] == [("second", "CallEnded"), ("first", "CallEnded")]


async def test_each_calls_events_share_its_context(
    twochat_server: FakeTwoChatServer, make_client: MakeClient
) -> None:
    """In a bulk run of concurrent calls, a context variable set when a call starts
    is the one seen at each of its later events (what OpenTelemetry relies on)."""
    current: contextvars.ContextVar[str | None] = contextvars.ContextVar("current", default=None)
    mismatches: list[tuple[str, str | None, str | None]] = []
    ended: list[str | None] = []

    def hook(event: ClientEvent) -> None:
        if isinstance(event, CallStarted):
            current.set(event.call_uuid)
        elif isinstance(event, BudgetExhausted):
            return
        elif current.get() != event.call_uuid:
            mismatches.append((type(event).__name__, current.get(), event.call_uuid))
        if isinstance(event, CallEnded):
            ended.append(event.call_uuid)

    ids = [cdr["uuid"] for cdr in generate_cdrs(40, seed=3)]
    twochat_server.add_cdrs(generate_cdrs(40, seed=3))
    twochat_server.fail_randomly(0.2, [Fault(status=503), Fault(delay=0.02)], seed=1)
    with set_testing(True, attempts=4):
        async with aclosing(make_client(hooks=[hook]).get_calls(ids, concurrency=8)) as results:
            answered = [r async for r in results]
    assert len(answered) == 40
    assert mismatches == []
    assert sorted(ended, key=str) == sorted(ids)


async def test_no_event_carries_the_key(
    twochat_server: FakeTwoChatServer, make_client: MakeClient
) -> None:
    """The key is in no event, nor in any error an event carries."""
    events: list[ClientEvent] = []
    twochat_server.fail_next(Fault(status=503), Fault(status=401))
    with set_testing(True, attempts=4), pytest.raises(tv.AuthenticationError):
        await make_client(hooks=[events.append]).get_call(CALL)
    assert len(steps(events)) == 7
    key = twochat_server.api_key
    assert key
    for event in events:
        assert key not in repr(event)
        assert key not in str(getattr(event, "error", ""))


async def test_debug_logs_one_line_per_request(
    twochat_server: FakeTwoChatServer, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    """At DEBUG each request is one line: method, path, status, milliseconds, attempt."""
    caplog.set_level(logging.DEBUG, logger="twochat_voip")
    twochat_server.fail_next(Fault(status=503))
    with set_testing(True, attempts=4):
        await make_client().get_call(CALL)
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    pattern = rf"GET /open/voip/call/{CALL} -> (\d+) in \d+\.\d ms \(attempt (\d)\)"
    matched = [re.fullmatch(pattern, line) for line in lines]
    assert [m.groups() if m else line for m, line in zip(matched, lines, strict=True)] == [
        ("503", "1"),
        ("200", "2"),
    ]
    assert twochat_server.api_key
    assert twochat_server.api_key not in caplog.text


async def test_nothing_is_logged_for_a_success_above_debug(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    """At INFO a successful call writes nothing."""
    caplog.set_level(logging.INFO, logger="twochat_voip")
    await make_client().get_call(CALL)
    assert caplog.records == []


async def test_a_bulk_runs_429s_are_logged_at_debug_other_retries_at_info(
    twochat_server: FakeTwoChatServer, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Many 429s and 503s in a bulk run: each 503's retry is an INFO line; the 429s
    the limiter waits out (a run finding its limit meets many) are DEBUG lines."""
    caplog.set_level(logging.DEBUG, logger="twochat_voip")
    cdrs = generate_cdrs(150, seed=5)
    twochat_server.add_cdrs(cdrs)
    twochat_server.fail_randomly(0.3, [Fault(status=429), Fault(status=503)], seed=2)
    with set_testing(True, attempts=4):
        client = make_client(rate_limiter=Unpaced())  # logging, not pacing, is tested
        async with aclosing(client.get_calls([c["uuid"] for c in cdrs])) as results:
            assert len([r async for r in results]) == 150
    await client.aclose()
    retries = [r for r in caplog.records if r.getMessage().startswith("retrying GET ")]
    info = [r.getMessage() for r in retries if r.levelno == logging.INFO]
    debug = [r.getMessage() for r in retries if r.levelno == logging.DEBUG]
    assert info
    assert all(": 503: " in line for line in info)
    assert debug
    assert all(": 429: " in line and "when the rate limiter allows" in line for line in debug)
    assert len(info) + len(debug) == client.stats.retries


async def run_python(code: str, **env: str) -> str:
    """Run ``code`` in a fresh interpreter with ``env`` added: its standard error."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        env={**os.environ, **env},
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await process.communicate()
    assert process.returncode == 0, err
    return err.decode()


@pytest.mark.slow
async def test_twochat_log_debug_logs_to_stderr() -> None:
    """TWOCHAT_LOG=debug switches the SDK's DEBUG lines on, to standard error; an
    unknown level is said and ignored."""
    code = "import logging, twochat_voip; logging.getLogger('twochat_voip').debug('hello')"
    assert re.search(r"twochat_voip DEBUG hello$", (await run_python(code, TWOCHAT_LOG="debug")))
    assert (await run_python(code)) == ""
    loud = await run_python(code, TWOCHAT_LOG="loud")
    assert "TWOCHAT_LOG='loud' is not one of debug, info, warning" in loud
    assert "hello" not in loud


async def test_trace_configs_reach_the_session(make_client: MakeClient) -> None:
    """An aiohttp TraceConfig given to the client sees each request it makes."""
    seen: list[str] = []

    async def on_start(_: Any, __: Any, params: aiohttp.TraceRequestStartParams) -> None:
        seen.append(params.url.path)

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    client = make_client(trace_configs=[trace])
    await client.get_call(CALL)
    assert seen == [f"/open/voip/call/{CALL}"]


async def test_trace_configs_with_your_own_session_are_refused() -> None:
    """They would be silently ignored: your session is made without them."""
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ValueError, match="give them to your own session"):
            VoIPClient(api_key="k" * 20, session=session, trace_configs=[aiohttp.TraceConfig()])


@pytest.mark.parametrize("hooks", [[print, 3], "print"])
def test_hooks_must_be_callables(hooks: Any) -> None:
    """A hook that cannot be called is refused at construction, not at the first call."""
    with pytest.raises(TypeError, match="hooks must be a sequence of callables"):
        VoIPClient(api_key="k" * 20, hooks=hooks)


def test_twochat_log_in_process_adds_one_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    """Configured twice (a re-import), the SDK's logger still has one handler."""
    logger = logging.getLogger("twochat_voip")
    level, handlers = logger.level, list(logger.handlers)
    monkeypatch.setenv("TWOCHAT_LOG", " INFO ")
    try:
        configure_logging_from_env()
        configure_logging_from_env()
        assert logger.level == logging.INFO
        assert len(logger.handlers) == len(handlers) + 1
        assert logger.propagate is False  # not twice, through the app's handlers too
    finally:
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = True


async def test_an_answer_refused_by_the_client_is_told_with_its_status(
    twochat_server: FakeTwoChatServer, make_client: MakeClient
) -> None:
    """An answer over max_response_size was answered (a 200), then refused: the
    attempt is a ResponseReceived, and the call ends with its status and the error."""
    events: list[ClientEvent] = []
    with pytest.raises(tv.ResponseValidationError):
        await make_client(hooks=[events.append], max_response_size=100).get_call(CALL)
    received = [e for e in events if isinstance(e, ResponseReceived)]
    assert [e.status_code for e in received] == [200]
    ended = events[-1]
    assert isinstance(ended, CallEnded)
    assert ended.status_code == 200
    assert isinstance(ended.error, tv.ResponseValidationError)


async def test_a_call_cut_off_by_aclose_is_told_as_cancelled(
    twochat_server: FakeTwoChatServer, make_client: MakeClient
) -> None:
    """The client closed while the request was out: the caller gets
    ClientClosedError, and CallEnded says the call was cancelled (no RequestFailed:
    the server did nothing wrong)."""
    events: list[ClientEvent] = []
    sent = asyncio.Event()

    def hook(event: ClientEvent) -> None:
        events.append(event)
        if isinstance(event, RequestSent):
            sent.set()

    twochat_server.fail_next(Fault(delay=5))
    client = make_client(hooks=[hook])
    call = asyncio.create_task(client.get_call(CALL))
    await sent.wait()
    await twochat_server.wait_for_requests(1)  # the server holds its answer
    await client.aclose()
    with pytest.raises(tv.ClientClosedError):
        await call
    assert not [e for e in events if isinstance(e, RequestFailed)]
    ended = events[-1]
    assert isinstance(ended, CallEnded)
    assert isinstance(ended.error, asyncio.CancelledError)


async def test_a_stopped_bulk_run_ends_its_calls_as_cancelled(
    twochat_server: FakeTwoChatServer, make_client: MakeClient
) -> None:
    """A 401 stops the run: the call answered 401 ends with it, the calls it cuts
    short end cancelled, and every id is answered with the AuthenticationError."""
    ended: list[CallEnded] = []
    cdrs = generate_cdrs(40, seed=8)
    twochat_server.add_cdrs(cdrs)
    twochat_server.fail_randomly(1.0, [Fault(status=401, delay=0.05)], seed=1)

    def hook(event: ClientEvent) -> None:
        if isinstance(event, CallEnded):
            ended.append(event)

    client = make_client(hooks=[hook], requests_per_minute=6000)
    async with aclosing(client.get_calls([c["uuid"] for c in cdrs], concurrency=8)) as run:
        answers = [r async for r in run]
    assert all(isinstance(r.error, tv.AuthenticationError) for r in answers)
    kinds = {type(e.error) for e in ended}
    assert tv.AuthenticationError in kinds
    assert kinds <= {tv.AuthenticationError, asyncio.CancelledError}


@pytest.mark.slow
async def test_a_retry_after_is_told_with_the_retry(
    twochat_server: FakeTwoChatServer, make_client: MakeClient
) -> None:
    """A 429 with Retry-After: the retry says the server's wait; its backoff is 0."""
    events: list[ClientEvent] = []
    twochat_server.fail_next(Fault(status=429, retry_after=1))
    await make_client(hooks=[events.append]).get_call(CALL)  # waits the 1 s out
    (retry,) = [e for e in events if isinstance(e, RetryScheduled)]
    assert (retry.wait, retry.retry_after) == (0.0, 1.0)


def test_hooks_from_a_generator_are_kept() -> None:
    """A generator of hooks is read once, and kept (not used up by the checks)."""
    client = VoIPClient(api_key="k" * 20, hooks=(hook for hook in [print]))
    assert client._options.hooks == (print,)


def test_a_single_hook_not_in_a_list_is_refused_saying_how() -> None:
    with pytest.raises(TypeError, match=r"hooks=\[hook\], not hooks=hook"):
        VoIPClient(api_key="k" * 20, hooks=print)  # type: ignore[arg-type]
