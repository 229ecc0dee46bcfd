"""What a bulk run answers for each id: a :class:`CallSuccess` or a :class:`CallFailure`.

Two plain frozen classes, and :data:`CallResult` their union. ``ok``, ``cdr`` and
``error`` are typed exactly on each, so ``if result.ok:`` (or ``if result.error is
None:``, or a ``match``) narrows a :data:`CallResult` to the one it is, and
``result.cdr`` is a record there, not ``CallDetailRecord | None``.
"""

from __future__ import annotations

from typing import Literal, TypeAlias

import attrs

from twochat_voip._errors import TwoChatError
from twochat_voip._models import CallDetailRecord

__all__ = ["AnyCallResult", "CallFailure", "CallResult", "CallSuccess"]


@attrs.frozen(kw_only=True)
class CallSuccess:
    """An id whose record was fetched: ``ok`` is ``True``, ``cdr`` the record and
    ``error`` ``None``, for type checkers too.

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
    """An id that got no record: ``ok`` is ``False``, ``error`` says why and ``cdr``
    is ``None``, for type checkers too.

    Attributes:
        call_uuid: The id as given (``repr()`` of it, if it was not a string).
        cdr: Always ``None``.
        error: Why there is no record: a :class:`TwoChatError` (an
            ``InvalidCallUUIDError`` is also a ``ValueError``), after any retries.
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
"""The outcome for one id of a bulk run: ``CallSuccess | CallFailure``, what
``get_calls`` yields. ``if result.ok:`` (or ``if result.error is None:``, or
``match result: case CallSuccess():``) narrows it; ``isinstance(x, CallResult)``
holds for both. A type, not a class: make a :class:`CallSuccess` or a
:class:`CallFailure`."""

AnyCallResult: TypeAlias = CallResult
"""The same union as :data:`CallResult`, under the name it had when ``CallResult``
was a class; kept so code that imports it keeps working."""
