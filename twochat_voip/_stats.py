"""What a client has done so far: :class:`ClientStats` for its users, counted as
:class:`Counters` by its :class:`~twochat_voip._call.Caller`."""

from __future__ import annotations

import attrs

__all__ = ["ClientStats", "Counters"]


@attrs.frozen(kw_only=True)
class ClientStats:
    """What a client has done so far; every request costs the account a credit.

    Attributes:
        requests: HTTP requests written to a connection, retries and 429s included
            (one that never connected costs nothing and is not counted).
        rate_limited: Answers that were 429.
        retries: Attempts made after a call's first.
        succeeded: Calls (records, history pages) that ended in a result.
        failed: Calls that ended in an error, after any retries.
    """

    requests: int = 0
    rate_limited: int = 0
    retries: int = 0
    succeeded: int = 0
    failed: int = 0


@attrs.define
class Counters:
    """:class:`ClientStats`, as it is counted (the fields are the same, a test keeps
    them so)."""

    requests: int = 0
    rate_limited: int = 0
    retries: int = 0
    succeeded: int = 0
    failed: int = 0

    def snapshot(self) -> ClientStats:
        return ClientStats(**attrs.asdict(self))
