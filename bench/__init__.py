"""Benchmarks for twochat_voip: ``python -m bench`` (or ``nox -s bench``)."""
