"""Generated records whose calls are all over, for tests about anything but pending calls."""

from __future__ import annotations

from typing import Any

from twochat_voip.testing import generate_cdrs


def final_cdrs(count: int, *, seed: int = 0) -> list[dict[str, Any]]:
    """``generate_cdrs(count, seed=seed)`` with each ringing call ended (missed)."""
    records = generate_cdrs(count, seed=seed)
    for record in records:
        if record["status"] == "RINGING":
            record.update(status="MISSED", active=False)
    return records
