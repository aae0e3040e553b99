"""A history forecast the controller learns as it runs: each member by weekday and time.

Per member and 15-minute slot of the week, the mean PV and load seen in that slot (an
exponential average over weeks); a slot not yet seen on its weekday borrows the same
time of day from any weekday. PV: the mean of the last week's days at that time of day
(as :func:`dispatch.rolling.history_forecast`, which ``python -m bench dispatch`` scores).

It lives in memory; after a restart :meth:`SlotProfile.seed` relearns it from the
ledger's last two weeks (:mod:`controller.planning.learner`), off the cycle's thread.
"""

from __future__ import annotations

import warnings

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
SLOT_S = 900.0
PER_DAY = 96
PER_WEEK = 7 * PER_DAY
#: Weight of a new week in a slot's mean.
ALPHA = 0.3


class SlotProfile:
    """Learns PV and load per member and slot from the cycles' readings."""

    def __init__(self, members: int, days_kept: int = 7) -> None:
        self.n = members
        self.load = np.full((PER_WEEK, members), np.nan)
        self.pv_days = np.full((days_kept, PER_DAY, members), np.nan)  # ring of recent days
        self._slot: int | None = None
        self._sums = np.zeros((2, members))
        self._count = np.zeros(members)

    @staticmethod
    def slot_of(ts: float) -> int:
        """Slot of the week (Monday 00:00 UTC is 0) of timestamp ``ts``."""
        return int(((ts // SLOT_S) + 3 * PER_DAY) % PER_WEEK)  # 1970-01-01 was a Thursday

    def observe(self, ts: float, pv_w: FloatArray, load_w: FloatArray,
                valid: NDArray[np.bool_]) -> None:
        """Add one cycle's readings; a slot is learned when the next one begins."""
        slot = self.slot_of(ts)
        if self._slot is not None and slot != self._slot:
            self._close(self._slot, ts - SLOT_S)
        self._slot = slot
        self._sums[0] += np.where(valid, np.maximum(pv_w, 0.0), 0.0)
        self._sums[1] += np.where(valid, np.maximum(load_w, 0.0), 0.0)
        self._count += valid

    def _close(self, slot: int, ts: float) -> None:
        seen = self._count > 0
        mean = self._sums / np.maximum(self._count, 1)
        old = self.load[slot]
        self.load[slot] = np.where(seen, np.where(np.isnan(old), mean[1],
                                                  (1 - ALPHA) * old + ALPHA * mean[1]), old)
        day = int(ts // 86400) % len(self.pv_days)
        self.pv_days[day, slot % PER_DAY] = np.where(seen, mean[0],
                                                     self.pv_days[day, slot % PER_DAY])
        self._sums[:] = 0.0
        self._count[:] = 0.0

    def seed(self, start_s: float, pv_w: FloatArray, load_w: FloatArray) -> None:
        """Learn the 15-minute slots (T × N mean W, NaN: nothing booked) of a window from
        ``start_s``, oldest first, as if the cycles had seen them; the slot being learned
        from the cycles now is kept as it was."""
        held = self._sums.copy(), self._count.copy()
        for t in range(len(pv_w)):  # slots in time order, each vectorized over members
            valid = np.isfinite(pv_w[t]) & np.isfinite(load_w[t])
            self._sums[0] = np.where(valid, np.maximum(pv_w[t], 0.0), 0.0)
            self._sums[1] = np.where(valid, np.maximum(load_w[t], 0.0), 0.0)
            self._count[:] = valid
            ts = start_s + t * SLOT_S
            self._close(self.slot_of(ts), ts)
        self._sums[:], self._count[:] = held

    def forecast(self, now: float, steps: int, step_s: float = SLOT_S
                 ) -> tuple[FloatArray, FloatArray] | None:
        """PV and load (W) for ``steps`` slots from ``now``; None until a day has been seen."""
        if step_s != SLOT_S:
            raise ValueError(f"step_s = {step_s}: the profile forecasts {SLOT_S:g} s slots")
        slots = (self.slot_of(now) + np.arange(steps)) % PER_WEEK
        by_day = self.load.reshape(7, PER_DAY, self.n)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # slots not seen yet are all-NaN
            any_day = np.nanmean(by_day, axis=0)
            load = np.where(np.isnan(self.load[slots]), any_day[slots % PER_DAY],
                            self.load[slots])
            pv = np.nanmean(self.pv_days, axis=0)[slots % PER_DAY]
        if np.isnan(load).any() or np.isnan(pv).any():
            return None
        return pv, load

