"""``python -m bench [--quick] [--only SECTION ...] [--out docs]``: measure and report."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from bench import (
    callgrind,
    credits,
    exports,
    instructions,
    many_workers,
    memory,
    ratelimited,
    report,
    throughput,
)
from bench.measure import machine_state, pin_client

SECTIONS = [
    "throughput",
    "instructions",
    "rate_limited",
    "many_workers",
    "memory",
    "exports",
    "credits",
]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=SECTIONS)
    parser.add_argument("--out", type=Path, default=Path("docs"), help="where the report goes")
    args = parser.parse_args()
    quick = args.quick
    settings: dict[str, Any] = {
        "requests": 300 if quick else 5000,
        "rounds": 1 if quick else 3,
        "concurrencies": [1, 16] if quick else [1, 16, 64, 256],
        "instructions_small": 50 if quick else 300,
        "instructions_large": 200 if quick else 1300,
        "instructions_concurrencies": [16] if quick else [16, 64],
        "rate_per_minute": 6000.0,
        "rate_ids": 100 if quick else 2000,
        "workers_rate_per_minute": 6000.0 if quick else 3000.0,
        "workers_ids": 200 if quick else 1000,
        "records": 2000 if quick else 100_000,
        "stream_ids": 2000 if quick else 1_000_000,
        "resume_records": 20_000 if quick else 1_000_000,
        "sink_writes": 500 if quick else 5000,
        "sync_calls": 500 if quick else 10_000,
    }
    pin_client()
    settings["machine"] = machine_state()
    saved = args.out / "performance.json"
    # Measuring one section again keeps the others' figures from the last full run.
    results: dict[str, Any] = {}
    if set(args.only) != set(SECTIONS) and saved.exists():
        results = json.loads(saved.read_text())["results"]
        settings = {**json.loads(saved.read_text())["settings"], **settings}
    if "throughput" in args.only:
        print("Throughput:", flush=True)
        results["throughput"] = throughput.measure(
            settings["concurrencies"], settings["requests"], settings["rounds"]
        )
    if "instructions" in args.only:
        if callgrind.valgrind() is None:
            print("Client instructions per request: skipped, valgrind is not installed")
        else:
            print("Client instructions per request (callgrind):", flush=True)
            results["instructions"] = instructions.measure(
                settings["instructions_concurrencies"],
                settings["instructions_small"],
                settings["instructions_large"],
            )
    if "rate_limited" in args.only:
        print(
            f"Rate-limited ({settings['rate_per_minute']:.0f}/min, {settings['rate_ids']} ids):",
            flush=True,
        )
        results["rate_limited"] = ratelimited.measure(
            settings["rate_per_minute"], settings["rate_ids"]
        )
    if "many_workers" in args.only:
        print(
            f"Four processes, one account ({settings['workers_rate_per_minute']:.0f}/min, "
            f"{settings['workers_ids']} ids):",
            flush=True,
        )
        results["many_workers"] = many_workers.measure(
            settings["workers_rate_per_minute"], settings["workers_ids"]
        )
    if "memory" in args.only:
        print("Memory:", flush=True)
        results["memory"] = memory.measure(settings["records"], settings["stream_ids"])
    if "exports" in args.only:
        print("Exports:", flush=True)
        results["exports"] = {
            "resume": exports.measure_resume(settings["resume_records"]),
            "writes": exports.measure_writes(settings["sink_writes"]),
        }
    if "credits" in args.only:
        print(f"Credits of keeping a copy ({settings['sync_calls']} calls):", flush=True)
        spent = asyncio.run(credits.measure(settings["sync_calls"], 50, 100))
        for label, count in spent.items():
            print(f"  {label:<40} {count:7,} credits", flush=True)
        results["credits"] = spent
    args.out.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps({"settings": settings, "results": results}, indent=1))
    page = report.write(args.out, results, settings)
    print(f"report written to {page}")


if __name__ == "__main__":
    main()
