"""What a bulk run answers for each id: :class:`CallResult`, and the fast way to make
one on the hot path."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import attrs

from twochat_voip._errors import TwoChatError
from twochat_voip._models import CallDetailRecord

__all__ = ["CallResult", "result"]


@attrs.frozen(kw_only=True)
class CallResult:
    """The outcome for one id of a bulk run: a record or the error that stopped it.

    Attributes:
        call_uuid: The id as given (``repr()`` of it, if it was not a string).
        cdr: The record, when it was fetched.
        error: Why it was not: a :class:`TwoChatError` (an ``InvalidCallUUIDError``
            is also a ``ValueError``), after any retries.
        index: The id's position in the input, from 0.
    """

    call_uuid: str
    cdr: CallDetailRecord | None = None
    error: TwoChatError | ValueError | None = None
    index: int = 0

    @property
    def ok(self) -> bool:
        """Whether the record was fetched."""
        return self.error is None


def _result_maker() -> Callable[[str, CallDetailRecord | None, Any, int], CallResult]:
    """A constructor of :class:`CallResult` for the hot path, positional and without
    the frozen ``__init__``'s ``object.__setattr__`` per field: it sets the slots
    directly, half the cost, for the same instance. Used only while the class has
    nothing else for ``__init__`` to do (no validators, converters or hooks)."""
    fields = attrs.fields(CallResult)
    plain = all(f.validator is None and f.converter is None for f in fields) and not (
        hasattr(CallResult, "__attrs_post_init__") or hasattr(CallResult, "__attrs_pre_init__")
    )
    if not plain:  # pragma: no cover - a guard for whoever adds a validator
        return lambda call_uuid, cdr, error, index: CallResult(
            call_uuid=call_uuid, cdr=cdr, error=error, index=index
        )
    set_uuid, set_cdr, set_error, set_index = (CallResult.__dict__[f.name].__set__ for f in fields)
    new = object.__new__

    def make(call_uuid: str, cdr: CallDetailRecord | None, error: Any, index: int) -> CallResult:
        result: CallResult = new(CallResult)
        set_uuid(result, call_uuid)
        set_cdr(result, cdr)
        set_error(result, error)
        set_index(result, index)
        return result

    return make


result: Final = _result_maker()
"""``result(call_uuid, cdr, error, index)``: a :class:`CallResult`, made fast."""
