"""Every Python example in docs/ and the README passes ``mypy --strict``, so what the
docs teach type-checks in users' code as it runs in test_docs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_docs import examples
from typecheck import mypy_strict


@pytest.mark.slow
def test_every_example_passes_mypy_strict(tmp_path: Path, mypy_cache: Path) -> None:
    """All examples, each a module of its own in a fresh folder, in one mypy run."""
    files = []
    for example in examples():
        (source,) = example.values
        module = tmp_path / (re.sub(r"\W", "_", str(example.id)) + ".py")
        module.write_text(source)
        files.append(module)
    report, status = mypy_strict(files, mypy_cache)
    assert status == 0, report
