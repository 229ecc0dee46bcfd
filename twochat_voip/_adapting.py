"""How an adaptive limiter adapts: when a 429 means a limit, how far it cuts, how it
climbs back. :class:`~twochat_voip.AdaptiveRateLimiter` paces; this is its law, in
constants and pure functions, so that it reads (and is tested) apart from the pacing.

Adapting starts slow. A client that does not know the limit starts at 4 requests a
second and doubles that every half second until the server pushes back (as TCP's slow
start does), and stops pacing once past 1,000 a second: sixteen workers (or four
processes of them) starting at once would otherwise fire a 429 for nearly every one of
them before the first answer is in.

It tells a limit from noise. Busy APIs answer a stray 429 now and then; read as a
limit, each would ratchet the rate down for good. So the limiter cuts its rate only
when 429s are a real share of recent answers (at least 6 of the last 64, or 3 that are
half the answers since the last cut), and then to 80% of the rate the server
demonstrably *accepted* from this process meanwhile, not of the rate it was sending
at. Only 429s for requests sent after the last cut count towards the next one, so a
volley of 429s for requests already in flight counts once (the way TCP reacts once per
round trip), and noise cannot compound cuts. A limit met while unpaced starts a slow
start again, from what the server accepted in the last second.

After a cut the rate climbs back *by time*, not per answer: back to what was accepted
within 5 seconds, then by 1% a second of that; after 2 seconds of that with no limit it
doubles every second, so that a share another process left free is taken up within
seconds. A climb per accepted answer (as this limiter did before) favours whoever is
already fastest: four processes on one account took 3.65x as long as the limit
allowed. At a low rate the climb's seconds stretch, so that a climb spans at least 32
answers: at 80 requests a minute a limit then shows within a few requests of being
reached, not after a burst of 429s.

Knowing the plan's limit changes the climb. A climb in proportion to a process's own
rate keeps whatever shares the processes on one account came out of their slow starts
with (one took 60% of the limit, another 10%, run after run). With the plan's limit
(given, ``"auto"``, or asked of ``GET /open/info`` by the client when the server first
answers 429) the limiter never climbs above it, a cut is 90% of what was accepted, and
the climb after it is the same for every process on the account, in shares of the plan
(1% of it a second, doubling every 2 seconds): additive increase, multiplicative
decrease, which evens out unequal shares within a few cycles (Chiu and Jain's result,
as in TCP). Two 429s among 16 answers then mean a limit: a process well under its plan
meets it only because others share it, and each of its cycles should cost a 429 or two,
not six. Below 1,536 requests a minute the climb's clock slows, so that a cycle spans
at least 128 of the account's answers (at 80 a minute, a cycle of about 100 seconds).
"""

from __future__ import annotations

import collections
from typing import Final

__all__ = [
    "CUT",
    "DOUBLING",
    "IDLE",
    "MEASURED",
    "PLAN_CUT",
    "START_PER_SECOND",
    "UNPACED_ABOVE",
    "WINDOW",
    "climb_with_plan",
    "climb_without_plan",
    "is_a_limit",
    "rate_of",
    "slow_start",
]

