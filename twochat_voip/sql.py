"""Exports into a SQL database (SQLite or PostgreSQL): needs the ``db`` extra,
``pip install 'twochat-voip[db]'``.

::

    async with VoIPClient() as voip:
        await export_calls(voip, ids, SQLSink("postgresql://export@db/billing"))
"""

from __future__ import annotations

from twochat_voip.export._sql import TABLE_NAME, SQLSink

__all__ = ["TABLE_NAME", "SQLSink"]
