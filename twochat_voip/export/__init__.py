"""Exports; the public names are at the top level and in :mod:`twochat_voip.sql`."""
