"""Settle each interval on the meters' energy counters.

Grid operators bill from a meter's counter deltas, not from sampled power. So
where a meter has counters, the energy the books say crossed it over an
interval (:data:`METER_IN`, :data:`METER_OUT`) is made equal to what its
counters counted; the per-cycle estimates only split it between peers, coop
batteries and the grid:

* more counted than estimated: the rest came from (went to) the grid; never
  liberated;
* less counted: first what sampling saw go out and come back in the same
  interval (a battery charging from imports while PV was exported charged from
  its own PV); then the grid part; then the member's peer and coop-battery flows,
  and the other side of each pair moves to the grid, so pairs still match exactly
  and nobody else's meter total changes. Measured battery flows are never cut:
  what is left stays visible in the drift (and flags the meter if large).

An interval with islanded time is not settled (there is no grid to take the
difference, and splitting it inside the island would be a guess): its drift and
flag are recorded all the same.

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
            "battery_from_coop", "battery_from_batteries", "unallocated_import")
METER_OUT = ("to_grid", "to_peers", "to_coop_battery", "battery_to_coop", "battery_to_grid",
             "battery_to_batteries", "unallocated_export")
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


def _unpair(row, cut_total: float, other: str, to: str) -> None:  # noqa: ANN001 - acc.row
    """The other side of a pair whose one side was cut by ``cut_total``: the same amount,
    pro rata over the ``other`` flow, moved to ``to`` (so the pair still matches)."""
    row(to)[:] += _take(row(other), _spread(cut_total, row(other)))


def _net_round_trips(acc: OpenInterval, over_in: FloatArray, over_out: FloatArray,
                     grid_in: str, grid_out: str) -> tuple[FloatArray, FloatArray]:
    """Where both directions were over-estimated, sampling saw energy go out and come back
    that the meter never counted: a battery charged from imports while PV was exported (it
    charged from its own PV), or discharged to export while load imported (it served its
    own load). Net those first; every identity and pair is kept. Returns what is left."""
    row = acc.row
    both = np.minimum(over_in, over_out)
    # Charging: battery imports become own PV; the PV export shrinks by as much.
    net = np.minimum(both, np.minimum(row("grid_to_battery") + row("battery_from_coop"),
                                      row("to_grid") + row("to_peers")))
    got = _take(row("grid_to_battery"), net)
    cut = _take(row("battery_from_coop"), net - got)
    _unpair(row, float(cut.sum()), "to_coop_battery", grid_out)
    row("to_battery")[:] += net
    got = _take(row("to_grid"), net)
    cut = _take(row("to_peers"), net - got)
    _unpair(row, float(cut.sum()), "from_peers", grid_in)
    left = both - net
    # Discharging: battery exports become own load; the load's imports shrink by as much.
    net2 = np.minimum(left, np.minimum(row("battery_to_grid") + row("battery_to_coop"),
                                       row("from_grid") + row("from_peers")))
    got = _take(row("battery_to_grid"), net2)
    cut = _take(row("battery_to_coop"), net2 - got)
    whole = row("from_coop_battery").copy()
    _unpair(row, float(cut.sum()), "from_coop_battery", grid_in)
    row("from_coop_battery_coop")[:] *= np.divide(row("from_coop_battery"), whole,
                                                  out=np.zeros_like(whole), where=whole > 0)
    row("from_battery")[:] += net2
    got = _take(row("from_grid"), net2)
    cut = _take(row("from_peers"), net2 - got)
    _unpair(row, float(cut.sum()), "to_peers", grid_out)
    return over_in - net - net2, over_out - net - net2


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
    if islanded:
        # No grid to take a difference: an island's samples are split as they are, and
        # the drift (and a flag) says how far the counters disagree.
        return flagged
    grid_in, grid_out = "from_grid", "to_grid"
    over_in, over_out = _net_round_trips(acc, np.maximum(-short_in, 0.0),
                                         np.maximum(-short_out, 0.0), grid_in, grid_out)

    # Import: what was counted beyond the estimate came from the grid.
    row(grid_in)[:] += np.maximum(short_in, 0.0)
    over = over_in
    over -= _take(row("from_grid"), over)
    # Less came from peers than estimated: the senders' surplus went to the grid instead.
    cut = _take(row("from_peers"), over)
    over -= cut
    row(grid_out)[:] += _take(row("to_peers"), _spread(float(cut.sum()), row("to_peers")))
    # Less from neighbours' batteries: that discharge left the coop.
    whole = row("from_coop_battery").copy()
    cut = _take(row("from_coop_battery"), over)
    over -= cut
    row("from_coop_battery_coop")[:] *= np.divide(row("from_coop_battery"), whole,
                                                  out=np.zeros_like(whole), where=whole > 0)
    row("battery_to_grid")[:] += _take(row("battery_to_coop"),
                                       _spread(float(cut.sum()), row("battery_to_coop")))
    # What is left is measured battery charge: the books keep it (the counters' view stays
    # in the drift column, and a large one flags the meter).

    # Export: what was counted beyond the estimate went to the grid.
    row(grid_out)[:] += np.maximum(short_out, 0.0)
    over = over_out
    over -= _take(row("to_grid"), over)
    # Less went to peers than estimated: the receivers drew it from the grid instead.
    cut = _take(row("to_peers"), over)
    over -= cut
    row(grid_in)[:] += _take(row("from_peers"), _spread(float(cut.sum()), row("from_peers")))
    # Less into neighbours' batteries: they charged from the grid instead.
    cut = _take(row("to_coop_battery"), over)
    over -= cut
    row("grid_to_battery")[:] += _take(row("battery_from_coop"),
                                       _spread(float(cut.sum()), row("battery_from_coop")))
    # What is left is measured battery discharge: kept, as above.
    return flagged
