"""Test helpers for code that uses twochat_voip: :class:`MockTransport` (answers from
a function, no socket), a fake 2Chat server, scripted faults, generated records, a
throwaway ``redis-server`` (:class:`RedisServer`) and PostgreSQL
(:class:`PostgresServer`), and (in :mod:`twochat_voip.testing.pytest_plugin`) pytest
fixtures.

Nothing here touches the network beyond 127.0.0.1.
"""

from __future__ import annotations

from twochat_voip._retry import set_testing
from twochat_voip.testing._data import EXAMPLE_ANSWER, EXAMPLE_CDR, generate_cdrs
from twochat_voip.testing._faults import Fault, ReceivedRequest
from twochat_voip.testing._mock_transport import MockTransport
from twochat_voip.testing._server import DEFAULT_TEST_KEY, FakeTwoChatServer
from twochat_voip.testing._servers import PostgresServer, RedisServer

__all__ = [
    "DEFAULT_TEST_KEY",
    "EXAMPLE_ANSWER",
    "EXAMPLE_CDR",
    "FakeTwoChatServer",
    "Fault",
    "MockTransport",
    "PostgresServer",
    "ReceivedRequest",
    "RedisServer",
    "generate_cdrs",
    "set_testing",
]
