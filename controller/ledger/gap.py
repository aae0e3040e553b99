"""A stall booked from what the devices counted: the meters' counters and the batteries' SoC.

When the controller misses more than a few cycles (a stalled machine, a long
garbage collection), the cycle after it cannot say what happened before: one
sample does not stand for minutes. That time used to be a gap, with the meters'
counter deltas booked as ``unallocated_*`` and the batteries' energy booked
nowhere, so the SoC rebuilt from the books drifted by whatever the batteries did
meanwhile (measured up to 11 percentage points in a 6-hour rehearsal on a loaded
machine).

Yet the devices counted the stall: each meter's import and export counters, each
inverter's PV counter, and each battery's SoC at both ends. So the stall is booked
as one tick of their averages (:func:`averaged_image`):

* the meter's average power is its counters' net delta over the stall;
* the PV's is its counter's delta;
* the battery's is its content's change at the reported SoC, on the AC side with
  the ledger's efficiency convention (``stored_after = stored + charged × η -
  discharged / η``, η the one-leg efficiency): a rise of Δ Wh was ``Δ / η`` charged,
  a fall of Δ Wh was ``Δ × η`` discharged.

The tick is then split by origin like any measured cycle (:mod:`dispatch.measured`):
the battery is booked as doing what its SoC says it did. A member whose counters or
SoC are not known at both ends stays a gap, as before. Averages net out what went
both ways within the stall; on-grid the interval is settled on the counters
(:mod:`controller.ledger.settle`), which restores the gross import and export.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from numpy.typing import NDArray

from controller.process_image import ProcessImage

FloatArray = NDArray[np.float64]
#: A counter may jitter down by this much (Wh); more is a reset, and the stall stays a gap.
RESET_TOLERANCE_WH = 1.0


def battery_ac_wh(stored_then: FloatArray, stored_now: FloatArray,
                  leg_efficiency: FloatArray) -> tuple[FloatArray, FloatArray]:
    """AC energy into and out of each battery that moved its content from ``stored_then``
    to ``stored_now`` (Wh), with the ledger's one-leg efficiency convention."""
    delta = stored_now - stored_then
    return np.maximum(delta, 0.0) / leg_efficiency, np.maximum(-delta, 0.0) * leg_efficiency


def averaged_image(image: ProcessImage, since: float, counters_then: FloatArray,
                   counters_ts: FloatArray, stored_then: FloatArray, stored_now: FloatArray,
                   leg_efficiency: FloatArray) -> ProcessImage:
    """The stall ``[since, image.timestamp]`` as one reading of its average powers.

    Args:
        image: the readings at the stall's end (their counters and SoC).
        since: the end of the last booked cycle.
        counters_then: the counters (import, export, pv; rows) the book last read, and
            ``counters_ts`` when; only a reading taken at ``since`` is used.
        stored_then, stored_now: each battery's content at ``since`` and now, Wh (NaN:
            unknown).
        leg_efficiency: each battery's one-leg efficiency (1 without a battery).

    Members without every counter they need (a meter's both, the PV's where there is
    PV) at both ends, or without the battery's content at both ends, come out invalid
    (their meter unknown): a gap.
    """
    hours = (image.timestamp - since) / 3600.0
    if hours <= 0.0:
        raise ValueError(f"since = {since}: expected before the image's time {image.timestamp}")
    delta = image.counters - counters_then
    read_then = np.isfinite(counters_ts) & (np.abs(counters_ts - since) < 1e-6)
    counted = read_then & np.isfinite(delta) & (delta >= -RESET_TOLERANCE_WH)
    delta = np.where(counted, np.maximum(delta, 0.0), np.nan)
    ok = counted[0] & counted[1] & (counted[2] | ~image.has_pv) & image.valid
    battery_known = np.isfinite(stored_then) & np.isfinite(stored_now)
    ok &= ~image.has_battery | battery_known
    charged, discharged = battery_ac_wh(np.nan_to_num(stored_then), np.nan_to_num(stored_now),
                                        leg_efficiency)
    return dataclasses.replace(
        image,
        meter_w=np.where(ok, (delta[0] - delta[1]) / hours, np.nan),
        pv_w=np.where(ok & image.has_pv, delta[2] / hours, np.where(ok, 0.0, np.nan)),
        battery_w=np.where(ok & image.has_battery, (discharged - charged) / hours, np.nan))
