"""The client's waits: what ends them, checked before every request."""

from __future__ import annotations

import pytest

from twochat_voip import ClientClosedError, TwoChatError
from twochat_voip._waits import RunStopped, Stop, Waits, current_stop


def test_check_raises_once_the_run_stops_or_the_client_closes() -> None:
    """check() passes while nothing has stopped, then raises the stop's own error."""
    waits = Waits()
    run = Stop(RunStopped)
    token = current_stop().set(run)
    try:
        waits.check()
        run.stop(TwoChatError("gave up"))
        with pytest.raises(RunStopped):
            waits.check()
    finally:
        current_stop().reset(token)
    waits.check()  # another task's run stopping is not this one's business
    waits.close()
    with pytest.raises(ClientClosedError):
        waits.check()
