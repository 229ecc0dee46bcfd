"""Write the measured figures as Markdown and plots into docs/, never typed in."""

from __future__ import annotations

import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.measure import Row

_LIMITED_COLUMNS = [
    ("wall_s", "wall s", ".1f"),
    ("wall_over_ideal", "× N/R", ".2f"),
    ("requests", "requests (credits)", ""),
    ("rate_limited", "429s", ""),
    ("rate_limited_share", "429 share", ".1%"),
    ("credits_per_record", "credits/record", ".3f"),
    ("failed", "failed", ""),
]
"""The columns of a run against a per-minute limit."""


def _table(rows: list[Row], columns: list[tuple[str, str, str]]) -> list[str]:
    lines = [
        "| " + " | ".join(title for _, title, _ in columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    for row in rows:
        cells = [
            "–" if key not in row else format(row[key], fmt) if fmt else str(row[key])
            for key, _, fmt in columns
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _machine(state: dict[str, Any] | None) -> list[str]:
    if not state:
        return []
    loads = "/".join(f"{load:.2f}" for load in state["load_average"])
    return [
        f"Machine: {state['cpus']} CPUs, load average {loads} (1/5/15 min) when the run "
        f"began, nothing else started beside it; sources at `{state['commit']}`.",
        "",
    ]


def write(out: Path, results: dict[str, Any], settings: dict[str, Any]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Performance",
        "",
        "Measured by `nox -s bench` (`python -m bench`) on "
        f"{datetime.now(UTC):%Y-%m-%d}, {platform.python_implementation()} "
        f"{platform.python_version()}, {platform.machine()}; client and canned server "
        "pinned to different cores where the OS allows. Every ratio comes from runs "
        "interleaved in the same process, so the machine's speed swings cancel out.",
        "",
        *_machine(settings.get("machine")),
        f"Settings: `{ {k: v for k, v in settings.items() if k != 'machine'} }`",
        "",
    ]
    if "throughput" in results:
        lines += [
            "## Throughput against a fast loopback server",
            "",
            "![throughput](img/throughput.png)",
            "",
            *_table(
                results["throughput"],
                [
                    ("concurrency", "concurrency", ""),
                    ("stack", "client", ""),
                    ("requests_per_s", "requests/s", ".0f"),
                    ("cpu_us_per_request", "client CPU µs/request", ".0f"),
                    ("ratio_to_raw", "× raw aiohttp", ".2f"),
                    ("server_cpu_share", "server CPU / wall", ".0%"),
                    ("server_bound", "server-bound", ""),
                ],
            ),
            "",
            "The canned server runs in its own process; a row is *server-bound* when the "
            "server's CPU time is over 80% of the wall time: there the server, not the "
            "client, sets the rate, and the ratio understates the client's cost.",
            "",
        ]
    if "instructions" in results:
        rows = results["instructions"]
        columns = [
            ("concurrency", "concurrency", ""),
            ("stack", "client", ""),
            ("k_instructions_per_request", "k instructions/request", ".1f"),
            ("ratio_to_raw", "× raw aiohttp", ".2f"),
        ]
        shown = [
            {**r, "k_instructions_per_request": r["instructions_per_request"] / 1e3} for r in rows
        ]
        sizes = f"N1 = {rows[0]['small']} and N2 = {rows[0]['large']}" if rows else ""
        lines += [
            "## Client instructions per request (callgrind)",
            "",
            "The client alone runs under valgrind's callgrind (the canned server is a "
            "separate process, not instrumented), and fetches N1 then N2 records in two "
            f"runs ({sizes}, after a warm-up); instructions/request = "
            "(I(N2) − I(N1)) / (N2 − N1), so start-up, imports and each run's set-up "
            "cancel. Instruction counts are deterministic (fixed hash seed, same "
            "environment; repeated measurements agree to well under 1%), so unlike "
            "wall-clock ratios they do not swing with the CPU's speed. "
            "× raw aiohttp is raw's count / the client's: higher is better.",
            "",
            *_table([r for r in shown if not r.get("diagnosis")], columns),
            "",
        ]
        diagnosis = [r for r in shown if r.get("diagnosis")]
        if diagnosis:
            lines += [
                "Diagnosis, not a client: `get_calls` with structuring stubbed (the "
                "`CallDetailRecord` structure hook replaced by C's `dict.get`, which "
                "costs next to nothing and answers `None`), i.e. the SDK's machinery "
                "without building models.",
                "",
                *_table(diagnosis, columns),
                "",
            ]
    if "rate_limited" in results:
        lines += [
            "## A bulk run against a per-minute limit",
            "",
            "![rate-limited](img/rate_limited.png)",
            "",
            *_table(
                results["rate_limited"],
                [("client", "client", ""), *_LIMITED_COLUMNS],
            ),
            "",
        ]
    if results.get("many_workers"):
        lines += [
            "## Four processes, one account",
            "",
            f"Four processes share one account limit R = "
            f"{settings.get('workers_rate_per_minute', 0):.0f}/min (the canned server's "
            f"GCRA, burst 5) and {settings.get('workers_ids')} ids; wall time from a "
            "common start to the last process's end. See "
            "[Many workers, one account](many-workers.md).",
            "",
            *_table(
                results["many_workers"],
                [("split", "ids split", ""), ("client", "pacing", ""), *_LIMITED_COLUMNS],
            ),
            "",
        ]
    if "memory" in results:
        rows, samples = results["memory"]
        lines += [
            "## Memory",
            "",
            *_table(
                rows,
                [
                    ("held_as", "100,000 records held as", ""),
                    ("bytes_per_record", "bytes/record", ".0f"),
                    ("ratio_to_dicts", "× dicts", ".2f"),
                ],
            ),
            "",
            f"A `get_calls` stream of {settings.get('stream_ids')} ids, records dropped as "
            f"they come: RSS {samples[0] / 1024:.0f} MiB at the start, "
            f"{samples[-1] / 1024:.0f} MiB at the end "
            f"(every tenth: {', '.join(f'{s / 1024:.0f}' for s in samples)} MiB).",
            "",
        ]
    if "exports" in results:
        resume, writes = results["exports"]["resume"], results["exports"]["writes"]
        lines += [
            "## Exports",
            "",
            f"Resuming over a JSONL output of {resume['records']:,} records "
            f"({resume['mib']:.0f} MiB), in a fresh process: {resume['seconds']:.2f} s "
            f"before the first new request could leave, peak RSS {resume['peak_mib']:.0f} "
            f"MiB (an empty output: {resume['empty_peak_mib']:.0f} MiB).",
            "",
            f"Records written a second by each sink ({settings.get('sink_writes')} "
            "records, one run, one process):",
            "",
            *_table(
                [{"sink": name, "per_s": rate} for name, rate in writes.items()],
                [("sink", "sink", ""), ("per_s", "records/s", ",.0f")],
            ),
            "",
        ]
    if "credits" in results:
        lines += [
            "## Credits of keeping a copy",
            "",
            f"Requests (each a credit) to copy an account of {settings.get('sync_calls')} "
            "calls into SQLite from its history, then to bring it up to date:",
            "",
            *_table(
                [{"run": label, "credits": count} for label, count in results["credits"].items()],
                [("run", "run", ""), ("credits", "credits", ",")],
            ),
            "",
        ]
    page = out / "performance.md"
    page.write_text("\n".join(lines))
    _plots(out / "img", results)
    return page


def _plots(folder: Path, results: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    if "throughput" in results:
        rows = results["throughput"]
        stacks = list(dict.fromkeys(r["stack"] for r in rows))
        levels = sorted({r["concurrency"] for r in rows})
        figure, axis = plt.subplots(figsize=(8, 4))
        width = 0.8 / len(stacks)
        for n, stack in enumerate(stacks):
            values = [
                next(
                    r["requests_per_s"]
                    for r in rows
                    if r["stack"] == stack and r["concurrency"] == c
                )
                for c in levels
            ]
            axis.bar([i + n * width for i in range(len(levels))], values, width, label=stack)
        axis.set_xticks([i + width * (len(stacks) - 1) / 2 for i in range(len(levels))])
        axis.set_xticklabels([f"concurrency {c}" for c in levels])
        axis.set_ylabel("requests/s")
        axis.set_title("Throughput on loopback (higher is better)")
        axis.legend(fontsize="small")
        figure.tight_layout()
        figure.savefig(folder / "throughput.png", dpi=110)
        plt.close(figure)
    if "rate_limited" in results:
        rows = results["rate_limited"]
        figure, axis = plt.subplots(figsize=(8, 3))
        names = [r["client"] for r in rows]
        axis.barh(
            names, [r["wall_over_ideal"] for r in rows], color="tab:blue", label="wall / (N/R)"
        )
        for i, r in enumerate(rows):
            axis.text(
                r["wall_over_ideal"],
                i,
                f"  {r['rate_limited']} 429s, {r['failed']} failed",
                va="center",
            )
        axis.axvline(1.0, color="grey", linestyle="--")
        axis.set_xlabel("wall time as a multiple of N/R (1.0 is the limit)")
        axis.set_title("Rate-limited bulk run (lower is better)")
        axis.invert_yaxis()
        figure.tight_layout()
        figure.savefig(folder / "rate_limited.png", dpi=110)
        plt.close(figure)
