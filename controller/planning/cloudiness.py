"""Cloudiness learned from the ledger: how much of the clear-sky power each member made.

The PV forecast on the grid is pvlib's clear-sky power of the site's arrays
(:func:`controller.island.forecast.pv_forecast_w`, scenario ``clear``) times a factor
per member and step, learned from what the ledger booked:

* ``by_hour``: the median, over the last :data:`DAYS` days and the four slots of each
  hour, of measured ÷ clear-sky power (a robust climate of the site's clouds, the
  shading of each roof and the error of each array's declared kWp, all in one);
* ``recent``: the most recent day's clearness (its energy ÷ its clear-sky energy):
  tomorrow's weather is more like today's than like the week's.

The forecast blends them with a weight on ``recent`` that fades with the lead time
(:data:`PERSIST_H`). One implementation serves the running controller
(:func:`learn`) and the walk-forward scores (:func:`walk_forward_factor`), so
``forecast calibrate`` and ``bench dispatch`` score what the controller uses.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

#: Days of history a factor is learned from.
DAYS = 7
#: A slot counts when its clear-sky power is at least this share of the member's
#: clear-sky peak over the window: at dawn both powers are tiny and their ratio noise.
MIN_CLEAR_SHARE = 0.1
#: Bounds of a factor (edge-of-cloud enhancement lets real PV exceed clear sky a little).
FACTOR_RANGE = (0.0, 1.2)
#: e-folding lead time (h) of the most recent day's clearness in the blend. Measured on
#: the simulated year of ``bench/forecast_bench.py`` (20 households, day-ahead coop MAE,
#: persistence 6013 W): 3 h 6380, 6 h 6172, 12 h 5863, 24 h 5679, 48 h 5652, yesterday
#: alone (1000 h) 5793. Chosen on that same year (one parameter, in-sample).
PERSIST_H = 48.0


@dataclass(frozen=True, slots=True)
class Cloudiness:
    """A learned factor: ``by_hour`` (24 × N, UTC hour; NaN: not learned) and ``recent``
    (N; NaN: not learned), learned at ``learned_at`` (controller clock, s)."""

    by_hour: FloatArray
    recent: FloatArray
    learned_at: float

    def as_dict(self) -> dict:
        """JSON-ready (NaN as null)."""
        return {"learned_at": self.learned_at, "by_hour": _nulls(self.by_hour),
                "recent": _nulls(self.recent)}

    @classmethod
    def from_dict(cls, data: dict) -> Cloudiness:
        """Inverse of :meth:`as_dict`."""
        return cls(_floats(data["by_hour"]), _floats(data["recent"]), float(data["learned_at"]))

    def factor(self, hours: IntArray, lead_s: FloatArray) -> FloatArray:
        """The factor (T × N) for steps at UTC ``hours`` that are ``lead_s`` ahead."""
        return blend(self.by_hour[np.asarray(hours) % 24], self.recent[None, :],
                     np.asarray(lead_s, dtype=float))


def blend(by_hour: FloatArray, recent: FloatArray, lead_s: FloatArray) -> FloatArray:
    """``by_hour`` and ``recent`` (broadcast to T × N) weighted by lead time; either alone
    where the other is not learned, NaN where neither is."""
    w = np.exp(-np.maximum(lead_s, 0.0) / 3600.0 / PERSIST_H)[:, None]
    by_hour, recent = np.broadcast_arrays(by_hour, recent)
    mixed = w * recent + (1.0 - w) * by_hour
    out = np.where(np.isnan(by_hour), recent, np.where(np.isnan(recent), by_hour, mixed))
    return np.clip(out, *FACTOR_RANGE)


def ratios(measured: FloatArray, clear: FloatArray) -> FloatArray:
    """Measured ÷ clear-sky power per slot (same shape); NaN where it says nothing."""
    peak = np.max(clear, axis=tuple(range(clear.ndim - 1)), keepdims=True)
    ok = (clear >= MIN_CLEAR_SHARE * peak) & (clear > 0) & np.isfinite(measured)
    return np.divide(measured, clear, out=np.full(clear.shape, np.nan), where=ok)


def _daily(measured: FloatArray, clear: FloatArray) -> FloatArray:
    """Each day's clearness (D × N) from D × P × N slots: energy over clear-sky energy."""
    ok = np.isfinite(ratios(measured, clear))
    made = np.where(ok, measured, 0.0).sum(axis=1)
    could = np.where(ok, clear, 0.0).sum(axis=1)
    return np.divide(made, could, out=np.full(made.shape, np.nan), where=could > 0)


def _hourly_median(ratio: FloatArray, slot_hour: IntArray, days: int) -> FloatArray:
    """Per window of ``days`` days ending at each day: the median ratio by hour,
    ((D - days + 1) × 24 × N) from D × P × N; NaN where the window has none."""
    d_count, _, n = ratio.shape
    out = np.full((d_count - days + 1, 24, n), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a window without daylight
        for h in np.unique(slot_hour):  # 24 hours, each vectorized over days and members
            part = ratio[:, slot_hour == h, :]  # D × k × N
            win = sliding_window_view(part, days, axis=0)  # W × k × N × days
            out[:, h, :] = np.nanmedian(np.moveaxis(win, 1, -1).reshape(*win.shape[:1], n, -1),
                                        axis=-1)
    return out


def learn(measured: FloatArray, clear: FloatArray, slot_hour: IntArray,
          learned_at: float) -> Cloudiness:
    """The factor from the last :data:`DAYS` whole days (D × P × N measured and clear-sky
    W, ``slot_hour``: the UTC hour of each of the day's P slots)."""
    days = min(DAYS, measured.shape[0])
    if days == 0:
        n = measured.shape[-1]
        return Cloudiness(np.full((24, n), np.nan), np.full(n, np.nan), learned_at)
    measured, clear = measured[-days:], clear[-days:]
    by_hour = _hourly_median(ratios(measured, clear), slot_hour, days)[-1]
    return Cloudiness(by_hour, _daily(measured, clear)[-1], learned_at)


def walk_forward_factor(measured: FloatArray, clear: FloatArray, slot_hour: IntArray,
                        step_s: float, days: int = DAYS) -> FloatArray:
    """The day-ahead factor for every day after the first ``days`` ((D - days) × P × N),
    each learned from the ``days`` days before it only, issued at the day's start."""
    ratio = ratios(measured, clear)
    by_hour = _hourly_median(ratio, slot_hour, days)[:-1]  # window ending the day before
    recent = _daily(measured, clear)[days - 1:-1]  # the day before
    per_day = measured.shape[1]
    lead = (np.arange(per_day) + 0.5) * step_s
    out = np.empty((len(by_hour), per_day, measured.shape[2]))
    for d in range(len(by_hour)):  # days, each vectorized over slots and members
        out[d] = blend(by_hour[d][slot_hour], recent[d][None, :], lead)
    return out


def _nulls(values: FloatArray) -> list:
    return np.where(np.isnan(values), None, np.round(values, 5)).tolist()


def _floats(values: list) -> FloatArray:
    return np.array(values, dtype=float)  # None becomes NaN
