"""OpenTelemetryHook: a span per call, nested as a web app's trace would be, against
the fake 2Chat server on 127.0.0.1 and OpenTelemetry's in-memory exporter."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import aclosing

import pytest
from opentelemetry.instrumentation.aiohttp_client import create_trace_config
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import twochat_voip as tv
from twochat_voip import VoIPClient, set_testing
from twochat_voip.otel import OpenTelemetryHook
from twochat_voip.testing import EXAMPLE_CDR, FakeTwoChatServer, Fault, generate_cdrs

pytestmark = pytest.mark.virtual_time  # timeouts, backoff and pacing in the loop's time

CALL = EXAMPLE_CDR["uuid"]
MakeClient = Callable[..., VoIPClient]


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    spans = InMemorySpanExporter()
    yield spans
    spans.shutdown()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    return tracer_provider


def by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


async def test_a_call_is_a_client_span_under_the_current_one(
    twochat_server: FakeTwoChatServer,
    make_client: MakeClient,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
) -> None:
    """A web request's span holds the call's span, which holds one aiohttp span per
    attempt; the call's span says its uuid, attempts, status and retry."""
    twochat_server.fail_next(Fault(status=503))
    client = make_client(
        hooks=[OpenTelemetryHook(provider)],
        trace_configs=[create_trace_config(tracer_provider=provider)],
    )
    tracer = provider.get_tracer("web app")
    with set_testing(True, attempts=4), tracer.start_as_current_span("GET /calls/{id}"):
        await client.get_call(CALL)
    spans = exporter.get_finished_spans()
    (web,) = by_name(spans, "GET /calls/{id}")
    (call,) = by_name(spans, "GET /open/voip/call/{call_uuid}")
    attempts = [span for span in spans if span.name not in (web.name, call.name)]
    assert call.parent is not None
    assert call.parent.span_id == web.context.span_id
    assert call.kind is SpanKind.CLIENT
    assert len(attempts) == 2
    assert all(
        span.parent is not None and span.parent.span_id == call.context.span_id for span in attempts
    )
    attributes = dict(call.attributes or {})
    assert attributes["twochat.call_uuid"] == CALL
    assert attributes["twochat.attempts"] == 2
    assert attributes["http.request.resend_count"] == 1
    assert attributes["http.response.status_code"] == 200
    assert attributes["url.template"] == "/open/voip/call/{call_uuid}"
    assert attributes["server.address"] == "127.0.0.1"
    assert call.status.status_code is StatusCode.UNSET
    # The retry, then its wait for a slot: an adaptive client starts at 4 a second.
    retry, wait = call.events
    assert retry.name == "retry"
    assert dict(retry.attributes or {})["error.type"] == "ServerError"
    assert wait.name == "rate limit wait"
    seconds = dict(wait.attributes or {})["twochat.wait_seconds"]
    assert isinstance(seconds, float)
    assert 0.1 < seconds <= 0.25


async def test_a_failed_call_is_an_error_span(
    twochat_server: FakeTwoChatServer,
    make_client: MakeClient,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
) -> None:
    """A 404 marks the span as an error, with its type; the key is nowhere in it."""
    twochat_server.fail_next(Fault(status=404))
    with pytest.raises(tv.NotFoundError):
        await make_client(hooks=[OpenTelemetryHook(provider)]).get_call(CALL)
    (call,) = exporter.get_finished_spans()
    assert call.status.status_code is StatusCode.ERROR
    attributes = dict(call.attributes or {})
    assert attributes["error.type"] == "NotFoundError"
    assert attributes["http.response.status_code"] == 404
    assert twochat_server.api_key
    assert twochat_server.api_key not in call.to_json()


async def test_a_bulk_run_makes_one_span_per_id(
    twochat_server: FakeTwoChatServer,
    make_client: MakeClient,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
) -> None:
    """Concurrent calls each get their own span, none left open or nested in another."""
    cdrs = generate_cdrs(30, seed=9)
    twochat_server.add_cdrs(cdrs)
    twochat_server.fail_randomly(0.2, [Fault(status=503), Fault(drop="before_status")], seed=4)
    client = make_client(hooks=[OpenTelemetryHook(provider)])
    tracer = provider.get_tracer("job")
    with set_testing(True, attempts=4), tracer.start_as_current_span("export"):
        async with aclosing(client.get_calls([c["uuid"] for c in cdrs], concurrency=6)) as run:
            assert len([r async for r in run]) == 30
    spans = exporter.get_finished_spans()
    (job,) = by_name(spans, "export")
    calls = by_name(spans, "GET /open/voip/call/{call_uuid}")
    assert sorted(str(dict(s.attributes or {})["twochat.call_uuid"]) for s in calls) == sorted(
        c["uuid"] for c in cdrs
    )
    assert all(s.parent is not None and s.parent.span_id == job.context.span_id for s in calls)
    retried = [s for s in calls if s.events]
    assert retried, "the faults should have made some calls retry"
    attempts = [dict(s.attributes or {})["twochat.attempts"] for s in calls]
    assert all(isinstance(n, int) for n in attempts)
    assert sum(n for n in attempts if isinstance(n, int)) == client.stats.requests
