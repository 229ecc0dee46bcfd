"""Running a command: its key and client, its export and progress, and what ends it."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterable, Coroutine, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar

import click

from twochat_voip._bulk import CallResult
from twochat_voip._client import VoIPClient
from twochat_voip._errors import MissingAPIKeyError, SinkError, TwoChatError
from twochat_voip.cli._ids import InputError
from twochat_voip.export._run import ExportSummary, export_calls
from twochat_voip.export._sinks import OutputClosedError, database_url, shown

if TYPE_CHECKING:
    from twochat_voip.redis import RedisRateLimiter

_T = TypeVar("_T")
_AGAIN: Final = "run the same command again to resume"
_UTF16_BOMS: Final = (b"\xff\xfe", b"\xfe\xff")  # how Windows PowerShell's files start
# Not the library's words, which name VoIPClient(api_key=): a shell user cannot pass it.
_NO_KEY: Final = (
    "no API key: set TWOCHAT_API_KEY, or pass --api-key-file FILE (a file holding the "
    "key); to try the commands without a key, run `twochat-voip fake-server` and paste "
    "the two lines it prints"
)


class Progress:
    """A one-line progress display on stderr, redrawn at most ten times a second."""

    def __init__(self, total: int | None, *, enabled: bool, output: str = "") -> None:
        self.output = output
        self.resume = _AGAIN
        self.done = self.failed = self.before = self.pending = 0
        self.keeps_pending = database_url(output) is not None  # a file never takes them
        self._total = total
        self._enabled = enabled
        self._started = time.monotonic()
        self._drawn = 0.0

    def held(self, count: int) -> None:
        """Ids the output holds already: done before this run, counted from the start."""
        self.done += count
        self.before += count

    def __call__(self, result: CallResult) -> None:
        self.done += 1
        self.failed += not result.ok
        self.pending += result.ok and not result.cdr.is_final
        now = time.monotonic()
        if self._enabled and now - self._drawn >= 0.1:
            self._drawn = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        rate = (self.done - self.before) / max(now - self._started, 1e-9)
        if self._total:
            bar = "#" * int(min(self.done / self._total, 1.0) * 30)
            left = (self._total - self.done) / rate if rate else 0.0
            line = f"[{bar:<30}] {self.done}/{self._total} {rate:6.0f}/s ETA {left:5.0f} s"
        else:
            line = f"{self.done} done {rate:6.0f}/s"
        if self.failed:
            line += f" · {self.failed} failed"
        click.echo(f"\r{line}", nl=False, err=True)

    @property
    def saved(self) -> int:
        stored = self.done - self.before - self.failed
        return stored if self.keeps_pending else stored - self.pending

    def finish(self) -> None:
        if self._enabled and self.done:
            self._draw(time.monotonic())
            click.echo(err=True)

    def interrupted(self) -> str:
        if self.output == "-":
            return f"interrupted: {self.saved} records written to standard output"
        where = shown(self.output)
        return f"interrupted: {self.saved} records saved to {where} by this run; {self.resume}"


class Refused(click.ClickException):
    """Nothing was sent: the output or the input cannot be used (exit 2)."""

    exit_code = 2


class _Terminated(Exception):
    """SIGTERM (``kill``, a service manager): stopped as Ctrl-C stops a run."""


async def _until_terminated(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """``coroutine``, cancelled by SIGTERM as by Ctrl-C: outputs closed, the same line."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    terminated: list[int] = []

    def terminate() -> None:
        terminated.append(signal.SIGTERM)
        if task is not None:
            task.cancel()

    try:
        loop.add_signal_handler(signal.SIGTERM, terminate)
    except (NotImplementedError, RuntimeError, ValueError):  # Windows; not the main thread
        return await coroutine
    try:
        return await coroutine
    except asyncio.CancelledError:
        if terminated:
            raise _Terminated from None
        raise
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def run_command(
    coroutine: Coroutine[Any, Any, _T],
    progress: Progress | None = None,
    client: VoIPClient | None = None,
) -> _T:
    """Run a command's coroutine; what ends it becomes one line and an exit code."""
    try:
        return asyncio.run(_until_terminated(coroutine))
    except OutputClosedError:  # `-o - | head`: the reader has all it wanted
        sys.exit(0)
    except (KeyboardInterrupt, _Terminated) as exc:
        if progress is not None:
            click.echo(progress.interrupted(), err=True)
        sys.exit(143 if isinstance(exc, _Terminated) else 130)
    except (SinkError, InputError) as exc:
        sent = client is not None and client.stats.requests > 0
        if progress is None or not (progress.done or sent):
            raise Refused(str(exc)) from None
        resume = "" if progress.output == "-" else f": {_AGAIN}"
        raise click.ClickException(
            f"{exc} (after {progress.saved} records were saved{resume})"
        ) from None
    except TwoChatError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(
            f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")
        ) from None


