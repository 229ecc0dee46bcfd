"""The exception tree."""

from __future__ import annotations

import copy
import pickle

import pytest

import twochat_voip as tv


@pytest.mark.parametrize(
    ("child", "parent"),
    [
        (tv.APITimeoutError, tv.APIConnectionError),
        (tv.APIConnectionError, tv.TwoChatError),
        (tv.BadRequestError, tv.APIStatusError),
        (tv.AuthenticationError, tv.APIStatusError),
        (tv.PaymentRequiredError, tv.APIStatusError),
        (tv.PermissionDeniedError, tv.APIStatusError),
        (tv.NotFoundError, tv.APIStatusError),
        (tv.UnprocessableEntityError, tv.APIStatusError),
        (tv.RateLimitError, tv.APIStatusError),
        (tv.ServerError, tv.APIStatusError),
        (tv.RedirectError, tv.APIStatusError),
        (tv.APIStatusError, tv.TwoChatError),
        (tv.ResponseValidationError, tv.TwoChatError),
        (tv.MissingAPIKeyError, tv.TwoChatError),
        (tv.ClientClosedError, tv.TwoChatError),
        (tv.ClientClosedError, RuntimeError),
        (tv.EventLoopMismatchError, tv.TwoChatError),
        (tv.EventLoopMismatchError, RuntimeError),
        (tv.InvalidAPIKeyError, tv.TwoChatError),
        (tv.InvalidAPIKeyError, ValueError),
    ],
)
def test_tree(child: type[Exception], parent: type[Exception]) -> None:
    """The documented hierarchy holds."""
    assert issubclass(child, parent)


def test_validation_error_is_not_a_status_error() -> None:
    """An unreadable 200 is not confused with an error status."""
    assert not issubclass(tv.ResponseValidationError, tv.APIStatusError)


def test_status_error_str_names_status_and_call() -> None:
    """str() gives the status, the server's words and the call."""
    error = tv.NotFoundError("Call not found", status_code=404, call_uuid="CDR1")
    assert str(error) == "404: Call not found (call CDR1)"
    assert str(tv.ServerError("Bad Gateway", status_code=502)) == "502: Bad Gateway"


def test_validation_error_str() -> None:
    """str() of a validation error says the answer was invalid and why."""
    error = tv.ResponseValidationError("no 'cdr'", status_code=200, call_uuid="CDR1")
    assert str(error) == "invalid answer (call CDR1): no 'cdr'"
    assert str(tv.ResponseValidationError("x", status_code=200)) == "invalid answer: x"


def test_every_public_name_is_exported() -> None:
    """__all__ is sorted and every name in it exists."""
    assert sorted(tv.__all__) == tv.__all__
    for name in tv.__all__:
        assert hasattr(tv, name), name


@pytest.mark.parametrize(
    ("attempts", "elapsed", "said"),
    [
        (None, None, "could not connect to h:1 (connection refused)"),
        (1, 0.0423, "could not connect to h:1 (connection refused) after 1 attempt within 42 ms"),
        (4, 1.234, "could not connect to h:1 (connection refused) after 4 attempts within 1.2 s"),
        (4, 123.4, "could not connect to h:1 (connection refused) after 4 attempts within 123 s"),
    ],
)
def test_connection_error_str_says_attempts_and_time(
    attempts: int | None, elapsed: float | None, said: str
) -> None:
    """str() is what failed, then how many attempts over how long, when counted."""
    error = tv.APIConnectionError("could not connect to h:1 (connection refused)")
    error.attempts, error.elapsed = attempts, elapsed
    assert str(error) == said
    assert error.message == "could not connect to h:1 (connection refused)"


def _every_error() -> list[tv.TwoChatError]:
    """One of each exported error, made as the SDK makes it."""
    return [
        tv.TwoChatError("base"),
        tv.MissingAPIKeyError("no key"),
        tv.InvalidAPIKeyError("a tab at position 3"),
        tv.InvalidCallUUIDError("bad id"),
        tv.ClientClosedError("closed"),
        tv.EventLoopMismatchError("closed"),
        tv.BudgetExhaustedError(5, call_uuid="CDR1"),
        tv.RateLimiterUnavailableError("redis down"),
        tv.RateLimiterStoreError("a list at the key", key="twochat-voip:ratelimit:{ab}"),
        tv.SinkError("disk full"),
        tv.RecordRefusedError("refused"),
        tv.APIConnectionError("refused", call_uuid="CDR1"),
        tv.APITimeoutError("late", call_uuid="CDR1"),
        *(
            cls("answer", status_code=status, body="{}", call_uuid="CDR1", retry_after=2.0)
            for cls, status in [
                (tv.APIStatusError, 418),
                (tv.BadRequestError, 400),
                (tv.AuthenticationError, 401),
                (tv.PaymentRequiredError, 402),
                (tv.PermissionDeniedError, 403),
                (tv.NotFoundError, 404),
                (tv.UnprocessableEntityError, 422),
                (tv.RateLimitError, 429),
                (tv.ServerError, 503),
                (tv.RedirectError, 302),
            ]
        ),
        tv.InvalidCallEventError("not an event"),
        tv.ResponseValidationError("not JSON", status_code=200, body="<", call_uuid="CDR1"),
    ]


def test_every_error_is_in_the_list_below() -> None:
    """The pickling test covers every error the package exports."""
    exported = {
        value
        for value in vars(tv).values()
        if isinstance(value, type) and issubclass(value, tv.TwoChatError)
    }
    assert exported == {type(error) for error in _every_error()}


@pytest.mark.parametrize("error", _every_error(), ids=lambda error: type(error).__name__)
def test_every_error_pickles_and_copies_whole(error: tv.TwoChatError) -> None:
    """A result's error survives pickling (a process pool) and deepcopy: same class,
    same message, same attributes; a keyword-only __init__ used to break it."""
    if isinstance(error, tv.APIConnectionError):
        error.attempts, error.elapsed = 4, 1.5
    pickled = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    for copied in (pickled, copy.deepcopy(error)):
        assert type(copied) is type(error)
        assert str(copied) == str(error)
        assert vars(copied) == vars(error)


def test_errors_show_their_public_home() -> None:
    """A traceback names twochat_voip.NotFoundError, the path users import."""
    assert f"{tv.NotFoundError.__module__}.{tv.NotFoundError.__qualname__}" == (
        "twochat_voip.NotFoundError"
    )
    public = [getattr(tv, name) for name in tv.__all__]
    errors = [c for c in public if isinstance(c, type) and issubclass(c, BaseException)]
    assert {c.__module__ for c in errors} == {"twochat_voip"}
    assert tv.VoIPClient.__module__ == "twochat_voip"
