"""PV limits from the dispatch's curtailment: when to cap an inverter, raise the cap, release.

The dispatch says how much PV nothing can absorb (islanded, or past the export
cap at the point of common coupling). That energy is curtailed for real by
capping the inverter's output. Once capped, an inverter reports only what it
produces, not what the sun offers, so the controller cannot see whether the cap
is still needed: it raises the cap step by step while the inverter produces at
it, and lets go when production falls well below it (a cloud) or the cap
reaches the inverter's rating. Every cap carries a revert timer and is
refreshed each cycle, so nothing stays throttled if the controller stops.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
#: Curtailment below this (W) is rounding, not a reason to cap an inverter.
MIN_CURTAIL_W = 20.0
#: A capped inverter producing at least this share of its cap may have more sun.
AT_CAP = 0.95
#: Producing less than this share of its cap: the cap is not what limits it.
BELOW_CAP = 0.8
#: How far a cap is raised per cycle when nothing needs curtailing: a share of the
#: cap, at least RAISE_MIN_W.
RAISE_SHARE = 0.1
RAISE_MIN_W = 200.0


def pv_limits(pv_w: FloatArray, curtailed_w: FloatArray, current_w: FloatArray,
              rated_w: FloatArray) -> FloatArray:
    """The cap (W) to hold on each inverter this cycle; NaN: no cap (release if one is set).

    Args:
        pv_w: measured PV production (NaN where unknown).
        curtailed_w: mean power the dispatch curtailed this cycle.
        current_w: the cap in force now (NaN where none).
        rated_w: each inverter's rating (inf where unknown).
    """
    pv = np.nan_to_num(pv_w, nan=0.0)
    capped = np.isfinite(current_w)
    need = curtailed_w > MIN_CURTAIL_W
    # Curtail: cap at what is used. Already capped: never raise while still curtailing.
    cap_now = np.maximum(pv - curtailed_w, 0.0)
    cap_now = np.where(capped, np.minimum(cap_now, current_w), cap_now)
    raised = current_w + np.maximum(RAISE_SHARE * current_w, RAISE_MIN_W)
    at_cap = capped & ~need & (pv >= AT_CAP * current_w)
    probe = at_cap & (raised < rated_w)
    hold = capped & ~need & ~at_cap & (pv >= BELOW_CAP * current_w)
    out = np.where(probe, raised, np.where(hold, current_w, np.nan))
    return np.where(need, cap_now, out)
