"""The exception tree."""

from __future__ import annotations

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
