"""Calls still going on when first asked: the fake server's records that end later."""

from __future__ import annotations

import collections
import zlib
from collections.abc import Mapping
from typing import Any

import attrs

__all__ = ["CallsInProgress"]

_UNTIL_IT_ENDS = dict.fromkeys(["end_time", "duration", "recording_url", "call_cost"])


@attrs.define
class CallsInProgress:
    """A share of a fake server's calls is still going on when first asked, and over later.

    Give it to ``FakeTwoChatServer(in_progress=...)``. A chosen call is answered as in
    progress (``status`` ``ANSWERED``, ``active`` true, no end, duration, recording or
    cost) to its first ``asks`` asks, and until ``seconds`` after its first ask on the
    server's clock; after both, as the server holds it (give it final records). Which
    calls are chosen depends only on ``seed`` and the call's id.

    Attributes:
        share: The share of calls chosen, 0 to 1.
        asks: Asks answered in progress.
        seconds: Seconds after the first ask that the call goes on.
        seed: Picks the calls chosen.
        asked: Asks of each chosen call so far.
        answered_in_progress: Answers that were in progress, in all.
    """

    share: float = 0.1
    asks: int = 1
    seconds: float = 0.0
    seed: int = 0
    asked: collections.Counter[str] = attrs.field(factory=collections.Counter, init=False)
    answered_in_progress: int = attrs.field(default=0, init=False)
    _first_asked: dict[str, float] = attrs.field(factory=dict, init=False, repr=False)

    def chosen(self, call_uuid: str) -> bool:
        """Whether ``call_uuid`` is one of the calls in progress when first asked."""
        return zlib.crc32(f"{self.seed}:{call_uuid}".encode()) < self.share * 2**32

    def answer(self, cdr: Mapping[str, Any], now: float) -> Mapping[str, Any]:
        """The record to answer an ask for ``cdr`` with, at ``now`` (the server's clock)."""
        call_uuid = cdr["uuid"]
        if not self.chosen(call_uuid):
            return cdr
        self.asked[call_uuid] += 1
        first = self._first_asked.setdefault(call_uuid, now)
        if self.asked[call_uuid] > self.asks and now >= first + self.seconds:
            return cdr
        self.answered_in_progress += 1
        return {**cdr, **_UNTIL_IT_ENDS, "status": "ANSWERED", "active": True}
