"""Exports: the resumable runner (``_run``), one module per kind of output (``_sinks``
for JSONL, CSV and stdout, ``_sql`` for SQLite and PostgreSQL) and what they share
(``_files``, ``_failures``, ``_formats``). The public names live at the top level
(``twochat_voip.export_calls``, ``open_sink``, the sinks) and in
:mod:`twochat_voip.sql`."""
