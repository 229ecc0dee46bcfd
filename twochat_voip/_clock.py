"""The one clock the SDK's timing reads: the running event loop's."""

from __future__ import annotations

import asyncio
import time

__all__ = ["loop_time"]


def loop_time() -> float:
    """The running event loop's ``time()`` (what its timers and ``asyncio.sleep`` keep
    to, so a loop with a virtual clock runs pacing in virtual time); outside a loop,
    :func:`time.monotonic`, which the default loop reads too."""
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        return time.monotonic()
