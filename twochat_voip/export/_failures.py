"""Where an export keeps the ids it could not fetch: the :class:`FailureStore` protocol."""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol, runtime_checkable

from twochat_voip._results import CallFailure


@runtime_checkable
class FailureStore(Protocol):
    """A run's failed ids, kept between runs: the failures file, or a SQL output's table.

    An id a past run found 404 (``NotFoundError``) is a known failure: a plain run does
    not ask for it again.

    Attributes:
        description: Where the failures are kept, for messages (never a password).
    """

    description: str

    async def open(self) -> None:
        """Make ready before the first request; refuse an unusable store with ``SinkError``."""
        ...

    async def known_not_found(self, call_uuids: Collection[str]) -> set[str]:
        """Which of these ids a past run found 404."""
        ...

    async def add(self, failure: CallFailure) -> None:
        """Keep ``failure`` (this run's; it replaces what a past run said of its id)."""
        ...

    async def forget(self, call_uuid: str) -> None:
        """The id is stored now: no longer a failure."""
        ...

    async def close(self, *, finished: bool) -> None:
        """Let go; ``finished``: the run answered every id (it was not stopped)."""
        ...
