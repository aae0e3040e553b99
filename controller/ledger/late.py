"""Late counter readings (an edge agent's spool, sent again after an outage), booked once.

While a member's agent cannot reach the coop broker, the coop sees the
member as unknown: its cycles are a gap, and the book waits for its meter
counters to come back to learn the energy (:class:`~controller.ledger.book.IntervalBook`).
The agent's buffered readings carry those counters at the times they were
taken, so the coop learns sooner and better where the energy belongs:

* the part of a reading's span that lies in the **open** interval is booked
  there as what the meter says the member did alone (import ``from_grid``,
  export ``to_grid``: the dispatch did not share with a member it could not
  see), and its seconds are no longer a gap;
* the part that lies in an interval **already committed** (immutable) goes,
  as for any gap, to the open interval's ``unallocated_*`` columns: the gap
  accounting.

Exactly once: the book's last counter reading per member (``carry.counters``,
``counters_ts``) is the single mark of what is counted. A late reading only
counts what lies after that mark and before the book's end; it then moves
the mark, so neither a re-sent reading nor the live counters returning later
count the same Wh again. A reading past the book's end is interpolated to
the end (counters grow steadily between two readings), so the gap closes
exactly where the next cycle begins. Readings older than the mark (the live
counters came back first) change nothing: their energy is already in the gap
accounting. The household's own PV behind the meter is booked as
``unallocated_pv``: without the dispatch nobody split it into own use and export.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from controller.ledger.book import RESET_TOLERANCE_WH, IntervalBook

#: Per counter (import, export, pv): the flow its open-interval energy is booked as.
OPEN_FLOW = ("from_grid", "to_grid", None)
UNALLOCATED = ("unallocated_import", "unallocated_export", "unallocated_pv")
METER = ("meter_import", "meter_export", None)


def book_late_reading(book: IntervalBook, member: int, ts: float,
                      counters: NDArray[np.float64],
                      previous: tuple[float, NDArray[np.float64]] | None = None) -> float:
    """Book what one late reading's counters add for ``member``; the seconds it covered.

    ``counters`` are the lifetime Wh (import, export, pv) at ``ts``, NaN where
    unknown; ``previous`` the agent's reading before it, if the coop has it.
    Returns 0 when the reading adds nothing (already counted, or the member
    was not in a gap).

    The book's mark was stamped at the end of the member's last dispatched
    cycle, with the newest counter the coop had then, which may be seconds
    older: the dispatch booked those seconds from the member's power. So the
    energy booked here for the gap is the readings' counters interpolated at
    the mark, not the mark's counter (that difference goes to the meter
    columns only, as a live counter's would). Without ``previous`` (the first
    reading after the controller started) the mark's counter stands in for it.
    """
    carry, acc, end = book.carry, book.acc, book.carry.end_ts
    t0 = float(carry.counters_ts[0, member])
    if end is None or acc is None or not np.isfinite(t0) or not t0 < end or ts <= t0:
        return 0.0
    t1 = min(ts, end)
    before = carry.counters[:, member]
    same_mark = carry.counters_ts[:, member] == t0
    raw = counters - before
    usable = same_mark & np.isfinite(raw) & (raw >= -RESET_TOLERANCE_WH)
    if not usable[0]:
        return 0.0  # a reset or no import counter: the live counters will tell
    # Interpolated to the book's end when the reading lies beyond it.
    at_end = before + np.where(usable, np.maximum(raw, 0.0), 0.0) * ((t1 - t0) / (ts - t0))
    delta = at_end - before  # what the meter columns learn (telescoping from the mark)
    gap_wh = delta.copy()  # what the gap [t0, t1] consumed
    if previous is not None and previous[0] <= t0 < ts:
        at_mark = previous[1] + (counters - previous[1]) * ((t0 - previous[0]) / (ts - previous[0]))
        gap_wh = np.where(np.isfinite(at_mark), np.clip(at_end - at_mark, 0.0, delta), delta)
    span = t1 - t0
    committed_s = max(0.0, min(t1, acc.start_ts) - t0)
    open_s = span - committed_s
    gap = acc.row("gap_s")
    covered = min(open_s, float(gap[member]))
    for k in range(3):
        if not usable[k]:
            continue
        if METER[k] is not None:
            acc.row(METER[k])[member] += delta[k]
        acc.row(UNALLOCATED[k])[member] += gap_wh[k] * committed_s / span
        flow = OPEN_FLOW[k] or UNALLOCATED[k]
        acc.row(flow)[member] += gap_wh[k] * covered / span
        carry.counters[k, member] = at_end[k]
        carry.counters_ts[k, member] = t1
    acc.meter_known[member] = True
    gap[member] -= covered
    return covered
