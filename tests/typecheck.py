"""``mypy --strict`` over files written by a test, against this checkout's package."""

from __future__ import annotations

from pathlib import Path

from mypy import api

ROOT = Path(__file__).parent.parent


def mypy_strict(files: list[Path], cache: Path) -> tuple[str, int]:
    """Run ``mypy --strict`` on ``files`` in one process; its report and exit status.

    The config is written next to the first file, so that neither the project's
    ``[tool.mypy]`` (its ``files``) nor the installed copy of ``twochat_voip`` (the
    checkout's comes first, on ``mypy_path``) decides the result.
    """
    config = files[0].parent / "mypy.ini"
    config.write_text(f"[mypy]\nstrict = True\nmypy_path = {ROOT}\ncache_dir = {cache}\n")
    report, errors, status = api.run(
        ["--config-file", str(config), "--no-error-summary", *map(str, files)]
    )
    return report + errors, status
