"""Shared fixtures: the fake server comes from the plugin users get too."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from virtual_time import VirtualTimeLoop

from twochat_voip import VoIPClient, set_testing
from twochat_voip.testing import FakeTwoChatServer, PostgresServer, RedisServer

pytest_plugins = ["twochat_voip.testing.pytest_plugin"]

SAMPLES = Path(__file__).parent / "samples"
CALL_UUID = "CDR8b3e7a1f-6c94-4d52-ae17-5f2b9d4c8e63"


@pytest.fixture
def example_answer() -> dict[str, Any]:
    """The documented answer, as recorded in tests/samples (a fresh copy per test)."""
    answer: dict[str, Any] = json.loads((SAMPLES / "get-call-details.example.json").read_text())
    return answer


@pytest.fixture(autouse=True)
def _retry_testing_mode_off() -> Iterator[None]:
    """A test that fails inside set_testing() cannot leave it on for the next."""
    yield
    set_testing(False)


@pytest.fixture(autouse=True)
def _no_ambient_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never pick up a developer's real key or base URL from the environment."""
    monkeypatch.delenv("TWOCHAT_API_KEY", raising=False)
    monkeypatch.delenv("TWOCHAT_BASE_URL", raising=False)


_AIOHTTPS_OWN = frozenset({"transport", "session", "trace_configs", "max_response_size"})


@pytest_asyncio.fixture
async def make_client(
    twochat_server: FakeTwoChatServer, request: pytest.FixtureRequest
) -> AsyncIterator[Callable[..., VoIPClient]]:
    """Build clients for the fake server with any options; all closed after the test.

    They reach it in memory (``twochat_server.transport()``), unless the test is marked
    ``socket`` or gives aiohttp's own options: then over 127.0.0.1.
    """
    made: list[VoIPClient] = []
    in_memory = request.node.get_closest_marker("socket") is None

    def make(**options: Any) -> VoIPClient:
        options.setdefault("api_key", twochat_server.api_key)
        options.setdefault("base_url", twochat_server.base_url)
        plain = (
            options["base_url"] == twochat_server.base_url and not _AIOHTTPS_OWN & options.keys()
        )
        if in_memory and plain:  # this server, and none of aiohttp's own options
            options["transport"] = twochat_server.transport()
        client = VoIPClient(**options)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh redis-server on 127.0.0.1 for one test; skipped, saying why, where none
    is installed (failed instead when TWOCHAT_REQUIRE_REDIS is set, as in CI)."""
    if RedisServer.find() is None:
        reason = "redis-server is not installed (`apt-get install redis-server` runs these)"
        if os.environ.get("TWOCHAT_REQUIRE_REDIS"):
            pytest.fail(reason)
        pytest.skip(reason)
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server on 127.0.0.1 for the whole session (tests use their own
    database each); skipped, saying why, where PostgreSQL is not installed (failed
    instead when TWOCHAT_REQUIRE_POSTGRES is set, as in CI)."""
    if PostgresServer.find() is None:
        reason = "PostgreSQL is not installed (`apt-get install postgresql` runs these)"
        if os.environ.get("TWOCHAT_REQUIRE_POSTGRES"):
            pytest.fail(reason)
        pytest.skip(reason)
    with PostgresServer() as server:
        yield server


@pytest_asyncio.fixture
async def postgres_url(postgres_server: PostgresServer) -> str:
    """A new, empty database on the session's PostgreSQL server."""
    import asyncpg

    name = f"t{next(_databases)}"
    connection = await asyncpg.connect(postgres_server.url)
    try:
        await connection.execute(f"CREATE DATABASE {name}")
    finally:
        await connection.close()
    return postgres_server.url.rsplit("/", 1)[0] + "/" + name


_databases = itertools.count()


@pytest.fixture(scope="session")
def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One mypy cache for the session's type-checking tests: the second run is fast."""
    return tmp_path_factory.mktemp("mypy-cache")


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Tests marked ``virtual_time`` run on a loop whose clock jumps to its next timer
    (tests/virtual_time.py); the rest on asyncio's own."""
    if item.get_closest_marker("virtual_time") is None:
        return {"asyncio": asyncio.new_event_loop}
    return {"virtual": VirtualTimeLoop}
