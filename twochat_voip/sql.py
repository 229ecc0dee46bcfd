"""Exports into a SQL database (SQLite or PostgreSQL): needs the ``db`` extra,
``pip install 'twochat-voip[db]'``. One upserted row per record; the table is in
docs/cli.md.

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
from twochat_voip._errors import RecordRefusedError, SinkError
from twochat_voip._models import CallDetailRecord
from twochat_voip.export._records import COLUMNS, dumps_wire
from twochat_voip.export._sinks import database_url, shown

try:
    import sqlalchemy as sa
    from sqlalchemy.dialects import postgresql, sqlite
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, DataError, SQLAlchemyError
    from sqlalchemy.ext.asyncio import create_async_engine
except ImportError as exc:  # pragma: no cover - exercised only without the db extra
    raise ImportError(
        "exporting to a database needs the db extra: pip install 'twochat-voip[db]'"
    ) from exc

if TYPE_CHECKING:
    from sqlalchemy.engine import Dialect
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["TABLE_NAME", "SQLSink"]

TABLE_NAME: Final = "call_detail_records"
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

    Args:
        url: ``postgresql://user@host/db``, ``sqlite:///calls.db`` or a path ending
            ``.db``/``.sqlite``/``.sqlite3``. A password in it is never shown.
    """

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
        self._engine: AsyncEngine | None = None
        self._upsert: Any = None
        self._metadata = sa.MetaData()
        self.table = sa.Table(
            TABLE_NAME,
            self._metadata,
            *(
                sa.Column(c.name, _TYPES.get(c.type, sa.Text()), primary_key=c.name == "uuid")
                for c in COLUMNS
            ),
            sa.Column("asked_id", sa.Text(), index=True),
            sa.Column(
                "wire", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
            ),
            sa.Column("fetched_at", _TIMESTAMP),
        )

    @property
    def description(self) -> str:
        if self._url.drivername.startswith("sqlite") and self._url.database:
            return self._url.database
        plain = self._url.set(drivername=self._url.get_backend_name())
        return shown(plain.render_as_string(hide_password=True))

    async def __aenter__(self) -> SQLSink:
        try:
            # pre_ping: a connection dropped between two records is replaced, not reported.
            engine = create_async_engine(self._url, json_serializer=dumps_wire, pool_pre_ping=True)
        except (SQLAlchemyError, TypeError, ValueError) as exc:
            raise SinkError(f"cannot use {self.description}: {_reason(exc)}") from None
        postgres = engine.dialect.name == "postgresql"
        if not postgres:
            sa.event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        try:
            async with engine.begin() as connection:
                if postgres:  # exports starting at once would race to create the table
                    await connection.execute(
                        sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CREATE_LOCK}
                    )
                await connection.run_sync(self._metadata.create_all)
                there = await connection.run_sync(
                    lambda sync: sa.inspect(sync).get_columns(TABLE_NAME)
                )
        except (SQLAlchemyError, OSError, TypeError, ValueError) as exc:
            await engine.dispose()
            raise SinkError(f"cannot use {self.description}: {_reason(exc)}") from None
        names = {column["name"] for column in there}
        if missing := [c.name for c in self.table.columns if c.name not in names]:
            await engine.dispose()
            raise SinkError(
                f"{self.description} has a table {TABLE_NAME} of another shape (no "
                f"{', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}); "
                "export into another database"
            )
        statement = (postgresql.insert if postgres else sqlite.insert)(self.table)
        self._upsert = statement.on_conflict_do_update(
            index_elements=[self.table.c.uuid],
            set_={
                c.name: statement.excluded[c.name] for c in self.table.columns if c.name != "uuid"
            },
        )
        self._engine = engine
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    def _connected(self) -> AsyncEngine:
        if self._engine is None:
            raise SinkError("the sink is not open: use it with 'async with'")
        return self._engine

    async def held(self, call_uuids: Collection[str]) -> set[str]:
        ids = list(call_uuids)
        c = self.table.c
        query = sa.select(c.uuid, c.asked_id).where(sa.or_(c.uuid.in_(ids), c.asked_id.in_(ids)))
        async with self._connected().connect() as connection:
            rows = (await connection.execute(query)).all()
        return {value for row in rows for value in row if value in call_uuids}

    async def write(self, asked: str, record: CallDetailRecord, wire: Mapping[str, Any]) -> None:
        engine = self._connected()
        values: dict[str, Any] = {column.name: column.get(record) for column in COLUMNS}
        for name, value in values.items():
            if type(value) is int and not _INT64[0] <= value <= _INT64[1]:
                values[name] = None  # beyond BIGINT: the wire column keeps it exactly
        values["asked_id"] = None if asked == record.uuid else asked
        values["wire"] = dict(wire)
        values["fetched_at"] = dt.datetime.now(dt.UTC)
        for attempt in range(2):  # once more on a connection the server dropped
            try:
                async with engine.begin() as connection:
                    await connection.execute(self._upsert, values)
            except (SQLAlchemyError, OSError) as exc:
                if _about_the_data(exc):  # this record, not the database: the run goes on
                    raise RecordRefusedError(
                        f"{self.description} refused the record: {_reason(exc)}"
                    ) from None
                if attempt:
                    raise SinkError(
                        f"writing to {self.description} failed: {_reason(exc)}"
                    ) from None
            else:
                return


def _sqlite_pragmas(connection: Any, _: object) -> None:
    # WAL: readers do not block the export; NORMAL: no fsync a commit, safe on a crash.
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _about_the_data(exc: BaseException) -> bool:
    """Whether the database refused the values (SQLSTATE class 22), not the connection."""
    orig = getattr(exc, "orig", None)
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return isinstance(exc, DataError) or (isinstance(state, str) and state.startswith("22"))


def _reason(exc: BaseException) -> str:
    """The driver's own one-line reason, without SQLAlchemy's SQL and links."""
    original = getattr(exc, "orig", None) or exc
    return str(original).splitlines()[0] if str(original) else type(original).__name__
