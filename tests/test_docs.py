"""Every Python example in docs/ and the README runs here, against the fake server, so
the docs cannot rot."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from aiohttp.test_utils import TestClient, TestServer

from twochat_voip import CallDetailRecord, VoIPClient
from twochat_voip.testing import EXAMPLE_CDR, FakeTwoChatServer, RedisServer

ROOT = Path(__file__).parent.parent
PAGES = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def examples() -> list[Any]:
    found = []
    for page in PAGES:
        for number, match in enumerate(BLOCK.finditer(page.read_text())):
            found.append(pytest.param(match.group(1), id=f"{page.name}-{number}"))
    return found


class ServerThread:
    """The fake 2Chat on its own event loop in a thread, so that examples can call
    asyncio.run() as users do."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server = FakeTwoChatServer(api_key="docs-key")

    def __enter__(self) -> FakeTwoChatServer:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)
        return self.server

    def __exit__(self, *exc_info: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.aclose(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def docs_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeTwoChatServer]:
    with ServerThread() as server:
        monkeypatch.setenv("TWOCHAT_API_KEY", "docs-key")
        monkeypatch.setenv("TWOCHAT_BASE_URL", server.base_url)
        monkeypatch.chdir(tmp_path)
        (tmp_path / "ids.txt").write_text(EXAMPLE_CDR["uuid"] + "\n")
        yield server


PYTHON_FENCE = re.compile(r"^[ \t]*(?:```|~~~)[ \t]*(?:py|python|python3)\b", re.MULTILINE)


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_no_python_block_escapes_the_checks(page: Path) -> None:
    """Every Python block on a page is one the run and type-check tests collect: a
    block fenced ```py, ~~~python or indented (in an admonition) would be shown to
    readers and checked by nothing."""
    text = page.read_text()
    assert len(PYTHON_FENCE.findall(text)) == len(BLOCK.findall(text))


def test_every_page_has_examples() -> None:
    """The pages that teach code carry runnable examples."""
    assert len(examples()) >= 15


@pytest.fixture
def docs_redis(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> RedisServer:
    """A redis-server for the examples of a shared limit, as REDIS_URL."""
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    return redis_server


@pytest.mark.slow
@pytest.mark.parametrize("source", examples())
def test_example_runs(
    source: str, docs_server: FakeTwoChatServer, request: pytest.FixtureRequest
) -> None:
    """The example runs to its end as written; test functions it defines run too."""
    if "REDIS_URL" in source:
        request.getfixturevalue("docs_redis")
    namespace: dict[str, Any] = {"__name__": "docs_example"}
    ending = "\n__ran_to_the_end__ = True\n"
    exec(compile(source + ending, "<docs example>", "exec"), namespace)  # noqa: S102 - our docs
    assert namespace["__ran_to_the_end__"]
    for name, value in list(namespace.items()):
        if name.startswith("test_") and callable(value):

            async def run(test: Any = value) -> None:
                async with VoIPClient() as client:
                    await test(client)

            asyncio.run(run())


def page_namespace(page: str, containing: str) -> dict[str, Any]:
    source = next(
        m.group(1)
        for m in BLOCK.finditer((ROOT / "docs" / page).read_text())
        if containing in m.group(1)
    )
    namespace: dict[str, Any] = {"__name__": "docs_example"}
    exec(compile(source, "<docs example>", "exec"), namespace)  # noqa: S102 - our own docs
    return namespace


def test_aiohttp_web_example_answers(docs_server: FakeTwoChatServer) -> None:
    """The aiohttp.web example serves a record, a 404 and a 400 as the page says."""
    app = page_namespace("web-apps.md", "cleanup_ctx")["app"]

    async def drive() -> list[int]:
        async with TestClient(TestServer(app)) as client:
            statuses = []
            for path in (EXAMPLE_CDR["uuid"], "CDRnothere", "bad.id"):
                answer = await client.get(f"/calls/{path}")
                statuses.append(answer.status)
            return statuses

    assert asyncio.run(drive()) == [200, 404, 400]


def test_starlette_example_answers(docs_server: FakeTwoChatServer) -> None:
    """The Starlette lifespan example opens the client, serves a record and a 404."""
    import httpx

    app = page_namespace("web-apps.md", "lifespan=lifespan")["app"]

    async def drive() -> tuple[Any, int]:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://app"
            ) as client,
        ):
            found = await client.get(f"/calls/{EXAMPLE_CDR['uuid']}")
            missing = await client.get("/calls/CDRnothere")
            return found.json(), missing.status_code

    assert asyncio.run(drive()) == ({"status": "COMPLETED", "price": "0.0594"}, 404)