async def export_with_progress(
    client: VoIPClient,
    ids: AsyncIterable[str] | Iterable[str],
    output: str,
    progress: Progress,
    **options: Any,
) -> ExportSummary:
    """:func:`export_calls` in the client's lifetime, drawing ``progress``."""
    async with client:
        try:
            return await export_calls(
                client, ids, output, on_result=progress, on_held=progress.held, **options
            )
        finally:
            progress.finish()


def run_export(
    client: VoIPClient,
    ids: AsyncIterable[str] | Iterable[str],
    output: str,
    total: int | None = None,
    *,
    quiet: bool,
    **options: Any,
) -> ExportSummary:
    """Run an export for a command, with progress on an interactive stderr."""
    progress = Progress(total, enabled=not quiet and stderr_is_interactive(), output=output)
    return run_command(
        export_with_progress(client, ids, output, progress, **options), progress, client
    )


def report(summary: ExportSummary) -> None:
    click.echo(summary.describe(), err=True)
    if summary.failed:
        sys.exit(1)


def stderr_is_interactive() -> bool:
    """Whether progress may be drawn: a terminal, and neither NO_COLOR nor dumb."""
    return sys.stderr.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def read_key(api_key_file: Path | None) -> str | None:
    """The key on the first line of ``api_key_file`` (cut at ``\\n`` only: at a form feed,
    ``splitlines()`` would send half a damaged key, where the client refuses it whole)."""
    if api_key_file is None:
        return None
    where = f"cannot read an API key from {api_key_file}"
    try:
        data = api_key_file.read_bytes()
    except FileNotFoundError:  # perhaps the key itself, given by mistake: never shown
        raise click.ClickException(
            "--api-key-file names no file (the value is not shown: it may be a key); "
            "give the path of a file holding the key"
        ) from None
    except OSError as exc:
        raise click.ClickException(f"{where}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        hint = " (it looks like UTF-16: save it as UTF-8)" if data[:2] in _UTF16_BOMS else ""
        raise click.ClickException(f"{where}: it is not UTF-8 text{hint}") from None
    key = text.strip().split("\n", 1)[0].removesuffix("\r")
    if not key:
        raise click.ClickException(f"{where}: the file is empty")
    return key


def client_for(
    key: str | None, base_url: str | None, *, redis_url: str | None = None, **options: Any
) -> VoIPClient:
    """The command's client; with ``redis_url``, pacing through a limiter shared there."""
    if redis_url:
        rpm = options.pop("requests_per_minute", None)
        options |= {"rate_limiter": shared_limiter(redis_url, rpm, key), "rate_limiter_owner": True}
    try:
        return VoIPClient(api_key=key, base_url=base_url, **options)
    except MissingAPIKeyError:
        raise click.ClickException(_NO_KEY) from None
    except (TwoChatError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None


def shared_limiter(
    redis_url: str, rpm: float | Literal["auto"] | None, key: str | None
) -> RedisRateLimiter:
    if rpm is None:
        raise click.ClickException(
            "--redis-url shares the account's limit: give --rpm N or auto (the plan's, "
            "asked once a day for every host), not adaptive"
        )
    try:
        from twochat_voip.redis import RedisRateLimiter  # noqa: PLC0415 - an optional extra
    except ImportError as exc:  # pragma: no cover - exercised only without the redis extra
        raise click.ClickException(str(exc)) from None
    try:
        return RedisRateLimiter(redis_url, requests_per_minute=rpm, api_key=key)
    except MissingAPIKeyError:
        raise click.ClickException(_NO_KEY) from None
    except ValueError as exc:
        raise click.ClickException(f"--redis-url: {exc}") from None
