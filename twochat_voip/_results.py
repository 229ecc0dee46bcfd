"""What a bulk run answers for each id: a :class:`CallSuccess` or a :class:`CallFailure`
(both :class:`CallResult`\\ s), and the fast way to make them on the hot path.

The two subclasses exist for type checkers: ``ok``, ``cdr`` and ``error`` are typed
exactly on each, so ``if result.ok:`` (or ``if result.error is None:``) narrows an
:data:`AnyCallResult` to the one it is, and ``result.cdr`` is a record there, not
``CallDetailRecord | None``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, Self, TypeAlias, cast

import attrs

from twochat_voip._errors import TwoChatError
from twochat_voip._models import CallDetailRecord

__all__ = ["AnyCallResult", "CallFailure", "CallResult", "CallSuccess", "failure", "success"]


@attrs.frozen(kw_only=True, eq=False)
class CallResult:
    """The outcome for one id of a bulk run: a record or the error that stopped it.

    Runs yield its two subclasses, :class:`CallSuccess` and :class:`CallFailure`
    (typed together as :data:`AnyCallResult`), on which ``if result.ok:`` tells a
    type checker which of ``cdr`` and ``error`` is set. Made with a record and no
    error, ``CallResult(...)`` is a :class:`CallSuccess`; with an error and no record,
    a :class:`CallFailure` (``attrs.evolve`` too). Results are equal when their four
    fields are, whichever class they are.

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

    def __new__(cls, **fields: Any) -> Self:
        # The class follows the fields: CallResult(cdr=record) is a CallSuccess, and
        # attrs.evolve(success, cdr=None, error=e) a CallFailure (``ok`` never
        # contradicts ``error``). A subclass asked for fields it cannot hold refuses.
        if not fields:  # unpickling and copying: the fields come after
            return super().__new__(cls)
        kind = _kind_of(fields.get("cdr"), fields.get("error"))
        if kind is None:
            if cls is not CallResult:
                needs = "a record and no error" if cls is CallSuccess else "an error and no record"
                raise TypeError(
                    f"a {cls.__name__} has {needs} (CallResult(...) picks the class "
                    "from the fields)"
                )
            kind = CallResult
        instance: Any = object.__new__(kind)
        if not isinstance(instance, cls):  # so Python will not call __init__ itself
            instance.__init__(**fields)
        return cast("Self", instance)

    @property
    def ok(self) -> bool:
        """Whether the record was fetched."""
        return self.error is None

    def __eq__(self, other: object) -> bool:
        # Value equality across the family: a CallResult(...) written in a test equals
        # the CallSuccess a run yields for the same fields.
        if not isinstance(other, CallResult):
            return NotImplemented
        return (self.call_uuid, self.cdr, self.error, self.index) == (
            other.call_uuid,
            other.cdr,
            other.error,
            other.index,
        )

    def __hash__(self) -> int:
        return hash((CallResult, self.call_uuid, self.cdr, self.error, self.index))


@attrs.frozen(kw_only=True, eq=False)
class CallSuccess(CallResult):
    """A :class:`CallResult` whose record was fetched: ``ok`` is ``True``, ``cdr`` the
    record and ``error`` ``None``, for type checkers too.

    Attributes:
        call_uuid: The id as given.
        cdr: The record.
        error: Always ``None``.
        index: The id's position in the input, from 0.
    """

    # The fields again, in the base's order: the types narrow, the layout does not
    # change (no new slots; repr and attrs.fields() keep the base's order).
    call_uuid: str
    cdr: CallDetailRecord
    error: None = None
    index: int = 0

    @property
    def ok(self) -> Literal[True]:
        """Always ``True``: the record was fetched."""
        return True


@attrs.frozen(kw_only=True, eq=False)
class CallFailure(CallResult):
    """A :class:`CallResult` whose id got no record: ``ok`` is ``False``, ``error``
    says why and ``cdr`` is ``None``, for type checkers too.

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


def _kind_of(cdr: object, error: object) -> type[CallResult] | None:
    """The class that holds ``cdr`` and ``error``: ``None`` for both or neither."""
    if error is None:
        return None if cdr is None else CallSuccess
    return CallFailure if cdr is None else None


AnyCallResult: TypeAlias = CallSuccess | CallFailure
"""What bulk runs yield: ``CallSuccess | CallFailure``. ``if result.ok:`` (or
``if result.error is None:``, or ``match result: case CallSuccess():``) narrows it."""


def _plain(cls: type[CallResult]) -> bool:
    """Whether ``cls.__init__`` does nothing but set the fields (no validators,
    converters or hooks), so that setting the slots directly makes the same instance."""
    return all(f.validator is None and f.converter is None for f in attrs.fields(cls)) and not (
        hasattr(cls, "__attrs_post_init__") or hasattr(cls, "__attrs_pre_init__")
    )


def _makers() -> tuple[
    Callable[[str, CallDetailRecord, int], CallSuccess],
    Callable[[str, TwoChatError | ValueError, int], CallFailure],
]:
    """Constructors of :class:`CallSuccess` and :class:`CallFailure` for the hot path,
    positional and without the frozen ``__init__``'s ``object.__setattr__`` per field:
    they set the slots directly, half the cost, for the same instance. Used only while
    the classes have nothing else for ``__init__`` to do."""
    if not (_plain(CallSuccess) and _plain(CallFailure)):  # pragma: no cover - a guard
        return (
            lambda call_uuid, cdr, index: CallSuccess(call_uuid=call_uuid, cdr=cdr, index=index),
            lambda call_uuid, error, index: CallFailure(
                call_uuid=call_uuid, error=error, index=index
            ),
        )
    # The slots are CallResult's: the subclasses add none.
    set_uuid, set_cdr, set_error, set_index = (
        CallResult.__dict__[f.name].__set__ for f in attrs.fields(CallResult)
    )
    new = object.__new__

    def make_success(call_uuid: str, cdr: CallDetailRecord, index: int) -> CallSuccess:
        result: CallSuccess = new(CallSuccess)
        set_uuid(result, call_uuid)
        set_cdr(result, cdr)
        set_error(result, None)
        set_index(result, index)
        return result

    def make_failure(call_uuid: str, error: TwoChatError | ValueError, index: int) -> CallFailure:
        result: CallFailure = new(CallFailure)
        set_uuid(result, call_uuid)
        set_cdr(result, None)
        set_error(result, error)
        set_index(result, index)
        return result

    return make_success, make_failure


success, failure = _makers()
"""``success(call_uuid, cdr, index)``, ``failure(call_uuid, error, index)``: a
:class:`CallSuccess`, a :class:`CallFailure`, made fast."""
