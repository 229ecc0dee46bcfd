"""The command line's parts that are not commands: progress, exit codes, options."""

from __future__ import annotations

import asyncio
import math
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final, Literal, TypeVar

import click

from twochat_voip._bulk import CallResult
from twochat_voip._client import VoIPClient
from twochat_voip._errors import MissingAPIKeyError, SinkError, TwoChatError
from twochat_voip._protocol import PLAN_RATES
from twochat_voip.export._run import ExportSummary
from twochat_voip.export._sinks import shown

if TYPE_CHECKING:
    from twochat_voip.redis import RedisRateLimiter

__all__ = [
    "NO_KEY",
    "Progress",
    "RateParam",
    "Refused",
    "client_for",
    "count_lines",
    "finite",
    "interrupted",
    "read_key",
    "report",
    "run_command",
    "same_path",
    "shared_limiter",
]

_T = TypeVar("_T")


class Progress:
    """A one-line progress display on stderr, redrawn at most ten times a second."""

    def __init__(self, total: int | None, *, enabled: bool, output: str = "") -> None:
        self.output = output
        self._total = total
        self._enabled = enabled
        self._done = 0
        self._failed = 0
        self._started = time.monotonic()
        self._drawn = 0.0

    def __call__(self, result: CallResult) -> None:
        self._done += 1
        self._failed += not result.ok
        now = time.monotonic()
        if self._enabled and now - self._drawn >= 0.1:
            self._drawn = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        elapsed = max(now - self._started, 1e-9)
        rate = self._done / elapsed
        if self._total:
            share = min(self._done / self._total, 1.0)
            bar = "#" * int(share * 30)
            left = (self._total - self._done) / rate if rate else 0.0
            line = f"[{bar:<30}] {self._done}/{self._total} {rate:6.0f}/s ETA {left:5.0f} s"
        else:
            line = f"{self._done} done {rate:6.0f}/s"
        if self._failed:
            line += f" · {self._failed} failed"
        click.echo(f"\r{line}", nl=False, err=True)

    @property
    def done(self) -> int:
        """Ids answered so far, fetched or failed."""
        return self._done

    @property
    def saved(self) -> int:
        """Records written so far."""
        return self._done - self._failed

    def finish(self) -> None:
        if self._enabled and self._done:
            self._draw(time.monotonic())
            click.echo(err=True)


class Refused(click.ClickException):
    """Nothing was sent: the output or the input cannot be used (exit 2)."""

    exit_code = 2


def run_command(
    coroutine: Coroutine[Any, Any, _T],
    on_interrupt: Callable[[], str] | None = None,
    progress: Progress | None = None,
    client: VoIPClient | None = None,
) -> _T:
    """Run a command's coroutine; what ends it becomes one line and an exit code: 2
    when the input or output cannot be used and nothing was done yet (1 once records
    came back), 130 on Ctrl-C (after ``on_interrupt``'s line)."""
    try:
        return asyncio.run(coroutine)
    except KeyboardInterrupt:
        if on_interrupt is not None:
            click.echo(on_interrupt(), err=True)
        sys.exit(130)
    except (SinkError, InputError) as exc:
        sent = client is not None and client.stats.requests > 0
        if progress is None or not (progress.done or sent):
            raise Refused(str(exc)) from None
        resume = "" if progress.output == "-" else ": run the same command again to resume"
        raise click.ClickException(
            f"{exc} (after {progress.saved} records were saved{resume})"
        ) from None
    except TwoChatError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(
            f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")
        ) from None


_UTF16_BOMS: Final = (b"\xff\xfe", b"\xfe\xff")
"""How a UTF-16 file (Windows PowerShell's default) starts."""


def read_key(api_key_file: Path | None) -> str | None:
    """The key on the first line of ``api_key_file``. Lines end only at ``\\n`` (or
    ``\\r\\n``): ``splitlines()`` would also cut at a form feed, ``\\x1c`` or
    U+2028 and send the start of a damaged key, where the client refuses it whole."""
    if api_key_file is None:
        return None
    where = f"cannot read an API key from {api_key_file}"
    try:
        data = api_key_file.read_bytes()
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


