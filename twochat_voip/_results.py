"""What a bulk run answers for each id: a :class:`CallSuccess` or a :class:`CallFailure`,
whose union is :data:`CallResult`."""

from __future__ import annotations

from typing import Literal, TypeAlias

import attrs

from twochat_voip._errors import TwoChatError
from twochat_voip._models import CallDetailRecord


@attrs.frozen(kw_only=True)
class CallSuccess:
    """An id whose record was fetched (``ok`` is ``True``, for type checkers too).

    Attributes:
        call_uuid: The id as given.
        cdr: The record.
        error: Always ``None``.
        index: The id's position in the input, from 0.
    """

    call_uuid: str
    cdr: CallDetailRecord
    error: None = None
    index: int = 0

    @property
    def ok(self) -> Literal[True]:
        """Always ``True``: the record was fetched."""
        return True


@attrs.frozen(kw_only=True)
class CallFailure:
    """An id that got no record (``ok`` is ``False``, for type checkers too).

    Attributes:
        call_uuid: The id as given (``repr()`` of it, if it was not a string).
        cdr: Always ``None``.
        error: Why there is no record, after any retries: a :class:`TwoChatError`.
        index: The id's position in the input, from 0.
    """

    call_uuid: str
    cdr: None = None
    error: TwoChatError | ValueError
    index: int = 0

    @property
    def ok(self) -> Literal[False]:
        """Always ``False``: there is no record."""
        return False


CallResult: TypeAlias = CallSuccess | CallFailure
"""What ``get_calls`` yields for one id: ``CallSuccess | CallFailure``; ``if result.ok:``
narrows it, so that ``result.cdr`` is a record there."""

AnyCallResult: TypeAlias = CallResult
"""The same union as :data:`CallResult`, under the name it had when that was a class."""
