"""Exports into a SQL database (SQLite or PostgreSQL): needs the ``db`` extra,
``pip install 'twochat-voip[db]'``. One upserted row per record (the newest view of
the call); the tables are in docs/cli.md.

::

    async with VoIPClient() as voip:
        await export_calls(voip, ids, SQLSink("postgresql://export@db/billing"))
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Mapping
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from twochat_voip._converter import format_timestamp, parse_timestamp
from twochat_voip._errors import SinkError
from twochat_voip._models import CallDetailRecord
from twochat_voip.export._records import COLUMNS, dumps_wire, postgres_safe
from twochat_voip.export._sinks import database_url, shown

try:
    import sqlalchemy as sa
    from sqlalchemy.dialects import postgresql, sqlite
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError
    from sqlalchemy.ext.asyncio import create_async_engine

    from twochat_voip.export._claims import Claims
    from twochat_voip.export._database import Database, reason
    from twochat_voip.export._sql_failures import SQLFailures, failures_table
except ImportError as exc:  # pragma: no cover - exercised only without the db extra
    raise ImportError(
        "exporting to a database needs the db extra: pip install 'twochat-voip[db]'"
    ) from exc

if TYPE_CHECKING:
    from sqlalchemy.engine import Dialect
    from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["TABLE_NAME", "SQLSink"]

TABLE_NAME: Final = "call_detail_records"
ALIASES_TABLE: Final = "call_detail_aliases"
_INT64: Final = (-(2**63), 2**63 - 1)
_CREATE_LOCK: Final = 0x2C4A7_CD8  # any constant: the advisory lock taken to create the table


class _AsText(sa.types.TypeDecorator[Any]):
    """A value SQLite has no exact type for (a timestamp, a decimal), kept as its text."""

    impl = sa.Text
    cache_ok = True

    def __init__(self, dump: Callable[[Any], str], load: Callable[[str], Any]) -> None:
        super().__init__()
        self.dump, self.load = dump, load

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else self.dump(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        return None if value is None else self.load(value)


_TIMESTAMP: Final = sa.DateTime(timezone=True).with_variant(
    _AsText(format_timestamp, parse_timestamp), "sqlite"
)
_TYPES: Final[dict[Any, sa.types.TypeEngine[Any]]] = {
    bool: sa.Boolean(),
    int: sa.BigInteger(),
    Decimal: sa.Numeric(asdecimal=True).with_variant(_AsText(str, Decimal), "sqlite"),
    dt.datetime: _TIMESTAMP,
}


class SQLSink:
    """Records into the ``call_detail_records`` table of a database (created if missing).

    Every record is upserted: a row is the newest view of its call. Only ids with a
    final row are held; a call still ringing or answered is asked for again by the
    next run.
    ``call_detail_failures`` keeps the failed ids (:meth:`failure_store`), and
    ``call_detail_claims`` lets exports on many hosts share one id list.

    Args:
        url: ``postgresql://user@host/db``, ``sqlite:///calls.db`` or a path ending
            ``.db``/``.sqlite``/``.sqlite3``. A password in it is never shown.
    """

    keeps_pending = True  # a record not final yet is stored too: its row is the newest view

    def __init__(self, url: str | Path) -> None:
        async_url = database_url(url)
        if async_url is None:
            raise SinkError(f"{url!s} is not a database URL or an SQLite file name")
        try:
            self._url = make_url(async_url)
        except (ArgumentError, ValueError):
            # Not the parser's words: they quote the password.
            raise SinkError(
                f"{shown(str(url))} is not a database URL (a port that is not a number, "
                "or a character in the password that needs %-encoding?)"
            ) from None
        if "sslmode" in self._url.query:  # libpq's word; asyncpg's is ssl
            ssl = self._url.query["sslmode"]
            self._url = self._url.difference_update_query(["sslmode"]).update_query_dict(
                {"ssl": ssl}
            )
        self._database: Database | None = None
        self._upsert: Any = None
        self._metadata = sa.MetaData()
        self.table = sa.Table(
            TABLE_NAME,
            self._metadata,
            *(
                sa.Column(c.name, _TYPES.get(c.type, sa.Text()), primary_key=c.name == "uuid")
                for c in COLUMNS
            ),
            sa.Column("final", sa.Boolean(), nullable=False),
            sa.Column(
                "wire", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
            ),
            sa.Column("fetched_at", _TIMESTAMP),
        )
        self.aliases = sa.Table(
            ALIASES_TABLE,
            self._metadata,
            sa.Column("asked_id", sa.Text(), primary_key=True),
            sa.Column("uuid", sa.Text(), nullable=False),
        )
        self.claims = Claims(self._metadata)
        self._failures = failures_table(self._metadata, _TIMESTAMP)

    @property
    def description(self) -> str:
        if self._url.drivername.startswith("sqlite") and self._url.database:
            return self._url.database
        plain = self._url.set(drivername=self._url.get_backend_name())
        return shown(plain.render_as_string(hide_password=True))

    def failure_store(self) -> SQLFailures:
        """The failed ids, in ``call_detail_failures`` beside the records (usable while
        the sink is open)."""
        return SQLFailures(self._failures, self.claims, lambda: self._database)

    async def __aenter__(self) -> SQLSink:
        try:
            # pre_ping: a connection dropped between two records is replaced, not reported.
            engine = create_async_engine(self._url, json_serializer=dumps_wire, pool_pre_ping=True)
        except (SQLAlchemyError, TypeError, ValueError) as exc:
            raise SinkError(f"cannot use {self.description}: {reason(exc)}") from None
        postgres = engine.dialect.name == "postgresql"
        if not postgres:
            sa.event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        try:
            async with engine.begin() as connection:
                if postgres:  # exports starting at once would race to create the tables
                    await connection.execute(
                        sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CREATE_LOCK}
                    )
                for table in self._metadata.sorted_tables:  # (SQLite: exports racing too)
                    await connection.execute(sa.schema.CreateTable(table, if_not_exists=True))
                problem = await connection.run_sync(self._shape_problem)
        except (SQLAlchemyError, OSError, TypeError, ValueError) as exc:
            await engine.dispose()
            raise SinkError(f"cannot use {self.description}: {reason(exc)}") from None
        if problem:
            await engine.dispose()
            raise SinkError(
                f"{self.description} has a table {TABLE_NAME} of another shape ({problem}); "
                "export into another database"
            )
        statement = (postgresql.insert if postgres else sqlite.insert)(self.table)
        self._upsert = statement.on_conflict_do_update(
            index_elements=[self.table.c.uuid],
            set_={
                c.name: statement.excluded[c.name] for c in self.table.columns if c.name != "uuid"
            },
        )
        self._database = Database(engine, self.description)
        self.claims.open(self._database)
        return self

    def _shape_problem(self, connection: sa.Connection) -> str | None:
        """What keeps an existing table from taking our rows: a missing column, one of
        another type (by affinity), no primary key on ``uuid``."""
        inspector = sa.inspect(connection)
        there = {c["name"]: c["type"] for c in inspector.get_columns(TABLE_NAME)}
        if missing := [c.name for c in self.table.columns if c.name not in there]:
            return f"no {', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}"
        dialect = connection.dialect
        for column in self.table.columns:
            ours, theirs = (
                _affinity(t.compile(dialect=dialect)) for t in (column.type, there[column.name])
            )
            if ours != theirs:
                return f"{column.name} is {theirs}, not {ours}"
        if inspector.get_pk_constraint(TABLE_NAME)["constrained_columns"] != ["uuid"]:
            return "its primary key is not uuid"
        return None

    async def __aexit__(self, *exc_info: object) -> None:
        if self._database is not None:
            await self.claims.close()
            await self._database.engine.dispose()
            self._database = None

    def _connected(self) -> Database:
        if self._database is None:
            raise SinkError("the sink is not open: use it with 'async with'")
        return self._database

    async def held(self, call_uuids: Collection[str]) -> set[str]:
        """Which of these ids (as asked for) name a final row."""
        ids, c, a = list(call_uuids), self.table.c, self.aliases.c
        query = sa.union(
            sa.select(c.uuid).where(c.uuid.in_(ids), c.final),
            sa.select(a.asked_id)
            .join(self.table, c.uuid == a.uuid)
            .where(a.asked_id.in_(ids), c.final),
        )

        async def select(connection: AsyncConnection) -> set[str]:
            return set((await connection.execute(query)).scalars())

        return await self._connected().transaction(select, "reading which ids are held in")

    async def write(self, asked: str, record: CallDetailRecord, wire: Mapping[str, Any]) -> None:
        database = self._connected()
        values: dict[str, Any] = {column.name: column.get(record) for column in COLUMNS}
        for name, value in values.items():
            if type(value) is int and not _INT64[0] <= value <= _INT64[1]:
                values[name] = None  # beyond BIGINT: the wire column keeps it exactly
        values["final"] = record.is_final
        values["wire"] = dict(wire)
        values["fetched_at"] = dt.datetime.now(dt.UTC)
        if database.postgres:  # its text and jsonb hold no NUL and no half an emoji
            values = postgres_safe(values)
        alias = None
        if asked != values["uuid"]:
            insert = (postgresql.insert if database.postgres else sqlite.insert)(self.aliases)
            alias = insert.values(asked_id=asked, uuid=values["uuid"]).on_conflict_do_update(
                index_elements=[self.aliases.c.asked_id], set_={"uuid": values["uuid"]}
            )

        async def store(connection: AsyncConnection) -> None:
            await connection.execute(self._upsert, values)
            if alias is not None:
                await connection.execute(alias)
            await self.claims.finish(connection, asked, done=True)

        await database.transaction(store, "writing to")


def _affinity(declared: str) -> str:
    """A column type's kind, as SQLite's affinity rules read its name (and PostgreSQL's
    names for the kinds SQLite has no word for)."""
    name = declared.upper()
    for words, kind in (
        (("INT",), "an integer"),
        (("CHAR", "CLOB", "TEXT"), "text"),
        (("BOOL",), "a boolean"),
        (("TIMESTAMP WITH", "TIMESTAMPTZ"), "a timestamp with time zone"),
        (("TIMESTAMP", "DATETIME", "DATE", "TIME"), "a timestamp without time zone"),
        (("NUMERIC", "DECIMAL"), "an exact number"),
        (("REAL", "FLOA", "DOUB"), "a float"),
        (("JSON",), "JSON"),
    ):
        if any(word in name for word in words):
            return kind
    return name


def _sqlite_pragmas(connection: Any, _: object) -> None:
    # WAL: readers do not block the export; NORMAL: no fsync a commit, safe on a crash.
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
