"""One export database's transactions: once more on a dropped connection, errors in
one line (the driver's reason, never SQLAlchemy's SQL and ids)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy.exc import DataError, SQLAlchemyError

from twochat_voip._errors import RecordRefusedError, SinkError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

_T = TypeVar("_T")


class Database:
    """An open engine and how to name it in messages.

    Attributes:
        engine: The SQLAlchemy engine (its pool replaces a dropped connection).
        description: Where it is, for messages (never a password).
        postgres: PostgreSQL, else SQLite.
    """

    def __init__(self, engine: AsyncEngine, description: str) -> None:
        self.engine = engine
        self.description = description
        self.postgres = engine.dialect.name == "postgresql"

    async def transaction(self, work: Callable[[AsyncConnection], Awaitable[_T]], doing: str) -> _T:
        """``work`` in one transaction, run once more if the connection was dropped.

        Raises:
            RecordRefusedError: the database refused the values (SQLSTATE class 22).
            SinkError: ``{doing} {description} failed: {reason}``, the second time.
        """
        for attempt in range(2):
            try:
                async with self.engine.begin() as connection:
                    return await work(connection)
            except UnicodeError as exc:  # SQLite's driver: a text no UTF-8 holds
                raise RecordRefusedError(f"{self.description} refused the record: {exc}") from None
            except (SQLAlchemyError, OSError) as exc:
                if about_the_data(exc):  # this record, not the database: the run goes on
                    raise RecordRefusedError(
                        f"{self.description} refused the record: {reason(exc)}"
                    ) from None
                if attempt:
                    raise SinkError(f"{doing} {self.description} failed: {reason(exc)}") from None
        raise AssertionError("unreachable")  # pragma: no cover


def about_the_data(exc: BaseException) -> bool:
    """Whether the database refused the values (SQLSTATE class 22), not the connection."""
    orig = getattr(exc, "orig", None)
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return isinstance(exc, DataError) or (isinstance(state, str) and state.startswith("22"))


def reason(exc: BaseException) -> str:
    """The driver's own one-line reason, without SQLAlchemy's SQL and links."""
    original = getattr(exc, "orig", None) or exc
    return str(original).splitlines()[0] if str(original) else type(original).__name__
