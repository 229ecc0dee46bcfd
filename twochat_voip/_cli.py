"""The ``twochat-voip`` command line (also ``python -m twochat_voip``): get, export, demo.

The key comes from ``TWOCHAT_API_KEY`` or ``--api-key-file``, never from a flag that
would land in shell history, and is never printed. Errors a user can cause end with one
line on stderr and a non-zero exit code, not a traceback.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import tempfile
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Coroutine, Iterable
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

try:
    import click
except ImportError:  # pragma: no cover - exercised only without the cli extra
    sys.exit("twochat-voip: the command line needs click: pip install 'twochat-voip[cli]'")

from twochat_voip._bulk import CallResult
from twochat_voip._client import DEFAULT_GIVE_UP_AFTER, VoIPClient
from twochat_voip._converter import converter
from twochat_voip._errors import TwoChatError
from twochat_voip._export import (
    ExportSummary,
    Format,
    export_calls,
    read_ids,
    stderr_is_interactive,
)
from twochat_voip._protocol import PLAN_RATES
from twochat_voip.testing import FakeTwoChatServer, Fault, generate_cdrs

if TYPE_CHECKING:
    from twochat_voip.redis import RedisRateLimiter

__all__ = ["main"]

_T = TypeVar("_T")

DEMO_KEY = "demo-key-not-a-secret"


class Progress:
    """A one-line progress display on stderr, redrawn at most ten times a second."""

    def __init__(self, total: int | None, *, enabled: bool) -> None:
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

    def finish(self) -> None:
        if self._enabled and self._done:
            self._draw(time.monotonic())
            click.echo(err=True)


def _run(coroutine: Coroutine[Any, Any, _T]) -> _T:
    try:
        return asyncio.run(coroutine)
    except TwoChatError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(
            f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")
        ) from None


def _read_key(api_key_file: Path | None) -> str | None:
    if api_key_file is None:
        return None
    try:
        return api_key_file.read_text(encoding="utf-8").strip().splitlines()[0]
    except (OSError, IndexError):
        raise click.ClickException(f"cannot read an API key from {api_key_file}") from None


def _client(key: str | None, base_url: str | None, **options: Any) -> VoIPClient:
    try:
        return VoIPClient(api_key=key, base_url=base_url, **options)
    except TwoChatError as exc:
        raise click.ClickException(f"{exc} (or use --api-key-file)") from None
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


def _shared_limiter(redis_url: str, rpm: float | str | None, key: str | None) -> RedisRateLimiter:
    """A RedisRateLimiter at ``rpm`` for the account, or a one-line error."""
    if not isinstance(rpm, float):
        raise click.ClickException("--redis-url needs --rpm N: the account's limit to share")
    try:
        from twochat_voip.redis import RedisRateLimiter  # noqa: PLC0415 - an optional extra
    except ImportError as exc:  # pragma: no cover - exercised only without the redis extra
        raise click.ClickException(str(exc)) from None
    try:
        return RedisRateLimiter(redis_url, requests_per_minute=rpm, api_key=key)
    except TwoChatError as exc:
        raise click.ClickException(f"{exc} (or use --api-key-file)") from None
    except ValueError as exc:
        raise click.ClickException(f"--redis-url: {exc}") from None


def _finite(value: float, param: click.Parameter, ctx: click.Context) -> float:
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


_key_file = click.option(
    "--api-key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Read the API key from this file instead of TWOCHAT_API_KEY.",
)
_base_url = click.option(
    "--base-url", envvar="TWOCHAT_BASE_URL", help="API base URL (default: 2Chat's)."
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="twochat-voip")
def main() -> None:
    """Fetch 2Chat VoIP call detail records. The key comes from TWOCHAT_API_KEY."""


@main.command()
@click.argument("call_uuid")
@_key_file
@_base_url
def get(call_uuid: str, api_key_file: Path | None, base_url: str | None) -> None:
    """Print one call's record as 2Chat's JSON."""
    client = _client(_read_key(api_key_file), base_url)

    async def fetch() -> dict[str, Any]:
        async with client:
            record = await client.get_call(call_uuid)
        wire: dict[str, Any] = converter.unstructure(record)
        return wire

    click.echo(json.dumps(_run(fetch()), indent=2))


def _count_lines(path: Path) -> int | None:
    try:
        with path.open("rb") as handle:
            return sum(1 for line in handle if line.strip())
    except OSError:
        return None


async def _export(
    client: VoIPClient,
    *,
    ids: AsyncIterable[str] | Iterable[str],
    output: Path,
    failures: Path,
    fmt: Format,
    concurrency: int,
    ordered: bool,
    progress: Progress,
    give_up_after: float | None = DEFAULT_GIVE_UP_AFTER,
    close_limiter: Callable[[], Awaitable[None]] | None = None,
) -> ExportSummary:
    async with client:
        try:
            return await export_calls(
                client,
                ids,
                output,
                failures=failures,
                fmt=fmt,
                concurrency=concurrency,
                ordered=ordered,
                give_up_after=give_up_after,
                on_result=progress,
            )
        finally:
            progress.finish()
            if close_limiter is not None:
                await close_limiter()


def _report(summary: ExportSummary, output: Path, failures: Path) -> None:
    click.echo(summary.describe(output, failures), err=True)
    if summary.failed:
        sys.exit(1)


_export_options: list[Callable[[Any], Any]] = [
    click.option(
        "--format",
        "fmt",
        type=click.Choice(["jsonl", "csv"]),
        default="jsonl",
        show_default=True,
        help="JSON lines (2Chat's wire format) or flat CSV.",
    ),
    click.option("--concurrency", "-c", default=16, show_default=True, type=click.IntRange(1, 512)),
    click.option(
        "--rpm",
        type=RateParam(),
        default="auto",
        show_default=True,
        help="Requests per minute: a number (your plan's limit), 'auto' (ask the API "
        "once, GET /open/info: one credit) or 'adaptive' (find the limit from 429s).",
    ),
    click.option(
        "--give-up-after",
        type=click.FloatRange(min=0, min_open=True, max=1e9),
        callback=lambda ctx, param, value: _finite(value, param, ctx),
        default=DEFAULT_GIVE_UP_AFTER,
        show_default=True,
        metavar="SECONDS",
        help="Stop when nothing has succeeded for this long.",
    ),
    click.option(
        "--max-requests",
        type=click.IntRange(min=0),
        help="Send at most this many requests (credits), retries and 429s included.",
    ),
    click.option(
        "--failures",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Failed ids and reasons (default: OUTPUT.failures.jsonl).",
    ),
    click.option("--ordered", is_flag=True, help="Write records in input order."),
    click.option("--quiet", "-q", is_flag=True, help="No progress bar."),
]


def _with(options: list[Callable[[Any], Any]]) -> Callable[[Any], Any]:
    def apply(command: Any) -> Any:
        for option in reversed(options):
            command = option(command)
        return command

    return apply


def _output_option(required: bool) -> Callable[[Any], Any]:
    return click.option(
        "--output",
        "-o",
        required=required,
        type=click.Path(dir_okay=False, path_type=Path),
        help="Records go here, one per line; re-running resumes."
        + ("" if required else "  [default: a new temporary folder]"),
    )


@main.command()
@click.option(
    "--input",
    "-i",
    "input_",
    required=True,
    metavar="FILE|-",
    help="Call ids, one per line ('-': standard input).",
)
@_output_option(required=True)
@_with(_export_options)
@click.option(
    "--redis-url",
    envvar="TWOCHAT_REDIS_URL",
    help="Share --rpm with every export on this account, on any host, through this "
    "Redis (needs the redis extra).",
)
@_key_file
@_base_url
def export(
    input_: str,
    output: Path,
    fmt: Format,
    concurrency: int,
    rpm: float | Literal["auto"] | None,
    give_up_after: float,
    max_requests: int | None,
    failures: Path | None,
    ordered: bool,
    quiet: bool,
    redis_url: str | None,
    api_key_file: Path | None,
    base_url: str | None,
) -> None:
    """Fetch many records into a JSONL or CSV file, resumably.

    Exits 0 only when every id was fetched; failed ids go to the failures file and
    are tried again when the same command is run again. Several exports on one
    account (on one host or many) share its limit with --rpm and --redis-url.
    """
    key = _read_key(api_key_file)
    limiter = _shared_limiter(redis_url, rpm, key) if redis_url else None
    if limiter is not None:
        client = _client(key, base_url, rate_limiter=limiter, max_requests=max_requests)
    else:
        client = _client(key, base_url, requests_per_minute=rpm, max_requests=max_requests)
    failures = failures or output.with_name(output.name + ".failures.jsonl")
    source_path = None if input_ == "-" else Path(input_)
    total = _count_lines(source_path) if source_path else None
    progress = Progress(total, enabled=not quiet and stderr_is_interactive())
    try:
        source = sys.stdin if source_path is None else source_path.open(encoding="utf-8")
    except OSError as exc:
        raise click.ClickException(f"cannot read {input_}: {exc.strerror}") from None
    with nullcontext() if source is sys.stdin else source:
        summary = _run(
            _export(
                client,
                ids=read_ids(source),
                output=output,
                failures=failures,
                fmt=fmt,
                concurrency=concurrency,
                ordered=ordered,
                progress=progress,
                give_up_after=give_up_after,
                close_limiter=limiter.aclose if limiter is not None else None,
            )
        )
    _report(summary, output, failures)


@main.command()
@click.option(
    "--count",
    default=3000,
    show_default=True,
    type=click.IntRange(1, 1_000_000),
    help="Records the embedded server holds.",
)
@click.option(
    "--server-rpm",
    default=30_000.0,
    show_default=True,
    type=click.FloatRange(min=1),
    help="The embedded server's per-minute limit.",
)
@click.option(
    "--fault-rate",
    default=0.03,
    show_default=True,
    type=click.FloatRange(0, 0.5),
    help="Share of requests answered with 503s, cut connections and delays.",
)
@_output_option(required=False)
@_with(_export_options)
def demo(
    count: int,
    server_rpm: float,
    fault_rate: float,
    output: Path | None,
    fmt: Format,
    concurrency: int,
    rpm: float | Literal["auto"] | None,
    give_up_after: float,
    max_requests: int | None,
    failures: Path | None,
    ordered: bool,
    quiet: bool,
) -> None:
    """Export from an embedded fake 2Chat server: no key, no network needed.

    The server holds COUNT generated records, a per-minute limit it reports at
    GET /open/info (as 2Chat does), and a sprinkle of faults; the export asks for
    the limit and paces at it (or finds it from 429s with --rpm adaptive), retries
    the faults and resumes if run again with the same --output.
    """
    if output is None:
        output = Path(tempfile.mkdtemp(prefix="twochat-voip-demo-")) / f"calls.{fmt}"
    failures = failures or output.with_name(output.name + ".failures.jsonl")
    records = generate_cdrs(count, seed=2026)
    progress = Progress(count, enabled=not quiet and stderr_is_interactive())

    async def run() -> ExportSummary:
        server = FakeTwoChatServer(cdrs=records, api_key=DEMO_KEY, requests_per_minute=server_rpm)
        server.fail_randomly(
            fault_rate,
            [Fault(status=503), Fault(drop="mid_body"), Fault(status=502), Fault(delay=0.2)],
            seed=7,
        )
        async with server:
            click.echo(
                f"demo: {count} records on a fake 2Chat at {server.base_url}, limited to "
                f"{server_rpm:.0f} requests/minute, {fault_rate:.0%} faults",
                err=True,
            )
            client = VoIPClient(
                api_key=DEMO_KEY,
                base_url=server.base_url,
                requests_per_minute=rpm,
                max_requests=max_requests,
            )
            return await _export(
                client,
                ids=(record["uuid"] for record in records),
                output=output,
                failures=failures,
                fmt=fmt,
                concurrency=concurrency,
                ordered=ordered,
                progress=progress,
                give_up_after=give_up_after,
            )

    summary = _run(run())
    _report(summary, output, failures)


if __name__ == "__main__":  # pragma: no cover
    main()
