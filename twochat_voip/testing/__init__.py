"""Test doubles for code that uses twochat_voip, on 127.0.0.1 only (see docs/testing.md)."""

from __future__ import annotations

from twochat_voip._retry import set_testing
from twochat_voip.testing._data import EXAMPLE_ANSWER, EXAMPLE_CDR, generate_cdrs
from twochat_voip.testing._faults import Fault, ReceivedRequest
from twochat_voip.testing._mock_transport import MockTransport
from twochat_voip.testing._progress import CallsInProgress
from twochat_voip.testing._server import DEFAULT_TEST_KEY, FakeTwoChatServer
from twochat_voip.testing._servers import PostgresServer, RedisServer

__all__ = [
    "DEFAULT_TEST_KEY",
    "EXAMPLE_ANSWER",
    "EXAMPLE_CDR",
    "CallsInProgress",
    "FakeTwoChatServer",
    "Fault",
    "MockTransport",
    "PostgresServer",
    "ReceivedRequest",
    "RedisServer",
    "generate_cdrs",
    "set_testing",
]
