"""A client's settings, checked once: what :class:`~twochat_voip.VoIPClient`'s arguments
and the environment (``TWOCHAT_API_KEY``, ``TWOCHAT_BASE_URL``) come to."""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Iterable, Sequence
from typing import Final, Literal

import aiohttp
import attrs

from twochat_voip._errors import InvalidAPIKeyError, MissingAPIKeyError
from twochat_voip._requests import DEFAULT_BASE_URL, normalise_base_url
from twochat_voip._retry import RetryPolicy
from twochat_voip.hooks import Hook

DEFAULT_MAX_RESPONSE_SIZE: Final = 1024 * 1024


class _DefaultInt(int):
    """A default number, told apart from the same number given."""


class _DefaultFloat(float):
    """A default number, told apart from the same number given."""


DEFAULT_MAX_RETRIES: Final[int] = _DefaultInt(RetryPolicy().max_retries)
DEFAULT_MAX_RETRY_WAIT: Final[float] = _DefaultFloat(RetryPolicy().max_retry_wait)


def _api_key(api_key: str | None) -> str:
    """The key (else ``TWOCHAT_API_KEY``), stripped; refuses one no HTTP header can
    carry (a control or non-ASCII character), in a message that never shows it."""
    key = (api_key if api_key is not None else os.environ.get("TWOCHAT_API_KEY") or "").strip()
    if not key:
        raise MissingAPIKeyError("no API key: pass VoIPClient(api_key=...) or set TWOCHAT_API_KEY")
    for position, char in enumerate(key, 1):
        if not char.isascii() or not char.isprintable():
            kind = "a non-ASCII" if not char.isascii() else "a control"
            raise InvalidAPIKeyError(
                f"the API key has {kind} character at position {position} (of "
                f"{len(key)}), which an HTTP header cannot carry; copy the key again "
                "from 2Chat's dashboard"
            )
    return key


@attrs.frozen(kw_only=True)
class ClientOptions:
    """Everything a client was configured with, valid and final (see
    :class:`~twochat_voip.VoIPClient`'s arguments); the key is stripped, never shown."""

    api_key: str = attrs.field(repr=False)
    base_url: str
    timeout: float
    retry_policy: RetryPolicy
    max_response_size: int
    requests_per_minute: float | Literal["auto"] | None
    max_requests: int | None
    hooks: tuple[Hook, ...] = ()
    trace_configs: list[aiohttp.TraceConfig] | None = None

    @classmethod
    def resolve(
        cls,
        api_key: str | None,
        *,
        base_url: str | None,
        timeout: float,
        max_retries: int,
        max_retry_wait: float,
        retry_policy: RetryPolicy | None,
        max_response_size: int,
        requests_per_minute: float | Literal["auto"] | None,
        has_rate_limiter: bool,
        max_requests: int | None,
        hooks: Iterable[Hook],
        trace_configs: Sequence[aiohttp.TraceConfig] | None,
        has_session: bool,
        has_transport: bool,
    ) -> ClientOptions:
        """Check the arguments, fill in the environment's and the defaults; raises
        :class:`MissingAPIKeyError`, :class:`InvalidAPIKeyError` or ``ValueError``."""
        key = _api_key(api_key)
        checked_hooks = _check_hooks(hooks)
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if max_response_size <= 0:
            raise ValueError("max_response_size must be positive")
        if has_rate_limiter and requests_per_minute is not None:
            raise ValueError("give requests_per_minute or rate_limiter, not both")
        if has_transport and (has_session or trace_configs is not None):
            raise ValueError("give transport or session/trace_configs, not both")
        if has_transport and max_response_size != DEFAULT_MAX_RESPONSE_SIZE:
            raise ValueError("max_response_size is the aiohttp transport's; not with transport")
        if max_requests is not None and (type(max_requests) is not int or max_requests < 0):
            raise ValueError("max_requests must be a whole number, 0 or more")
        if isinstance(requests_per_minute, str):
            if requests_per_minute != "auto":
                raise ValueError('requests_per_minute must be a number, "auto" or None')
        elif requests_per_minute is not None and not (
            isinstance(requests_per_minute, int | float)
            and math.isfinite(requests_per_minute)
            and requests_per_minute > 0
        ):
            raise ValueError('requests_per_minute must be a positive number, "auto" or None')
        if retry_policy is None:
            retry_policy = RetryPolicy(max_retries=max_retries, max_retry_wait=max_retry_wait)
        elif not isinstance(retry_policy, RetryPolicy):
            raise TypeError(
                f"retry_policy must be a RetryPolicy, not {type(retry_policy).__name__}"
            )
        elif max_retries is not DEFAULT_MAX_RETRIES or max_retry_wait is not DEFAULT_MAX_RETRY_WAIT:
            raise ValueError(
                "give retry_policy or max_retries/max_retry_wait, not both "
                "(set them on the RetryPolicy)"
            )
        return cls(
            api_key=key,
            base_url=normalise_base_url(
                base_url or os.environ.get("TWOCHAT_BASE_URL") or DEFAULT_BASE_URL
            ),
            timeout=timeout,
            retry_policy=retry_policy,
            max_response_size=max_response_size,
            requests_per_minute=requests_per_minute,
            max_requests=max_requests,
            hooks=checked_hooks,
            trace_configs=None if trace_configs is None else list(trace_configs),
        )


def _check_hooks(hooks: Iterable[Hook]) -> tuple[Hook, ...]:
    """The hooks, as a tuple (a generator is read once), checked."""
    if callable(hooks) or isinstance(hooks, str | bytes):
        raise TypeError("hooks must be a sequence of callables: hooks=[hook], not hooks=hook")
    given = tuple(hooks)
    for hook in given:
        if not callable(hook):
            raise TypeError(f"hooks must be a sequence of callables, not of {type(hook).__name__}")
        if inspect.iscoroutinefunction(hook) or inspect.iscoroutinefunction(
            getattr(hook, "__call__", None)  # noqa: B004 - an object's async __call__
        ):
            raise TypeError("a hook must be a plain function: nothing would await an async one")
    return given
