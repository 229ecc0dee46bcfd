"""The adaptive law the in-process limiter paces by (docs/many-workers.md tells why):
when 429s are a limit, how far a cut goes, how the rate climbs back. Pure functions of
answers and seconds; :class:`~twochat_voip._ratelimit.AdaptiveRateLimiter` keeps the state.

Without a rate, start slow and double until 429s push back. Cut only when fresh 429s are
a real share of recent answers, to 80% (90% knowing the plan) of the rate the server
accepted. Then climb by time: without the plan, back to the accepted rate in 5 s, then
1% a second, doubling after 2 s more; with it, every process by the same steps of the
plan, never above it. Two 429s right after a cut, nothing accepted between, are a
wall: each 429 from then on halves the pace, down to the floor, and the climb waits for
an accepted answer.
"""

from __future__ import annotations

import collections
from typing import Final

WALL_AFTER: Final = 2  # fresh 429s after a cut, nothing accepted, that are a wall
WINDOW: Final = 64  # answers a limit is judged over
LIMITED_IN_WINDOW: Final = 6  # 429s among them that mean a limit (2% strays: 1 in 300)
LIMITED_CLEARLY: Final = 3  # fewer mean a limit when half the answers since the cut
CUT: Final = 0.8  # a cut sets this share of the rate the server accepted
MEASURED: Final = 32  # accepted answers a rate is measured over
START_PER_SECOND: Final = 4.0  # a slow start's first rate...
DOUBLING: Final = 0.5  # ... doubled every this many seconds until a limit
IDLE: Final = 1.0  # a quiet spell after which the climb's clock stops
UNPACED_ABOVE: Final = 1000.0  # requests a second beyond which a slow start stops pacing
REGAIN_SECONDS: Final = 5.0  # without the plan: back to the accepted rate in this long,
PROBE_PER_SECOND: Final = 0.01  # then climb this share of it a second,
SPEED_UP_AFTER: Final = 2.0  # and after this long double every second
ANSWERS_PER_CYCLE: Final = 32  # answers a climb spans at least (its clock slows)
PLAN_CUT: Final = 0.9  # with the plan known: a cut to this share of what was accepted,
PLAN_CLIMB: Final = 0.01  # a climb of this share of the plan a second,
PLAN_DOUBLING: Final = 2.0  # doubling every this many seconds;
PLAN_LIMITED: Final = 2  # this many 429s ...
PLAN_WINDOW: Final = 16  # ... among this many answers mean a limit
PLAN_CYCLE_ANSWERS: Final = 128  # a climb spans at least this many of the account's answers
PLAN_CYCLE_SECONDS: Final = 5.0  # in this many seconds of its clock (slower below 1,536/min)


def climb_without_plan(cut_to: float, accepted: float, since: float) -> float:
    """The rate ``since`` seconds after a cut to ``cut_to``, no plan known."""
    # At a low rate the climb's clock runs slower, so that a limit shows in time.
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
    a second: every process climbs by the same steps, so that their shares even out."""
    since /= max(1.0, PLAN_CYCLE_ANSWERS / (plan * PLAN_CYCLE_SECONDS))
    rate: float = cut_to + plan * PLAN_CLIMB * since * 2.0 ** min(since / PLAN_DOUBLING, 64.0)
    return rate


def is_a_limit(
    limited: collections.deque[int], answers: int, fresh_answers: int, *, plan_known: bool
) -> bool:
    """Whether the fresh 429s (``limited``: their answer numbers among the last
    :data:`WINDOW`) mean a limit; ``fresh_answers``: answers since the last cut."""
    count = len(limited)
    return (
        count >= LIMITED_IN_WINDOW
        or (count >= LIMITED_CLEARLY and 2 * count >= fresh_answers)
        or (plan_known and count >= PLAN_LIMITED and limited[-PLAN_LIMITED] > answers - PLAN_WINDOW)
    )
