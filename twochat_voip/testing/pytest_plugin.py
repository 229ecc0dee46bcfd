"""pytest fixtures (with pytest-asyncio): ``twochat_server`` and ``twochat_client``.

Enable them with ``pytest_plugins = ["twochat_voip.testing.pytest_plugin"]``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from twochat_voip._client import VoIPClient
from twochat_voip.testing._server import FakeTwoChatServer

__all__ = ["twochat_client", "twochat_server"]


@pytest_asyncio.fixture
async def twochat_server() -> AsyncIterator[FakeTwoChatServer]:
    """A started fake 2Chat server on 127.0.0.1, stopped after the test."""
    async with FakeTwoChatServer() as server:
        yield server


@pytest_asyncio.fixture
async def twochat_client(twochat_server: FakeTwoChatServer) -> AsyncIterator[VoIPClient]:
    """A client for ``twochat_server``, closed after the test."""
    async with VoIPClient(
        api_key=twochat_server.api_key, base_url=twochat_server.base_url
    ) as client:
        yield client
