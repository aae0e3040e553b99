"""Settlement intervals and rollup periods on the UTC wall clock (pure functions).

Settlement intervals divide an hour (60, 300, 900, 1800 or 3600 s) and start
on UTC boundaries, so a coop's books line up with the grid operator's
quarter-hour data. Rollups sum intervals into hours, days and calendar months
(UTC); level ``ALL`` is one running lifetime total.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

SETTLEMENT_STEPS = (60, 300, 900, 1800, 3600)
INTERVAL, HOUR, DAY, MONTH, ALL = 0, 1, 2, 3, 4
LEVELS = (HOUR, DAY, MONTH, ALL)
LEVEL_NAMES = {INTERVAL: "interval", HOUR: "hour", DAY: "day", MONTH: "month", ALL: "all"}


def interval_start(ts: float, step: int) -> int:
    """Start of the settlement interval containing ``ts``."""
    return int(math.floor(ts / step) * step)


def month_start(ts: float) -> int:
    """Start (UTC) of the calendar month containing ``ts``."""
    d = datetime.fromtimestamp(ts, UTC)
    return int(datetime(d.year, d.month, 1, tzinfo=UTC).timestamp())


def next_month(ts: int) -> int:
    """Start of the calendar month after the one starting at ``ts``."""
    d = datetime.fromtimestamp(ts, UTC)
    year, month = (d.year + 1, 1) if d.month == 12 else (d.year, d.month + 1)
    return int(datetime(year, month, 1, tzinfo=UTC).timestamp())


def period_start(level: int, ts: float) -> int:
    """Start of the rollup period of ``level`` containing ``ts``."""
    if level == HOUR:
        return int(ts // 3600 * 3600)
    if level == DAY:
        return int(ts // 86400 * 86400)
    if level == MONTH:
        return month_start(ts)
    return 0


def period_end(level: int, start: int) -> int:
    """End of the rollup period of ``level`` that starts at ``start``."""
    if level == HOUR:
        return start + 3600
    if level == DAY:
        return start + 86400
    if level == MONTH:
        return next_month(start)
    raise ValueError(f"level {level} has no end")


def split_span(a: float, b: float, step: int) -> list[tuple[int, float, float]]:
    """Cut ``[a, b)`` at settlement boundaries: ``(interval start, piece start, piece end)``."""
    pieces = []
    while b - a > 1e-9:
        start = interval_start(a, step)
        end = min(b, start + step)
        pieces.append((start, a, end))
        a = end
    return pieces


def plan_range(start: int, end: int, step: int) -> list[tuple[int, int, int]]:
    """Cover ``[start, end)`` with the coarsest periods: ``(level, first start, end)`` runs.

    ``start`` and ``end`` must be interval boundaries. Months and days are used
    where whole ones fit, then hours, then single intervals at the edges. The
    result has at most two runs per level (the left and right edges).
    """
    runs: list[tuple[int, int, int]] = []
    p = start
    while p < end:
        for level in (MONTH, DAY, HOUR):
            if period_start(level, p) == p and period_end(level, p) <= end:
                nxt = period_end(level, p)
                break
        else:
            level, nxt = INTERVAL, p + step
        if runs and runs[-1][0] == level and runs[-1][2] == p:
            runs[-1] = (level, runs[-1][1], nxt)
        else:
            runs.append((level, p, nxt))
        p = nxt
    return runs


def align_range(start: float | None, end: float | None, step: int,
                first: int, last: int) -> tuple[int, int]:
    """Whole intervals inside ``[start, end]``, clipped to what is booked (``[first, last)``)."""
    lo = first if start is None else max(first, int(math.ceil(start / step) * step))
    hi = last if end is None else min(last, interval_start(end, step))
    return lo, max(lo, hi)
