"""OpenTelemetry traces for a client: one ``CLIENT`` span per call, with the HTTP
semantic conventions' attributes and no header (``pip install 'twochat-voip[otel]'``)."""

from __future__ import annotations

import contextvars
from urllib.parse import urlsplit

from twochat_voip._version import __version__

try:
    from opentelemetry import context, trace
    from opentelemetry.trace import SpanKind, Status, StatusCode, TracerProvider
except ImportError as exc:  # pragma: no cover - the otel extra is in the test install
    raise ImportError(
        "twochat_voip.otel needs OpenTelemetry: pip install 'twochat-voip[otel]'"
    ) from exc

from twochat_voip.hooks import (
    CallEnded,
    CallStarted,
    ClientEvent,
    RateLimitWait,
    RequestFailed,
    RetryScheduled,
)

__all__ = ["OpenTelemetryHook"]


class OpenTelemetryHook:
    """A hook (``VoIPClient(hooks=[OpenTelemetryHook()])``) that traces each call.

    Args:
        tracer_provider: Where the spans go; the global provider by default.
    """

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        self._tracer = trace.get_tracer(
            "twochat_voip", __version__, tracer_provider=tracer_provider
        )
        # The call's span and the token that made it current: a call's events share its context.
        self._call: contextvars.ContextVar[tuple[trace.Span, object] | None] = (
            contextvars.ContextVar("twochat_voip_otel_call", default=None)
        )

    def __call__(self, event: ClientEvent) -> None:
        if isinstance(event, CallStarted):
            self._start(event)
            return
        current = self._call.get()
        if current is None:  # BudgetExhausted, or a call started before the hook was
            return
        span, token = current
        if isinstance(event, CallEnded):
            span.set_attribute("twochat.attempts", event.attempts)
            if event.attempts > 1:
                span.set_attribute("http.request.resend_count", event.attempts - 1)
            if event.status_code is not None:
                span.set_attribute("http.response.status_code", event.status_code)
            if event.error is not None:
                span.set_attribute("error.type", type(event.error).__qualname__)
                span.set_status(Status(StatusCode.ERROR, str(event.error)))
            span.end()
            self._call.set(None)
            context.detach(token)  # type: ignore[arg-type]
        elif isinstance(event, RetryScheduled):
            span.add_event(
                "retry",
                {
                    "twochat.attempt": event.attempt,
                    "twochat.wait_seconds": event.wait,
                    "error.type": type(event.error).__qualname__,
                },
            )
        elif isinstance(event, RequestFailed):
            span.add_event(
                "no answer",
                {"twochat.attempt": event.attempt, "error.type": type(event.error).__qualname__},
            )
        elif isinstance(event, RateLimitWait):
            span.add_event(
                "rate limit wait",
                {"twochat.attempt": event.attempt, "twochat.wait_seconds": event.seconds},
            )

    def _start(self, event: CallStarted) -> None:
        origin = urlsplit(event.base_url)
        attributes: dict[str, str | int] = {
            "http.request.method": event.method,
            "url.template": event.route,
            "url.full": event.base_url + event.path,
            "server.address": origin.hostname or "",
            "server.port": origin.port or (443 if origin.scheme == "https" else 80),
        }
        if event.call_uuid is not None:
            attributes["twochat.call_uuid"] = event.call_uuid
        span = self._tracer.start_span(
            f"{event.method} {event.route}", kind=SpanKind.CLIENT, attributes=attributes
        )
        token = context.attach(trace.set_span_in_context(span))
        self._call.set((span, token))