WINDOW: Final = 64
"""Answers a limit is judged, and an accepted rate measured, over."""
LIMITED_IN_WINDOW: Final = 6
"""429s among the last :data:`WINDOW` answers that mean a limit, not noise. Stray
429s at 2% of answers reach it about once in 300 windows, and a cut they cause is
regained within seconds."""
LIMITED_CLEARLY: Final = 3
"""Fewer 429s mean a limit when they are half the answers since the last cut, as at
the start of a run that was told too high a rate: stray 429s never look like that."""
CUT: Final = 0.8
"""A cut sets this share of the rate the server accepted."""
MEASURED: Final = 32
"""Accepted answers a rate is measured over."""
START_PER_SECOND: Final = 4.0
"""An adaptive client's first rate: it doubles every :data:`DOUBLING` seconds until the
server pushes back, so that many workers (or processes) starting at once do not fire a
429 for each of them before the first answer is in."""
DOUBLING: Final = 0.5
"""Seconds in which a rate that has not yet met a limit doubles (a slow start)."""
IDLE: Final = 1.0
"""Seconds after its last request for which a rate goes on climbing: a client that goes
quiet comes back at the pace it last used (or a little above), not at one it never
tried, which a burst after a pause would answer with a storm of 429s."""
UNPACED_ABOVE: Final = 1000.0
"""Requests a second beyond which a slow start stops pacing at all."""
REGAIN_SECONDS: Final = 5.0
"""Seconds to climb back from a cut to the rate that was accepted."""
PROBE_PER_SECOND: Final = 0.01
"""Then the climb per second, as a share of the accepted rate (with no plan known)."""
SPEED_UP_AFTER: Final = 2.0
"""Seconds of that slow climb without a limit after which the rate doubles every
second: capacity another process left free is taken up within seconds."""
ANSWERS_PER_CYCLE: Final = 32
"""Answers a climb should span at least: at a low rate (80 a minute) the climb's
seconds stretch so that a limit is seen within a few requests of being reached."""
PLAN_CUT: Final = 0.9
"""With the plan's limit known, a cut sets this share of the rate the server accepted."""
PLAN_CLIMB: Final = 0.01
"""With the plan's limit known, the climb after a cut: this share of the plan a second,
at first (every process on the account climbs by the same steps)..."""
PLAN_DOUBLING: Final = 2.0
"""... and that pace doubles every this many seconds without a limit."""
PLAN_LIMITED: Final = 2
"""429s that mean a limit, with the plan's limit known, when they come within
:data:`PLAN_WINDOW` answers."""
PLAN_WINDOW: Final = 16
"""With the plan's limit known, :data:`PLAN_LIMITED` 429s among the last
:data:`PLAN_WINDOW` answers mean a limit. One stray 429 in four (at 2% of answers)
comes that close after another: each such pair costs a cut of a tenth. A run told
3,000 a minute takes about 1.1x N/R with 2% stray 429s (1.02x with the rule for an
unknown plan), 1.7x with 5%: the price of each limit costing a 429 or two, not six."""
PLAN_CYCLE_ANSWERS: Final = 128
"""The account's answers a climb with the plan known should span, at least."""
PLAN_CYCLE_SECONDS: Final = 5.0
"""The account's answers (:data:`PLAN_CYCLE_ANSWERS`) a climb with the plan known
should span, at least, in this many seconds of it: below 128 / 5 a second (1,536 a
minute) its clock slows."""


def rate_of(times: collections.deque[float]) -> float | None:
    """Events per second over a deque of their times, if it can tell."""
    if len(times) < 2:
        return None
    span = times[-1] - times[0]
    return (len(times) - 1) / span if span > 0 else None


def slow_start(start: float, since: float) -> float:
    """A rate that has met no limit yet, ``since`` seconds after it started at
    ``start``: doubled every :data:`DOUBLING` seconds."""
    rate: float = start * 2.0 ** min(since / DOUBLING, 64.0)
    return rate


def climb_without_plan(cut_to: float, accepted: float, since: float) -> float:
    """The rate ``since`` seconds after a cut to ``cut_to`` with no plan known: back to
    what was ``accepted`` within :data:`REGAIN_SECONDS`, 1% of it a second for
    :data:`SPEED_UP_AFTER` seconds more, then doubling every second."""
    # At a low rate the climb's clock runs slower, so that it spans enough answers for
    # a limit to show before the rate is far past it.
    since /= max(1.0, ANSWERS_PER_CYCLE / (accepted * REGAIN_SECONDS))
    if since < REGAIN_SECONDS:
        return cut_to + (accepted - cut_to) * since / REGAIN_SECONDS
    climbing = since - REGAIN_SECONDS
    rate = accepted * (1.0 + PROBE_PER_SECOND * climbing)
    if climbing > SPEED_UP_AFTER:
        rate *= 2.0 ** min(climbing - SPEED_UP_AFTER, 64.0)
    return rate


def climb_with_plan(cut_to: float, plan: float, since: float) -> float:
    """The rate ``since`` seconds after a cut to ``cut_to`` under a plan of ``plan``
    requests a second: every process on the account climbs by the same steps of the
    plan, whatever its rate now, so that they converge on equal shares."""
    since /= max(1.0, PLAN_CYCLE_ANSWERS / (plan * PLAN_CYCLE_SECONDS))
    rate: float = cut_to + plan * PLAN_CLIMB * since * 2.0 ** min(since / PLAN_DOUBLING, 64.0)
    return rate


def is_a_limit(
    limited: collections.deque[int], answers: int, fresh_answers: int, *, plan_known: bool
) -> bool:
    """Whether the fresh 429s (their answer numbers among the last :data:`WINDOW`,
    ``limited``, the newest last) mean a limit, not noise; ``fresh_answers``: answers
    since the last cut."""
    count = len(limited)
    return (
        count >= LIMITED_IN_WINDOW
        or (count >= LIMITED_CLEARLY and 2 * count >= fresh_answers)
        or (plan_known and count >= PLAN_LIMITED and limited[-PLAN_LIMITED] > answers - PLAN_WINDOW)
    )
