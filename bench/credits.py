"""Credits (requests) that keeping a copy of an account's calls costs, on the fake 2Chat:
``python -m bench.credits [--calls 10000] [--page-size 50] [--new 100]``.

Every request costs a credit. The history lists many records a request, without the
agent; a record's details cost a request each. Prints what each way of getting the
calls costs, counted by the server.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

from twochat_voip import VoIPClient, export_calls
from twochat_voip.testing import FakeTwoChatServer, generate_cdrs


async def _history_ids(voip: VoIPClient) -> AsyncIterator[str]:
    async for record in voip.iter_call_history():
        yield record.uuid


async def measure(calls: int, page_size: int, new: int) -> dict[str, int]:
    records = generate_cdrs(calls + new, seed=7)
    costs: dict[str, int] = {}
    async with FakeTwoChatServer(cdrs=records[:calls], history_page_size=page_size) as server:
        with tempfile.TemporaryDirectory() as folder:
            database = Path(folder) / "calls.db"

            async def spend(label: str, run: Awaitable[object]) -> None:
                before = server.request_count
                await run
                costs[label] = server.request_count - before

            async with VoIPClient(
                api_key=server.api_key, base_url=server.base_url, requests_per_minute=1e6
            ) as voip:
                await spend("history only (ids, no agent)", _count(voip.iter_call_history()))
                await spend(
                    f"sync, first run ({calls:,} calls)",
                    export_calls(voip, _history_ids(voip), str(database)),
                )
                server.add_cdrs(records[calls:])
                await spend(
                    f"sync again, {new} new calls",
                    export_calls(voip, _history_ids(voip), str(database)),
                )
                ids = [r["uuid"] for r in records[:calls]]
                await spend(
                    f"details by id only ({calls:,} ids known)",
                    export_calls(voip, ids, str(Path(folder) / "by-id.jsonl")),
                )
    return costs


async def _count(items: AsyncIterator[object]) -> int:
    return len([item async for item in items])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.credits", description=__doc__)
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--page-size", type=int, default=50)
    parser.add_argument("--new", type=int, default=100)
    args = parser.parse_args()
    costs = asyncio.run(measure(args.calls, args.page_size, args.new))
    print(f"Credits, history pages of {args.page_size} records:")
    for label, credits in costs.items():
        print(f"  {label:<40} {credits:>7,}")


if __name__ == "__main__":
    main()
