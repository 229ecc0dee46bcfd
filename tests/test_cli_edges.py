"""The command's edges: SIGTERM, Ctrl-C while standard input is open, ids from a
pipe, and the progress bar counting ids from what is already stored."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
from final_records import final_cdrs
from test_cli import SCRIPT, interruptible, one_clean_line, run

from twochat_voip.testing import FakeTwoChatServer


def _env(server: FakeTwoChatServer) -> dict[str, str]:
    return {
        "TWOCHAT_API_KEY": str(server.api_key),
        "TWOCHAT_BASE_URL": server.base_url,
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),  # a worktree's code, if run so
        "PATH": "/usr/bin:/bin",
    }


def _sent(server: FakeTwoChatServer) -> int:
    return len([r for r in server.requests if r.call_uuid])


@pytest.mark.slow
async def test_sigterm_says_what_was_saved_as_ctrl_c_does(tmp_path: Path) -> None:
    """``kill``: the 'interrupted' line, exit 143, whole lines, no empty failures file."""
    records = final_cdrs(400, seed=97)
    source = tmp_path / "ids.txt"
    source.write_text("\n".join(r["uuid"] for r in records) + "\n")
    output = tmp_path / "o.jsonl"
    async with FakeTwoChatServer(cdrs=records) as server:
        assert SCRIPT is not None
        process = await asyncio.create_subprocess_exec(
            *interruptible(SCRIPT, "export", "-i", str(source), "-o", str(output)),
            "--rpm",
            "1200",
            stderr=asyncio.subprocess.PIPE,
            env=_env(server),
        )
        while _sent(server) < 20:  # noqa: ASYNC110 - the server counts; nothing to await
            await asyncio.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 143
    line = one_clean_line(err.decode())
    assert line.startswith("interrupted: ")
    assert int(line.split()[1]) == len(output.read_text().splitlines()) >= 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ids.txt", "o.jsonl"]


@pytest.mark.slow
async def test_ctrl_c_stops_an_export_from_an_open_standard_input(tmp_path: Path) -> None:
    """``export -i -`` with its input still open (a terminal): Ctrl-C ends it, 130."""
    records = final_cdrs(3, seed=98)
    async with FakeTwoChatServer(cdrs=records) as server:
        assert SCRIPT is not None
        process = await asyncio.create_subprocess_exec(
            *interruptible(SCRIPT, "export", "-i", "-", "-o", str(tmp_path / "o.jsonl")),
            "--rpm",
            "60000",
            stdin=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=_env(server),
        )
        assert process.stdin is not None
        assert process.stderr is not None
        process.stdin.write("".join(r["uuid"] + "\n" for r in records).encode())
        await process.stdin.drain()
        while _sent(server) < 3:  # noqa: ASYNC110 - the server counts; nothing to await
            await asyncio.sleep(0.05)
        process.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(process.wait(), timeout=60)  # stdin still open
        err = await process.stderr.read()
        process.stdin.close()
    assert code == 130
    line = one_clean_line(err.decode())  # sent is not yet saved: the count may be less
    assert line.startswith("interrupted: ")
    assert int(line.split()[1]) == len((tmp_path / "o.jsonl").read_text().splitlines())


@pytest.mark.slow
async def test_ids_from_a_pipe_are_read_once(tmp_path: Path) -> None:
    """``-i <(cmd)``: counting ids for the progress bar must not consume the pipe."""
    records = final_cdrs(2, seed=99)
    output = tmp_path / "o.jsonl"
    async with FakeTwoChatServer(cdrs=records) as server:
        ids = "\\n".join(r["uuid"] for r in records)
        process = await asyncio.create_subprocess_exec(
            "/bin/bash",
            "-c",
            f"'{SCRIPT}' export -i <(printf '{ids}\\n') -o '{output}' --rpm 60000",
            stderr=asyncio.subprocess.PIPE,
            env=_env(server),
        )
        _, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err
    assert "exported 2 records" in err.decode()
    assert len(output.read_text().splitlines()) == 2


async def test_progress_counts_ids_and_starts_from_what_is_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Comments and blanks are not ids; a resumed run that finishes ends at N/N."""
    monkeypatch.setattr("twochat_voip.cli._support.stderr_is_interactive", lambda: True)
    records = final_cdrs(4, seed=100)
    ids = [r["uuid"] for r in records]
    source, output = tmp_path / "ids.txt", tmp_path / "o.jsonl"
    async with FakeTwoChatServer(cdrs=records) as server:
        source.write_text("# first two\n" + "\n".join(ids[:2]) + "\n\n")
        first = await run("export", "-i", str(source), "-o", str(output), server=server)
        source.write_text("# all four\n\n" + "\n".join(ids) + "\n# end\n")
        second = await run("export", "-i", str(source), "-o", str(output), server=server)
    assert first.code == second.code == 0, second.err
    assert first.err.split("\r")[-1].split()[1] == "2/2"
    assert second.err.split("\r")[-1].split()[1] == "4/4"
