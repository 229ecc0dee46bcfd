"""Memory: 100,000 records held as our models, as dicts and as pydantic models (each in
a fresh process, RSS growth per record); and a long get_calls stream whose RSS must
stay flat. ``python -m bench.memory hold VARIANT N`` and ``... stream N`` are the
child processes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import aclosing

from bench.measure import Row, rss_kib, server_cpu
from bench.server import BODY, CannedServer

TEMPLATE_UUID = b"CDR8b3e7a1f-6c94-4d52-ae17-5f2b9d4c8e63"


def _bodies(count: int) -> Iterator[bytes]:
    for n in range(count):
        yield BODY.replace(TEMPLATE_UUID, b"CDR%035d" % n)


def hold(variant: str, count: int) -> int:
    """RSS growth (KiB) from holding ``count`` records as ``variant``."""
    import orjson
    from multidict import CIMultiDict

    from bench.stacks import Envelope
    from twochat_voip._protocol import parse_call
    from twochat_voip._requests import Response

    headers = CIMultiDict({"Content-Type": "application/json"})
    decode: Callable[[bytes], object] = {
        "dicts (orjson)": lambda body: orjson.loads(body)["cdr"],
        "twochat_voip models": lambda body: parse_call(Response(200, headers, body)),
        "pydantic models": lambda body: Envelope.model_validate_json(body).cdr,
    }[variant]
    decode(next(_bodies(1)))  # warm up caches before the baseline
    before = rss_kib()
    held = [decode(body) for body in _bodies(count)]
    after = rss_kib()
    assert len(held) == count
    return after - before


def stream(count: int) -> list[int]:
    """RSS (KiB) every tenth of a ``count``-id get_calls run, records dropped."""
    from bench.stacks import FAR_ABOVE
    from twochat_voip import VoIPClient

    samples: list[int] = []

    async def run(base_url: str) -> None:
        step = max(1, count // 10)
        async with VoIPClient(
            api_key="bench", base_url=base_url, requests_per_minute=FAR_ABOVE
        ) as voip:
            ids = (f"CDR{i:08d}" for i in range(count))
            async with aclosing(voip.get_calls(ids, concurrency=64)) as results:
                async for result in results:
                    if result.index % step == 0:
                        samples.append(rss_kib())

    with CannedServer(cpu=server_cpu()) as server:
        asyncio.run(run(server.base_url))
    return samples


def _child(*args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "bench.memory", *args], check=True, capture_output=True, text=True
    )
    return out.stdout.strip().splitlines()[-1]


def measure(records: int, stream_ids: int) -> tuple[list[Row], list[int]]:
    rows: list[Row] = []
    for variant in ("dicts (orjson)", "twochat_voip models", "pydantic models"):
        grown = int(_child("hold", variant, str(records)))
        rows.append({"held_as": variant, "bytes_per_record": grown * 1024 / records})
    base = rows[0]["bytes_per_record"]
    for row in rows:
        row["ratio_to_dicts"] = row["bytes_per_record"] / base
        size, ratio = row["bytes_per_record"], row["ratio_to_dicts"]
        print(f"  {row['held_as']:<22} {size:7.0f} B/record  {ratio:.2f}x dicts")
    samples = json.loads(_child("stream", str(stream_ids)))
    print(
        f"  get_calls over {stream_ids} ids: RSS {samples[0] // 1024} MiB at the start, "
        f"{samples[-1] // 1024} MiB at the end (samples: {[s // 1024 for s in samples]})"
    )
    return rows, samples


if __name__ == "__main__":
    if sys.argv[1] == "hold":
        print(hold(sys.argv[2], int(sys.argv[3])))
    else:
        print(json.dumps(stream(int(sys.argv[2]))))
