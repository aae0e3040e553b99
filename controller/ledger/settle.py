"""Settle each interval on the meters' energy counters.

Grid operators bill from a meter's counter deltas, not from sampled power. So
where a meter has counters, the energy the books say crossed it over an
interval (:data:`METER_IN`, :data:`METER_OUT`) is made equal to what its
counters counted; the per-cycle estimates only split it between peers, coop
batteries and the grid:

* more counted than estimated: the rest came from (went to) the grid; never
  liberated. Islanded there is no grid: the rest is ``unallocated_*``;
* less counted: the grid part shrinks first; then the member's peer and coop
  battery flows, and the other side of each pair moves to the grid, so pairs
  still match exactly and nobody else's meter total changes.

What each counter said beyond the estimate is kept per member and interval
(``meter_import_drift``, ``meter_export_drift``: signed Wh, so statements can still flag a
meter over a month). A meter whose counters and measured power disagree by more than
``max(FLAG_SHARE x counted, FLAG_WH)`` in an interval is flagged: its member's
``<id>/meter`` is recorded in the interval row (``flagged``), not silently
absorbed. Whole Wh come later (:func:`~controller.ledger.accumulator.book_interval`),
each field with its carried remainder, so a booked sum differs from the
counter's by less than one Wh per field and never drifts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from controller.ledger.accumulator import OpenInterval

FloatArray = NDArray[np.float64]
#: Booked flows that physically pass a member's grid meter, inwards and outwards (the
#: same as :data:`controller.accounts.figures.METER_IN` / ``METER_OUT``).
METER_IN = ("from_grid", "grid_to_battery", "from_peers", "from_coop_battery",
            "battery_from_coop", "unallocated_import")
METER_OUT = ("to_grid", "to_peers", "to_coop_battery", "battery_to_coop", "battery_to_grid",
             "unallocated_export")
#: A disagreement both larger than this share of what the counter counted ...
FLAG_SHARE = 0.10
#: ... and larger than this (Wh, per interval) flags the meter.
FLAG_WH = 50.0


def _take(row: FloatArray, want: FloatArray) -> FloatArray:
    """Take up to ``want`` from ``row`` (in place); return what was taken."""
    cut = np.minimum(np.maximum(want, 0.0), np.maximum(row, 0.0))
    row -= cut
    return cut


def _spread(total: float, weights: FloatArray) -> FloatArray:
    """``total`` over members in proportion to ``weights`` (all of it, or none)."""
    s = float(weights.sum())
    return weights * (min(total, s) / s) if s > 0.0 and total > 0.0 else np.zeros_like(weights)


def settle_on_counters(acc: OpenInterval, counted: NDArray[np.bool_],
                       islanded: bool) -> NDArray[np.bool_]:
    """Make ``counted`` members' booked meter flows equal their counters (in place);
    return which of them disagreed beyond the flag threshold."""
    row = acc.row
    booked_in = sum(row(f) for f in METER_IN)
    booked_out = sum(row(f) for f in METER_OUT)
    meter_in, meter_out = row("meter_import"), row("meter_export")
    short_in = np.where(counted, meter_in - booked_in, 0.0)
    short_out = np.where(counted, meter_out - booked_out, 0.0)
    row("meter_import_drift")[:] = short_in
    row("meter_export_drift")[:] = short_out
    flagged = counted & (
        (np.abs(short_in) > np.maximum(FLAG_SHARE * meter_in, FLAG_WH))
        | (np.abs(short_out) > np.maximum(FLAG_SHARE * meter_out, FLAG_WH)))
    grid_in = "unallocated_import" if islanded else "from_grid"
    grid_out = "unallocated_export" if islanded else "to_grid"

    # Import: what was counted beyond the estimate came from the grid.
    row(grid_in)[:] += np.maximum(short_in, 0.0)
    over = np.maximum(-short_in, 0.0)
    over -= _take(row("from_grid"), over)
    # Less came from peers than estimated: the senders' surplus went to the grid instead.
    cut = _take(row("from_peers"), over)
    over -= cut
    row(grid_out)[:] += _take(row("to_peers"), _spread(float(cut.sum()), row("to_peers")))
    # Less from neighbours' batteries: that discharge left the coop.
    whole = row("from_coop_battery").copy()
    cut = _take(row("from_coop_battery"), over)
    row("from_coop_battery_coop")[:] *= np.divide(row("from_coop_battery"), whole,
                                                  out=np.zeros_like(whole), where=whole > 0)
    row("battery_to_grid")[:] += _take(row("battery_to_coop"),
                                       _spread(float(cut.sum()), row("battery_to_coop")))

    # Export: what was counted beyond the estimate went to the grid.
    row(grid_out)[:] += np.maximum(short_out, 0.0)
    over = np.maximum(-short_out, 0.0)
    over -= _take(row("to_grid"), over)
    # Less went to peers than estimated: the receivers drew it from the grid instead.
    cut = _take(row("to_peers"), over)
    over -= cut
    row(grid_in)[:] += _take(row("from_peers"), _spread(float(cut.sum()), row("from_peers")))
    # Less into neighbours' batteries: they charged from the grid instead.
    cut = _take(row("to_coop_battery"), over)
    row("grid_to_battery")[:] += _take(row("battery_from_coop"),
                                       _spread(float(cut.sum()), row("battery_from_coop")))
    return flagged