def test_many_workers_web_example_opens_and_closes(
    docs_server: FakeTwoChatServer, docs_redis: RedisServer
) -> None:
    """The many-workers aiohttp.web example starts with a shared limiter and fetches."""
    namespace = page_namespace("many-workers.md", "cleanup_ctx")
    app, voip_key = namespace["app"], namespace["voip_key"]

    async def drive() -> str:
        async with TestClient(TestServer(app)):
            cdr = await app[voip_key].get_call(EXAMPLE_CDR["uuid"])
            return str(cdr.uuid)

    assert asyncio.run(drive()) == EXAMPLE_CDR["uuid"]


def test_architecture_names_every_module() -> None:
    """docs/architecture.md places every module of the package, and only real ones."""
    page = (Path(__file__).parent.parent / "docs" / "architecture.md").read_text()
    named = set(re.findall(r"`(\w+\.py)`", page))
    package = Path(__file__).parent.parent / "twochat_voip"
    modules = {p.name for p in package.glob("*.py")} - {"__main__.py", "sql.py"}
    assert modules - named == set()  # a module the page does not place
    assert named - modules == set()  # a module that is gone


def _post_delivery(app: Any, path: str, body: dict[str, Any], token: str) -> Any:
    import httpx

    async def drive() -> Any:
        async with (
            app.router.lifespan_context(app),  # which closes the example's client
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://app"
            ) as client,
        ):
            answers = [
                await client.post(f"{path}?token={token}", json=body),
                await client.post(f"{path}?token={token}", json=body),  # a redelivery
                await client.post(path, json=body),  # no token
            ]
            return [a.status_code for a in answers]

    return asyncio.run(drive())


def test_fastapi_call_events_example_receives_once(docs_server: FakeTwoChatServer) -> None:
    """The FastAPI example takes a delivery once, verified against 2Chat's record."""
    namespace = page_namespace("call-events.md", "FastAPI(lifespan=lifespan)")
    body = {"uuid": EXAMPLE_CDR["uuid"], "status": "completed", "duration": 1}
    statuses = _post_delivery(namespace["app"], "/2chat/calls", body, namespace["HOOK_TOKEN"])
    assert statuses == [200, 200, 401]
    (event,) = namespace["received"]
    assert event.record.duration == EXAMPLE_CDR["duration"]  # 2Chat's, not the payload's


def test_aiohttp_call_events_example_receives_once(docs_server: FakeTwoChatServer) -> None:
    """The aiohttp.web example, served on 127.0.0.1, takes a delivery once."""
    from aiohttp.test_utils import TestClient, TestServer

    namespace = page_namespace("call-events.md", "receiver.aiohttp_handler")
    body = {"uuid": EXAMPLE_CDR["uuid"], "status": "completed"}
    token = namespace["HOOK_TOKEN"]

    async def drive() -> list[int]:
        async with TestClient(TestServer(namespace["make_app"](), host="127.0.0.1")) as client:
            answers = [
                await client.post(f"/2chat/calls?token={token}", json=body),
                await client.post(f"/2chat/calls?token={token}", json=body),
                await client.post("/2chat/calls?token=wrong-token", json=body),
            ]
            return [a.status for a in answers]

    assert asyncio.run(drive()) == [200, 200, 403]
    (event,) = namespace["received"]
    assert event.record is not None


FILE_BLOCK = re.compile(r"^```\w+\n# ([\w.-]+)\n(.*?)^```", re.MULTILINE | re.DOTALL)
"""A fenced block whose first line, ``# name``, says which file it is."""


@pytest.mark.slow
def test_testing_page_pytest_example_passes_in_a_fresh_folder(tmp_path: Path) -> None:
    """docs/testing.md's conftest.py, test file and pytest.ini, copied into a folder
    with no other config, pass under `python -m pytest` with warnings as errors."""
    page = (ROOT / "docs" / "testing.md").read_text()
    files = dict(FILE_BLOCK.findall(page))
    assert set(files) == {"conftest.py", "test_report.py", "pytest.ini"}
    for name, body in files.items():
        (tmp_path / name).write_text(body)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's package
    env.pop("PYTEST_ADDOPTS", None)
    ran = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "1 passed" in ran.stdout


def _shown(annotation: Any) -> str:
    """An annotation as the docs write it: ``CallStatus | str | None``."""
    parts = typing.get_args(annotation) or (annotation,)
    return " | ".join("None" if part is type(None) else part.__name__ for part in parts)


def test_quickstart_field_table_gives_the_models_types() -> None:
    """The types docs/quickstart.md's table gives for a record's fields are the ones
    the model declares (`status` may be None, as type checkers say)."""
    page = (ROOT / "docs" / "quickstart.md").read_text()
    rows = re.findall(r"^\| `(\w+)` \| `(.+?)` \|", page, re.MULTILINE)
    fields = attrs.fields(attrs.resolve_types(CallDetailRecord))
    declared = {field.name: _shown(field.type) for field in fields}
    documented = {name: shown.replace("\\|", "|") for name, shown in rows if name in declared}
    assert set(documented) >= {"uuid", "direction", "status", "from_"}
    assert documented == {name: declared[name] for name in documented}
