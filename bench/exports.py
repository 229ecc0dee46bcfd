"""Exports: how long a resume takes to start, and its peak memory, over a large JSONL
output (each in a fresh process, beside a process that only imports the SDK); and how
many records a second each sink writes, from one run in one process.

``python -m bench.exports [--records N] [--writes N]``; ``... resume PATH`` is the
child process. PostgreSQL is measured where its binaries are installed (a throwaway
server from ``twochat_voip.testing``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

TEMPLATE_UUID = "CDR8b3e7a1f-6c94-4d52-ae17-5f2b9d4c8e63"


def _peak_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def resume(path: str) -> dict[str, float]:
    """In a child: open a JSONL sink over ``path`` (lock, check, scan)."""
    from twochat_voip import JSONLSink

    before = _peak_kib()
    started = time.perf_counter()

    async def scan() -> int:
        async with JSONLSink(path) as sink:
            return len(await sink.held([TEMPLATE_UUID]))

    asyncio.run(scan())
    return {
        "seconds": time.perf_counter() - started,
        "peak_mib": _peak_kib() / 1024,
        "before_mib": before / 1024,
    }


def _write_output(path: Path, records: int) -> int:
    from twochat_voip.export._records import dumps_wire
    from twochat_voip.testing import EXAMPLE_CDR

    line = dumps_wire(EXAMPLE_CDR) + "\n"
    with path.open("w") as handle:
        for n in range(records):
            handle.write(line.replace(TEMPLATE_UUID, f"CDR{n:035d}"))
    return path.stat().st_size


def measure_resume(records: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        output = Path(folder) / "calls.jsonl"
        size = _write_output(output, records)
        child = [sys.executable, "-m", "bench.exports", "resume", str(output)]
        run = json.loads(subprocess.run(child, check=True, capture_output=True).stdout)
        empty = Path(folder) / "empty.jsonl"
        base = json.loads(
            subprocess.run([*child[:-1], str(empty)], check=True, capture_output=True).stdout
        )
    result = {"records": records, "mib": size / 2**20, **run, "empty_peak_mib": base["peak_mib"]}
    print(
        f"  resume over {records:,} records ({result['mib']:.0f} MiB): "
        f"{run['seconds']:.2f} s to start, peak RSS {run['peak_mib']:.0f} MiB "
        f"(an empty output: {base['peak_mib']:.0f} MiB)",
        flush=True,
    )
    return result


async def _write_rate(sink: Any, pairs: list[tuple[Any, dict[str, Any]]]) -> float:
    async with sink:
        started = time.perf_counter()
        for record, wire in pairs:
            await sink.write(record.uuid, record, wire)
        return len(pairs) / (time.perf_counter() - started)


def measure_writes(writes: int) -> dict[str, float]:
    from twochat_voip import CSVSink, JSONLSink
    from twochat_voip._converter import converter
    from twochat_voip._models import CallDetailRecord
    from twochat_voip.sql import SQLSink
    from twochat_voip.testing import EXAMPLE_CDR, PostgresServer

    wire = json.loads(json.dumps(EXAMPLE_CDR), parse_float=Decimal)
    pairs = []
    for n in range(writes):
        one = {**wire, "uuid": f"CDR{n:035d}"}
        pairs.append((converter.structure(one, CallDetailRecord), one))
    rates: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as folder:
        sinks: dict[str, Any] = {
            "JSONL": JSONLSink(Path(folder) / "o.jsonl"),
            "CSV": CSVSink(Path(folder) / "o.csv"),
            "SQLite": SQLSink(Path(folder) / "o.db"),
        }
        for name, sink in sinks.items():
            rates[name] = asyncio.run(_write_rate(sink, pairs))
        if PostgresServer.find() is not None:
            with PostgresServer() as server:
                rates["PostgreSQL"] = asyncio.run(_write_rate(SQLSink(server.url), pairs))
    for name, rate in rates.items():
        print(
            f"  {name:<10} {rate:9,.0f} records/s ({rate / rates['JSONL']:.3f}x JSONL)", flush=True
        )
    return rates


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "resume":
        print(json.dumps(resume(sys.argv[2])))
        return
    parser = argparse.ArgumentParser(prog="python -m bench.exports", description=__doc__)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--writes", type=int, default=5000)
    args = parser.parse_args()
    print("Exports:", flush=True)
    measure_resume(args.records)
    measure_writes(args.writes)


if __name__ == "__main__":
    main()
