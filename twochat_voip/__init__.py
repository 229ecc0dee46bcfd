"""twochat_voip: an asyncio SDK for 2Chat's VoIP API, typed, retried and safe with your key."""

from __future__ import annotations

from twochat_voip._client import ClientStats, VoIPClient
from twochat_voip._converter import converter, make_converter
from twochat_voip._errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    BudgetExhaustedError,
    ClientClosedError,
    EventLoopMismatchError,
    InvalidAPIKeyError,
    InvalidCallEventError,
    InvalidCallUUIDError,
    MissingAPIKeyError,
    NotFoundError,
    PaymentRequiredError,
    PermissionDeniedError,
    RateLimitError,
    RateLimiterStoreError,
    RateLimiterUnavailableError,
    RecordRefusedError,
    RedirectError,
    ResponseValidationError,
    ServerError,
    SinkError,
    TwoChatError,
    UnprocessableEntityError,
)
from twochat_voip._models import Agent, CallCost, CallDetailRecord, CallDirection, CallStatus
from twochat_voip._observe import configure_logging_from_env
from twochat_voip._ratelimit import AdaptiveRateLimiter, RateLimiter
from twochat_voip._requests import Request, Response
from twochat_voip._resources import (
    Account,
    AccountInfo,
    CallerId,
    Limits,
    Usage,
    VirtualNumber,
    Webhook,
    WebhookEvent,
)
from twochat_voip._results import AnyCallResult, CallFailure, CallResult, CallSuccess
from twochat_voip._retry import RetryPolicy, set_testing
from twochat_voip._transport import AiohttpTransport, Transport
from twochat_voip._version import __version__
from twochat_voip.export._failures import FailureStore
from twochat_voip.export._run import ExportSummary, export_calls, open_sink
from twochat_voip.export._sinks import CSVSink, JSONLSink, Sink, StdoutSink
from twochat_voip.webhooks import CallEvent, Contact

configure_logging_from_env()  # TWOCHAT_LOG=debug

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "Account",
    "AccountInfo",
    "AdaptiveRateLimiter",
    "Agent",
    "AiohttpTransport",
    "AnyCallResult",
    "AuthenticationError",
    "BadRequestError",
    "BudgetExhaustedError",
    "CSVSink",
    "CallCost",
    "CallDetailRecord",
    "CallDirection",
    "CallEvent",
    "CallFailure",
    "CallResult",
    "CallStatus",
    "CallSuccess",
    "CallerId",
    "ClientClosedError",
    "ClientStats",
    "Contact",
    "EventLoopMismatchError",
    "ExportSummary",
    "FailureStore",
    "InvalidAPIKeyError",
    "InvalidCallEventError",
    "InvalidCallUUIDError",
    "JSONLSink",
    "Limits",
    "MissingAPIKeyError",
    "NotFoundError",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "RateLimitError",
    "RateLimiter",
    "RateLimiterStoreError",
    "RateLimiterUnavailableError",
    "RecordRefusedError",
    "RedirectError",
    "Request",
    "Response",
    "ResponseValidationError",
    "RetryPolicy",
    "ServerError",
    "Sink",
    "SinkError",
    "StdoutSink",
    "Transport",
    "TwoChatError",
    "UnprocessableEntityError",
    "Usage",
    "VirtualNumber",
    "VoIPClient",
    "Webhook",
    "WebhookEvent",
    "__version__",
    "converter",
    "export_calls",
    "make_converter",
    "open_sink",
    "set_testing",
]


def _show_public_homes() -> None:
    """Name the public path in tracebacks (not attrs classes': annotations are read by it)."""
    for name in __all__:
        value = globals()[name]
        if isinstance(value, type) and (
            issubclass(value, BaseException) or value in (VoIPClient, AiohttpTransport)
        ):
            value.__module__ = __name__


_show_public_homes()