NO_KEY: Final = (
    "no API key: set TWOCHAT_API_KEY, or pass --api-key-file FILE (a file holding the "
    "key); to try the commands without a key, run `twochat-voip fake-server` and paste "
    "the two lines it prints"
)
"""What a command says without a key: the library's words name ``VoIPClient(api_key=)``,
which a shell user cannot pass."""


def client_for(key: str | None, base_url: str | None, **options: Any) -> VoIPClient:
    try:
        return VoIPClient(api_key=key, base_url=base_url, **options)
    except MissingAPIKeyError:
        raise click.ClickException(NO_KEY) from None
    except (TwoChatError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None


def shared_limiter(redis_url: str, rpm: float | str | None, key: str | None) -> RedisRateLimiter:
    """A RedisRateLimiter at ``rpm`` for the account, or a one-line error."""
    if not isinstance(rpm, float):
        raise click.ClickException("--redis-url needs --rpm N: the account's limit to share")
    try:
        from twochat_voip.redis import RedisRateLimiter  # noqa: PLC0415 - an optional extra
    except ImportError as exc:  # pragma: no cover - exercised only without the redis extra
        raise click.ClickException(str(exc)) from None
    try:
        return RedisRateLimiter(redis_url, requests_per_minute=rpm, api_key=key)
    except MissingAPIKeyError:
        raise click.ClickException(NO_KEY) from None
    except TwoChatError as exc:
        raise click.ClickException(str(exc)) from None
    except ValueError as exc:
        raise click.ClickException(f"--redis-url: {exc}") from None


def finite(value: float, param: click.Parameter, ctx: click.Context) -> float:
    """Refuse ``nan``, which slips past every range check."""
    if math.isnan(value):
        raise click.BadParameter("must be a number of seconds, not nan", ctx, param)
    return value


class RateParam(click.ParamType):  # type: ignore[type-arg] # generic in click 8.2+ only
    """``--rpm``: a number of requests a minute, ``auto`` or ``adaptive``."""

    name = "N|auto|adaptive"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> float | Literal["auto"] | None:
        word = str(value).strip().lower()
        if word in ("auto", "adaptive"):
            return None if word == "adaptive" else "auto"
        if isinstance(value, float):
            return value
        try:
            rate = float(word)
        except ValueError:
            rate = float("nan")
        low, high = PLAN_RATES
        if not low <= rate <= high:  # NaN too
            self.fail(
                f"{value!r} is not a rate between {low:g} and {high:,.0f} a minute, "
                "'auto' or 'adaptive'",
                param,
                ctx,
            )
        return rate


def count_lines(path: Path) -> int | None:
    try:
        with path.open("rb") as handle:
            return sum(1 for line in handle if line.strip())
    except OSError:
        return None


def report(summary: ExportSummary) -> None:
    click.echo(summary.describe(), err=True)
    if summary.failed:
        sys.exit(1)


def interrupted(
    progress: Progress, output: str, resume: str = "run the same command again to resume"
) -> Callable[[], str]:
    """The line a Ctrl-C ends a command with: what was saved, and how to go on."""
    if output == "-":
        return lambda: f"interrupted: {progress.saved} records written to standard output"
    return lambda: (
        f"interrupted: {progress.saved} records saved to {shown(output)} by this run; {resume}"
    )


def same_path(one: Path, other: Path) -> bool:
    try:
        return one.samefile(other)
    except OSError:
        return False


class InputError(ValueError):
    """The ids cannot be read: not UTF-8."""


async def read_ids(stream: IO[bytes]) -> AsyncIterator[str]:
    """Ids from a stream, one per line, read off the event loop (stdin may block);
    blank lines and ``#`` comments are skipped, a byte order mark is ignored."""
    number = 0
    while line := await asyncio.to_thread(stream.readline):
        number += 1
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(
                f"line {number} of the ids is not UTF-8 (byte {line[exc.start]:#04x})"
            ) from None
        value = text.strip().lstrip("\ufeff") if number == 1 else text.strip()
        if value and not value.startswith("#"):
            yield value


def stderr_is_interactive() -> bool:
    """Whether progress may be drawn: a terminal, and neither NO_COLOR nor dumb."""
    return sys.stderr.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"
