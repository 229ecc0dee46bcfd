"""twochat_voip: an asyncio SDK for 2Chat's VoIP API, typed, retried and safe with
your key."""

from __future__ import annotations

from importlib.metadata import version

from twochat_voip._client import VoIPClient
from twochat_voip._converter import converter, make_converter
from twochat_voip._errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    MissingAPIKeyError,
    NotFoundError,
    PaymentRequiredError,
    PermissionDeniedError,
    RateLimitError,
    RedirectError,
    ResponseValidationError,
    ServerError,
    TwoChatError,
    UnprocessableEntityError,
)
from twochat_voip._models import Agent, CallCost, CallDetailRecord, CallDirection, CallStatus
from twochat_voip._retry import RetryPolicy, set_testing

__version__ = version("twochat-voip")

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "Agent",
    "AuthenticationError",
    "BadRequestError",
    "CallCost",
    "CallDetailRecord",
    "CallDirection",
    "CallStatus",
    "ClientClosedError",
    "MissingAPIKeyError",
    "NotFoundError",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "RateLimitError",
    "RedirectError",
    "ResponseValidationError",
    "RetryPolicy",
    "ServerError",
    "TwoChatError",
    "UnprocessableEntityError",
    "VoIPClient",
    "__version__",
    "converter",
    "make_converter",
    "set_testing",
]
