"""Running the bench's client under valgrind's callgrind, and reading what it counted."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

Plan = list[tuple[str, int, int, list[int]]]
"""(stack, concurrency, warm-up, [ids per measured run]) for each case the child runs."""

MARK = "ctermid"
"""The libc function the client calls around each measured run; callgrind dumps its
counters on entering it."""


ROOT = Path(__file__).resolve().parent.parent
RESULT = "RESULT "
SDK = "SDK "


def sdk_fingerprint() -> str:
    """Where the imported twochat_voip is and a hash of its sources: the SDK may be
    edited between measurements, and the counts belong to one version."""
    import twochat_voip

    folder = Path(twochat_voip.__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*.py")):
        digest.update(path.relative_to(folder).as_posix().encode())
        digest.update(path.read_bytes())
    return f"{folder} (sources sha256 {digest.hexdigest()[:12]})"


def valgrind() -> str | None:
    """The valgrind executable, or None where it is not installed."""
    return shutil.which("valgrind")


def _environment() -> dict[str, str]:
    """The same environment for every run, hash seed fixed, so counts repeat."""
    return {
        **os.environ,
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
    }


def callgrind(
    executable: str, folder: Path, base_url: str, plan: Plan, sdks: set[str]
) -> tuple[list[dict[str, Any]], int, float]:
    """Run the client under callgrind: (its RESULT lines, the Collected total, wall s);
    adds the twochat_voip it imported to ``sdks``.

    The dumps are left in ``folder`` (``callgrind.out.1`` ...)."""
    log = folder / "valgrind.log"
    command = [
        executable,
        "--tool=callgrind",
        f"--callgrind-out-file={folder / 'callgrind.out'}",
        f"--dump-before={MARK}",
        "--trace-children=no",  # (the client starts no process; the server is ours)
        f"--log-file={log}",
        sys.executable,
        "-m",
        "bench.instructions",
        "--child",
        base_url,
        json.dumps(plan),
    ]
    started = time.perf_counter()
    results: list[dict[str, Any]] = []
    with subprocess.Popen(
        command, cwd=ROOT, env=_environment(), stdout=subprocess.PIPE, text=True
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith(RESULT):
                results.append(json.loads(line.removeprefix(RESULT)))
            elif line.startswith(SDK):
                sdks.add(line.removeprefix(SDK).strip())
    wall = time.perf_counter() - started
    text = log.read_text()
    if process.returncode:
        raise RuntimeError(f"the client under valgrind failed ({process.returncode}):\n{text}")
    pids = set(re.findall(r"^==(\d+)==", text, re.MULTILINE))
    if len(pids) != 1:  # a second pid would be a traced child
        raise RuntimeError(f"valgrind traced {len(pids)} processes, expected 1:\n{text}")
    collected = re.search(r"Collected\s*:\s*(\d+)", text)
    if collected is None:
        raise RuntimeError(f"no 'Collected :' line in valgrind's log:\n{text}")
    return results, int(collected.group(1)), wall


def dumps(folder: Path) -> list[int]:
    """Instructions of each segment between marks, in order (``callgrind.out.N``)."""
    counts: dict[int, int] = {}
    for dump in folder.glob("callgrind.out.*"):
        totals = re.search(r"^totals:\s*(\d+)", dump.read_text(), re.MULTILINE)
        if totals is None:
            raise RuntimeError(f"no 'totals:' line in {dump}")
        counts[int(dump.suffix[1:])] = int(totals.group(1))
    return [counts[n] for n in sorted(counts)]
