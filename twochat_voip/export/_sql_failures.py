"""A SQL output's failures: the ``call_detail_failures`` table beside its records, so
that exports into one database need no failures file each."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from twochat_voip._errors import APIStatusError, NotFoundError, RecordRefusedError, SinkError
from twochat_voip._results import CallFailure

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from twochat_voip.export._claims import Claims
    from twochat_voip.export._database import Database

FAILURES_TABLE: Final = "call_detail_failures"


def failures_table(metadata: sa.MetaData, timestamp: sa.types.TypeEngine[Any]) -> sa.Table:
    """The table: one row per failed id, this run's or the last that tried it."""
    return sa.Table(
        FAILURES_TABLE,
        metadata,
        sa.Column("call_uuid", sa.Text(), primary_key=True),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("status_code", sa.Integer()),
        sa.Column("failed_at", timestamp, nullable=False),
    )


class SQLFailures:
    """The :class:`~twochat_voip.export._failures.FailureStore` of a SQL output: open
    only while its sink is.

    Attributes:
        description: Where the failures are kept, for messages (never a password).
        count: Failures added by this run.
    """

    def __init__(
        self, table: sa.Table, claims: Claims, database: Callable[[], Database | None]
    ) -> None:
        self.table = table
        self._claims = claims
        self._database = database
        database_now = database()
        where = database_now.description if database_now else "the output database"
        self.description = f"the table {FAILURES_TABLE} in {where}"
        self.count = 0

    def _open(self) -> Database:
        database = self._database()
        if database is None:
            raise SinkError("the failures table is not open: open its SQLSink first")
        return database

    async def open(self) -> None:
        self._open()  # the sink made the table, under its lock

    async def known_not_found(self, call_uuids: Collection[str]) -> set[str]:
        c = self.table.c
        query = sa.select(c.call_uuid).where(
            c.call_uuid.in_(list(call_uuids)), c.status_code == 404
        )

        async def select(connection: AsyncConnection) -> set[str]:
            return set((await connection.execute(query)).scalars())

        return await self._open().transaction(select, "reading the failures in")

    async def add(self, failure: CallFailure) -> None:
        database, error = self._open(), failure.error
        values = {
            "call_uuid": failure.call_uuid,
            "error": type(error).__name__,
            "message": str(error),
            "status_code": error.status_code if isinstance(error, APIStatusError) else None,
            "failed_at": dt.datetime.now(dt.UTC),
        }
        insert = (postgresql.insert if database.postgres else sqlite.insert)(self.table)
        upsert = insert.values(values).on_conflict_do_update(
            index_elements=[self.table.c.call_uuid],
            set_={name: insert.excluded[name] for name in values if name != "call_uuid"},
        )
        # An answer for good is done; after a passing error another host may try.
        done = isinstance(error, NotFoundError | RecordRefusedError)

        async def keep(connection: AsyncConnection) -> None:
            await connection.execute(upsert)
            await self._claims.finish(connection, failure.call_uuid, done=done)

        await database.transaction(keep, "writing a failure to")
        self.count += 1

    async def forget(self, call_uuid: str) -> None:
        forget = sa.delete(self.table).where(self.table.c.call_uuid == call_uuid)
        await self._open().transaction(lambda db: db.execute(forget), "writing to")

    async def close(self, *, finished: bool) -> None:
        """Nothing to let go: the rows stay until their ids are stored."""
