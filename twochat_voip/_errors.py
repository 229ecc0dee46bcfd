"""Every error the SDK raises, one tree under :class:`TwoChatError` (drawn in
``docs/retries.md``). Errors carry no request headers, so never the API key."""

from __future__ import annotations

from typing import Any


class TwoChatError(Exception):
    """Base of every error the SDK raises."""

    def __reduce__(self) -> tuple[Any, ...]:
        # pickle's default, cls(*args), misses keyword-only arguments: skip __init__.
        return (type(self).__new__, (type(self),), {**vars(self), "args": self.args})


class MissingAPIKeyError(TwoChatError):
    """No API key: pass ``api_key=`` or set ``TWOCHAT_API_KEY``."""


class InvalidAPIKeyError(TwoChatError, ValueError):
    """The API key has a control or non-ASCII character, which no HTTP header can carry.

    Raised when the client is made; the message never shows the key."""


class InvalidCallUUIDError(TwoChatError, ValueError, TypeError):
    """The id is not a string of 1-128 letters, digits, ``-`` or ``_``; nothing was sent."""


class ClientClosedError(TwoChatError, RuntimeError):
    """The client was used after :meth:`VoIPClient.aclose`."""


class EventLoopMismatchError(TwoChatError, RuntimeError):
    """The client was used in an event loop other than the one it was opened in (two
    ``asyncio.run()`` calls sharing one client, say); nothing was sent.

    Open the client inside the loop that uses it; once the first loop is closed, the
    client can only be closed. A bulk run gives up at once.
    """

    def __init__(self, done: str = "used") -> None:
        super().__init__(
            f"this VoIPClient was opened in another event loop and cannot be {done} in "
            "this one (was it shared between two asyncio.run() calls?): open the client "
            "inside the loop that uses it, e.g. `async with VoIPClient() as voip:` inside "
            "the coroutine you run"
        )


class BudgetExhaustedError(TwoChatError):
    """The client has sent the ``max_requests`` it was allowed (429s and retries
    included), so nothing more is sent.

    Attributes:
        max_requests: The budget that was spent.
        call_uuid: The record that was not asked for, if any.
    """

    def __init__(self, max_requests: int, *, call_uuid: str | None = None) -> None:
        super().__init__(
            f"the budget of max_requests={max_requests} is spent; nothing more is sent"
            + (f" (call {call_uuid})" if call_uuid else "")
        )
        self.max_requests = max_requests
        self.call_uuid = call_uuid


class RateLimiterUnavailableError(TwoChatError):
    """A shared rate limiter could not reach its store (Redis), so nothing was sent,
    unless told to pace on its own (``RedisRateLimiter(on_redis_down="local")``)."""


class RateLimiterStoreError(RateLimiterUnavailableError):
    """A shared rate limiter's store (Redis) answered, but refused its script: another
    kind of value at its key, say, or no memory or permission. Nothing was sent.

    Attributes:
        key: The Redis key the limiter keeps the account's schedule at.
    """

    def __init__(self, message: str, *, key: str) -> None:
        super().__init__(message)
        self.key = key


class SinkError(TwoChatError):
    """An export's output cannot be used: another export holds it, it is not an export
    of this format (it is left untouched), or it is the failures file too. Raised
    before anything is sent."""


class RecordRefusedError(SinkError):
    """The output refused one record (PostgreSQL stores no NUL character, say): the
    id goes to the failures list with this error, and the export goes on."""


class APIConnectionError(TwoChatError):
    """The request never got a complete answer: refused, reset, dropped, DNS, TLS.

    ``str()`` adds the attempts and time to the message (``... after 4 attempts within
    1.2 s``); the HTTP library's own exception is its ``__cause__``.

    Attributes:
        message: What failed, and where (host and port).
        call_uuid: The record asked for, if any.
        attempts: Attempts made, the first included (``None`` outside a client's call).
        elapsed: Seconds from the first attempt until giving up, or ``None``.
        sent: ``False`` if no connection was made: it cost no credit, is not counted.
    """

    def __init__(self, message: str, *, call_uuid: str | None = None, sent: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.call_uuid = call_uuid
        self.sent = sent
        self.attempts: int | None = None
        self.elapsed: float | None = None

    def __str__(self) -> str:
        if self.attempts is None or self.elapsed is None:
            return self.message
        tries = "1 attempt" if self.attempts == 1 else f"{self.attempts} attempts"
        elapsed = self.elapsed
        if elapsed < 0.9995:
            took = f"{max(elapsed, 0.0) * 1000:.0f} ms"
        else:
            took = f"{elapsed:.1f} s" if elapsed < 59.95 else f"{elapsed:.0f} s"
        return f"{self.message} after {tries} within {took}"


class APITimeoutError(APIConnectionError):
    """An attempt took longer than its timeout."""


class _AnswerError(TwoChatError):
    def __init__(
        self, message: str, *, status_code: int, body: str = "", call_uuid: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.body = body
        self.call_uuid = call_uuid

    @property
    def _where(self) -> str:
        return f" (call {self.call_uuid})" if self.call_uuid else ""


class APIStatusError(_AnswerError):
    """The server answered with something other than a record.

    Attributes:
        status_code: The HTTP status.
        message: The server's own message (``error_message``, ``message`` or ``detail``).
        body: The start of the answer's body (at most 500 characters), for logs.
        call_uuid: The record asked for, if any.
        retry_after: Seconds the server asked to wait (``Retry-After``), if it said.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        body: str = "",
        call_uuid: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, body=body, call_uuid=call_uuid)
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"{self.status_code}: {self.message}{self._where}"


class BadRequestError(APIStatusError):
    """400: the server refused the request as malformed."""


class AuthenticationError(APIStatusError):
    """401: the API key is invalid."""


class PaymentRequiredError(APIStatusError):
    """402: the trial is over or the account's credits are used up."""


class PermissionDeniedError(APIStatusError):
    """403: no key reached the server, or it may not do this."""


class NotFoundError(APIStatusError):
    """404: no such record."""


class UnprocessableEntityError(APIStatusError):
    """422: the server could not process the input."""


class RateLimitError(APIStatusError):
    """429: too many requests this minute; ``retry_after`` is the server's wait, if said."""


class ServerError(APIStatusError):
    """5xx: the server failed; 500, 502, 503 and 504 are retried automatically."""


class RedirectError(APIStatusError):
    """A redirect the client did not follow: to another origin (the API key would go
    with it), or too many of them."""


class InvalidCallEventError(TwoChatError, ValueError):
    """A webhook delivery that is not a call event: too big, not JSON, not an object,
    no ``uuid``, or a field of the wrong type. The message says which; it never
    quotes the body."""


class ResponseValidationError(_AnswerError):
    """The answer is not the documented shape: not JSON, wrong types, no ``cdr``, too big.

    Attributes:
        status_code: The HTTP status of the answer.
        message: What is wrong, field by field where it can say.
        body: The start of the answer's body (at most 500 characters).
        call_uuid: The record asked for, if any.
    """

    def __str__(self) -> str:
        return f"invalid answer{self._where}: {self.message}"
