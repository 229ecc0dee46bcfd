"""The one place that knows how to test, lint, type-check, build the docs and bench:
``nox`` runs tests, lint, typecheck and docs; ``nox -s bench`` measures."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck", "docs"]
nox.options.default_venv_backend = "venv"

PYTHON = ["3.11", "3.12", "3.13"]


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The test suite with branch coverage (fails under 95%)."""
    session.install("-e", ".[dev]")
    session.run("pytest", *session.posargs)


@nox.session
def quick(session: nox.Session) -> None:
    """The tests without the slow ones (``@pytest.mark.slow``) and without coverage:
    the loop while you work. CI runs them all."""
    session.install("-e", ".[dev]")
    session.run("pytest", "-m", "not slow", "--no-cov", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff's lints and formatting, bandit over the package, pip-audit over the deps."""
    session.install("-e", ".[cli]", "ruff", "bandit", "pip-audit")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("bandit", "--quiet", "--recursive", "twochat_voip")
    # pip-audit needs PyPI's vulnerability data; where only a package mirror is
    # reachable it skips every package (and says so) rather than failing.
    session.run("pip-audit", "--skip-editable", "--progress-spinner", "off")


@nox.session
def soak(session: nox.Session) -> None:
    """The soak test at full size: 20,000 ids with 10% faults (CI runs 2,000)."""
    session.install("-e", ".[dev]")
    session.run("pytest", "tests/test_soak.py", "-s", "--no-cov", env={"SOAK_IDS": "20000"})


@nox.session
def docs(session: nox.Session) -> None:
    """Build the docs site with --strict: a broken link or reference fails."""
    session.install("-e", ".[docs]")
    session.run("mkdocs", "build", "--strict", "--site-dir", "site")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks against baselines in the same run; writes docs/performance.md.

    ``nox -s bench -- --quick`` is a smoke run with tiny sizes.
    """
    session.install("-e", ".[bench]", "-e", ".[db]")
    session.run("python", "-m", "bench", *session.posargs)
    quick = ["--records", "20000", "--writes", "300"] if "--quick" in session.posargs else []
    session.run("python", "-m", "bench.exports", *quick)
    small = ["--calls", "500", "--new", "10"] if "--quick" in session.posargs else []
    session.run("python", "-m", "bench.credits", *small)


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package, the tests, the benchmarks and this file."""
    session.install("-e", ".[dev]", "-e", ".[bench]")
    session.run("mypy")
