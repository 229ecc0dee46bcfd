"""Exports: the resumable runner (``_run``), the outputs (``_sinks``: JSONL, CSV and
stdout, and which one an output names; ``_sql``: SQLite and PostgreSQL) and the files
they write (``_files``). The public names live at the top level
(``twochat_voip.export_calls``, ``open_sink``, the sinks) and in :mod:`twochat_voip.sql`."""
