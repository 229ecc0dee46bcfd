"""What a bulk run answers for each id: :data:`CallResult`."""

from __future__ import annotations

from typing import Literal, TypeAlias

import attrs

from twochat_voip._errors import TwoChatError
from twochat_voip._models import CallDetailRecord


@attrs.frozen(kw_only=True)
class CallSuccess:
    """An id whose record was fetched (``ok`` is ``True``, for type checkers too).

    Attributes:
        call_uuid: The id as given; ``index``: its position in the input, from 0.
        cdr: The record (``error``: always ``None``).
    """

    call_uuid: str
    cdr: CallDetailRecord
    error: None = None
    index: int = 0

    @property
    def ok(self) -> Literal[True]:
        """Always ``True``."""
        return True


@attrs.frozen(kw_only=True)
class CallFailure:
    """An id that got no record (``ok`` is ``False``, for type checkers too).

    Attributes:
        call_uuid: The id as given (its ``repr()``, if not a string); ``index``: its
            position in the input, from 0.
        error: Why there is no record, after any retries (``cdr``: always ``None``).
    """

    call_uuid: str
    cdr: None = None
    error: TwoChatError | ValueError
    index: int = 0

    @property
    def ok(self) -> Literal[False]:
        """Always ``False``."""
        return False


CallResult: TypeAlias = CallSuccess | CallFailure
"""What ``get_calls`` yields for one id; ``if result.ok:`` narrows it to :class:`CallSuccess`."""

AnyCallResult: TypeAlias = CallResult
"""The same union as :data:`CallResult`, under its old name."""
