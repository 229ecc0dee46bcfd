"""Claims: exports on many hosts given the same ids share them through their database.

A row of ``call_detail_claims`` says which run fetches an id, until ``expires_at``
(seconds since the epoch, on the claiming host's clock). A run claims a chunk of ids
just before fetching them (one statement: insert, or take over a lease that ran out),
renews its live claims in the background, and marks each id done once it is stored
(in the write's transaction) or answered for good: no ``owner``, ``expires_at`` the
time it was done. Runs that started before that count it as done by another host;
runs that start later may claim it again (a call still ringing is asked again). A run
that ends lets go of the claims it did not finish; a killed one's run out after the
lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Collection
from functools import partial
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from twochat_voip._errors import SinkError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from twochat_voip.export._database import Database

CLAIMS_TABLE: Final = "call_detail_claims"
LEASE: Final = 60.0  # seconds a claim lasts unless renewed (every third of it)


class Claims:
    """This run's claims on ids, in one database's ``call_detail_claims`` table.

    Attributes:
        owner: This run's name in the table (random, new every run).
        lease: Seconds a claim lasts unless renewed; renewed every third of it.
        poll: Seconds between two looks at the ids other runs hold, at the end.
        clock: Seconds since the epoch (hosts' clocks must agree within a few seconds).
        by_others: Ids this run waited for that another host answered.
    """

    def __init__(self, metadata: sa.MetaData) -> None:
        self.table = sa.Table(
            CLAIMS_TABLE,
            metadata,
            sa.Column("call_uuid", sa.Text(), primary_key=True),
            sa.Column("owner", sa.Text()),
            sa.Column("expires_at", sa.Float(precision=53), nullable=False),
        )
        self.owner = uuid.uuid4().hex
        self.lease = LEASE
        self.poll = 1.0
        self.clock: Callable[[], float] = time.time
        self.by_others = 0
        self._started = 0.0
        self._database: Database | None = None
        self._renewing: asyncio.Task[None] | None = None

    def open(self, database: Database) -> None:
        self._database = database
        self._started = self.clock()

    def _open(self) -> Database:
        if self._database is None:
            raise SinkError("the sink is not open: use it with 'async with'")
        return self._database

    async def take(self, call_uuids: Collection[str]) -> set[str]:
        """Claim these ids where no live claim is held: the ids this run got."""
        if not call_uuids:
            return set()
        database = self._open()
        now, c = self.clock(), self.table.c
        rows = [
            {"call_uuid": i, "owner": self.owner, "expires_at": now + self.lease}
            for i in sorted(call_uuids)  # one order for every host: no deadlocks
        ]
        insert = (postgresql.insert if database.postgres else sqlite.insert)(self.table)
        statement = insert.values(rows).on_conflict_do_update(
            index_elements=[c.call_uuid],
            set_={"owner": insert.excluded.owner, "expires_at": insert.excluded.expires_at},
            # A live claim until its lease runs out; a done one if done before this run.
            where=sa.case(
                (c.owner.is_(None), c.expires_at < self._started), else_=c.expires_at < now
            ),
        )

        async def claim(connection: AsyncConnection) -> set[str]:
            got = await connection.execute(statement.returning(c.call_uuid))
            return set(got.scalars())

        got = await database.transaction(claim, "claiming ids in")
        if got and self._renewing is None:
            self._renewing = asyncio.create_task(self._renew())
        return got

    async def _renew(self) -> None:
        database, c = self._open(), self.table.c

        async def renew(connection: AsyncConnection) -> None:
            expires = self.clock() + self.lease
            await connection.execute(
                sa.update(self.table).where(c.owner == self.owner).values(expires_at=expires)
            )

        while True:
            await asyncio.sleep(self.lease / 3)
            # Not renewed this time (the database restarting): the next try may be.
            with contextlib.suppress(SinkError):
                await database.transaction(renew, "renewing claims in")

    async def finish(self, connection: AsyncConnection, call_uuid: str, *, done: bool) -> None:
        """In the caller's transaction: ``call_uuid`` is done (stored, or answered for
        good), or let go for another run to try."""
        c = self.table.c
        mine = sa.and_(c.call_uuid == call_uuid, c.owner == self.owner)
        if done:
            await connection.execute(
                sa.update(self.table).where(mine).values(owner=None, expires_at=self.clock())
            )
        else:
            await connection.execute(sa.delete(self.table).where(mine))

    async def wait(
        self, call_uuids: Collection[str], on_done: Callable[[int], None] | None = None
    ) -> AsyncIterator[str]:
        """Wait for ids other runs hold: count those they finish (also to ``on_done``),
        and yield those whose lease ran out (now this run's to fetch)."""
        database, c = self._open(), self.table.c
        left = set(call_uuids)
        while left:
            await asyncio.sleep(self.poll)
            query = sa.select(c.call_uuid).where(c.call_uuid.in_(left), c.owner.is_(None))
            done = await database.transaction(partial(_scalars, query=query), "waiting in")
            self.by_others += len(done)
            if on_done is not None and done:
                on_done(len(done))
            left -= done
            got = await self.take(left)
            left -= got
            for call_uuid in sorted(got):
                yield call_uuid

    async def close(self) -> None:
        """Stop renewing; let go of the claims not finished."""
        if self._renewing is not None:
            self._renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewing
            self._renewing = None
        if self._database is None:
            return
        c = self.table.c
        leave = sa.delete(self.table).where(c.owner == self.owner)
        with contextlib.suppress(SinkError):  # else they run out after the lease
            await self._database.transaction(lambda db: db.execute(leave), "letting go of ids in")
        self._database = None


async def _scalars(connection: AsyncConnection, *, query: sa.Select[Any]) -> set[str]:
    return set((await connection.execute(query)).scalars())
